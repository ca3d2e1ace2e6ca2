#!/usr/bin/env bash
# Clippy on its own, warnings denied: the server side (every target) and the browser side (wasm32).
# scripts/test.sh runs the same lints inside its test build (clippy-driver compiles the workspace's
# crates there), so this is for the developer loop.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo clippy --workspace --all-targets --locked --features server/demo -- -D warnings
cargo clippy -p frontend --features hydrate --target wasm32-unknown-unknown --locked -- -D warnings
