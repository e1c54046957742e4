#!/usr/bin/env bash
# The default load test: chatwire (release) on the memory store, then on PostgreSQL, each under
# the default scenario: 5,000 users in rooms of 10, 1 message/s per user with typing and read
# receipts, 60 s of sending. Prints each run's summary and where its reports are.
#
#   scripts/loadtest.sh [extra chatwire-loadgen run options...]
#   USERS=15000 ROOM=10 RATE=1 DURATION=60 PORT=3400 STORES="memory postgres" scripts/loadtest.sh
#   BASELINE=bench/baseline/loadtest-memory.json scripts/loadtest.sh   # print ratios to a saved run
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

trap stop_server EXIT
echo "== building release binaries"
(cd "$ROOT" && cargo build --release --quiet -p chatwire -p chatwire-loadgen)

status=0
for store in $STORES; do
  case "$store" in
    memory) url=memory ;;
    postgres) ensure_pg_database "$PG_URL"; url="$PG_URL" ;;
    *) echo "unknown store $store" >&2; exit 2 ;;
  esac
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
