#!/usr/bin/env bash
# The default load test: chatwire (release) on the memory store, then on PostgreSQL, each under
# the default scenario: 5,000 users in rooms of 10, 1 message/s per user with typing and read
# receipts, 60 s of sending. Prints each run's summary and where its reports are.
#
#   scripts/loadtest.sh [extra chatwire-loadgen run options...]
#   USERS=15000 ROOM=10 RATE=1 DURATION=60 PORT=3400 STORES="memory postgres" scripts/loadtest.sh
#   BASELINE=bench/baseline/loadtest-memory.json scripts/loadtest.sh   # print ratios to a saved run
#   NODES=3 scripts/loadtest.sh                  # a fleet (make loadtest NODES=3), see below
#
# NODES=N (default 1) starts N nodes on PORT, PORT+1, ... (NODE_ID 1..N, one CLUSTER_NODES
# list; REDIS_URL passed on when set) and spreads the users over them: one load generator
# process per node, more where one process would pass PROCESS_USERS users (18,000: a process
# may hold 20,000 files here), each with a disjoint range of whole rooms, all started together,
# then merged (`chatwire-loadgen merge`) into target/loadtest/<store>-nodes<N>.*. A room's
# members all use one node, so deliveries need no cross-node adapter; server CPU is not reported
# for a fleet (each process would see one node only).
#
# Reports: target/loadtest/<store>.{md,json,html} (goose), <store>.results.json (merged
# histograms), <store>.svg (latency plot). Exit status 1 when a threshold given in the extra
# options (--max-p99-ms, --max-error-rate, --min-deliveries-per-sec) fails.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/load-common.sh"

USERS="${USERS:-5000}"
ROOM="${ROOM:-10}"
RATE="${RATE:-1}"
DURATION="${DURATION:-60}"
PORT="${PORT:-3400}"
STORES="${STORES:-memory postgres}"
PG_URL="${LOADTEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/chatwire_loadtest}"
NODES="${NODES:-1}"
PROCESS_USERS="${PROCESS_USERS:-18000}"

NODE_PIDS=()
stop_nodes() {
  local pid
  for pid in "${NODE_PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${NODE_PIDS[@]}"; do
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  NODE_PIDS=()
}
trap 'stop_server; stop_nodes' EXIT

# run_fleet STORE URL: NODES nodes, the users spread over them by whole rooms, results merged.
run_fleet() {
  local store="$1" url="$2" list="" i name
  shift 2
  for i in $(seq 1 "$NODES"); do list="${list:+$list,}$i=127.0.0.1:$((PORT + i - 1))"; done
  for i in $(seq 1 "$NODES"); do
    HOST=127.0.0.1 PORT=$((PORT + i - 1)) NODE_ID="$i" CLUSTER_NODES="$list" DATABASE_URL="$url" \
      DEV_TOKENS=true RATE_LIMIT_CONN_PER_IP=0 RATE_LIMIT_REST_IP_FACTOR=0 MAX_SESSIONS_PER_IP=0 \
      "$BIN/chatwire" serve >"$OUT/server-$store-node$i.log" 2>&1 &
    NODE_PIDS+=($!)
    # The first node migrates the database before the others start.
    if [ "$i" = 1 ]; then wait_http "http://127.0.0.1:$PORT/healthz" 60; fi
  done
  for i in $(seq 1 "$NODES"); do wait_http "http://127.0.0.1:$((PORT + i - 1))/readyz" 60; done
  # Processes: at least one per node, a multiple of NODES, each at most PROCESS_USERS users.
  local procs=$(( (USERS + PROCESS_USERS - 1) / PROCESS_USERS ))
  [ "$procs" -ge "$NODES" ] || procs="$NODES"
  procs=$(( (procs + NODES - 1) / NODES * NODES ))
  local rooms=$(( (USERS + ROOM - 1) / ROOM )) first=1 pids=() files=() p
  echo "== $USERS users in $rooms rooms over $NODES nodes, $procs load generator processes"
  for p in $(seq 0 $((procs - 1))); do
    # Whole rooms per process, so no room spans two nodes.
    local my_rooms=$(( rooms / procs + (p < rooms % procs ? 1 : 0) ))
    local users=$(( my_rooms * ROOM ))
    local node=$(( p % NODES + 1 ))
    name="$store-nodes$NODES-p$p"
    rm -f "$OUT/$name.results.json"   # never merge a result left by an earlier run
    (cd "$ROOT" && "$BIN/chatwire-loadgen" run -H "http://127.0.0.1:$((PORT + node - 1))" \
      -u "$users" --first-user "$first" --room-size "$ROOM" --rate "$RATE" \
      --duration "$DURATION" --seed rest --out-dir "$OUT" --name "$name" \
      --source-ips "127.0.0.$((p + 2))" "$@" >"$OUT/$name.log" 2>&1) &
    pids+=($!)
    files+=("$OUT/$name.results.json")
    first=$(( first + users ))
  done
  local rc=0
  for p in "${pids[@]}"; do wait "$p" || rc=$?; done
  stop_nodes
  name="$store-nodes$NODES"
  baseline=()
  if [ -n "${BASELINE:-}" ]; then baseline=(--baseline "$BASELINE"); fi
  (cd "$ROOT" && "$BIN/chatwire-loadgen" merge "${files[@]}" --out-dir "$OUT" --name "$name" \
    "${baseline[@]}") || rc=$?
  echo "per process: $OUT/$store-nodes$NODES-p*.log; merged: $OUT/$name.results.json $OUT/$name.svg"
  echo "server logs: $OUT/server-$store-node*.log"
  return "$rc"
}
echo "== building release binaries"
(cd "$ROOT" && cargo build --release --quiet -p chatwire -p chatwire-loadgen)

status=0
for store in $STORES; do
  case "$store" in
    memory) url=memory ;;
    postgres) ensure_pg_database "$PG_URL"; url="$PG_URL" ;;
    *) echo "unknown store $store" >&2; exit 2 ;;
  esac
  if [ "$NODES" -gt 1 ]; then
    echo "== $NODES chatwire nodes on the $store store, ports $PORT-$((PORT + NODES - 1))"
    set +e
    run_fleet "$store" "$url" "$@"
    rc=$?
    set -e
    [ "$rc" -eq 0 ] || status=$rc
    continue
  fi
  echo "== chatwire on the $store store, port $PORT"
  start_chatwire "$PORT" "$url" "$OUT/server-$store.log"
  baseline=()
  if [ -n "${BASELINE:-}" ]; then baseline=(--baseline "$BASELINE"); fi
  set +e
  (cd "$ROOT" && "$BIN/chatwire-loadgen" run -H "http://127.0.0.1:$PORT" -u "$USERS" \
    --room-size "$ROOM" --rate "$RATE" --duration "$DURATION" --seed rest \
    --server-pid "$SERVER_PID" --out-dir "$OUT" --name "$store" "${baseline[@]}" "$@")
  rc=$?
  set -e
  stop_server
  [ "$rc" -eq 0 ] || status=$rc
  echo "reports: $OUT/$store.md $OUT/$store.html $OUT/$store.json $OUT/$store.results.json $OUT/$store.svg"
  echo "server log: $OUT/server-$store.log"
done
exit "$status"
