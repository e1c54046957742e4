#!/usr/bin/env bash
# The instruction-count gate (`make bench-icount`, and the first step of `make bench-check`):
# counts the instructions of chatwire's hot paths under valgrind's callgrind and compares them
# with bench/baseline/icount.json. Counts are a property of the code and its inputs, not of the
# machine's load, so a small tolerance (ICOUNT_TOLERANCE, default 2%) catches small regressions
# that timing figures on a shared machine cannot. docs/bench.md, "Instruction counts".
#
#   scripts/bench_icount.sh                  count and gate (exit 1 when a path rose too much)
#   scripts/bench_icount.sh --save-baseline  count and save them as the baseline
#
# Paths: codec, chat, fanout (bench/src/bin/icount.rs says what each one runs); ICOUNT_PATHS
# picks some, ICOUNT_ITERATIONS (default 2000) the iterations per path.
# Needs valgrind (Debian/Ubuntu: apt-get install valgrind).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
PATHS="${ICOUNT_PATHS:-codec chat fanout}"
ITERATIONS="${ICOUNT_ITERATIONS:-2000}"
BASELINE="${ICOUNT_BASELINE:-$ROOT/bench/baseline/icount.json}"
OUT="$CARGO_TARGET_DIR/icount"
command -v valgrind >/dev/null ||
  { echo "bench-icount: valgrind not found (apt-get install valgrind)" >&2; exit 2; }
mkdir -p "$OUT"
echo "== instruction counts (callgrind, $ITERATIONS iterations per path)"
(cd "$ROOT" && cargo build --release --quiet -p chatwire-bench --bin chatwire-icount)
for path in $PATHS; do
  rm -f "$OUT/$path.callgrind"
  # Only the counted function (and what it calls) is measured: the inputs are built outside it.
  valgrind --tool=callgrind --callgrind-out-file="$OUT/$path.callgrind" \
    --toggle-collect="*icount_$path*" \
    "$CARGO_TARGET_DIR/release/chatwire-icount" "$path" "$ITERATIONS" >"$OUT/$path.log" 2>&1 ||
    { echo "bench-icount: $path failed under valgrind (see $OUT/$path.log)" >&2; exit 2; }
done
python3 "$ROOT/scripts/bench_icount.py" "$OUT" "$BASELINE" "$ITERATIONS" $PATHS "$@"
