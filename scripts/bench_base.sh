#!/usr/bin/env bash
# The chatwire binary of the baseline's commit, which `make bench-check` runs interleaved with
# this build as the gate's yardstick: both measured on the same machine in the same minutes, so a
# machine that got slower since the baseline was saved slows both alike. Prints the commit and
# the binary's path, on one line.
#
#   scripts/bench_base.sh BASELINE_JSON
#
# - The commit's server sources (protocol/, server/, migrations/, Cargo.toml, Cargo.lock; tests
#   aside) equal the work tree's: this build's own binary is the baseline's build.
# - Else a build cached in $CARGO_TARGET_DIR/bench-base/<commit>/chatwire.
# - Else built once from the commit in a git worktree, in a target directory of its own (a release
#   build from scratch: 6 minutes measured on 2 cores, once per baseline), then cached.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
BASELINE="${1:?usage: scripts/bench_base.sh BASELINE_JSON}"
read -r commit dirty < <(python3 -c '
import json, sys
m = json.load(open(sys.argv[1])).get("meta", {})
print(m.get("commit") or "-", "dirty" if m.get("dirty") else "clean")' "$BASELINE")
if [ "$commit" = - ] || ! git -C "$ROOT" cat-file -e "$commit^{commit}" 2>/dev/null; then
  echo "bench-base: the baseline's commit '$commit' is not in this repository" >&2
  exit 1
fi
if [ "$dirty" = dirty ]; then
  echo "bench-base: note: the baseline was saved from a work tree with uncommitted changes;" \
       "its commit's build may differ from what was measured" >&2
fi
# (their tests/ folders excepted: they are not in the binary)
SOURCES=(protocol server migrations Cargo.toml Cargo.lock ':(glob,exclude)**/tests/**')
if git -C "$ROOT" diff --quiet "$commit" -- "${SOURCES[@]}"; then
  echo "$commit $CARGO_TARGET_DIR/release/chatwire"
  exit 0
fi
cache="$CARGO_TARGET_DIR/bench-base/$commit"
if [ -x "$cache/chatwire" ]; then
  echo "$commit $cache/chatwire"
  exit 0
fi
echo "bench-base: building chatwire at $commit (once; kept in $cache)" >&2
src="$CARGO_TARGET_DIR/bench-base/src-$commit"
git -C "$ROOT" worktree remove --force "$src" 2>/dev/null || rm -rf "$src"
git -C "$ROOT" worktree add --detach --quiet "$src" "$commit" >&2
(cd "$src" && CARGO_TARGET_DIR="$CARGO_TARGET_DIR/bench-base/target" \
  cargo build --release --quiet -p chatwire) >&2
mkdir -p "$cache"
cp "$CARGO_TARGET_DIR/bench-base/target/release/chatwire" "$cache/chatwire"
git -C "$ROOT" worktree remove --force "$src" >&2
echo "$commit $cache/chatwire"
