#!/usr/bin/env bash
# The release site, as production serves it: `scripts/build-site.sh [--frontend-only]
# [--bin-features F]`. The browser side first — the hydrate WASM split into the main module and
# its chunks (`--split`, frontend/src/lib.rs), wasm-bindgen, npm's wasm-opt, the CSS — with the
# standard library rebuilt for size: panics abort at once instead of formatting a message nobody
# reads (the page has no console open), no source locations in the binary, std's
# `optimize_for_size` algorithms. That is 330 → 300 KB gzip for the admin's first page
# (docs/design.md, "A lighter page: the standard library rebuilt for size"). `-Zfmt-debug=shallow`
# makes a `#[derive(Debug)]` print only its type's or variant's name (3.4 KB gzip); hand-written
# `Debug` (a string's `{:?}`, quoted) is untouched, and no text the page shows formats a derived
# `Debug` (docs/design.md, 2026-12-06, afternoon). Then, unless `--frontend-only`, the server
# binary.
#
# Those are unstable options of the toolchain this project pins (Rust 1.95, rust-version in
# Cargo.toml): `RUSTC_BOOTSTRAP=1` lets this one build use them, and the `rust-src` component
# (scripts/setup.sh adds it) is the source std is rebuilt from. Only the browser's release
# build: the server, the tests, `cargo leptos watch` and the trunk build use the toolchain as
# shipped. If a later toolchain drops one of these options, this build fails loudly — drop the
# option here, and `scripts/bundle-size.sh` shows what it cost.
set -euo pipefail
cd "$(dirname "$0")/.."
frontend_only=false
bin_features=()
while [ $# -gt 0 ]; do
  case "$1" in
    --frontend-only) frontend_only=true ;;
    --bin-features) bin_features=(--bin-features "${2:?--bin-features needs a value}"); shift ;;
    *) echo "usage: scripts/build-site.sh [--frontend-only] [--bin-features F]" >&2; exit 2 ;;
  esac
  shift
done
# Only this invocation builds for wasm32, so the std rebuild cannot reach the server's build.
env RUSTC_BOOTSTRAP=1 \
  CARGO_UNSTABLE_BUILD_STD=std,panic_abort \
  CARGO_UNSTABLE_BUILD_STD_FEATURES=optimize_for_size \
  CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUSTFLAGS="-Zunstable-options -Cpanic=immediate-abort -Zlocation-detail=none -Zfmt-debug=shallow" \
  cargo leptos build --release --frontend-only --split
if ! $frontend_only; then
  cargo leptos build --release --server-only --split "${bin_features[@]}"
fi
