#!/usr/bin/env bash
# Benchmarks and the performance gate: criterion micro-benches, then the same load on chatwire
# (memory store and PostgreSQL) and both peers (socketioxide, Node socket.io) in two setups,
# pinned (server on CPU 0, load generator on CPU 1) and shared cores; figures are medians of
# >= 3 interleaved runs with their spread. scripts/bench_load.py runs the load (what it measures
# is described there), scripts/bench_report.py prints the table, writes the summary JSON
# (format: docs/bench.md) and compares with the saved baseline.
#
#   scripts/bench.sh                  criterion + load comparison (make bench, under 10 min)
#   scripts/bench.sh --check          the instruction-count gate (scripts/bench_icount.sh), the
#                                     load comparison, then the load gate: exit 1 when a hot path's
#                                     instructions rose > 2% or a chatwire figure is worse than
#                                     bench/baseline/bench.json beyond its noise margin
#                                     (make bench-check, no criterion; BENCH_ICOUNT=0 skips counts)
#   scripts/bench.sh --save-baseline  also save the summary as bench/baseline/bench.json (and the
#                                     instruction counts as bench/baseline/icount.json); its knee
#                                     searches take up to 6 probes (MAX_PROBES), so they end bracketed
#   scripts/bench.sh --no-criterion   load comparison only
#   scripts/bench.sh --summary-only   print the summary of the last run again (with --check: gate it)
#   BENCH_QUICK=1                     smoke form: chatwire and socketioxide, pinned, fewer points
#   BENCH_FULL=1                      longer steps, fixed loads in both setups, full criterion
#   BENCH_CHATWIRE_QUOTA=0.5          the chatwire servers under test held to half a core (cgroup), to
#                                     see the gate fail (the baseline's build beside them is not held)
#   BENCH_AB=0                        a check without the baseline's build beside it (scripts/bench_base.sh)
# Knobs (bench_load.py): SERVERS, SHARED_SERVERS, SETUPS, WORKLOADS, REPEATS, STEP_SECS, DIRECT_FIXED, GROUP_FIXED,
# FIXED_SETUPS, MAX_PROBES, LOAD_SECS, DIRECT_USERS, GROUP_USERS, IDLE_USERS, BENCH_DATABASE_URL, BASELINE.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"

CRITERION=1
CHECK=0
SAVE=0
RUN=1
for arg in "$@"; do
  case "$arg" in
    --no-criterion) CRITERION=0 ;;
    --check) CHECK=1; CRITERION=0 ;;
    --save-baseline) SAVE=1 ;;
    --summary-only) CRITERION=0; RUN=0 ;;
    *) echo "unknown option $arg" >&2; exit 2 ;;
  esac
done

if [ "${BENCH_QUICK:-0}" = 1 ]; then
  CRITERION=0
  : "${SERVERS:=chatwire socketioxide}" "${SETUPS:=pinned}" "${DIRECT_FIXED:=10000}"
  : "${GROUP_FIXED:=98000}" "${MAX_PROBES:=2}" "${IDLE_USERS:=1000}" "${LOAD_SECS:=180}"
elif [ "${BENCH_FULL:-0}" = 1 ]; then
  : "${STEP_SECS:=5}" "${FIXED_SETUPS:=pinned shared}" "${MAX_PROBES:=10}" "${CRITERION_SECS:=300}"
  : "${MAX_DESCENTS:=0}" "${LOAD_SECS:=0}"
  : "${DIRECT_FIXED:=5000 10000 15000}" "${GROUP_FIXED:=49000 98000}"
  : "${SHARED_SERVERS:=chatwire chatwire-pg socketioxide node}"
fi
# A baseline is what later runs search beside: its knees are searched to 5% (up to 6 probes once
# a load passed), so that a later run re-brackets an unchanged knee in two probes.
# It also follows a collapsed knee down to the floor (MAX_DESCENTS=0): a check stops after 3.
# Nor is its time bounded.
[ "$SAVE" = 1 ] && : "${MAX_PROBES:=6}" "${MAX_DESCENTS:=0}" "${LOAD_SECS:=0}"
# The load's time (bench_load.py LOAD_SECS: knee searches still unbracketed when it runs out stop,
# each after one probe at least), so that on a noisy machine make bench stays under 10 minutes
# and a check under 12, once built: the rest of make bench (criterion) took about 110 s, of a
# check (instruction counts, build check, summary) about 100 s, and the last round may run over.
if [ "$CHECK" = 1 ]; then : "${LOAD_SECS:=560}"; else : "${LOAD_SECS:=400}"; fi
export SERVERS SHARED_SERVERS SETUPS DIRECT_FIXED GROUP_FIXED MAX_PROBES MAX_DESCENTS IDLE_USERS STEP_SECS FIXED_SETUPS LOAD_SECS
BASELINE="${BASELINE:-$ROOT/bench/baseline/bench.json}"
export BASELINE
BENCH_OUT="${BENCH_OUT:-$CARGO_TARGET_DIR/loadtest/bench}"
export BENCH_OUT
mkdir -p "$BENCH_OUT"
started=$SECONDS

# Instruction counts first: a minute, and their verdict does not depend on the machine's load.
ICOUNT_STATUS=0
if [ "${BENCH_ICOUNT:-1}" = 1 ] && { [ "$CHECK" = 1 ] || [ "$SAVE" = 1 ]; }; then
  icount_flags=()
  [ "$SAVE" = 1 ] && icount_flags+=(--save-baseline)
  bash "$ROOT/scripts/bench_icount.sh" "${icount_flags[@]}" || ICOUNT_STATUS=$?
  echo "   (instruction counts: $((SECONDS - started)) s)"
fi

if [ "$CRITERION" = 1 ]; then
  echo "== criterion benches (short measurement)"
  # Build first (once per change), then measure briefly, each bench in a time box of its own.
  (cd "$ROOT" && cargo bench -p chatwire-bench --benches --no-run --quiet) || true
  echo "   (built at $((SECONDS - started)) s)"
  # Short form: the codec benches measured 0.6 s each; the batch writer bench (PostgreSQL) with
  # half the messages, the server's own lanes only and 3 s paced runs (BENCH_FULL: all of both).
  if [ "${BENCH_FULL:-0}" = 1 ]; then
    crit=(--warm-up-time 1 --measurement-time 2 --noplot)
    codec_box="${CRITERION_SECS:-300}" writer_box="${CRITERION_SECS:-300}"
  else
    : "${BENCH_MESSAGES:=150000}" "${BENCH_PACE_SECS:=3}" "${BENCH_SINGLE:=5000}" "${BENCH_LANES:=0}"
    crit=(--warm-up-time 0.3 --measurement-time 0.6 --noplot)
    codec_box="${CRITERION_SECS:-40}" writer_box="${CRITERION_SECS:-60}"
  fi
  export BENCH_MESSAGES BENCH_PACE_SECS BENCH_SINGLE BENCH_LANES
  # One bench in its box; its log in $BENCH_OUT/criterion/ (the load run clears the logs at the
  # top of $BENCH_OUT), the lines worth reading printed. The codec's first: a slow database
  # cannot cut it short. No plots (criterion's HTML plots took most of the codec's box).
  mkdir -p "$BENCH_OUT/criterion"
  crit_box() {
    local name=$1 box=$2 rc=0 log="$BENCH_OUT/criterion/$1.log"
    shift 2
    (cd "$ROOT" && timeout "$box" cargo bench -p chatwire-bench --bench "$name" -- "$@") \
      > "$log" 2>&1 || rc=$?
    grep -v -e "^Benchmarking" -e "^Found" -e "^ *[0-9]* (.*%) \(high\|low\)" -e "^Gnuplot" \
      -e "change:" -e "Performance has" -e "No change" -e "Change within" -e "^ *Running" \
      -e "^ *Finished" -e "^\s*$" -e "thrpt:" -e "^batch of .* failed" "$log" || true
    local failed
    failed=$(grep -c "^batch of .* failed" "$log" || true)
    [ "$failed" = 0 ] || echo "   ($failed batches failed: storage too slow for the run; see $log)"
    [ "$rc" != 124 ] || echo "   ($name cut short by its ${box} s time box)"
  }
  crit_box codec "$codec_box" "${crit[@]}"
  crit_box batch_writer "$writer_box"
  echo "   (criterion done at $((SECONDS - started)) s)"
fi

if [ "$RUN" = 1 ]; then
  echo "== building release binaries and peers"
  (cd "$ROOT" && cargo build --release --quiet -p chatwire -p chatwire-loadgen)
  "$ROOT/scripts/peers.sh" build
  # A check runs the baseline's own build beside this one (chatwire-base, chatwire-base-pg) and
  # judges against it: the saved figures alone cannot tell a slower build from a slower machine.
  # To stay in its time, a check leaves out what it does not judge: chatwire-norec and node
  # (make bench runs them). BENCH_AB=0 judges against the saved figures only.
  if [ "$CHECK" = 1 ] && [ "${BENCH_AB:-1}" = 1 ] && [ -z "${BENCH_BASE_BIN:-}" ] \
      && [ -f "$BASELINE" ]; then
    if base="$(bash "$ROOT/scripts/bench_base.sh" "$BASELINE")"; then
      read -r BENCH_BASE_COMMIT BENCH_BASE_BIN <<< "$base"
      export BENCH_BASE_BIN BENCH_BASE_COMMIT
      with_base=()
      for s in ${SERVERS:-chatwire chatwire-pg socketioxide}; do
        with_base+=("$s")
        case "$s" in
          chatwire|chatwire-pg) [[ " ${SERVERS:-} " == *" ${s/chatwire/chatwire-base} "* ]] \
            || with_base+=("${s/chatwire/chatwire-base}") ;;
        esac
      done
      SERVERS="${with_base[*]}"
      export SERVERS
      echo "   the baseline's build ($BENCH_BASE_COMMIT: $BENCH_BASE_BIN) runs beside this one"
    else
      echo "   (no build of the baseline's commit: judged against the saved figures only)"
    fi
  fi
  # A check's shared setup runs the memory store's servers only: its PostgreSQL knees were judged
  # with 20-166% margins (the database's own commit times move them), so they decided nothing,
  # and its runs were the longest. The pinned setup still judges chatwire-pg.
  if [ "$CHECK" = 1 ] && [ -z "${SHARED_SERVERS:-}" ]; then
    shared=()
    for s in ${SERVERS:-chatwire chatwire-norec chatwire-pg socketioxide node}; do
      case "$s" in *-pg|node|chatwire-norec) ;; *) shared+=("$s") ;; esac
    done
    SHARED_SERVERS="${shared[*]}"
    export SHARED_SERVERS
  fi
  # One process may hold this many sockets; the load generator raises its own soft limit too.
  ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
  python3 "$ROOT/scripts/bench_load.py"
fi

echo "== summary (elapsed $((SECONDS - started)) s)"
flags=()
[ "$CHECK" = 1 ] && flags+=(--check)
[ "$SAVE" = 1 ] && flags+=(--save-baseline)
STATUS=0
python3 "$ROOT/scripts/bench_report.py" "$BENCH_OUT/runs.json" "$BENCH_OUT/bench-summary.json" \
  "$BASELINE" "${flags[@]}" || STATUS=$?
echo "== elapsed $((SECONDS - started)) s"
if [ "$ICOUNT_STATUS" != 0 ]; then
  echo "bench: the instruction-count gate failed (exit $ICOUNT_STATUS, above)"
  [ "$STATUS" = 1 ] || STATUS=$ICOUNT_STATUS
fi
exit "$STATUS"
