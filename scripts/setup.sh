#!/usr/bin/env bash
# Installs what the project needs and is missing; skips what is there. Idempotent.
#   scripts/setup.sh          tools to build and run the app
#   scripts/setup.sh --test   plus what the tests need (Chromium from Debian, Playwright from npm)
#   scripts/setup.sh --rustup only the rustup target and components (seconds; test.sh runs the
#                             slow installs beside the first checks)
# Nothing here downloads from GitHub: cargo-leptos and trunk get local wasm-bindgen/wasm-opt/sass.
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO_LEPTOS_VERSION=0.3.10
WASM_BINDGEN_VERSION=0.2.130
TRUNK_VERSION=0.21.14
want_test=false
rustup_only=false
case "${1:-}" in
  --test) want_test=true ;;
  --rustup) rustup_only=true ;;
  "") ;;
  *) echo "usage: scripts/setup.sh [--test | --rustup]" >&2; exit 2 ;;
esac

say() { printf '\033[1;34m==>\033[0m %s\n' "$*"; }

export PATH="$HOME/.cargo/bin:$PATH"

if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
  say "adding the wasm32-unknown-unknown target"
  rustup target add wasm32-unknown-unknown
fi
# rust-src: the release WASM rebuilds std for size from it (scripts/build-site.sh).
for component in rustfmt clippy rust-src; do
  if ! rustup component list --installed | grep -q "^$component"; then
    say "adding rustup component $component"
    rustup component add "$component"
  fi
done
if $rustup_only; then
  exit 0
fi

# cargo-leptos and trunk only orchestrate other programs, so they are built with the dev profile
# (--debug) and without debug info: 8-12 minutes instead of 21 on 2 cores, and no slower where it
# matters (the WASM post-processing step measured 29 s with a debug cargo-leptos, 38 s with a
# release one).
tool_install() { env CARGO_PROFILE_DEV_DEBUG=false cargo install --locked --debug "$@"; }
if ! cargo leptos --version 2>/dev/null | grep -q "$CARGO_LEPTOS_VERSION"; then
  say "installing cargo-leptos $CARGO_LEPTOS_VERSION (about 10 minutes on 2 cores, once)"
  tool_install cargo-leptos --version "$CARGO_LEPTOS_VERSION"
fi

# wasm-bindgen's CLI (trunk runs it; cargo-leptos has its own copy inside) must be the exact
# version of the crate (pinned with = in Cargo.toml). Not --locked: a dependency locked by that
# release was withdrawn from crates.io. Dev profile too, like the two tools above.
if ! wasm-bindgen --version 2>/dev/null | grep -q "$WASM_BINDGEN_VERSION"; then
  say "installing wasm-bindgen-cli $WASM_BINDGEN_VERSION"
  env CARGO_PROFILE_DEV_DEBUG=false cargo install --debug wasm-bindgen-cli --version "$WASM_BINDGEN_VERSION" --force
fi

if $want_test && ! trunk --version 2>/dev/null | grep -q "$TRUNK_VERSION"; then
  say "installing trunk $TRUNK_VERSION (builds the client-side-rendered variant)"
  tool_install trunk --version "$TRUNK_VERSION"
fi

# wasm-opt (binaryen 132) and sass from npm. Never Debian's binaryen: its wasm-opt 108 silently
# breaks the release WASM (hydration dies with WebAssembly.Table.set()).
if [ ! -x node_modules/.bin/wasm-opt ] || [ ! -x node_modules/.bin/sass ]; then
  say "installing wasm-opt and sass from npm"
  npm ci --no-audit --no-fund
fi

if $want_test; then
  if [ ! -x /usr/bin/chromium ]; then
    say "installing Debian's chromium"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium
  fi
  if [ ! -x /usr/sbin/nginx ]; then
    say "installing Debian's nginx (the proxy journeys run through it)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light
  fi
  if [ ! -d end2end/node_modules/@playwright/test ]; then
    say "installing Playwright (the runner only; the browser is Debian's)"
    npm --prefix end2end ci --no-audit --no-fund
  fi
fi
say "tools ready"
