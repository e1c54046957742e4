#!/usr/bin/env bash
# Benchmarks: criterion micro-benches, then the same load on chatwire (memory store) and on both
# peers (socketioxide, Node socket.io), under 10 minutes in all.
#
# Per server it measures
#   - RSS per idle connection: IDLE_USERS users connected and joined, no traffic
#     (server RSS growth / connections, from /proc/<pid>/status), and the server CPU those
#     connects and joins took (handshake cost; capacity = 2 cores / that);
#   - per workload ("group": rooms of 50; "direct": 1:1), stepping the per-user message rate up
#     until p99 delivery latency exceeds 50 ms: the highest deliveries/s with p99 <= 50 ms, and
#     server CPU per delivery (utime+stime from /proc/<pid>/stat over the send phase) at the
#     first step, where every server carries the same load;
# then prints chatwire's ratio to each peer and, when bench/baseline/bench.json exists, the
# ratio of each figure to the saved baseline.
#
#   scripts/bench.sh                  everything
#   scripts/bench.sh --no-criterion   load comparison only
#   scripts/bench.sh --save-baseline  also save the figures as bench/baseline/bench.json
#   scripts/bench.sh --summary-only   print the summary of the last runs again
#   SERVERS="chatwire socketioxide" STEP_SECS=8 GROUP_RATES="0.5 1 2" scripts/bench.sh
#   SCENARIO="" scripts/bench.sh     with typing and read receipts (default: messages only)
#   HEADROOM=0 scripts/bench.sh      without the load generator headroom step
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/load-common.sh"

CRITERION=1
SAVE=0
RUN=1
for arg in "$@"; do
  case "$arg" in
    --no-criterion) CRITERION=0 ;;
    --save-baseline) SAVE=1 ;;
    --summary-only) CRITERION=0; RUN=0 ;;
    *) echo "unknown option $arg" >&2; exit 2 ;;
  esac
done
SERVERS="${SERVERS:-chatwire socketioxide node}"
STEP_SECS="${STEP_SECS:-6}"
IDLE_USERS="${IDLE_USERS:-4000}"
GROUP_USERS="${GROUP_USERS:-2000}"
GROUP_RATES="${GROUP_RATES:-0.2 0.5 1 2}"
DIRECT_USERS="${DIRECT_USERS:-4000}"
DIRECT_RATES="${DIRECT_RATES:-1 2 4 8}"
# Messages only by default, so CPU per delivery is the message path; SCENARIO="" adds typing
# and read receipts (the loadtest scenario).
SCENARIO="${SCENARIO---no-typing --no-read}"
P99_MS="${P99_MS:-50}"
HEADROOM="${HEADROOM:-1}"
HEADROOM_QUOTA="${HEADROOM_QUOTA:-0.5}"
HEADROOM_RATES="${HEADROOM_RATES:-0.5 1 1.5 2}"
BASELINE="${BASELINE:-$ROOT/bench/baseline/bench.json}"
BENCH_OUT="$OUT/bench"
mkdir -p "$BENCH_OUT"
REF_GROUP_RATE="${REF_GROUP_RATE:-0.2}"
REF_DIRECT_RATE="${REF_DIRECT_RATE:-1}"
[ "$RUN" = 0 ] || rm -f "$BENCH_OUT"/*.results.json
started=$SECONDS

trap stop_server EXIT
if [ "$CRITERION" = 1 ]; then
  echo "== criterion benches (short measurement)"
  # Build first (once per change), then measure briefly; the time box keeps the whole under 10 min.
  (cd "$ROOT" && cargo bench -p chatwire-bench --benches --no-run --quiet) || true
  # The batch writer bench (PostgreSQL) in its short form: half the messages, 5 s paced runs.
  (cd "$ROOT" && BENCH_MESSAGES="${BENCH_MESSAGES:-150000}" BENCH_PACE_SECS="${BENCH_PACE_SECS:-5}" \
    BENCH_SINGLE="${BENCH_SINGLE:-5000}" timeout "${CRITERION_SECS:-150}" \
    cargo bench -p chatwire-bench --benches -- --warm-up-time 0.5 --measurement-time 1) 2>&1 \
    | grep -v -e "^Benchmarking" -e "^Found" -e "^ *[0-9]* (.*%) \(high\|low\)" -e "^Gnuplot" \
      -e "change:" -e "Performance has" -e "No change" -e "Change within" -e "^ *Running" \
      -e "^ *Finished" -e "^\s*$" -e "thrpt:" || true
fi

if [ "$RUN" = 1 ]; then
echo "== building release binaries and peers"
(cd "$ROOT" && cargo build --release --quiet -p chatwire -p chatwire-loadgen)
"$ROOT/scripts/peers.sh" build

port=3500
start() { # start SERVER PORT
  case "$1" in
    chatwire) start_chatwire "$2" memory "$BENCH_OUT/server-$1.log" ;;
    *) start_peer "$1" "$2" "$BENCH_OUT/server-$1.log" ;;
  esac
}
loadgen() { # loadgen SERVER PORT NAME [options...]; LOADGEN_PREFIX runs it under e.g. taskset
  local server="$1" port="$2" name="$3" seed=none
  shift 3
  [ "$server" = chatwire ] && seed=rest
  ${LOADGEN_PREFIX:-} "$BIN/chatwire-loadgen" run -H "http://127.0.0.1:$port" --seed "$seed" --server-pid "$SERVER_PID" \
    --out-dir "$BENCH_OUT" --name "$name" --no-goose-reports --progress-secs 5 --drain 1.5 "$@" \
    >"$BENCH_OUT/$name.log" 2>&1
}
passed() { # passed NAME: p99 within the limit, every expected delivery made, no errors
  python3 - "$BENCH_OUT/$1.results.json" "$P99_MS" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
from math import inf
buckets = r["histograms"].get("delivery", [])
total = sum(c for _, c in buckets)
seen, p99 = 0, inf
for v, c in buckets:
    seen += c
    if seen >= 0.99 * total:
        p99 = v; break
limit = float(sys.argv[2]) * 1000
errors = sum(r["errors"].values()) if isinstance(r["errors"], dict) else len(r["errors"])
ok = total > 0 and p99 <= limit and not errors and r["deliveries"] >= r["expected_deliveries"] > 0
# 1 = missed narrowly (p99 within twice the limit, a handful of errors or lost deliveries):
# worth a second attempt; 2 = clearly over.
near = total > 0 and p99 <= 2 * limit and errors <= 5 \
       and r["deliveries"] >= 0.999 * r["expected_deliveries"]
sys.exit(0 if ok else 1 if near else 2)
PY
}

for server in $SERVERS; do
  port=$((port + 1))
  echo "== $server: idle connections"
  start "$server" "$port"
  loadgen "$server" "$port" "$server-idle" -u "$IDLE_USERS" --room-size 10 --idle --duration 3 || true
  stop_server
  for workload in group direct; do
    if [ "$workload" = group ]; then users=$GROUP_USERS; room=50; rates=$GROUP_RATES
    else users=$DIRECT_USERS; room=2; rates=$DIRECT_RATES; fi
    start "$server" "$port"
    for rate in $rates; do
      name="$server-$workload-$rate"
      # A step that misses narrowly is run once more (same for every server): on a machine this
      # small one stray stall or join timeout should not decide a ratio. The second attempt's
      # results stand. A clear miss ends the ladder at once.
      verdict=fail
      for attempt in 1 2; do
        # shellcheck disable=SC2086
        loadgen "$server" "$port" "$name" -u "$users" --room-size "$room" --rate "$rate" \
          --duration "$STEP_SECS" $SCENARIO || true
        code=2
        if [ -f "$BENCH_OUT/$name.results.json" ]; then
          if passed "$name"; then code=0; else code=$?; fi
        fi
        if [ "$code" = 0 ]; then verdict=pass; break; fi
        if [ "$code" != 1 ] || [ "$attempt" = 2 ]; then break; fi
        echo "   $workload rate $rate/s per user: missed narrowly, running it once more"
      done
      if [ "$verdict" = pass ]; then
        echo "   $workload rate $rate/s per user: pass"
      else
        echo "   $workload rate $rate/s per user: p99 > ${P99_MS} ms, errors or lost deliveries; stop stepping"
        break
      fi
    done
    stop_server
  done
done

# Headroom: is the load generator the limit? On a machine this small it costs about what the
# server costs per delivery, so each gets its own core and the server a CPU quota below one core
# (cgroup): stepping the rate up until the server uses its quota shows how busy the load
# generator still is then (a throttled process shows ~85-90% of its quota used). Skipped (with
# the reason) where taskset or a writable cgroup is missing.
if [ "$HEADROOM" = 1 ] && [[ " $SERVERS " == *" chatwire "* ]]; then
  echo "== chatwire: headroom (server on CPU 0 under a quota of $HEADROOM_QUOTA core, load generator on CPU 1)"
  if ! command -v taskset >/dev/null || [ "$(nproc)" -lt 2 ]; then
    echo "   skipped: needs taskset and 2 cores"
  elif ! cg=$(cpu_cgroup "chatwire-bench-$$" "$HEADROOM_QUOTA"); then
    echo "   skipped: no writable cgroup CPU controller (run as root, or with a delegated cgroup)"
  else
    port=$((port + 1))
    taskset -c 0 "$BIN/chatwire" serve --host 127.0.0.1 --port "$port" --database-url memory \
      --dev-tokens true --rate-limit-conn-per-ip 0 --rate-limit-rest-ip-factor 0 --max-sessions-per-ip 0 >"$BENCH_OUT/server-headroom.log" 2>&1 &
    SERVER_PID=$!
    echo "$SERVER_PID" >"$cg/cgroup.procs"
    wait_http "http://127.0.0.1:$port/healthz" 60
    for rate in $HEADROOM_RATES; do
      name="chatwire-headroom-$rate"
      LOADGEN_PREFIX="taskset -c 1" loadgen chatwire "$port" "$name" -u "$GROUP_USERS" \
        --room-size 50 --rate "$rate" --duration "$STEP_SECS" $SCENARIO || true
      used=$(python3 -c 'import json,sys; s=json.load(open(sys.argv[1]))["server"]; print(s["cpu_secs"]/s["window_secs"])' \
        "$BENCH_OUT/$name.results.json" 2>/dev/null || echo 0)
      echo "   rate $rate/s per user: server used $used of its $HEADROOM_QUOTA core"
      python3 -c 'import sys; sys.exit(0 if float(sys.argv[1]) >= 0.85 * float(sys.argv[2]) else 1)' \
        "$used" "$HEADROOM_QUOTA" && break
    done
    stop_server
    rmdir "$cg" 2>/dev/null || true
  fi
fi
fi

echo "== summary (elapsed $((SECONDS - started)) s)"
export HEADROOM_QUOTA
python3 - "$BENCH_OUT" "$P99_MS" "$BASELINE" "$SAVE" "$SERVERS" "$REF_GROUP_RATE" "$REF_DIRECT_RATE" <<'PY'
import json, os, sys, glob
out, p99_limit, baseline_path, save, servers = sys.argv[1], float(sys.argv[2]) * 1000, sys.argv[3], sys.argv[4] == "1", sys.argv[5].split()
ref_rate = {"group": float(sys.argv[6]), "direct": float(sys.argv[7])}

def pct(r, name, q):
    b = r["histograms"].get(name, [])
    total = sum(c for _, c in b); seen = 0
    for v, c in b:
        seen += c
        if seen >= q * total: return v
    return None

def load(name):
    p = os.path.join(out, name + ".results.json")
    return json.load(open(p)) if os.path.exists(p) else None

fig = {}
for s in servers:
    f = fig.setdefault(s, {})
    idle = load(f"{s}-idle")
    if idle and idle.get("server") and idle["connected"]:
        sv = idle["server"]
        f["rss_kib_per_idle_conn"] = (sv["rss_connected_kb"] - sv["rss_before_kb"]) / idle["connected"]
        if sv.get("connect_cpu_secs"):
            f["connect_us_per_user"] = sv["connect_cpu_secs"] * 1e6 / idle["connected"]
            f["connects_per_sec_2_cores"] = 2e6 / f["connect_us_per_user"]
    for w in ("group", "direct"):
        runs = sorted(glob.glob(os.path.join(out, f"{s}-{w}-*.results.json")),
                      key=lambda p: float(p.rsplit("-", 1)[1].replace(".results.json", "")))
        best, first = None, None
        for p in runs:
            r = json.load(open(p))
            rate = r["deliveries"] / r["send_secs"] if r["send_secs"] else 0
            p99 = pct(r, "delivery", 0.99)
            ok = p99 is not None and p99 <= p99_limit and not r["errors"] and r["deliveries"] >= r["expected_deliveries"] > 0
            step = float(p.rsplit("-", 1)[1].replace(".results.json", ""))
            usable = r.get("server") and r["deliveries"]
            if usable and (first is None or step == ref_rate[w]):
                first = r
            if ok and (best is None or rate > best[0]):
                best = (rate, p99)
        f[f"{w}_deliveries_per_sec"] = best[0] if best else 0.0
        f[f"{w}_p99_ms_at_best"] = best[1] / 1000 if best else None
        if first:
            f[f"{w}_server_us_per_delivery"] = first["server"]["cpu_secs"] * 1e6 / first["deliveries"]
            f[f"{w}_loadgen_us_per_delivery"] = first["server"]["loadgen_send_cpu_secs"] * 1e6 / first["deliveries"]

g, d = ref_rate["group"], ref_rate["direct"]
metrics = [("group_deliveries_per_sec", "rooms of 50: deliveries/s at p99<=50ms", True),
           ("group_server_us_per_delivery", f"rooms of 50: server CPU us/delivery @{g}/s", False),
           ("group_loadgen_us_per_delivery", f"rooms of 50: loadgen CPU us/delivery @{g}/s", None),
           ("direct_deliveries_per_sec", "1:1: deliveries/s at p99<=50ms", True),
           ("direct_server_us_per_delivery", f"1:1: server CPU us/message @{d}/s", False),
           ("direct_loadgen_us_per_delivery", f"1:1: loadgen CPU us/message @{d}/s", None),
           ("rss_kib_per_idle_conn", "RSS KiB per idle connection", False),
           ("connect_us_per_user", "connect + join: server CPU us per user", False),
           ("connects_per_sec_2_cores", "connect + join: per second on 2 cores (CPU)", True)]
fmt = lambda v: "-" if v is None else (f"{v:,.0f}" if v >= 100 else f"{v:.2f}")
print(f"{'metric':<46}" + "".join(f"{s:>14}" for s in servers))
for key, title, _ in metrics:
    print(f"{title:<46}" + "".join(f"{fmt(fig[s].get(key)):>14}" for s in servers))
if "chatwire" in fig:
    for peer in [s for s in servers if s != "chatwire"]:
        print(f"-- chatwire vs {peer} (higher is better for chatwire)")
        for key, title, higher in metrics:
            if higher is None: continue
            a, b = fig["chatwire"].get(key), fig[peer].get(key)
            if a and b:
                ratio = a / b if higher else b / a
                print(f"   {title:<44} {ratio:6.2f}x")
runs = sorted(glob.glob(os.path.join(out, "chatwire-headroom-*.results.json")),
              key=lambda p: float(p.rsplit("-", 1)[1].replace(".results.json", "")))
if runs:
    quota = float(os.environ.get("HEADROOM_QUOTA", "0.5"))
    print(f"-- load generator headroom: chatwire on CPU 0 with a quota of {quota} core, load generator on CPU 1")
    print(f"   {'rate/user':>9} {'deliveries/s':>13} {'p99 ms':>8} {'server':>16} {'load generator':>16}")
    rows = []
    for p in runs:
        r = json.load(open(p)); sv = r.get("server") or {}
        win = sv.get("window_secs") or 0
        if not win or not r["send_secs"]: continue
        server = sv["cpu_secs"] / win / quota
        lg = sv["loadgen_send_cpu_secs"] / win / max(sv.get("loadgen_cores") or 1, 1)
        p99 = pct(r, "delivery", 0.99)
        rows.append({"rate": float(p.rsplit("-", 1)[1].replace(".results.json", "")),
                     "deliveries_per_sec": r["deliveries"] / r["send_secs"],
                     "p99_ms": p99 / 1000 if p99 else None, "server_share_of_quota": server,
                     "loadgen_share_of_its_cores": lg})
        print(f"   {rows[-1]['rate']:>9} {rows[-1]['deliveries_per_sec']:>13,.0f} {fmt(rows[-1]['p99_ms']):>8} "
              f"{server*100:>9.0f}% quota {lg*100:>10.0f}% core")
    fig.setdefault("chatwire", {})["headroom"] = rows
    top = max(rows, key=lambda x: x["server_share_of_quota"], default=None)
    if top:
        # CFS throttling keeps a process at its quota slightly below 100% of it.
        verdict = ("the server saturated first" if top["server_share_of_quota"] >= 0.85 and top["loadgen_share_of_its_cores"] < 0.85
                   else "the server did not reach its quota" if top["server_share_of_quota"] < 0.85
                   else "both saturated: the load generator may be the limit")
        print(f"   busiest step: server {top['server_share_of_quota']*100:.0f}% of its quota, load generator "
              f"{top['loadgen_share_of_its_cores']*100:.0f}% of its core: {verdict}")
summary = os.path.join(out, "bench-summary.json")
json.dump(fig, open(summary, "w"), indent=2)
print(f"figures: {summary}; runs: {out}/*.results.json, *.svg, *.log")
if os.path.exists(baseline_path):
    base = json.load(open(baseline_path))
    print(f"-- compared with baseline {baseline_path} (now / baseline)")
    for s in servers:
        for key, title, _ in metrics:
            a, b = fig.get(s, {}).get(key), base.get(s, {}).get(key)
            if a and b:
                print(f"   {s:<13} {title:<44} {a / b:6.2f}x")
if save:
    os.makedirs(os.path.dirname(baseline_path), exist_ok=True)
    json.dump(fig, open(baseline_path, "w"), indent=2)
    print(f"saved baseline {baseline_path}")
PY
