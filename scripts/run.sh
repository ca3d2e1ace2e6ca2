#!/usr/bin/env bash
# README command 1: sets up what is missing and runs the app on the embedded default —
# SQLite under data/, the WhatsApp simulator, the YClients sandbox — at http://127.0.0.1:3000.
# `scripts/run.sh --watch` runs `cargo leptos watch` instead (the developer loop).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export PATH="$PWD/node_modules/.bin:$HOME/.cargo/bin:$PATH"
# The same build cache as the test command, outside the clone.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/ai-admin-connect/target}"

# The embedded default. Anything already set in the environment or .env wins.
[ -f .env ] && set -a && . ./.env && set +a
export YCLIENTS_SANDBOX="${YCLIENTS_SANDBOX:-true}"
export YCLIENTS_PARTNER_TOKEN="${YCLIENTS_PARTNER_TOKEN:-sandbox-partner-token}"
export YCLIENTS_APPLICATION_ID="${YCLIENTS_APPLICATION_ID:-1001}"
export WHATSAPP_BACKEND="${WHATSAPP_BACKEND:-simulator}"
export LEPTOS_SITE_ADDR="${LEPTOS_SITE_ADDR:-127.0.0.1:3000}"
if [ -z "${JWT_SECRET:-}" ]; then
  mkdir -p data
  [ -f data/jwt-secret ] || head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > data/jwt-secret
  JWT_SECRET="$(cat data/jwt-secret)"
  export JWT_SECRET
fi

banner() {
  cat <<MSG

  AI Admin Connect: http://${LEPTOS_SITE_ADDR}
  Start the journey:  http://${LEPTOS_SITE_ADDR}/demo   (the YClients sandbox: press «Подключить»)
  Health:             http://${LEPTOS_SITE_ADDR}/marketplace/health

MSG
}
# The `demo` feature compiles the YClients sandbox in (YCLIENTS_SANDBOX=true needs it); a production
# build (`scripts/build-site.sh` alone) has no sandbox at all. `--split` is part of every build:
# the WASM imports its chunks' loader, which only a split build writes (frontend/src/lib.rs).
if [ "${1:-}" = "--watch" ]; then
  banner
  exec cargo leptos watch --split --bin-features demo
fi
scripts/build-site.sh --bin-features demo
scripts/settle-build-scripts.sh "$CARGO_TARGET_DIR/release"
banner
exec "$CARGO_TARGET_DIR/release/server"
