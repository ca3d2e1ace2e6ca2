#!/usr/bin/env bash
# Issue 14's benchmarks, this service beside the Node original (bench/node-original: Express +
# Socket.IO + pg + jsonwebtoken doing the same work), in one run on one machine:
#
#   scripts/bench.sh [all|webhooks|live|idle|heap|ceiling]
#
# Release build of the `bench` binary; PostgreSQL at $BENCH_POSTGRES_URL (default the local
# `test` database; each side gets its own schema, dropped first). Knobs: BENCH_EVENTS (20000),
# BENCH_CONNECTIONS (64), BENCH_STREAMS (10000), BENCH_SALONS (500), BENCH_SECS (20),
# BENCH_CHANGE_EVERY_MS (5000). The test command does not run this (it takes minutes).
set -euo pipefail
cd "$(dirname "$0")/.."
what="${1:-all}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/ai-admin-connect/target}"
# Plain TCP, as the Node original's `pg` connects by default: sqlx would otherwise negotiate TLS
# with a server that offers it (Debian's does), which costs this side ~13 % of the webhook rate.
PG="${BENCH_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/test?sslmode=disable}"
EVENTS="${BENCH_EVENTS:-20000}"
CONNECTIONS="${BENCH_CONNECTIONS:-64}"
STREAMS="${BENCH_STREAMS:-10000}"
SALONS="${BENCH_SALONS:-500}"
export BENCH_SECS="${BENCH_SECS:-20}"
export BENCH_CHANGE_EVERY_MS="${BENCH_CHANGE_EVERY_MS:-5000}"
NODE_PORT="${BENCH_NODE_PORT:-3900}"
out="$(mktemp -d)"
node_pid=""
cleanup() {
  [ -n "$node_pid" ] && kill "$node_pid" 2>/dev/null || true
  rm -rf "$out"
}
trap cleanup EXIT

cargo build --release --locked -p server --features demo --bin bench --bin server
B="$CARGO_TARGET_DIR/release/bench"
[ -d bench/node-original/node_modules ] || npm ci --prefix bench/node-original --no-audit --no-fund
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

fresh_schema() { psql "$PG" -qc "DROP SCHEMA IF EXISTS $1 CASCADE" -c "CREATE SCHEMA $1" >/dev/null 2>&1; }
# Each side's burst (and the yardstick's) starts from a checkpoint: the rows the previous one wrote
# (pgbench's ~300,000, say) are otherwise flushed to disk by PostgreSQL's checkpointer during
# the next measurement, which then pays for its predecessor.
checkpoint() { psql "$PG" -qc CHECKPOINT >/dev/null 2>&1 || true; }
kib() { awk -v f="$2:" '$1 == f { print $2 }' "/proc/$1/status"; }

# Starts the Node original on a fresh schema; sets node_pid and node_ready_ms.
start_node() {
  fresh_schema node_original
  local t0
  t0=$(date +%s%N)
  DATABASE_URL="$PG" NODE_BENCH_SCHEMA=node_original PORT="$NODE_PORT" node bench/node-original/server.js \
    >"$out/node.log" 2>&1 &
  node_pid=$!
  until curl -sf "http://127.0.0.1:$NODE_PORT/health" >/dev/null; do
    kill -0 "$node_pid" 2>/dev/null || { cat "$out/node.log"; exit 1; }
    sleep 0.005
  done
  node_ready_ms=$(( ($(date +%s%N) - t0) / 1000000 ))
}
stop_node() { kill "$node_pid" 2>/dev/null || true; wait "$node_pid" 2>/dev/null || true; node_pid=""; }
field() { grep -m1 "$2" "$1" | sed -E "s/.*$2[^0-9]*([0-9.]+).*/\1/"; }
# CPU ticks (USER_HZ, 100/s) of one process (user + system), of every `postgres` process (one
# "pid ticks" line each), of this shell's finished children, and the machine's idle and total:
# the Node original's side of the CPU line `bench webhooks` prints for this service.
ticks_of() { awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"; }
postgres_ticks() {
  local p
  for p in /proc/[0-9]*; do
    [ "$(cat "$p/comm" 2>/dev/null)" = postgres ] || continue
    echo "${p#/proc/} $(ticks_of "${p#/proc/}" 2>/dev/null || echo 0)"
  done
}
# (`times` must run in this shell, not in a `$(…)` subshell, which has no finished children)
children_ticks() { awk 'NR == 2 { gsub(/[ms]/, " "); printf "%.0f", ($1 * 60 + $2 + $3 * 60 + $4) * 100 }' "$1"; }
machine_ticks() { awk '/^cpu / { print $5 + $6, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9 }' /proc/stat; }
# cpu_line EVENTS SERVICE_TICKS GENERATOR_TICKS PG_BEFORE_FILE PG_AFTER_FILE IDLE_TOTAL_BEFORE IDLE_TOTAL_AFTER
cpu_line() {
  local pg
  pg=$(awk 'NR == FNR { before[$1] = $2; next } { d = $2 - ($1 in before ? before[$1] : 0); if (d > 0) s += d } END { print s + 0 }' "$4" "$5")
  awk -v n="$1" -v s="$2" -v g="$3" -v pg="$pg" -v b="$6" -v a="$7" 'BEGIN {
    split(b, x, " "); split(a, y, " "); idle = y[1] - x[1]; total = y[2] - x[2]
    if (n <= 0 || total <= 0) { print "  CPU per event         not measured"; exit }
    printf "  CPU per event         service %.0f µs, load generator %.0f µs, PostgreSQL %.0f µs; the machine %.0f %% idle\n",
      s * 1e4 / n, g * 1e4 / n, pg * 1e4 / n, idle * 100 / total }'
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f×", a / b; else print "—" }'; }

webhooks() {
  echo "== entity webhooks: $EVENTS unique events, $CONNECTIONS connections, PostgreSQL (fsync on)"
  fresh_schema bench_rust
  checkpoint
  BENCH_DATABASE_URL="$PG" BENCH_DATABASE_SCHEMA=bench_rust "$B" webhooks "$EVENTS" "$CONNECTIONS" | tee "$out/rust-webhooks"
  start_node
  curl -sf -XPOST "http://127.0.0.1:$NODE_PORT/bench/salons" -H 'content-type: application/json' \
    -d '{"first":962302,"count":1,"secret":"bench-secret"}' >/dev/null
  checkpoint
  echo "entity webhook burst on PostgreSQL (Node original)" | tee "$out/node-webhooks"
  local node0 gen0 machine0 node1 gen1 machine1
  postgres_ticks >"$out/pg0"
  node0=$(ticks_of "$node_pid"); machine0=$(machine_ticks)
  times >"$out/times0"
  "$B" burst "http://127.0.0.1:$NODE_PORT/webhook/yclients/events/962302/bench-secret" "$EVENTS" "$CONNECTIONS" \
    >"$out/node-burst"
  times >"$out/times1"
  node1=$(ticks_of "$node_pid"); machine1=$(machine_ticks)
  postgres_ticks >"$out/pg1"
  gen0=$(children_ticks "$out/times0"); gen1=$(children_ticks "$out/times1")
  tee -a "$out/node-webhooks" <"$out/node-burst"
  echo "  stored in database    $(psql "$PG" -tAc 'SELECT COUNT(*) FROM node_original.entity_events')" | tee -a "$out/node-webhooks"
  cpu_line "$(awk '/acknowledged \(2xx\)/ { print $NF }' "$out/node-burst")" $((node1 - node0)) $((gen1 - gen0)) \
    "$out/pg0" "$out/pg1" "$machine0" "$machine1" | tee -a "$out/node-webhooks"
  echo "  server peak memory (VmHWM)   $(awk "BEGIN { printf \"%.1f\", $(kib "$node_pid" VmHWM) / 1024 }") MiB" | tee -a "$out/node-webhooks"
  stop_node
  commit_ceiling | tee "$out/ceiling"
  local r n c
  r=$(field "$out/rust-webhooks" throughput); n=$(field "$out/node-webhooks" throughput)
  c=$(field "$out/ceiling" 'commit rate')
  echo "-- webhooks: Rust $r/s, Node $n/s: $(ratio "$r" "$n") the Node original's throughput"
  echo "-- against this machine's single-row commit rate ($c/s): Rust $(ratio "$r" "$c"), Node $(ratio "$n" "$c");" \
    "issue 14's goal, 11,000/s where that rate was ~10,800/s and Node 2,938/s: 1.02× the rate, 3.74× Node"
}

# The machine's yardstick, in the same run: how many single-row durable commits/s PostgreSQL takes
# here — pgbench (C, the lightest client there is) on the same number of connections over 2
# threads, each transaction one `INSERT … ON CONFLICT DO NOTHING` of the Node original's event row
# (bench/commit-ceiling.sql). Issue 14 was written where this was ~10,800/s, and set ≥ 11,000/s as
# a rate that one commit per event can never reach; machines of this kind differ by 2× from one
# session to the next, so the rate is printed beside the figures it explains.
commit_ceiling() {
  fresh_schema bench_commit
  psql "$PG" -qc "CREATE TABLE bench_commit.entity_events (
      id bigserial PRIMARY KEY, salon_id bigint NOT NULL, resource text NOT NULL,
      resource_id text NOT NULL, status text NOT NULL, data_hash text NOT NULL,
      dedup_key text NOT NULL UNIQUE, data text NOT NULL, created_at timestamptz NOT NULL)"
  local secs="${BENCH_CEILING_SECS:-10}" tps stored
  checkpoint
  PGOPTIONS='-c search_path=bench_commit' pgbench -n -M prepared -c "$CONNECTIONS" -j 2 -T "$secs" \
    -f bench/commit-ceiling.sql "$PG" >"$out/pgbench.log" 2>&1 || { cat "$out/pgbench.log" >&2; exit 1; }
  tps=$(awk '/^tps = / { printf "%.0f", $3; exit }' "$out/pgbench.log")
  stored=$(psql "$PG" -tAc 'SELECT COUNT(*) FROM bench_commit.entity_events')
  echo "single-row durable commits (pgbench, $CONNECTIONS connections, 2 threads, $secs s)"
  echo "  commit rate           $tps commits/s ($stored rows stored)"
  psql "$PG" -qc "DROP SCHEMA bench_commit CASCADE" >/dev/null 2>&1 || true
}

live() {
  echo "== live streams: $STREAMS over $SALONS salons, each changing every $BENCH_CHANGE_EVERY_MS ms, $BENCH_SECS s"
  "$B" live "$STREAMS" "$SALONS" | tee "$out/rust-live"
  start_node
  curl -sf -XPOST "http://127.0.0.1:$NODE_PORT/bench/salons" -H 'content-type: application/json' \
    -d "{\"first\":2000000,\"count\":$SALONS,\"secret\":\"s\"}" \
    | python3 -c 'import json, sys; print("\n".join(json.load(sys.stdin)["tokens"]))' >"$out/tokens"
  sleep 1
  local before open after fifo="$out/clients.in"
  before=$(kib "$node_pid" VmRSS)
  mkfifo "$fifo"
  node bench/node-original/clients.js "http://127.0.0.1:$NODE_PORT" "$STREAMS" <"$fifo" >"$out/clients.out" 2>&1 &
  local clients_pid=$!
  exec 3>"$fifo"
  cat "$out/tokens" >&3
  echo >&3
  until grep -q '^ready' "$out/clients.out"; do
    kill -0 "$clients_pid" 2>/dev/null || { cat "$out/clients.out"; exit 1; }
    sleep 0.2
  done
  sleep 2
  open=$(kib "$node_pid" VmRSS)
  local drive
  drive=$(curl -sf -XPOST "http://127.0.0.1:$NODE_PORT/bench/drive" -H 'content-type: application/json' \
    -d "{\"first\":2000000,\"count\":$SALONS,\"every_ms\":$BENCH_CHANGE_EVERY_MS,\"secs\":$BENCH_SECS}")
  sleep 2
  exec 3>&-
  wait "$clients_pid" || true
  sleep 2
  after=$(kib "$node_pid" VmRSS)
  {
    echo "live streams: $STREAMS over $SALONS salons (Node original, Socket.IO over WebSocket)"
    echo "  server RSS            $((before / 1024)) MiB before, $((open / 1024)) MiB open, $((after / 1024)) MiB after all closed"
    awk -v o="$open" -v b="$before" -v s="$STREAMS" 'BEGIN { printf "  memory per stream     %.1f KiB (RSS delta / streams)\n", (o - b) / s }'
    echo "  driven                $drive"
    grep -v '^ready' "$out/clients.out" | sed 's/^/  /'
  } | tee "$out/node-live"
  stop_node
  echo "-- live: memory per stream Rust $(field "$out/rust-live" 'memory per stream') KiB, Node $(field "$out/node-live" 'memory per stream') KiB;" \
    "spread p99 Rust $(field "$out/rust-live" 'p99') ms, Node $(field "$out/node-live" 'p99') ms"
}

idle() {
  echo "== idle: start to healthy, memory"
  "$B" idle | tee "$out/rust-idle"
  # The production binary itself, as `scripts/run.sh` starts it (SQLite, the simulator, the
  # sandbox), in an empty directory: `bench idle` above is the same start inside the bench.
  mkdir -p "$out/service"
  local t0 service_pid port="${BENCH_SERVICE_PORT:-3901}"
  t0=$(date +%s%N)
  (cd "$out/service" && exec env YCLIENTS_SANDBOX=true YCLIENTS_PARTNER_TOKEN=sandbox-partner-token \
    YCLIENTS_APPLICATION_ID=1001 WHATSAPP_BACKEND=simulator LEPTOS_SITE_ADDR="127.0.0.1:$port" \
    LEPTOS_SITE_ROOT="$out/service" JWT_SECRET=bench-jwt-secret-that-is-long-enough-0000 \
    "$CARGO_TARGET_DIR/release/server" >"$out/service.log" 2>&1) &
  service_pid=$!
  until curl -sf "http://127.0.0.1:$port/marketplace/health" >/dev/null; do
    kill -0 "$service_pid" 2>/dev/null || { cat "$out/service.log"; exit 1; }
    sleep 0.005
  done
  local ready_ms=$(( ($(date +%s%N) - t0) / 1000000 ))
  sleep 2
  echo "idle (the server binary)"
  echo "  start to healthy      $ready_ms ms"
  echo "  idle memory (VmRSS)   $(awk "BEGIN { printf \"%.1f\", $(kib "$service_pid" VmRSS) / 1024 }") MiB"
  kill "$service_pid"; wait "$service_pid" || true
  # The start's functions are laid out together only as far as server/link-order.txt still names
  # the binary's symbols (server/build.rs); their names change with the dependencies, and a stale
  # list silently brought the idle figure back from 17 to 29 MiB once (2026-12-06).
  local listed present
  listed=$(sort -u server/link-order.txt | wc -l)
  present=$(nm --defined-only "$CARGO_TARGET_DIR/release/server" "$CARGO_TARGET_DIR/release/bench" |
    awk '$2 ~ /^[tTwW]$/ { print $3 }' | sort -u | comm -12 - <(sort -u server/link-order.txt) | wc -l)
  echo "  link order            $present of $listed listed start functions are in the binaries"
  if [ $(( present * 100 )) -lt $(( listed * 90 )) ]; then
    echo "  the list is stale: run scripts/link-order.sh, rebuild, and measure again" >&2
  fi
  start_node
  sleep 2
  echo "idle (Node original)"
  echo "  start to healthy      $node_ready_ms ms"
  echo "  idle memory (VmRSS)   $(awk "BEGIN { printf \"%.1f\", $(kib "$node_pid" VmRSS) / 1024 }") MiB"
  stop_node
}

# `bench live` under dhat (a separate build with `--features dhat-heap`, slow: every allocation is
# counted with its stack), BENCH_HEAP_STREAMS streams (2000) over BENCH_HEAP_SALONS (100); prints
# the exact heap bytes per open stream and where the peak's bytes were allocated.
heap() {
  local streams="${BENCH_HEAP_STREAMS:-2000}" salons="${BENCH_HEAP_SALONS:-100}"
  echo "== heap profile (dhat): $streams streams over $salons salons"
  cargo build --release --locked -p server --features demo,dhat-heap --bin bench
  cp "$CARGO_TARGET_DIR/release/bench" "$out/bench-dhat"
  # Ten streams opening at once: the openings' database reads then weigh less than the open
  # streams, so the heap's peak (what dhat-top breaks down) is the streams.
  (cd "$out" && BENCH_OPEN_AT_ONCE="${BENCH_OPEN_AT_ONCE:-10}" BENCH_SECS="${BENCH_HEAP_SECS:-10}" \
    ./bench-dhat live "$streams" "$salons")
  python3 scripts/dhat-top.py "$out/dhat-heap.json" "$streams" 20
  # The next `cargo build` of the plain bench relinks it without dhat.
}

# How far this machine goes with less work per entity webhook (issue 14's rate): a separate build
# with `--features bench-ceiling` (src/bench_ceiling.rs), `bench webhooks` alternated over
# BENCH_CEILING=full (everything), event (the event's row alone: no booking, no messages) and
# nothing (answered without storing), BENCH_CEILING_ROUNDS (2) times, BENCH_CEILING_EVENTS (40000)
# events each.
ceiling() {
  local events="${BENCH_CEILING_EVENTS:-40000}" rounds="${BENCH_CEILING_ROUNDS:-2}" round mode
  echo "== webhook ceilings: $events events, $CONNECTIONS connections, PostgreSQL (fsync on), $rounds rounds"
  cargo build --release --locked -p server --features demo,bench-ceiling --bin bench
  cp "$CARGO_TARGET_DIR/release/bench" "$out/bench-ceiling"
  for round in $(seq 1 "$rounds"); do
    for mode in full event nothing; do
      fresh_schema bench_rust
      checkpoint
      echo "-- round $round, BENCH_CEILING=$mode"
      BENCH_CEILING="$mode" BENCH_DATABASE_URL="$PG" BENCH_DATABASE_SCHEMA=bench_rust \
        "$out/bench-ceiling" webhooks "$events" "$CONNECTIONS" |
        grep -E 'throughput|latency|stored|CPU per event|nothing stored'
    done
  done
  psql "$PG" -qc "DROP SCHEMA IF EXISTS bench_rust CASCADE" >/dev/null 2>&1
  # The next `cargo build` of the plain bench relinks it without the feature.
}

case "$what" in
  webhooks) webhooks ;;
  live) live ;;
  idle) idle ;;
  heap) heap ;;
  ceiling) ceiling ;;
  all) webhooks; live; idle ;;
  *) echo "usage: scripts/bench.sh [all|webhooks|live|idle|heap|ceiling]" >&2; exit 2 ;;
esac
echo "machine: $(nproc) cores, $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo); $(date -u +%F)"
