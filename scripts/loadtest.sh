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
# list, one REDIS_URL: a throwaway redis-server on a free port, stopped at the end, unless
# REDIS_URL is set) and spreads the users over them: every load generator process (one per
# PROCESS_USERS users, 18,000: a process may hold 20,000 files here) holds whole rooms and
# connects user k of its range to node k mod N, so each room has members on every node and
# every broadcast crosses Redis. The processes start together and are merged
# (`chatwire-loadgen merge`) into target/loadtest/<store>-nodes<N>.*; then the script prints the
# PUBLISH count (INFO commandstats) per message sent, Redis CPU (INFO cpu) per PUBLISH and the
# fleet's server CPU (each node's utime + stime) per delivery over the window in which every
# process was sending. The memory store is skipped for a fleet: each node's is its own.
#   NODES=3 USERS=15000 STORES=postgres scripts/loadtest.sh
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
REDIS_PID=""
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
stop_redis() {
  if [ -n "$REDIS_PID" ]; then
    kill -TERM "$REDIS_PID" 2>/dev/null || true
    wait "$REDIS_PID" 2>/dev/null || true
  fi
  REDIS_PID=""
}
trap 'stop_server; stop_nodes; stop_redis' EXIT

# start_redis: a throwaway redis-server on a free port (never the shared 6379: pub/sub channels
# are global to a server), no persistence; sets REDIS_URL and REDIS_PID.
start_redis() {
  local port
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no \
    --logfile "$OUT/redis.log" >/dev/null 2>&1 &
  REDIS_PID=$!
  REDIS_URL="redis://127.0.0.1:$port"
  local deadline=$((SECONDS + 10))
  until redis-cli -u "$REDIS_URL" ping 2>/dev/null | grep -q PONG; do
    [ "$SECONDS" -lt "$deadline" ] || { echo "redis-server on port $port did not start" >&2; return 1; }
    sleep 0.1
  done
  echo "== throwaway redis-server (pid $REDIS_PID) on $REDIS_URL"
}

# fleet_snapshot FILE: seconds since the epoch, each node's CPU ticks (utime + stime from
# /proc/<pid>/stat), Redis used_cpu_sys + used_cpu_user and the PUBLISH calls so far.
fleet_snapshot() {
  local pid ticks=() cpu publish
  for pid in "${NODE_PIDS[@]}"; do
    ticks+=("$(awk '{sub(/.*\) /, ""); print $12 + $13}' "/proc/$pid/stat" 2>/dev/null || echo 0)")
  done
  cpu=$(redis-cli -u "$REDIS_URL" info cpu | tr -d '\r' \
    | awk -F: '$1 == "used_cpu_sys" || $1 == "used_cpu_user" {t += $2} END {print t + 0}') || cpu=0
  publish=$(redis-cli -u "$REDIS_URL" info commandstats | tr -d '\r' \
    | sed -n 's/^cmdstat_publish:calls=\([0-9]*\).*/\1/p') || publish=0
  echo "$(date +%s.%N) ${publish:-0} $cpu ${ticks[*]}" >"$1"
}

# all_logs_have PATTERN LOG...: every log has a line matching PATTERN.
all_logs_have() {
  local pattern="$1" log
  shift
  for log in "$@"; do grep -q "$pattern" "$log" 2>/dev/null || return 1; done
}

# fleet_watch LOG...: snapshots once every load generator process is sending (snap-send) and
# once the first one stopped (snap-drain), so the CPU and PUBLISH counts of the window cover
# sending only (not seeding, connecting, joining).
fleet_watch() {
  local log
  until all_logs_have ' send\]' "$@"; do sleep 0.5; done
  fleet_snapshot "$OUT/fleet-snap-send"
  while true; do
    for log in "$@"; do
      if grep -q ' drain\]\|^results:' "$log" 2>/dev/null; then
        fleet_snapshot "$OUT/fleet-snap-drain"
        return 0
      fi
    done
    sleep 0.5
  done
}

# fleet_report RESULTS_JSON: Redis and server CPU of the fleet, from the snapshots.
fleet_report() {
  python3 - "$1" "$OUT/fleet-snap-start" "$OUT/fleet-snap-send" "$OUT/fleet-snap-drain" \
    "$OUT/fleet-snap-end" <<'PY'
import json, sys
result = json.load(open(sys.argv[1]))
def snap(path):
    try:
        f = open(path).read().split()
    except OSError:
        return None
    return {"t": float(f[0]), "publish": int(f[1]), "redis": float(f[2]),
            "nodes": [int(x) / 100.0 for x in f[3:]]}
start, send, drain, end = (snap(p) for p in sys.argv[2:6])
sends = result.get("sends", 0)
rate = result["deliveries"] / result["send_secs"] if result.get("send_secs") else 0.0
msg_rate = result.get("sent_acks", 0) / result["send_secs"] if result.get("send_secs") else 0.0
if start and end:
    pub = end["publish"] - start["publish"]
    print(f"fleet: whole run: {pub} PUBLISH for {sends} messages sent "
          f"({pub / max(sends, 1):.2f} PUBLISH per message sent, typing, reads and presence included); "
          f"Redis CPU {end['redis'] - start['redis']:.2f} s")
if send and drain and drain["t"] > send["t"]:
    w = drain["t"] - send["t"]
    pub = drain["publish"] - send["publish"]
    rcpu = drain["redis"] - send["redis"]
    per_node = [b - a for a, b in zip(send["nodes"], drain["nodes"])]
    cpu = sum(per_node)
    deliveries = rate * w
    print(f"fleet: send phase window {w:.1f} s (all processes sending): {pub} PUBLISH "
          f"({pub / w:.0f}/s, {pub / max(msg_rate * w, 1):.2f} per message acked), "
          f"Redis CPU {rcpu:.2f} s = {rcpu * 1e6 / max(pub, 1):.2f} us per PUBLISH (broadcast), "
          f"{rcpu / w:.2f} cores")
    print(f"fleet: server CPU {cpu:.2f} s over the window ({cpu / w:.2f} cores; per node "
          + ", ".join(f"{c:.2f}" for c in per_node)
          + f" s) = {cpu * 1e6 / max(deliveries, 1):.2f} us per delivery at {rate:.0f} deliveries/s; "
          f"with Redis {(cpu + rcpu) * 1e6 / max(deliveries, 1):.2f} us")
else:
    print("fleet: no send window seen (a process never reached its send phase)")
PY
}

# run_fleet STORE URL: NODES nodes sharing REDIS_URL; every load generator process spreads its
# users over all nodes (user k of a process on node k mod NODES), so each room has members on
# several nodes and every broadcast crosses Redis; results merged.
run_fleet() {
  local store="$1" url="$2" list="" i name
  shift 2
  for i in $(seq 1 "$NODES"); do list="${list:+$list,}$i=127.0.0.1:$((PORT + i - 1))"; done
  for i in $(seq 1 "$NODES"); do
    HOST=127.0.0.1 PORT=$((PORT + i - 1)) NODE_ID="$i" CLUSTER_NODES="$list" DATABASE_URL="$url" \
      REDIS_URL="$REDIS_URL" \
      DEV_TOKENS=true RATE_LIMIT_CONN_PER_IP=0 RATE_LIMIT_REST_IP_FACTOR=0 MAX_SESSIONS_PER_IP=0 \
      "$BIN/chatwire" serve >"$OUT/server-$store-node$i.log" 2>&1 &
    NODE_PIDS+=($!)
    # The first node migrates the database before the others start.
    if [ "$i" = 1 ]; then wait_http "http://127.0.0.1:$PORT/healthz" 60; fi
  done
  local hosts=""
  for i in $(seq 1 "$NODES"); do
    wait_http "http://127.0.0.1:$((PORT + i - 1))/readyz" 60
    hosts="${hosts:+$hosts,}http://127.0.0.1:$((PORT + i - 1))"
  done
  # Processes: each at most PROCESS_USERS users (open files), each over every node.
  local procs=$(( (USERS + PROCESS_USERS - 1) / PROCESS_USERS ))
  local rooms=$(( (USERS + ROOM - 1) / ROOM )) first=1 pids=() files=() logs=() p
  echo "== $USERS users in $rooms rooms over $NODES nodes (node pids ${NODE_PIDS[*]}), $procs load generator processes, each over every node"
  rm -f "$OUT"/fleet-snap-*
  fleet_snapshot "$OUT/fleet-snap-start"
  for p in $(seq 0 $((procs - 1))); do
    # Whole rooms per process (a room's members in one process keep expected deliveries right).
    local my_rooms=$(( rooms / procs + (p < rooms % procs ? 1 : 0) ))
    local users=$(( my_rooms * ROOM ))
    name="$store-nodes$NODES-p$p"
    rm -f "$OUT/$name.results.json" "$OUT/$name.log"   # never merge a result left by an earlier run
    (cd "$ROOT" && "$BIN/chatwire-loadgen" run -H "$hosts" \
      -u "$users" --first-user "$first" --room-size "$ROOM" --rate "$RATE" \
      --duration "$DURATION" --seed rest --out-dir "$OUT" --name "$name" \
      --source-ips "127.0.0.$((p + 2))" "$@" >"$OUT/$name.log" 2>&1) &
    pids+=($!)
    files+=("$OUT/$name.results.json")
    logs+=("$OUT/$name.log")
    first=$(( first + users ))
  done
  fleet_watch "${logs[@]}" &
  local watcher=$!
  local rc=0
  for p in "${pids[@]}"; do wait "$p" || rc=$?; done
  kill "$watcher" 2>/dev/null || true
  wait "$watcher" 2>/dev/null || true
  fleet_snapshot "$OUT/fleet-snap-end"
  stop_nodes
  name="$store-nodes$NODES"
  baseline=()
  if [ -n "${BASELINE:-}" ]; then baseline=(--baseline "$BASELINE"); fi
  (cd "$ROOT" && "$BIN/chatwire-loadgen" merge "${files[@]}" --out-dir "$OUT" --name "$name" \
    "${baseline[@]}") || rc=$?
  if [ -f "$OUT/$name.results.json" ]; then fleet_report "$OUT/$name.results.json" || true; fi
  echo "per process: $OUT/$store-nodes$NODES-p*.log; merged: $OUT/$name.results.json $OUT/$name.svg"
  echo "server logs: $OUT/server-$store-node*.log"
  return "$rc"
}
echo "== building release binaries"
(cd "$ROOT" && cargo build --release --quiet -p chatwire -p chatwire-loadgen)

status=0
if [ "$NODES" -gt 1 ] && [ -z "${REDIS_URL:-}" ]; then start_redis; fi
for store in $STORES; do
  case "$store" in
    memory) url=memory ;;
    postgres) ensure_pg_database "$PG_URL"; url="$PG_URL" ;;
    *) echo "unknown store $store" >&2; exit 2 ;;
  esac
  if [ "$NODES" -gt 1 ]; then
    if [ "$store" = memory ]; then
      # Each node's memory store is its own: a room created on one node does not exist on the
      # others, so its members there could not join. A fleet shares one database.
      echo "== memory store skipped for NODES=$NODES: each node's memory store is its own (use postgres)"
      continue
    fi
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
