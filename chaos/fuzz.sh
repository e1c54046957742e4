#!/usr/bin/env bash
# Scenario 2 of `make chaos`: every protocol fuzz target for FUZZ_RUNS (default 2,000,000)
# executions, from the committed seeds (on a scratch copy); PASS when every target completes its
# runs without a crash. Installs cargo-fuzz into tools/cargo on first use (as scripts/fuzz.sh).
#   chaos/fuzz.sh RESULTS
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
RESULTS="$1"
RUNS="${FUZZ_RUNS:-2000000}"
TOOLS="$ROOT/tools/cargo"
export PATH="$TOOLS/bin:$PATH"
export RUSTC_BOOTSTRAP=1
t0=$SECONDS
record() { CHAOS_STEP_SECS=$((SECONDS - t0)) python3 "$ROOT/chaos/main.py" record fuzz "$1" "$2" "$RESULTS"; }

echo
echo "== 2. Fuzzing ($RUNS runs per target)"
if ! command -v cargo-fuzz >/dev/null 2>&1; then
  echo "installing cargo-fuzz into $TOOLS"
  cargo install cargo-fuzz --locked --root "$TOOLS" || { record FAIL "cargo-fuzz could not be installed"; exit 1; }
fi
cd "$ROOT/fuzz"
# The fuzz crate has its own workspace and target dir (fuzz/target), not the suite's.
unset CARGO_TARGET_DIR
targets=$(cargo fuzz list) || { record FAIL "cargo fuzz list failed"; exit 1; }
mkdir -p target/logs
status=PASS
figure=""
# Two targets at a time (one per core of a 2-core machine; the next starts when one ends), each
# on its own scratch corpus.
run_one() {
  local target="$1" work="target/corpus/$1" log="target/logs/chaos-$1.log" s=$SECONDS
  mkdir -p "$work"
  cp -n "corpus/$target"/* "$work"/ 2>/dev/null || true
  if cargo fuzz run "$target" "$work" -- -runs="$RUNS" -rss_limit_mb=2048 >"$log" 2>&1; then
    echo "ok $((SECONDS - s))" >"target/logs/chaos-$target.status"
  else
    echo "crash $((SECONDS - s))" >"target/logs/chaos-$target.status"
  fi
}
rm -f target/logs/chaos-*.status
cargo fuzz build >/dev/null 2>&1 || { record FAIL "cargo fuzz build failed"; exit 1; }
running=0
for target in $targets; do
  if [ "$running" -ge 2 ]; then wait -n; running=$((running - 1)); fi
  run_one "$target" &
  running=$((running + 1))
done
wait
for target in $targets; do
  log="target/logs/chaos-$target.log"
  read -r outcome secs <"target/logs/chaos-$target.status"
  runs=$(grep -Eo 'Done [0-9]+ runs' "$log" | tail -1 | grep -Eo '[0-9]+' || echo 0)
  if [ "$outcome" = ok ] && [ "${runs:-0}" -ge "$RUNS" ]; then
    echo "   $target: $runs runs in $secs s, no crash"
    figure="$figure$target ${runs} runs ok; "
  else
    status=FAIL
    echo "   $target: CRASH or too few runs ($runs), see fuzz/$log and fuzz/artifacts/$target/"
    tail -20 "$log"
    figure="$figure$target CRASH or ${runs} runs; "
  fi
done
record "$status" "${figure%; }"
