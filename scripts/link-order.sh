#!/usr/bin/env bash
# Usage: scripts/link-order.sh
#
# Writes server/link-order.txt: the symbol names of the functions a start of the service runs, up
# to its first healthy answer, in the order callgrind first met them: the `server` binary's start
# (the embedded defaults), then what `bench idle` adds. server/build.rs hands the list to the
# linker (`--symbol-ordering-file`) for release builds, which lays those functions out side by side (docs/design.md, "Idle memory: the start's code side by side"). Run it again after
# large changes to what the start does or to the dependencies; a stale list only lays out less.
# Needs valgrind (Debian's package), curl and a few minutes: a release build of `server` and
# `bench`, then each start under callgrind (about 50 times slower than native: seconds).
set -euo pipefail
cd "$(dirname "$0")/.."
target=$(realpath -m "${CARGO_TARGET_DIR:-target}")
command -v valgrind >/dev/null || { echo "valgrind is needed: apt-get install valgrind" >&2; exit 1; }
cargo build --release --locked -p server --features demo --bin bench --bin server
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# --demangle=no: the names the linker sees. --compress-strings=no: every line carries its name.
callgrind() {
  valgrind --tool=callgrind --demangle=no --compress-strings=no --compress-pos=no \
    --callgrind-out-file="$work/$1.out" "${@:2}"
}
# The service itself, as production starts it (the embedded defaults: SQLite, the simulator, the
# sandbox), from its start to a healthy answer, then a graceful stop.
mkdir -p "$work/run"
port=3987
(
  cd "$work/run"
  YCLIENTS_SANDBOX=true YCLIENTS_PARTNER_TOKEN=sandbox-partner-token YCLIENTS_APPLICATION_ID=1001 \
    WHATSAPP_BACKEND=simulator LEPTOS_SITE_ADDR="127.0.0.1:$port" LEPTOS_SITE_ROOT="$work/run" \
    JWT_SECRET=link-order-jwt-secret-that-is-long-enough \
    callgrind server "$target/release/server" >"$work/server.txt" 2>&1
) &
service=$!
for _ in $(seq 600); do
  curl -sf "http://127.0.0.1:$port/marketplace/health" >/dev/null && break
  sleep 0.1
done
curl -sf "http://127.0.0.1:$port/marketplace/health" >/dev/null || { cat "$work/server.txt" >&2; exit 1; }
sleep 1
pkill -TERM -f "callgrind-out-file=$work/server.out" || true
wait "$service" || { cat "$work/server.txt" >&2; exit 1; }
# And `bench idle` (the benchmark's figure): the same start inside the bench, and its client.
callgrind bench "$target/release/bench" idle >"$work/idle.txt" 2>"$work/valgrind.txt" || {
  cat "$work/valgrind.txt" >&2
  exit 1
}
for bin in server bench; do
  nm --defined-only "$target/release/$bin" | awk '$2 ~ /^[tTwW]$/ { print $3 }'
done | sort -u >"$work/symbols.txt"
python3 - "$work/symbols.txt" server/link-order.txt "$work/server.out" "$work/bench.out" <<'PY'
import re, sys
symbols, dest, *outs = sys.argv[1:]
text = set(open(symbols).read().split())
seen, order = set(), []
for out in outs:
    for line in open(out, errors="replace"):
        m = re.match(r"c?fn=(?:\(\d+\) )?(\S+)", line)
        if m and m.group(1) in text and m.group(1) not in seen:
            seen.add(m.group(1))
            order.append(m.group(1))
with open(dest, "w") as f:
    f.write("\n".join(order) + "\n")
print(f"{dest}: {len(order)} functions of {len(text)} in the two executables")
PY
cat "$work/idle.txt"
