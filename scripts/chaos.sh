#!/usr/bin/env bash
# `make chaos`: the reliability suite (issue 12). Release builds, real PostgreSQL (a database per
# scenario, created and dropped by the suite), everything on 127.0.0.1, each scenario bounded in
# time and stopping by itself; each prints its figure and a PASS/FAIL verdict, a summary table
# ends the run, and the exit status is 1 if any scenario failed.
#
#   scripts/chaos.sh                      # every scenario, in the issue's order (1-9)
#   CHAOS_ONLY="slowloris churn" scripts/chaos.sh
#
# Scenarios: autobahn fuzz slowloris slow_consumer churn pg_outage kill9 sigterm floods.
# Logs and reports: target/chaos/ (server logs per scenario, loadgen reports, results.jsonl).
# Needs: cargo, python3 (standard library only), psql, PostgreSQL on 127.0.0.1:5432 (user
# postgres, trust; CHAOS_PG overrides the base URL); scenario 1 also a python2.7 interpreter.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
export CHAOS_OUT="${CHAOS_OUT:-$ROOT/target/chaos}"
export CHAOS_PG="${CHAOS_PG:-postgres://postgres@127.0.0.1:5432}"
export CHAOS_RUN_ID="$$"
ALL="autobahn fuzz slowloris slow_consumer churn pg_outage kill9 sigterm floods"
ONLY="${CHAOS_ONLY:-$ALL}"
RESULTS="$CHAOS_OUT/results.jsonl"
mkdir -p "$CHAOS_OUT"
rm -f "$RESULTS"
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

# Databases of this run left behind by a scenario that was interrupted.
cleanup() {
  psql "$CHAOS_PG/postgres" -qtAc \
    "SELECT datname FROM pg_database WHERE datname LIKE 'chatwire\\_chaos\\_${CHAOS_RUN_ID}\\_%'" 2>/dev/null |
    while read -r db; do
      [ -n "$db" ] && psql "$CHAOS_PG/postgres" -qc "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)" || true
    done
}
trap cleanup EXIT

command -v psql >/dev/null || { echo "chaos: psql not found" >&2; exit 2; }
psql "$CHAOS_PG/postgres" -qtAc "SELECT 1" >/dev/null ||
  { echo "chaos: PostgreSQL not reachable at $CHAOS_PG" >&2; exit 2; }

echo "== building release binaries (chatwire counting its heap, chatwire-loadgen)"
# The server is built with `heap-stats` (chatwire_heap_bytes in /metrics: the leak checks read
# the heap in use, which RSS hides) and copied aside, so the plain release build that `make
# bench` measures stays as it is.
cargo build --release --quiet -p chatwire-loadgen
cargo build --release --quiet -p chatwire --bin chatwire --features heap-stats
export CHAOS_BIN="${CHAOS_BIN:-$CHAOS_OUT/bin}"
mkdir -p "$CHAOS_BIN"
cp "$CARGO_TARGET_DIR/release/chatwire" "$CARGO_TARGET_DIR/release/chatwire-loadgen" "$CHAOS_BIN/"

started=$SECONDS
for name in $ALL; do
  case " $ONLY " in *" $name "*) ;; *) continue ;; esac
  t0=$SECONDS
  case "$name" in
    autobahn) bash chaos/autobahn.sh "$RESULTS" || true ;;
    fuzz) bash chaos/fuzz.sh "$RESULTS" || true ;;
    *) python3 chaos/main.py run "$name" "$RESULTS" || true ;;
  esac
  echo "   ($((SECONDS - t0)) s; suite so far $((SECONDS - started)) s)"
done
echo
echo "suite time: $((SECONDS - started)) s"
python3 chaos/main.py summary "$RESULTS"
