#!/usr/bin/env python3
"""Figures, table, summary JSON and the regression gate of `make bench` (from bench_load.py's runs).

    bench_report.py RUNS_JSON SUMMARY_JSON BASELINE_JSON [--check] [--save-baseline]

A figure is one number per server, setup and workload, from >= REPEATS interleaved runs: its
median, min and max, and "noisy" when (max - min) / median > NOISY (10%). Figures:
  knee      msgs/s (1:1) or deliveries/s (rooms of 50) at delivery p99 <= 50 ms, from the knee
            search; run i's value is the highest load its i-th run passed;
  cpu@L     server CPU (utime + stime) per message or delivery at fixed load L;
  p50@L, p99@L  delivery latency at fixed load L;
  rss, connect  RSS KiB per idle connection and server CPU us per connect + join (REPEATS
            runs, each in a fresh server process).
The summary (docs/bench.md describes the format) is also the baseline: --save-baseline copies it.

The gate (--check) compares chatwire's figures (memory store and PostgreSQL) with the baseline's
and fails when one is worse by more than max(10%, 2 x (spread now + spread then)), latencies
also by more than 0.5 ms, or when every run now is worse than every baseline run by more than
10% and more than half the wider set's spread (ranges apart, whatever the spreads); the peers'
figures are reported, never gated. A knee whose runs mostly passed no load tried is "below the
lowest probe": its median is that load (an upper bound), judged with the plain 10%. A figure
whose margin is 50% or more, and whose ranges are not apart, is listed as too noisy to judge. A
worse figure is still not a regression (the report says why) when it is a knee whose first
failing load is within 10% of the baseline's knee (the search cannot tell them apart), or when
socketioxide's same figure in this run moved alike: the machine's speed drifts between runs, so
the figure is also judged against the baseline scaled by socketioxide's change, with
socketioxide's spreads added to the margin, and fails only if it is worse by both measures
(knees excepted: a peer's knee is often only a bound).
Exit status: 0 pass, 1 regression, 2 no usable baseline.
"""
import json
import os
import shutil
import statistics
import sys

NOISY = 0.10
MIN_MARGIN = 0.10
LATENCY_FLOOR_MS = 0.5
TOO_NOISY = 0.5
GATED = ("chatwire", "chatwire-pg")
# The baseline's own build (scripts/bench_base.sh), run interleaved with this one on each store when
# scripts/bench.sh --check could provide it: chatwire's figures are judged against its figures in
# this run, not against the saved ones, which a machine that drifted since would misjudge.
REFERENCE = {"chatwire": "chatwire-base", "chatwire-pg": "chatwire-base-pg"}
# The peer whose figures, measured interleaved in the same run, tell how far the machine drifted.
DRIFT_PEER = "socketioxide"
# Run at the fixed loads only (no knee): chatwire with recovery off, beside chatwire (recovery on).
FIXED_ONLY = ("chatwire-norec",)
UNIT = {"direct": "msgs/s", "group": "deliveries/s"}
WHAT = {"direct": "1:1", "group": "rooms of 50"}


def figure(fid, setup, server, workload, metric, load, unit, higher, values, title):
    values = [v for v in values if v is not None]
    if not values:
        return None
    med = statistics.median(values)
    lo, hi = min(values), max(values)
    spread = (hi - lo) / med if med else (0.0 if hi == lo else 1.0)
    return {"id": fid, "setup": setup, "server": server, "workload": workload, "metric": metric,
            "load": load, "title": title, "unit": unit, "higher_is_better": higher,
            "median": med, "min": lo, "max": hi, "runs": len(values), "values": values,
            "spread": round(spread, 4), "noisy": spread > NOISY, "gated": server in GATED}


def figures(data):
    runs, out = data["runs"], []
    for setup, server in dict.fromkeys((r["setup"], r["server"]) for r in runs if r["kind"] == "idle"):
        idle = [r for r in runs if r["kind"] == "idle" and (r["setup"], r["server"]) == (setup, server)]
        base = f"{setup}/{server}/idle"
        out.append(figure(f"{base}/rss", setup, server, "idle", "rss", None,
                          "KiB/conn", False, [r.get("rss_kib_per_conn") for r in idle],
                          "RSS per idle connection"))
        out.append(figure(f"{base}/connect", setup, server, "idle", "connect",
                          None, "us/user", False, [r.get("connect_cpu_us_per_user") for r in idle],
                          "server CPU per connect + join"))
    keys = sorted({(r["setup"], r["workload"], r["server"]) for r in runs if r["kind"] == "load"})
    for setup, workload, server in keys:
        mine = [r for r in runs if (r["setup"], r["workload"], r["server"], r["kind"])
                == (setup, workload, server, "load")]
        base = f"{setup}/{server}/{workload}"
        reps = sorted({r["repeat"] for r in mine})
        lowest = min(r["load"] for r in mine)
        # A run that passed no load tried has its knee below the lowest probe: it counts as that
        # load (an upper bound) and is marked; most runs so is a collapsed knee.
        knees = [max((r["load"] for r in mine if r["repeat"] == i and r["pass"]), default=None)
                 for i in reps]
        below = sum(k is None for k in knees)
        knee = None if server in FIXED_ONLY else figure(
            f"{base}/knee", setup, server, workload, "knee", None, UNIT[workload],
            True, [lowest if k is None else k for k in knees],
            f"{WHAT[workload]}: {UNIT[workload]} at p99 <= 50 ms")
        if knee:
            knee["lowest_probe"] = lowest
            knee["runs_below_lowest_probe"] = below
            knee["below_lowest_probe"] = below * 2 > len(knees)
        out.append(knee)
        per = "message" if workload == "direct" else "delivery"
        for load in sorted({r["load"] for r in mine if r.get("fixed")}):
            at = [r for r in mine if r["load"] == load and r.get("fixed")]
            k = f"{load / 1000:g}k"
            out.append(figure(f"{base}/cpu@{k}", setup, server, workload, "cpu", load,
                              f"us/{per}", False, [r.get("cpu_us") for r in at],
                              f"{WHAT[workload]}: server CPU per {per} at {k}/s"))
            for q in ("p50", "p99"):
                out.append(figure(f"{base}/{q}@{k}", setup, server, workload, q, load, "ms",
                                  False, [r.get(f"{q}_ms") for r in at],
                                  f"{WHAT[workload]}: delivery {q} at {k}/s"))
            fig = out[-3]
            if fig:
                fig["passed_runs"] = sum(r["pass"] for r in at)
                shares = [r["loadgen_share"] for r in at if r.get("loadgen_share") is not None]
                fig["loadgen_busy"] = round(statistics.median(shares), 3) if shares else None
    out = [f for f in out if f]
    by_id = {f["id"]: f for f in out}
    # How finely the search knows each knee: its last pass and first fail (majority verdicts).
    for sr in data.get("searches", []):
        f = by_id.get(f"{sr['setup']}/{sr['server']}/{sr['workload']}/knee")
        if f:
            f["last_pass"], f["first_fail"] = sr.get("last_pass"), sr.get("first_fail")
            f["bracket"] = sr.get("bracket")
            tol = data["meta"]["config"].get("knee_tol", 0.05)
            f["coarse"] = f["bracket"] is None or f["bracket"] > (1 + tol) * 1.001
            f["cut_by_time"] = bool(sr.get("cut_by_time"))
    for f in out:
        if f["server"] in GATED:
            f["ratio_to_peers"] = {}
            for peer in ("socketioxide", "node"):
                p = by_id.get(f["id"].replace(f"/{f['server']}/", f"/{peer}/", 1))
                if p and p["median"]:
                    f["ratio_to_peers"][peer] = round(f["median"] / p["median"], 3)
        off = by_id.get(f["id"].replace("/chatwire/", "/chatwire-norec/", 1))
        if f["server"] == "chatwire" and off and off["median"]:
            f["ratio_to_recovery_off"] = round(f["median"] / off["median"], 3)
    return out


def by_id_of(figs, f, server):
    """The figure of `server` with the same setup, workload and metric as `f`."""
    want = f["id"].replace(f"/{f['server']}/", f"/{server}/", 1)
    return next(g for g in figs if g["id"] == want)


def fmt(v):
    return "-" if v is None else f"{v:,.0f}" if abs(v) >= 100 else f"{v:.2f}"


def cell(f):
    if not f:
        return "-"
    if f.get("below_lowest_probe"):
        return f"<{fmt(f['median'])}"
    s = fmt(f["median"])
    if f["runs"] > 1:
        s += f" ±{f['spread'] * 50:.0f}%" + ("~" if f["noisy"] else "")
    return s


def table(figs, servers):
    rows = {}
    for f in figs:
        rows.setdefault((f["setup"], f["workload"], f["metric"], f["load"] or 0), {})[f["server"]] = f
    order = {"idle": 0, "direct": 1, "group": 2}
    metric_order = {"knee": 0, "cpu": 1, "p50": 2, "p99": 3, "rss": 4, "connect": 5}
    print(f"{'figure (median ±half spread; ~ noisy)':<58}" + "".join(f"{s:>15}" for s in servers))
    last = None
    for key in sorted(rows, key=lambda k: (k[0] != "pinned", order.get(k[1], 9), k[3], metric_order[k[2]])):
        if key[:2] != last:
            print(f"-- {key[0]} setup, {key[1]}")
            last = key[:2]
        one = next(iter(rows[key].values()))
        title = f"{one['title']} ({one['unit']})"
        print(f"{title[:58]:<58}" + "".join(f"{cell(rows[key].get(s)):>15}" for s in servers))


def idle_users(meta):
    return (meta or {}).get("config", {}).get("idle_users")


def missing(figs, base_figs, meta):
    """Ids of gated baseline figures this run should have measured and has not."""
    if not meta:
        return []
    cfg = meta.get("config", {})
    have = {f["id"] for f in figs}
    workloads = cfg.get("workloads", ["direct", "group"])
    out = []
    for b in base_figs:
        if b["id"] in have or b.get("server") not in GATED or not b.get("median"):
            continue
        setup, server, workload = b["setup"], b["server"], b["workload"]
        servers = cfg.get("shared_servers" if setup == "shared" else "servers", [])
        if setup not in cfg.get("setups", []) or server not in servers:
            continue
        if workload == "idle":
            expected = setup == cfg["setups"][0] and bool(cfg.get("idle_users"))
        elif b["metric"] == "knee":
            expected = workload in workloads
        else:
            expected = (workload in workloads and setup in cfg.get("fixed_setups", [])
                        and b["load"] in cfg.get("fixed", {}).get(workload, []))
        if expected:
            out.append(b["id"])
    return out


def gate(figs, base_figs, meta=None, base_meta=None):
    """Regressions: chatwire figures worse than the baseline's beyond the noise-aware margin.

    Idle figures (RSS per connection, CPU per connect) depend on how many connections were
    opened (fixed costs spread over them): taken with another count than the baseline's (the
    quick form opens 1,000, the full one 4,000), they are not compared."""
    base = {f["id"]: f for f in base_figs}
    now = {f["id"]: f for f in figs}
    regressed, compared = [], 0
    idle_differs = idle_users(meta) != idle_users(base_meta)
    for f in figs:
        b = base.get(f["id"])
        r = reference_of(f, now)
        if f["workload"] == "idle" and idle_differs and not r:
            if b and b.get("median"):
                f["not_compared"] = (f"{idle_users(meta)} idle connections, "
                                     f"{idle_users(base_meta)} in the baseline")
            continue
        if b and b.get("median") and not (f["workload"] == "idle" and idle_differs):
            f["baseline"] = {k: b[k] for k in ("median", "min", "max", "runs", "spread")}
            f["ratio_to_baseline"] = round(f["median"] / b["median"], 3)
        else:
            b = None
        if r:
            f["reference"] = {k: r[k] for k in ("server", "median", "min", "max", "runs", "spread")}
            f["ratio_to_reference"] = round(f["median"] / r["median"], 3)
        if not f["gated"] or not (r or b):
            continue
        compared += 1
        # The baseline's build measured beside this one is the better yardstick: the same
        # machine, the same minutes. The saved figures are then reported, not judged.
        ref = r or b
        bad, margin, apart = judge(f, ref)
        f["margin"] = round(margin, 3)
        # So wide a margin hides real regressions of that size: say so rather than pass quietly.
        f["too_noisy_to_judge"] = margin >= TOO_NOISY and not apart
        if bad:
            why = knee_bracket(f, ref) if r else excused(f, b, now, base, floor_of(f))
            if why:
                f["worse_but_not_regressed"] = why
            else:
                f["regressed"] = True
                regressed.append(f)
    # A gated figure the baseline has, of a server, setup, workload and load this run measured,
    # that came out empty (every run without results, say) would otherwise pass unseen.
    for fid in missing(figs, base_figs, meta):
        b = base[fid]
        if b["workload"] == "idle" and idle_differs:
            continue
        f = {k: b.get(k) for k in ("id", "setup", "server", "workload", "metric", "load", "title",
                                   "unit", "higher_is_better", "gated")}
        f.update(median=None, min=None, max=None, values=[], runs=0, spread=None, noisy=False,
                 regressed=True, not_measured=True,
                 baseline={k: b[k] for k in ("median", "min", "max", "runs", "spread")})
        figs.append(f)
        regressed.append(f)
        compared += 1
    return regressed, compared


def floor_of(f):
    return LATENCY_FLOOR_MS if f["unit"] == "ms" else 0


def judge(f, ref):
    """(worse beyond the margin, margin, every run apart): `f` against `ref`, a figure of the
    same id measured in this run by the baseline's build, or the saved baseline's."""
    margin = max(MIN_MARGIN, 2 * (f["spread"] + ref.get("spread", 0)))
    if f.get("below_lowest_probe"):
        # The median is only an upper bound (most runs passed no load tried): its spread
        # says nothing, and being worse than the reference by the plain margin is enough.
        margin = MIN_MARGIN
    worse = (ref["median"] - f["median"]) if f["higher_is_better"] else (f["median"] - ref["median"])
    floor = floor_of(f)
    apart = ranges_apart(f, ref, 1.0, floor)
    return worse > max(margin * ref["median"], floor) or apart, margin, apart


def ranges_apart(f, ref, scale, floor):
    """Every run of `f` worse than every run of `ref` (its values times `scale`) by more than the
    plain margin and more than half the wider set's spread (max - min): a regression however wide
    the spreads are (a collapsed knee, a latency that went up by multiples). With 3 runs against 3
    of one build, one set lies wholly above the other by chance once in 20; asking the gap to clear
    half the spread makes that several times rarer for wide spreads (docs/bench.md has the figures)."""
    expected = ref["median"] * scale
    lo, hi = ref.get("min", ref["median"]) * scale, ref.get("max", ref["median"]) * scale
    gap = (lo - f["max"]) if f["higher_is_better"] else (f["min"] - hi)
    need = max(MIN_MARGIN * expected, (f["max"] - f["min"]) / 2, (hi - lo) / 2)
    return gap > max(need, 0 if f["higher_is_better"] else floor)


def reference_of(f, now):
    """The same figure of the baseline's build measured interleaved in this run, if any."""
    other = REFERENCE.get(f["server"])
    r = now.get(f["id"].replace(f"/{f['server']}/", f"/{other}/", 1)) if other else None
    return r if r and r.get("median") else None


def knee_bracket(f, ref):
    """A knee is known only to lie below its first failing load: if that load is not worse
    than the reference's knee by MIN_MARGIN, the search cannot tell the two apart."""
    if f["metric"] != "knee":
        return None
    ff = f.get("first_fail")
    if ff is None or ff >= ref["median"] * (1 - MIN_MARGIN):
        whose = f"{ref['server']}'s in this run" if ref.get("server") in REFERENCE.values() \
            else "the baseline's"
        return (f"within the search's bracket: the knee lies below {fmt(ff) if ff else 'no failed load'}, "
                f"{whose} is {fmt(ref['median'])}")
    return None


def excused(f, b, now, base, floor):
    """Why a figure worse than the baseline is still not a regression (None: it is one).

    A knee is known only to lie below its first failing load: if that load is not worse than
    the baseline's knee by MIN_MARGIN, the search cannot tell the two apart. And the machine's
    speed drifts between runs (a VM's neighbours): when socketioxide's same figure, measured
    interleaved in this run, moved the same way, chatwire is judged against the baseline scaled
    by that drift, with the peer's spreads added to the margin."""
    if f["metric"] == "knee":
        # A peer's knee is often a bound (its search climbs from the baseline's), so it says
        # little about drift: knees are judged by their bracket only.
        return knee_bracket(f, b)
    pid = f["id"].replace(f"/{f['server']}/", f"/{DRIFT_PEER}/", 1)
    p_now, p_base = now.get(pid), base.get(pid)
    if not (p_now and p_base and p_now.get("median") and p_base.get("median")):
        return None
    drift = p_now["median"] / p_base["median"]
    expected = b["median"] * drift
    worse = (expected - f["median"]) if f["higher_is_better"] else (f["median"] - expected)
    margin = max(MIN_MARGIN, 2 * (f["spread"] + b.get("spread", 0) + p_now["spread"]
                                  + p_base.get("spread", 0)))
    # As in the plain gate: runs apart from the scaled baseline's are a regression however wide
    # the spreads.
    apart = ranges_apart(f, b, drift, floor)
    f["drift"] = {"peer": DRIFT_PEER, "ratio": round(drift, 3), "expected": round(expected, 3),
                  "margin": round(margin, 3)}
    if worse > max(margin * expected, floor) or apart:
        return None
    return (f"{DRIFT_PEER} moved {drift:.2f}x in this run: against the baseline scaled by it "
            f"({fmt(expected)}) this is within {margin * 100:.0f}%")


def main():
    runs_path, summary_path, baseline_path = sys.argv[1:4]
    check, save = "--check" in sys.argv, "--save-baseline" in sys.argv
    data = json.load(open(runs_path))
    figs = figures(data)
    servers = list(dict.fromkeys(data["meta"]["config"]["servers"]))
    table(figs, servers)
    skipped = [(sr, x) for sr in data.get("searches", []) for x in sr.get("skipped_fixed", [])]
    if skipped:
        print("-- fixed loads not run (a lower fixed load already failed; peers only)")
        for sr, x in skipped:
            print(f"   {sr['setup']}/{sr['server']}/{sr['workload']} at {fmt(x)}/s")
    coarse = [f for f in figs if f["metric"] == "knee" and f.get("coarse")]
    if coarse:
        tol = data["meta"]["config"].get("knee_tol", 0.05)
        print(f"-- knees the search left coarse (first fail / last pass above {1 + tol:g}: "
              "MAX_PROBES ran out, the load's time (LOAD_SECS) did, or no load failed or passed)")
        for f in coarse:
            lo, hi = f.get("last_pass"), f.get("first_fail")
            print(f"   {f['id']:<40} last pass {fmt(lo)}, first fail {fmt(hi)}"
                  + (f" ({f['bracket']:.2f}x)" if f.get("bracket") else "")
                  + (", cut short by the time" if f.get("cut_by_time") else ""))
    print("-- chatwire / peer (medians; above 1 is better for knees, below 1 for CPU and latency;"
          " ~ a knee the search left coarse, either side: the ratio is loose)")
    for f in figs:
        if f["server"] == "chatwire" and f["metric"] in ("knee", "cpu") and f.get("ratio_to_peers"):
            def loose(p):
                peer = by_id_of(figs, f, p)
                return f.get("coarse") or bool(peer and peer.get("coarse"))
            r = "  ".join(f"{p} {v:.2f}x" + ("~" if loose(p) else "")
                          for p, v in f["ratio_to_peers"].items())
            print(f"   {f['setup']:<6} {f['title']:<48} {r}")
    off = [f for f in figs if f.get("ratio_to_recovery_off") and f["metric"] in ("cpu", "p50", "p99")]
    if off:
        print("-- what connection state recovery costs: chatwire (RECOVERY_WINDOW 120 s) / chatwire-norec (0)")
        for f in off:
            print(f"   {f['setup']:<6} {f['title']:<48} {fmt(f['median']):>7} vs "
                  f"{fmt(by_id_of(figs, f, 'chatwire-norec')['median']):>7} {f['ratio_to_recovery_off']:.2f}x")
    base = None
    if os.path.exists(baseline_path):
        try:
            base = json.load(open(baseline_path))
        except ValueError:
            base = None
    status = 0
    if base and "figures" in base:
        regressed, compared = gate(figs, base["figures"], data["meta"], base.get("meta"))
        bm = base.get("meta", {})
        print(f"-- compared with baseline {baseline_path} (commit {bm.get('commit')}, "
              f"{bm.get('date')}, load average before {bm.get('loadavg_before')})")
        refs = sorted({f["reference"]["server"] for f in figs if f.get("reference")})
        print("   figure: this run vs the saved baseline | vs "
              + (f"the baseline's build run beside it ({', '.join(refs)}); the gate judges "
                 "against the latter where it has the figure" if refs else
                 "the baseline's build in this run (not run: judged against the saved figures)"))
        if bm.get("config", {}).get("step_secs") != data["meta"]["config"]["step_secs"] or \
                bm.get("config", {}).get("users") != data["meta"]["config"]["users"]:
            print("   note: the baseline was taken with other users or step length; ratios are approximate")
        for f in figs:
            if f["server"] in GATED and f.get("not_compared"):
                print(f"   {f['id']:<40} not compared: {f['not_compared']}")
            if f.get("not_measured"):
                print(f"   {f['id']:<40} {'-':>9} vs {fmt(f['baseline']['median']):>9}       "
                      "REGRESSED: not measured (no run gave a value)")
            if f["server"] in GATED and ("ratio_to_baseline" in f or "ratio_to_reference" in f):
                mark = "REGRESSED" if f.get("regressed") else \
                    f"worse, not gated: {f['worse_but_not_regressed']}" if f.get("worse_but_not_regressed") else ""
                saved = (f"{fmt(f['baseline']['median']):>9} {f['ratio_to_baseline']:5.2f}x"
                         if "baseline" in f else f"{'-':>9} {'':>5} ")
                here = (f"{fmt(f['reference']['median']):>9} {f['ratio_to_reference']:5.2f}x"
                        if "reference" in f else f"{'-':>9} {'':>5} ")
                margin = f" (margin {f['margin'] * 100:.0f}%)" if "margin" in f else ""
                print(f"   {f['id']:<40} {fmt(f['median']):>9} vs {saved} | {here}{margin} {mark}")
        if check:
            if regressed:
                print(f"bench-check: FAIL, {len(regressed)} of {compared} chatwire figures regressed:")
                for f in regressed:
                    if f.get("not_measured"):
                        print(f"   {f['id']} ({f['title']}): not measured in this run (no run gave "
                              f"a value), baseline {fmt(f['baseline']['median'])}")
                        continue
                    below = "below the lowest probe " if f.get("below_lowest_probe") else ""
                    ref = f.get("reference") or f["baseline"]
                    whose = f"{ref['server']} in this run" if f.get("reference") else "baseline"
                    print(f"   {f['id']} ({f['title']}): {below}{fmt(f['median'])} {f['unit']} "
                          f"[{fmt(f['min'])}-{fmt(f['max'])}] vs {whose} {fmt(ref['median'])} "
                          f"[{fmt(ref['min'])}-{fmt(ref['max'])}], "
                          f"margin {f['margin'] * 100:.0f}%")
                status = 1
            elif not compared:
                print("bench-check: no chatwire figure in common with the baseline")
                status = 2
            else:
                print(f"bench-check: pass ({compared} chatwire figures within their margins)")
            vague = [f for f in figs if f.get("too_noisy_to_judge") and not f.get("regressed")]
            if vague:
                print(f"   {len(vague)} of them too noisy to judge (margin >= {TOO_NOISY * 100:.0f}%: a "
                      "regression smaller than the margin would pass): "
                      + ", ".join(f"{f['id']} ({f['margin'] * 100:.0f}%)" for f in vague))
    elif check:
        print(f"bench-check: no baseline in the current format at {baseline_path}; "
              "save one with scripts/bench.sh --save-baseline")
        status = 2
    summary = {"format": 2, "meta": data["meta"], "searches": data.get("searches", []),
               "figures": figs}
    if check:
        summary["gate"] = {"status": ["pass", "regressed", "no baseline"][status],
                           "regressed": [f["id"] for f in figs if f.get("regressed")],
                           "too_noisy_to_judge": [f["id"] for f in figs if f.get("too_noisy_to_judge")]}
    json.dump(summary, open(summary_path, "w"), indent=1)
    print(f"summary: {summary_path}")
    if save:
        os.makedirs(os.path.dirname(baseline_path), exist_ok=True)
        shutil.copyfile(summary_path, baseline_path)
        print(f"saved baseline {baseline_path}")
    sys.exit(status)


if __name__ == "__main__":
    main()
