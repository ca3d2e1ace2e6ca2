#!/usr/bin/env bash
# README command 2: sets up what is missing and runs every test — formatting, clippy (native and
# wasm32), the Rust tests on SQLite and on PostgreSQL, the release front end (cargo leptos), the
# client-side-rendered build (trunk), and the Playwright journeys in headless Chromium.
# Any failing part fails the whole run.
set -euo pipefail
cd "$(dirname "$0")/.."
started=$(date +%s)
# The rustup target and components first (seconds); the slow one-time installs (cargo-leptos,
# wasm-bindgen-cli, trunk, Chromium, npm packages) are needed only from the release build on, so
# on a fresh machine they build beside the checks and the Rust tests below, in their own process
# group (and their own target directories, so neither waits for the other's lock), logged to a
# file that is printed when they are waited for.
scripts/setup.sh --rustup
setup_log="$(mktemp)"
env -u CARGO_TARGET_DIR setsid scripts/setup.sh --test >"$setup_log" 2>&1 &
setup_pid=$!
trap 'kill -- -"$setup_pid" 2>/dev/null || true; rm -f "$setup_log"' EXIT
export PATH="$PWD/node_modules/.bin:$HOME/.cargo/bin:$PATH"
# Builds are cached outside the clone, so a fresh clone on the same machine reuses them.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/ai-admin-connect/target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
PG_URL="${TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/test}"
# The run's name: the API tests name their PostgreSQL schemas and SQLite files after it, and the
# step after the PostgreSQL tests removes them, so runs do not pile up schemas in the database.
# (A failed run keeps its own, to be looked at.)
export TEST_RUN_ID="r$(date +%s)_$$"

step() {
  local name="$1"
  shift
  printf '\n\033[1;34m==> %s\033[0m\n' "$name"
  local t0
  t0=$(date +%s)
  "$@"
  printf '\033[1;32m<== %s: ok (%ss)\033[0m\n' "$name" "$(( $(date +%s) - t0 ))"
}

ensure_postgres() {
  if ! pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
    echo "starting the local PostgreSQL cluster"
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n 1)" main start
    for _ in $(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done
  fi
  pg_isready -h 127.0.0.1 -p 5432
}

step "rustfmt" cargo fmt --all --check
step "clippy, browser side (wasm32)" cargo clippy -p frontend --features hydrate --target wasm32-unknown-unknown --locked -- -D warnings
# Clippy, server side, runs inside the test build: clippy-driver compiles the workspace's own
# crates (RUSTC_WORKSPACE_WRAPPER and CLIPPY_ARGS, exactly what `cargo clippy` sets up around
# `cargo check`) and denies every warning, while the dependencies are compiled once for the tests
# instead of once checked for clippy and once built (docs/design.md, "The test command compiles
# the dependency graph once"). scripts/lint.sh is the same check on its own.
clippy_build=(env RUSTC_WORKSPACE_WRAPPER="$(rustc --print sysroot)/bin/clippy-driver"
  CLIPPY_ARGS="-D__CLIPPY_HACKERY__warnings__CLIPPY_HACKERY__")
# `--features server/demo`: the server binary the journeys run embeds the YClients sandbox; the
# same flags in both runs, so the PostgreSQL run recompiles nothing.
# `--show-output` prints what passing tests print: the property tests' counts of generated inputs
# (server/tests/api/hostile.rs) and the limits tests' measured answers.
step "clippy (-D warnings) and the Rust tests on SQLite" "${clippy_build[@]}" cargo test --workspace --locked --features server/demo -- --show-output
step "settle build-script outputs (scripts/settle-build-scripts.sh)" scripts/settle-build-scripts.sh "$CARGO_TARGET_DIR/debug"
step "PostgreSQL is up" ensure_postgres
step "Rust tests on PostgreSQL" "${clippy_build[@]}" env TEST_DATABASE_URL="$PG_URL" cargo test --workspace --locked --features server/demo --test api --test migrations -- --show-output
remove_scratch() {
  rm -rf "${TMPDIR:-/tmp}/ai-admin-connect-tests/$TEST_RUN_ID"
  # One statement per schema, each its own transaction (one transaction dropping them all would
  # need more locks than PostgreSQL's default lock table holds).
  psql "$PG_URL" -qAt -c "SELECT format('DROP SCHEMA %I CASCADE;', nspname) FROM pg_namespace
    WHERE starts_with(nspname, '${TEST_RUN_ID}_')" |
    PGOPTIONS='-c client_min_messages=warning' psql "$PG_URL" -q -v ON_ERROR_STOP=1
  local left
  left=$(psql "$PG_URL" -qAt -c "SELECT count(*) FROM pg_namespace WHERE starts_with(nspname, '${TEST_RUN_ID}_')")
  echo "this run's test schemas left: $left"
  [ "$left" = 0 ]
}
step "remove this run's test databases" remove_scratch
wait_for_tools() {
  local status=0
  wait "$setup_pid" || status=$?
  cat "$setup_log"
  if [ "$status" -ne 0 ]; then
    echo "scripts/setup.sh --test failed (exit $status); its output is above" >&2
    return "$status"
  fi
}
step "tools (installed beside the checks above when missing)" wait_for_tools
# The browser side exactly as in production: the hydrate WASM in the size-optimised
# wasm-release profile, wasm-bindgen and npm's wasm-opt (cargo leptos), the CSS, the site folder.
# The server under test is the binary the Rust tests above built (target/debug/server): the same
# code, configured at run time like the release binary, without a second, optimised compile of
# every dependency. `scripts/build-site.sh` builds both halves (README command 1), the browser's
# with std rebuilt for size; `--split` cuts the console and the «Сообщения» section into chunks
# of their own (frontend/src/lib.rs).
step "release front end (scripts/build-site.sh --frontend-only)" scripts/build-site.sh --frontend-only
# The client-side-rendered build calls the app the end-to-end suite starts (end2end/playwright.config.ts).
E2E_APP_URL="http://127.0.0.1:${E2E_APP_PORT:-3300}"
step "client-side-rendered build (trunk build)" env AI_ADMIN_API_URL="$E2E_APP_URL" trunk build
# nginx (Debian's, installed by setup.sh) in front of the app with deploy/nginx/'s locations: the
# proxy journeys (end2end/tests/proxy.spec.ts) run through it.
step "end-to-end journeys (Playwright, Debian Chromium, nginx)" \
  env SERVER_BIN="$CARGO_TARGET_DIR/debug/server" LEPTOS_SITE_ROOT="$PWD/target/site" \
  E2E_CSR_DIST="$PWD/target/dist-csr" E2E_NGINX="$(command -v nginx || echo /usr/sbin/nginx)" \
  npm --prefix end2end test
step "deployment files: systemd, nginx, Dockerfile, compose, SIGTERM (scripts/check-deploy.sh)" \
  scripts/check-deploy.sh "$CARGO_TARGET_DIR/debug/server" "$PWD/target/site"
step "hydrate bundle size" scripts/bundle-size.sh
printf '\nall checks passed in %s s\n' "$(( $(date +%s) - started ))"
