#!/usr/bin/env bash
# Runs every protocol fuzz target for FUZZ_SECONDS (default 60) seconds each and prints the run
# counts. Installs cargo-fuzz into tools/cargo on first use. libFuzzer needs nightly-only rustc
# flags; RUSTC_BOOTSTRAP=1 lets the stable toolchain accept them.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
SECONDS_PER_TARGET="${FUZZ_SECONDS:-60}"
TOOLS="$ROOT/tools/cargo"
export PATH="$TOOLS/bin:$PATH"
export RUSTC_BOOTSTRAP=1

if ! command -v cargo-fuzz >/dev/null 2>&1; then
    echo "installing cargo-fuzz into $TOOLS"
    cargo install cargo-fuzz --locked --root "$TOOLS"
fi

cd fuzz
targets=$(cargo fuzz list)
mkdir -p target/logs
status=0
for target in $targets; do
    mkdir -p "corpus/$target"
    # Work on a scratch copy so new inputs do not pile up in the committed seeds.
    work="target/corpus/$target"
    mkdir -p "$work"
    cp -n "corpus/$target"/* "$work"/ 2>/dev/null || true
    log="target/logs/$target.log"
    echo "== $target (${SECONDS_PER_TARGET}s)"
    if cargo fuzz run "$target" "$work" -- -max_total_time="$SECONDS_PER_TARGET" -rss_limit_mb=2048 >"$log" 2>&1; then
        runs=$(grep -Eo 'Done [0-9]+ runs' "$log" | tail -1 || true)
        echo "   ok: ${runs:-see $log}"
    else
        status=1
        echo "   CRASH or build failure, see fuzz/$log and fuzz/artifacts/$target/"
        tail -20 "$log"
    fi
done
exit $status
