#!/usr/bin/env python3
"""Reads the callgrind counts of scripts/bench_icount.sh, prints instructions per iteration of
each hot path beside the baseline, and gates them.

    bench_icount.py OUT_DIR BASELINE_JSON ITERATIONS PATH... [--save-baseline]

A path fails when its count per iteration exceeds the baseline's by more than ICOUNT_TOLERANCE
(default 0.02). Exit status: 0 pass (or baseline saved), 1 a path rose too much, 2 no baseline
or no count. The baseline (bench/baseline/icount.json): {"format": 1, "commit", "date",
"valgrind", "iterations", "paths": {PATH: instructions per iteration}}.
"""
import json
import os
import subprocess
import sys
import time

TOLERANCE = float(os.environ.get("ICOUNT_TOLERANCE", "0.02"))


def total(path):
    """The `totals:` (or `summary:`) instruction count of a callgrind output file."""
    with open(path) as f:
        for line in f:
            if line.startswith(("totals:", "summary:")):
                return int(line.split()[1])
    return None


def main(argv):
    save = "--save-baseline" in argv
    argv = [a for a in argv if a != "--save-baseline"]
    out, baseline_path, iterations, paths = argv[0], argv[1], int(argv[2]), argv[3:]
    counts = {}
    for p in paths:
        n = total(os.path.join(out, f"{p}.callgrind"))
        if not n:
            print(f"bench-icount: no count for {p} (is `icount_{p}` in the binary?)")
            return 2
        counts[p] = round(n / iterations)
    try:
        base = json.load(open(baseline_path))
    except (OSError, ValueError):
        base = None
    regressed = []
    print(f"{'path':<8} {'instructions/iteration':>24} {'baseline':>12} {'ratio':>8}")
    for p, n in counts.items():
        b = (base or {}).get("paths", {}).get(p)
        ratio = n / b if b else None
        mark = ""
        if ratio is not None and ratio > 1 + TOLERANCE:
            mark = "REGRESSED"
            regressed.append((p, n, b, ratio))
        shown = "-" if b is None else f"{b:,}"
        print(f"{p:<8} {n:>24,} {shown:>12} {'-' if ratio is None else f'{ratio:.4f}':>8} {mark}")
    if save:
        vg = subprocess.run(["valgrind", "--version"], capture_output=True, text=True).stdout.strip()
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, cwd=os.path.dirname(baseline_path)).stdout.strip()
        saved = dict(base.get("paths", {})) if base else {}
        saved.update(counts)
        json.dump({"format": 1, "commit": commit,
                   "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                   "valgrind": vg, "iterations": iterations, "paths": saved},
                  open(baseline_path, "w"), indent=1)
        print(f"saved instruction-count baseline {baseline_path}")
        return 0
    if not base:
        print(f"bench-icount: no baseline at {baseline_path}; save one with "
              "scripts/bench_icount.sh --save-baseline")
        return 2
    if regressed:
        print(f"bench-icount: FAIL, {len(regressed)} of {len(counts)} paths rose more than "
              f"{TOLERANCE * 100:g}%:")
        for p, n, b, ratio in regressed:
            print(f"   {p}: {n:,} instructions/iteration vs baseline {b:,} ({(ratio - 1) * 100:+.2f}%)")
        return 1
    print(f"bench-icount: pass ({len(counts)} paths within {TOLERANCE * 100:g}% of the baseline)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
