#!/usr/bin/env bash
# `make cluster`: a local fleet of chatwire nodes on one machine.
#
#   NODES (3) nodes on consecutive ports from BASE_PORT (3001): 3001, 3002, 3003, each with its
#   NODE_ID (1..NODES) and the same CLUSTER_NODES list, so a request for a session of another
#   node is passed on to it (no sticky sessions needed);
#   a round-robin front on FRONT_PORT (3000, `node scripts/cluster-front.js`; FRONT=0: none)
#   that sends every request to the next node, as nginx without ip_hash would;
#   PostgreSQL: CLUSTER_DATABASE_URL (postgres://postgres@127.0.0.1:5432/chatwire_cluster),
#   the database created when missing; when nothing answers on 127.0.0.1:5432 a throwaway
#   cluster is started under target/cluster/pg on PG_PORT (5499);
#   Redis: REDIS_URL (redis://127.0.0.1:6379); when nothing answers there a redis-server is
#   started on that port (no persistence). Each node gets REDIS_URL: the nodes share rooms and
#   presence through it once the Redis adapter is in; the script only sets the variables.
#
# Ctrl-C (or SIGTERM) stops everything this script started, by its PIDs, and nothing else.
# Logs: target/cluster/. PROFILE=debug uses a debug build (faster to build, slower to run).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
NODES="${NODES:-3}"
BASE_PORT="${BASE_PORT:-3001}"
FRONT="${FRONT:-1}"
FRONT_PORT="${FRONT_PORT:-3000}"
PROFILE="${PROFILE:-release}"
DB_URL="${CLUSTER_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/chatwire_cluster}"
REDIS_URL="${REDIS_URL:-redis://127.0.0.1:6379}"
PG_PORT="${PG_PORT:-5499}"
OUT="$ROOT/target/cluster"
mkdir -p "$OUT"

PIDS=()          # processes we started (nodes, front, redis-server), stopped by PID
PG_DATA=""       # the throwaway PostgreSQL cluster we started, if any
PG_CTL=""

as_postgres() {  # initdb/pg_ctl refuse to run as root
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

stop_all() {
  trap - INT TERM EXIT
  echo
  echo "== stopping what this script started"
  local pid
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  if [ -n "$PG_DATA" ]; then
    as_postgres "$PG_CTL" -D "$PG_DATA" -m fast stop >/dev/null 2>&1 || true
  fi
  echo "stopped"
}
trap 'stop_all; exit 0' INT TERM
trap stop_all EXIT

wait_http() {  # URL [seconds]
  local deadline=$((SECONDS + ${2:-60}))
  until curl -fsS -o /dev/null "$1" 2>/dev/null; do
    [ "$SECONDS" -lt "$deadline" ] || { echo "no answer from $1 (see $OUT)" >&2; return 1; }
    sleep 0.2
  done
}

# -- PostgreSQL
pg_server="${DB_URL%/*}"
if ! psql "$pg_server/postgres" -qtAc 'SELECT 1' >/dev/null 2>&1; then
  bin="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)"
  [ -x "$bin/initdb" ] || { echo "no PostgreSQL answers at $pg_server and no initdb to start one" >&2; exit 2; }
  echo "== no PostgreSQL at $pg_server: starting a throwaway one on port $PG_PORT"
  PG_CTL="$bin/pg_ctl"
  mkdir -p "$OUT/pg"
  [ "$(id -u)" = 0 ] && chown postgres:postgres "$OUT/pg"
  if [ ! -f "$OUT/pg/data/PG_VERSION" ]; then
    as_postgres "$bin/initdb" -D "$OUT/pg/data" -U postgres --auth=trust --no-sync >"$OUT/pg-init.log"
  fi
  as_postgres "$PG_CTL" -D "$OUT/pg/data" -l "$OUT/pg/log" -w \
    -o "-p $PG_PORT -k $OUT/pg -c listen_addresses=127.0.0.1" start >/dev/null
  PG_DATA="$OUT/pg/data"
  DB_URL="postgres://postgres@127.0.0.1:$PG_PORT/${DB_URL##*/}"
  pg_server="${DB_URL%/*}"
fi
db="${DB_URL##*/}"; db="${db%%\?*}"
if ! psql "$pg_server/postgres" -tAc "SELECT 1 FROM pg_database WHERE datname = '$db'" | grep -q 1; then
  psql "$pg_server/postgres" -qc "CREATE DATABASE \"$db\""
fi
echo "== PostgreSQL: $DB_URL"

# -- Redis
if redis-cli -u "$REDIS_URL" ping >/dev/null 2>&1; then
  echo "== Redis: $REDIS_URL (already running)"
else
  command -v redis-server >/dev/null || { echo "nothing answers at $REDIS_URL and no redis-server to start" >&2; exit 2; }
  hostport="${REDIS_URL#redis://}"; hostport="${hostport##*@}"; hostport="${hostport%%/*}"
  rport="${hostport##*:}"; [ "$rport" != "$hostport" ] || rport=6379
  echo "== no Redis at $REDIS_URL: starting redis-server on 127.0.0.1:$rport"
  redis-server --port "$rport" --bind 127.0.0.1 --save '' --appendonly no --dir "$OUT" \
    >"$OUT/redis.log" 2>&1 &
  PIDS+=($!)
  for _ in $(seq 1 50); do redis-cli -p "$rport" ping >/dev/null 2>&1 && break; sleep 0.1; done
  redis-cli -p "$rport" ping >/dev/null || { echo "redis-server did not start (see $OUT/redis.log)" >&2; exit 1; }
fi

# -- chatwire nodes
if [ "$PROFILE" = release ]; then
  echo "== building chatwire (release; PROFILE=debug builds faster)"
  (cd "$ROOT" && cargo build --release --quiet -p chatwire --bin chatwire)
  BIN="$CARGO_TARGET_DIR/release/chatwire"
else
  (cd "$ROOT" && cargo build --quiet -p chatwire --bin chatwire)
  BIN="$CARGO_TARGET_DIR/debug/chatwire"
fi
bash "$ROOT/scripts/interop-deps.sh" --node-only >/dev/null 2>&1 || true

list=""
for i in $(seq 1 "$NODES"); do
  list="${list:+$list,}$i=127.0.0.1:$((BASE_PORT + i - 1))"
done
for i in $(seq 1 "$NODES"); do
  port=$((BASE_PORT + i - 1))
  # Behind the front every client comes from 127.0.0.1, and nodes pass requests to each other:
  # the per-address limits are off, as docs/deployment.md advises behind a proxy.
  HOST=127.0.0.1 PORT="$port" NODE_ID="$i" CLUSTER_NODES="$list" DATABASE_URL="$DB_URL" \
    REDIS_URL="$REDIS_URL" DEV_TOKENS=true RATE_LIMIT_CONN_PER_IP=0 RATE_LIMIT_REST_IP_FACTOR=0 \
    MAX_SESSIONS_PER_IP=0 "$BIN" serve >"$OUT/node-$i.log" 2>&1 &
  PIDS+=($!)
  # The first node migrates the database before the others start.
  if [ "$i" = 1 ]; then wait_http "http://127.0.0.1:$port/healthz" 120; fi
done
for i in $(seq 1 "$NODES"); do
  wait_http "http://127.0.0.1:$((BASE_PORT + i - 1))/readyz" 60
  echo "== node $i: http://localhost:$((BASE_PORT + i - 1))/ (log: $OUT/node-$i.log)"
done

if [ "$FRONT" = 1 ] && command -v node >/dev/null; then
  nodes=$(echo "$list" | tr ',' '\n' | cut -d= -f2 | tr '\n' ' ')
  # shellcheck disable=SC2086
  node "$ROOT/scripts/cluster-front.js" "$FRONT_PORT" $nodes >"$OUT/front.log" 2>&1 &
  PIDS+=($!)
  wait_http "http://127.0.0.1:$FRONT_PORT/healthz" 10
  echo "== front: http://localhost:$FRONT_PORT/ (round-robin over the nodes, no stickiness)"
fi
echo
echo "Open http://localhost:$FRONT_PORT/ (or one node's port) in two windows and sign in as two"
echo "users. Ctrl-C stops the fleet."
wait
