"""The `make chaos` runner: runs one scenario and appends its result (figure and verdict) to a
JSON-lines file, records the result of a step run elsewhere (fuzzing, Autobahn), or prints the
summary table of a results file and exits 1 if any scenario failed.

    python3 chaos/main.py run NAME RESULTS       # a scenario of this folder
    python3 chaos/main.py record NAME PASS|FAIL FIGURE RESULTS
    python3 chaos/main.py summary RESULTS
"""

import asyncio
import importlib
import json
import os
import sys
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import cw  # noqa: E402

# Issue number, module, title.
SCENARIOS = {
    "slowloris": (3, "s_slowloris", "Slowloris"),
    "slow_consumer": (4, "s_slow_consumer", "Slow consumer"),
    "churn": (5, "s_churn", "Churn"),
    "pg_outage": (6, "s_pg_outage", "PostgreSQL outage"),
    "kill9": (7, "s_kill9", "kill -9 mid-batch"),
    "sigterm": (8, "s_sigterm", "SIGTERM under load"),
    "floods": (9, "s_floods", "Floods"),
}
OTHER = {"autobahn": (1, "WebSocket conformance"), "fuzz": (2, "Fuzzing")}


def append(path, row):
    with open(path, "a") as f:
        f.write(json.dumps(row) + "\n")


def run(name, results):
    num, module, title = SCENARIOS[name]
    cw.raise_nofile()
    print(f"\n== {num}. {title}", flush=True)
    t0 = time.monotonic()
    try:
        mod = importlib.import_module(module)
        ok, figure = asyncio.run(mod.main())
    except Exception as e:  # a scenario that breaks is a failed scenario, with the reason
        traceback.print_exc()
        ok, figure = False, f"error: {type(e).__name__}: {e}"
    secs = time.monotonic() - t0
    verdict = "PASS" if ok else "FAIL"
    print(f"-- {title}: {figure}\n-- verdict: {verdict} ({secs:.0f} s)", flush=True)
    append(results, {"num": num, "name": title, "verdict": verdict, "figure": figure,
                     "secs": round(secs)})
    return ok


def summary(results):
    rows = []
    if os.path.exists(results):
        with open(results) as f:
            rows = [json.loads(line) for line in f if line.strip()]
    rows.sort(key=lambda r: r["num"])
    print("\n## make chaos summary\n")
    print("| # | scenario | verdict | time | figure |")
    print("| --- | --- | --- | --- | --- |")
    for r in rows:
        fig = r["figure"].replace("|", "/")
        print(f"| {r['num']} | {r['name']} | {r['verdict']} | {r['secs']} s | {fig} |")
    failed = [r for r in rows if r["verdict"] != "PASS"]
    print(f"\n{len(rows) - len(failed)} passed, {len(failed)} failed")
    return not failed and rows


def main(argv):
    if len(argv) >= 3 and argv[0] == "run":
        return 0 if run(argv[1], argv[2]) else 1
    if len(argv) >= 5 and argv[0] == "record":
        name, verdict, figure, results = argv[1:5]
        num, title = OTHER[name]
        secs = int(os.environ.get("CHAOS_STEP_SECS", "0"))
        print(f"-- {title}: {figure}\n-- verdict: {verdict} ({secs} s)", flush=True)
        append(results, {"num": num, "name": title, "verdict": verdict, "figure": figure,
                         "secs": secs})
        return 0
    if len(argv) >= 2 and argv[0] == "summary":
        return 0 if summary(argv[1]) else 1
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
