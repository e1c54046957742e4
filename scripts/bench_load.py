#!/usr/bin/env python3
"""The load part of `make bench`: every server, in two setups, at fixed loads and by knee search.

Setups: "pinned" (each server on CPU 0 with `taskset -c 0`, the load generator on CPU 1) and
"shared" (no pinning: server and load generator share both cores). Servers: chatwire on the
memory store ("chatwire"), chatwire on PostgreSQL ("chatwire-pg", a database this script
recreates), and the peers in bench/peers/ ("socketioxide", "node").

Per setup and workload ("direct": 1:1, "group": rooms of 50) it runs rounds; a round gives every
server that still needs one its next load point, and runs the round REPEATS times with the
servers interleaved, each repeat starting one server later (A B C B C A C A B). A load point
passes when the majority of its runs had delivery p99 <= P99_MS, no errors and every delivery
made. Fixed loads come first (their runs are
the CPU and latency figures; a peer's fixed loads above one it failed are skipped, chatwire's all
run); then a knee search. It tries the saved baseline's knee and 5%
beside it first when there is one (an unchanged knee is bracketed in two probes); while no load
has failed it goes up, while none has passed it goes down, in steps that start at STEP_UP (<= 25%)
and grow while the verdict stays the same (x1.25, x1.56, x2.44, then x4 at most), so a knee near the last
one is bracketed finely and one that moved far, or collapsed, is still found in a few probes;
then bisection in ratio until first fail / last pass <= 1 + KNEE_TOL. MAX_PROBES bounds the
probes once a load passed; MAX_DESCENTS the probes on the way down while nothing passed (3; 0:
down to a floor, 1/16 of the lowest fixed load, as `--save-baseline` and BENCH_FULL do), so a
knee that collapsed further is reported below the lowest probe. Each search records its
bracket (first fail / last pass); the report lists knees whose bracket is wider than 1 + KNEE_TOL.

Idle (first setup, once per server before the loads): RSS per idle connection and server CPU per
connect + join, IDLE_USERS users in rooms of 10, REPEATS runs, each in fresh server processes.

Writes <out>/runs.json: the meta (commit, cores, load average before the run, config), every
run (server, setup, workload, load, repeat, verdict, p50, p99, server CPU) and each knee search's
probes. scripts/bench_report.py turns it into figures, the table and the gate.

After every run the next one waits until the machine is idle again (SETTLE_BUSY, SETTLE_SECS): a
server that fell behind goes on working off its backlog after its load generator left, and
with the servers sharing CPU 0 that work would land in the next server's run (every server's
first run of a point passing and the next two failing, in a run that skipped this).

Environment (scripts/bench.sh sets the presets): SERVERS, SHARED_SERVERS, SETUPS, REPEATS, STEP_SECS, DRAIN_SECS, RAMP_SECS,
IDLE_RAMP_SECS, LOAD_SECS,
DIRECT_USERS, GROUP_USERS, DIRECT_FIXED, GROUP_FIXED, FIXED_SETUPS, KNEE_TOL, STEP_UP,
MAX_PROBES, MAX_DESCENTS, P99_MS, IDLE_USERS, BASELINE, BENCH_DATABASE_URL, BENCH_CHATWIRE_QUOTA (cores: runs
the chatwire servers under test, not the baseline's build, in a cgroup with that CPU quota, to show what the gate catches),
BENCH_BASE_BIN (another chatwire binary, e.g. a build of an earlier commit: add the server
"chatwire-base" to SERVERS to run it on the memory store beside the others, "chatwire-base-pg" on
PostgreSQL, an A/B in one run).
"""
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
BIN = os.path.join(TARGET, "release")
OUT = os.environ.get("BENCH_OUT", os.path.join(TARGET, "loadtest", "bench"))
ENV = os.environ.get


def floats(name, default):
    return [float(x) for x in ENV(name, default).split()]


SERVERS = ENV("SERVERS", "chatwire chatwire-norec chatwire-pg socketioxide node").split()
# chatwire-norec: the same binary and store as chatwire with connection state recovery off
# (RECOVERY_WINDOW=0), run at the fixed loads only (no knee search, no idle run): what recovery
# costs a live message, measured beside it in the same run.
FIXED_ONLY = ("chatwire-norec",)
# Servers of the shared setup (default: all but node, the slowest peer, reported pinned only,
# and chatwire-norec, whose fixed loads are pinned; the time bound of `make bench-check` needs it).
SHARED_SERVERS = [s for s in ENV("SHARED_SERVERS", " ".join(
    s for s in SERVERS if s not in ("node",) + FIXED_ONLY)).split() if s in SERVERS]
SETUPS = ENV("SETUPS", "pinned shared").split()
REPEATS = int(ENV("REPEATS", "3"))
STEP_SECS = float(ENV("STEP_SECS", "1.5"))
# The longest drain: a run ends as soon as its last delivery arrived.
DRAIN_SECS = float(ENV("DRAIN_SECS", "0.5"))
# Users connect and join over this long before the send phase (4,000 users at 8,000 a second
# cost the server about 0.4 s of CPU on its core: a shorter ramp only queues them).
RAMP_SECS = float(ENV("RAMP_SECS", "0.5"))
# Idle runs ramp over 1 s: their RSS is read right after the last join, and a faster connect
# storm leaves more behind (4,000 users pinned, fresh servers, 3 runs each: 4.9-5.2 KiB per
# connection over 1 s, 5.5-6.0 over 0.5 s).
IDLE_RAMP_SECS = float(ENV("IDLE_RAMP_SECS", "1"))
USERS = {"direct": int(ENV("DIRECT_USERS", "4000")), "group": int(ENV("GROUP_USERS", "2000"))}
ROOM = {"direct": 2, "group": 50}
FIXED = {"direct": floats("DIRECT_FIXED", "10000 15000"),
         "group": floats("GROUP_FIXED", "98000")}
FIXED_SETUPS = ENV("FIXED_SETUPS", "pinned").split()
KNEE_TOL = float(ENV("KNEE_TOL", "0.05"))
STEP_UP = float(ENV("STEP_UP", "1.25"))
# The largest step of a search that keeps going one way (see grown_step).
MAX_STEP = float(ENV("MAX_STEP", "4"))
MAX_PROBES = int(ENV("MAX_PROBES", "2"))
# Probes on the way down while nothing passed (0: down to the floor). Three reach 4.8x below the
# first failing load (x1.25, x1.56, x2.44 after the baseline's knee and 5% beside it); a knee
# lower still is reported as below the lowest probe, which the gate already fails, and measuring
# it exactly cost a slow day's check 4-8 more probes per knee.
MAX_DESCENTS = int(ENV("MAX_DESCENTS", "3"))
P99_MS = float(ENV("P99_MS", "50"))
IDLE_USERS = int(ENV("IDLE_USERS", "4000"))
BASELINE = ENV("BASELINE", os.path.join(ROOT, "bench", "baseline", "bench.json"))
DATABASE_URL = ENV("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/chatwire_bench")
QUOTA = ENV("BENCH_CHATWIRE_QUOTA", "")
BASE_BIN = ENV("BENCH_BASE_BIN", "")
WORKLOADS = ENV("WORKLOADS", "direct group").split()
# After each run, until the machine is idle again (the servers share CPU 0 when pinned, and a
# server that fell behind keeps working off its backlog after the load generator left: that
# work would run inside the next server's run): under SETTLE_BUSY cores busy over 0.3 s, for at
# most SETTLE_SECS.
SETTLE_SECS = float(ENV("SETTLE_SECS", "10"))
SETTLE_BUSY = float(ENV("SETTLE_BUSY", "0.1"))
# The load part's time (0: none). Each setup and workload gets a share of what is left when its
# loads start (after the idle runs), in proportion to its servers; once its share is spent, a
# knee search that already probed past the fixed loads stops after its round and is reported as
# cut short by the time (a noisy machine needs more probes to bracket a knee: checks of one
# build took 201 and 255 runs, 624 and 845 s).
LOAD_SECS = float(ENV("LOAD_SECS", "0"))

procs = {}  # server name -> Popen
cgroups = []
# Each workload keeps its own users from run to run: a 1:1 conversation is then found, not
# created, when a run seeds it again (creating 2,000 in PostgreSQL takes seconds per run).
FIRST_USER = {"direct": 1, "group": 100_001, "idle": 200_001}


def log(msg):
    print(msg, flush=True)


def sh(cmd):
    return subprocess.run(cmd, shell=True, capture_output=True, text=True).stdout.strip()


def cpu_cgroup(cores):
    """A cgroup (v1 `cpu` or v2 `cpu.max`) holding `cores` of CPU time; its directory or None."""
    quota = int(float(cores) * 100000)
    name = f"chatwire-bench-{os.getpid()}"
    try:
        if os.path.exists("/sys/fs/cgroup/cpu/cpu.cfs_quota_us"):
            d = f"/sys/fs/cgroup/cpu/{name}"
            os.makedirs(d, exist_ok=True)
            open(f"{d}/cpu.cfs_period_us", "w").write("100000")
            open(f"{d}/cpu.cfs_quota_us", "w").write(str(quota))
        else:
            d = f"/sys/fs/cgroup/{name}"
            os.makedirs(d, exist_ok=True)
            open(f"{d}/cpu.max", "w").write(f"{quota} 100000")
    except OSError as e:
        sys.exit(f"BENCH_CHATWIRE_QUOTA needs a writable cgroup CPU controller: {e}")
    cgroups.append(d)
    return d


def database_url(name):
    """chatwire-pg's database, or the baseline's build's own beside it (chatwire-base-pg): each
    server drops and creates its database when it starts, which must not hit the other's."""
    if name != "chatwire-base-pg":
        return DATABASE_URL
    head, tail = DATABASE_URL.rsplit("/", 1)
    db, _, query = tail.partition("?")
    return f"{head}/{db}_base" + (f"?{query}" if query else "")


def reset_database(url):
    admin = url.rsplit("/", 1)[0] + "/postgres"
    db = url.rsplit("/", 1)[1].split("?")[0]
    for sql in (f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)', f'CREATE DATABASE "{db}"'):
        r = subprocess.run(["psql", admin, "-qc", sql], capture_output=True, text=True)
        if r.returncode:
            sys.exit(f"chatwire-pg needs PostgreSQL at {admin}: {r.stderr.strip()}")


def wait_ready(name, port, proc, secs=60):
    """Until chatwire answers /healthz, or a peer accepts TCP connections."""
    deadline = time.time() + secs
    while time.time() < deadline:
        if proc.poll() is not None:
            sys.exit(f"{name} exited at start (see {OUT}/server-{name}.log)")
        try:
            if name.startswith("chatwire"):
                urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1)
            else:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.2)
    sys.exit(f"{name} did not answer on port {port}")


def start(name, port, setup):
    if name in ("chatwire-pg", "chatwire-base-pg"):
        reset_database(database_url(name))
    if name.startswith("chatwire"):
        db = database_url(name) if name in ("chatwire-pg", "chatwire-base-pg") else "memory"
        binary = f"{BIN}/chatwire"
        if name.startswith("chatwire-base"):
            if not BASE_BIN:
                sys.exit("chatwire-base needs BENCH_BASE_BIN (the other chatwire binary)")
            binary = BASE_BIN
        if name == "chatwire-norec":
            cmd = [binary, "serve", "--recovery-window", "0"]
        else:
            cmd = [binary, "serve"]
        cmd += ["--host", "127.0.0.1", "--port", str(port),
                "--database-url", db, "--dev-tokens", "true", "--rate-limit-conn-per-ip", "0",
               # one load generator address opens every session and seeds every conversation
               "--rate-limit-rest-ip-factor", "0", "--max-sessions-per-ip", "0",
               # capacity, not policy: the peers have no event rate limits either
               "--rate-limit-per-socket", "0", "--rate-limit-per-user", "0"]
    else:
        cmd = shlex.split(sh(f"{ROOT}/scripts/peers.sh bin {name} {port}"))
    if setup == "pinned":
        cmd = ["taskset", "-c", "0"] + cmd
    logf = open(f"{OUT}/server-{name}.log", "a")
    proc = subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT)
    if QUOTA and name.startswith("chatwire") and not name.startswith("chatwire-base"):
        # The build under test only: the baseline's build beside it is the yardstick.
        d = cgroups[0] if cgroups else cpu_cgroup(QUOTA)
        # cgroup.procs moves the whole process, threads included (v1 and v2).
        open(f"{d}/cgroup.procs", "w").write(str(proc.pid))
    procs[name] = (proc, port)
    wait_ready(name, port, proc)


def stop_all():
    for name, (proc, _) in list(procs.items()):
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        del procs[name]


def busy_ticks():
    """(busy, total) CPU ticks of the whole machine so far (/proc/stat)."""
    v = [int(x) for x in open("/proc/stat").readline().split()[1:]]
    idle = v[3] + v[4]  # idle, iowait
    return sum(v) - idle, sum(v)


def settle():
    """Waits until the machine is idle (under SETTLE_BUSY cores busy over 0.3 s; at most
    SETTLE_SECS); returns the seconds waited."""
    began = time.time()
    cores = os.cpu_count() or 1
    before = busy_ticks()
    while time.time() - began < SETTLE_SECS:
        time.sleep(0.3)
        now = busy_ticks()
        busy, total = now[0] - before[0], now[1] - before[1]
        if total and busy / total * cores < SETTLE_BUSY:
            break
        before = now
    return round(time.time() - began, 2)


def percentile(buckets, q):
    total = sum(c for _, c in buckets)
    seen = 0
    for v, c in buckets:
        seen += c
        if seen >= q * total:
            return v / 1000
    return None


def loadgen(name, server, setup, workload, load, repeat, idle=False):
    """One load generator run; returns its record for runs.json."""
    proc, port = procs[server]
    users = IDLE_USERS if idle else USERS[workload]
    room = 10 if idle else ROOM[workload]
    first = FIRST_USER["idle" if idle else workload]
    rate = 0 if idle else load / (users * (room - 1))
    cmd = [f"{BIN}/chatwire-loadgen", "run", "-H", f"http://127.0.0.1:{port}",
           "--seed", "rest" if server.startswith("chatwire") else "none",
           "--server-pid", str(proc.pid), "--out-dir", OUT, "--name", name,
           "--no-goose-reports", "--progress-secs", "1", "--first-user", str(first),
           "-u", str(users), "-r", str(round(users / (IDLE_RAMP_SECS if idle else RAMP_SECS))),
           "--room-size", str(room),
           "--no-typing", "--no-read", "--drain", str(DRAIN_SECS)]
    cmd += ["--idle", "--duration", "0.5"] if idle else [
        "--rate", f"{rate:.6f}", "--duration", str(STEP_SECS)]
    if not idle and server.startswith("chatwire"):
        # Seeded once per server process and workload (the file names the server's port): finding
        # 2,000 existing conversations again took chatwire-pg 1.9 s before every run.
        cmd += ["--conversations-file", f"{OUT}/{server}-{workload}.conversations.json"]
    if setup == "pinned":
        cmd = ["taskset", "-c", "1"] + cmd
    path = f"{OUT}/{name}.results.json"
    if os.path.exists(path):
        os.remove(path)
    began = time.time()
    with open(f"{OUT}/{name}.log", "w") as logf:
        subprocess.run(cmd, stdout=logf, stderr=subprocess.STDOUT, timeout=STEP_SECS + 180)
    rec = {"name": name, "server": server, "setup": setup, "workload": workload,
           "load": load, "repeat": repeat, "kind": "idle" if idle else "load",
           "wall_secs": round(time.time() - began, 2), "pass": False,
           "settle_secs": settle()}
    if not os.path.exists(path):
        rec["error"] = "no results (see log)"
        return rec
    r = json.load(open(path))
    sv = r.get("server") or {}
    if idle:
        if r["connected"]:
            rec["rss_kib_per_conn"] = (sv.get("rss_connected_kb", 0) - sv.get("rss_before_kb", 0)) / r["connected"]
            rec["connect_cpu_us_per_user"] = sv.get("connect_cpu_secs", 0) * 1e6 / r["connected"]
        rec["pass"] = r["connected"] == users
        return rec
    errors = sum(r["errors"].values()) if isinstance(r["errors"], dict) else len(r["errors"])
    buckets = r["histograms"].get("delivery", [])
    p99 = percentile(buckets, 0.99)
    rec.update(p50_ms=percentile(buckets, 0.50), p99_ms=p99, errors=errors,
               deliveries=r["deliveries"], expected=r["expected_deliveries"],
               per_sec=r["deliveries"] / r["send_secs"] if r["send_secs"] else 0)
    if sv.get("window_secs") and r["deliveries"]:
        rec["cpu_us"] = sv["cpu_secs"] * 1e6 / r["deliveries"]
        rec["server_cores"] = sv["cpu_secs"] / sv["window_secs"]
        rec["loadgen_share"] = sv["loadgen_send_cpu_secs"] / sv["window_secs"] / max(sv.get("loadgen_cores") or 1, 1)
    rec["pass"] = (p99 is not None and p99 <= P99_MS and not errors
                   and r["deliveries"] >= r["expected_deliveries"] > 0)
    return rec


def baseline_knees():
    """Knee medians from the saved baseline, by (setup, server, workload): the search's start."""
    try:
        base = json.load(open(BASELINE))
    except (OSError, ValueError):
        return {}
    # A knee the baseline's search left unbracketed (no load failed, or none passed) is only a
    # bound: it is a place to start, not one to look beside (see Knee.seed_tight).
    tight = {(s["setup"], s["server"], s["workload"]) for s in base.get("searches", [])
             if s.get("last_pass") and s.get("first_fail")}
    return {(f["setup"], f["server"], f["workload"]):
            (f["median"], (f["setup"], f["server"], f["workload"]) in tight)
            for f in base.get("figures", []) if f.get("metric") == "knee" and f.get("median")}


class Knee:
    """Knee search state of one server in one setup and workload."""

    def __init__(self, seed, fixed, start, search=True, seed_tight=True, skip_above_fail=False):
        self.seed, self.fixed, self.start, self.search = seed, sorted(fixed), start, search
        # A peer's fixed loads above one it already failed are not run (they fail too, and a
        # failing run waits out its backlog: node's cost ~10 s each); chatwire's always run.
        self.skip_above_fail = skip_above_fail
        self.skipped = []  # fixed loads not run
        # Whether the seed was bracketed where it came from: only then is 5% beside it worth a
        # probe (an unbracketed seed is a bound: the search climbs or descends from it).
        self.seed_tight = seed_tight
        self.verdict = {}  # load -> majority pass
        self.probes = 0  # probes once a load passed (bounded by MAX_PROBES)
        self.descents = 0  # growing steps taken below every failing load while nothing passed
        self.down = 0  # probes of any kind while nothing passed (bounded by MAX_DESCENTS)
        self.ascents = 0  # probes above every passing load while nothing failed
        self.cut = False  # stopped by LOAD_SECS, not by its bracket or its probes

    def searched(self):
        """Whether a search probe ran (past the fixed loads: a cut may stop the search only then)."""
        return self.probes + self.down > 0

    def lo(self):
        ok = [x for x, v in self.verdict.items() if v and all(
            self.verdict[y] for y in self.verdict if y < x)]
        return max(ok, default=None)

    def hi(self):
        return min((x for x, v in self.verdict.items() if not v), default=None)

    def untried(self, x):
        return bool(x) and round(x) not in self.verdict

    def next(self):
        while self.fixed:
            x = self.fixed.pop(0)
            if self.skip_above_fail and any(not v for y, v in self.verdict.items() if y <= x):
                self.skipped.append(x)
                continue
            return x
        if not self.search:
            return None
        lo, hi = self.lo(), self.hi()
        # (1.001: loads are rounded to whole numbers)
        if hi is not None and lo is not None and hi <= lo * (1 + KNEE_TOL) * 1.001:
            return None
        if lo is None and hi is not None:
            # Nothing passed yet: the knee is below every load tried. Go down whatever
            # MAX_PROBES says, until a load passes or the floor: first to the baseline's knee,
            # then in steps that start at STEP_UP (<= 25%) and grow while loads keep failing
            # (x1.25, x1.56, x2.44, then x4 below the lowest failure), so a knee near the fixed
            # loads is bracketed finely and a collapsed one is still found in a few probes.
            if hi <= KNEE_FLOOR or (MAX_DESCENTS and self.down >= MAX_DESCENTS):
                return None
            self.down += 1
            if self.seed and self.seed < hi and self.untried(self.seed):
                cand = self.seed
            elif hi == self.seed and self.seed_tight:
                cand = hi / (1 + KNEE_TOL)
            else:
                cand = hi / grown_step(self.descents)
                self.descents += 1
            return round(max(cand, KNEE_FLOOR))
        if self.probes >= MAX_PROBES:
            return None
        if hi is not None and lo is not None:
            # The baseline's knee and next to it first (an unchanged knee is then bracketed in
            # two probes), else bisection in ratio (the geometric mean): the bracket shrinks by its
            # square root.
            near = [self.seed] + ([lo * (1 + KNEE_TOL) if lo == self.seed else None,
                                   hi / (1 + KNEE_TOL) if hi == self.seed else None]
                                  if self.seed_tight else [])
            cand = next((x for x in near if x and lo < x < hi and self.untried(x)),
                        (lo * hi) ** 0.5)
        elif lo is not None:
            # Nothing failed yet: up, at the baseline's knee and 5% above it first, then in steps
            # that grow like the way down (x1.25, x1.56, x2.44 above the highest pass).
            if self.seed and self.seed > lo and self.untried(self.seed):
                cand = self.seed
            elif lo == self.seed and self.seed_tight:
                cand = lo * (1 + KNEE_TOL)
            else:
                cand = lo * grown_step(self.ascents)
                self.ascents += 1
        else:
            cand = self.seed or self.start
        self.probes += 1
        return round(cand)

    def bracket(self):
        """first fail / last pass: how finely the knee is known (None: not bracketed)."""
        lo, hi = self.lo(), self.hi()
        return round(hi / lo, 3) if lo and hi else None


def rotated(items, k):
    """`items` starting at its k-th (wrapping): the order of the k-th repeat of a round."""
    k %= max(len(items), 1)
    return items[k:] + items[:k]


def grown_step(n):
    """The n-th step of a search that keeps one verdict: STEP_UP squared n times (x1.25, x1.56,
    x2.44), at most MAX_STEP. Squared without a bound, the fifth step was x35: a search seeded
    at 1,055 deliveries/s went 5,032, 29,993, then 1,065,565, and the probes left could not
    bisect that."""
    return min(STEP_UP ** (2 ** n), MAX_STEP)


FIXED_ALL = [x for v in FIXED.values() for x in v]
# Lowest load a knee search tries: a knee below it is reported as "below the lowest probe".
KNEE_FLOOR = min(FIXED_ALL) / 16


def main():
    # A missing binary would fail every run, which reads as a collapsed knee, not as a setup error.
    needed = [f"{BIN}/chatwire-loadgen"]
    needed += [f"{BIN}/chatwire"] if any(s.startswith("chatwire") for s in SERVERS) else []
    needed += [BASE_BIN] if any(s.startswith("chatwire-base") for s in SERVERS) and BASE_BIN else []
    missing = [b for b in needed if not os.access(b, os.X_OK)]
    if missing:
        sys.exit(f"bench: not built: {', '.join(missing)} (cargo build --release -p chatwire "
                 "-p chatwire-loadgen)")
    os.makedirs(OUT, exist_ok=True)
    for f in os.listdir(OUT):
        if f.endswith((".results.json", ".svg", ".log", ".conversations.json")):
            os.remove(os.path.join(OUT, f))
    meta = {
        "commit": sh(f"git -C {ROOT} rev-parse --short HEAD"),
        # (the baseline files themselves excepted: --save-baseline rewrites them as it runs)
        "dirty": bool(sh(f"git -C {ROOT} status --porcelain --untracked-files=no -- . ':!bench/baseline'")),
        "base_commit": ENV("BENCH_BASE_COMMIT") or None,
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "cores": os.cpu_count(),
        "cpu_model": sh("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2").strip(),
        "loadavg_before": [float(x) for x in open("/proc/loadavg").read().split()[:3]],
        "config": {"servers": SERVERS, "shared_servers": SHARED_SERVERS, "setups": SETUPS,
                   "workloads": WORKLOADS,
                   "repeats": REPEATS,
                   "step_secs": STEP_SECS, "drain_secs": DRAIN_SECS, "ramp_secs": RAMP_SECS, "idle_ramp_secs": IDLE_RAMP_SECS, "users": USERS,
                   "fixed": FIXED, "fixed_setups": FIXED_SETUPS, "knee_tol": KNEE_TOL,
                   "step_up": STEP_UP, "p99_ms": P99_MS, "idle_users": IDLE_USERS,
                   "max_probes": MAX_PROBES, "max_descents": MAX_DESCENTS,
                   "settle_secs": SETTLE_SECS, "settle_busy": SETTLE_BUSY,
                   "load_secs": LOAD_SECS or None,
                   "chatwire_cpu_quota": float(QUOTA) if QUOTA else None},
    }
    log(f"== load: {' '.join(SERVERS)}; setups {' '.join(SETUPS)}; {REPEATS} runs per point "
        f"(interleaved), {STEP_SECS:g} s each; load average before: {meta['loadavg_before']}")
    if QUOTA:
        log(f"   chatwire servers held to {QUOTA} core (cgroup quota)")
    if LOAD_SECS:
        log(f"   time for the load: {LOAD_SECS:.0f} s (LOAD_SECS)")
    seeds = baseline_knees()
    runs, searches, found = [], [], {}
    began = time.time()
    port = 3600
    phases = [(setup, workload) for setup in SETUPS for workload in WORKLOADS]
    # (per server, a phase with fixed loads took about as long as one without: the shared
    # setup's runs are slower, both cores being loaded)
    weight = {ph: len(SHARED_SERVERS if ph[0] == "shared" else SERVERS) for ph in phases}
    try:
        for setup in SETUPS:
            servers = SHARED_SERVERS if setup == "shared" else SERVERS
            for workload in WORKLOADS:
                if setup == SETUPS[0] and workload == WORKLOADS[0] and IDLE_USERS:
                    # Idle figures first, REPEATS times, each run in a fresh process of every
                    # server (a process that already held connections reuses their freed heap,
                    # which would make later runs read smaller), interleaved like the loads.
                    idle = [s for s in servers if s not in FIXED_ONLY]
                    for rep in range(REPEATS):
                        for s in idle:
                            port += 1
                            start(s, port, setup)
                        for s in rotated(idle, rep):
                            rec = loadgen(f"{setup}-{s}-idle-{rep}", s, setup, "idle", 0, rep, idle=True)
                            runs.append(rec)
                            log(f"   {setup:<6} {s:<12} idle: {rec.get('rss_kib_per_conn', 0):.2f} KiB/conn, "
                                f"connect+join {rec.get('connect_cpu_us_per_user', 0):.0f} us CPU/user")
                        stop_all()
                # This phase's share of the time left (the idle runs above spend the first's).
                left = phases[phases.index((setup, workload)):]
                share = (LOAD_SECS - (time.time() - began)) * weight[(setup, workload)] \
                    / sum(weight[ph] for ph in left)
                deadline = time.time() + share if LOAD_SECS else None
                for s in servers:
                    port += 1
                    start(s, port, setup)
                fixed = FIXED[workload] if setup in FIXED_SETUPS else []
                # The search starts at the baseline's knee, else at this run's knee in the other setup.
                def knee(s):
                    # The baseline's build starts where the baseline's knee was.
                    seed, tight = (seeds.get((setup, s, workload))
                                   or seeds.get((setup, s.replace("-base", ""), workload))
                                   or (found.get((s, workload)), False))
                    return Knee(seed, fixed, max(FIXED[workload]), search=s not in FIXED_ONLY,
                                seed_tight=tight, skip_above_fail=not s.startswith("chatwire"))
                state = {s: knee(s) for s in servers}
                pending = {s: state[s].next() for s in servers}
                while any(v is not None for v in pending.values()):
                    todo = [(s, x) for s, x in pending.items() if x is not None]
                    results = {s: [] for s, _ in todo}
                    for rep in range(REPEATS):
                        # Each repeat starts one server later (A B C, B C A, C A B), so no server
                        # always runs right after the same other one (docs/bench.md).
                        for s, x in rotated(todo, rep):
                            rec = loadgen(f"{setup}-{s}-{workload}-{x:.0f}-{rep}", s, setup, workload,
                                          x, rep)
                            rec["fixed"] = x in fixed
                            runs.append(rec)
                            results[s].append(rec)
                    for s, x in todo:
                        rs = results[s]
                        ok = sum(r["pass"] for r in rs) * 2 > len(rs)
                        state[s].verdict[x] = ok
                        p99 = sorted(r.get("p99_ms") or float("inf") for r in rs)
                        waited = sum(r.get("settle_secs", 0) for r in rs)
                        log(f"   {setup:<6} {workload:<6} {s:<12} {x:>9,.0f}/s: "
                            f"{'pass' if ok else 'FAIL'} ({sum(r['pass'] for r in rs)}/{len(rs)}), "
                            f"p99 {' '.join(f'{v:.1f}' for v in p99)} ms"
                            + (f", {waited:.1f} s to settle after" if waited >= 1 else ""))
                        # (searched before next(): a search's first probe always runs)
                        over = deadline and time.time() > deadline and state[s].searched()
                        pending[s] = state[s].next()
                        if over and pending[s] is not None:
                            pending[s], state[s].cut = None, True
                for s in servers:
                    k = state[s]
                    if k.lo():
                        found[(s, workload)] = k.lo()
                    searches.append({"setup": setup, "workload": workload, "server": s,
                                     "seed": k.seed, "verdict": {str(x): v for x, v in k.verdict.items()},
                                     "last_pass": k.lo(), "first_fail": k.hi(),
                                     "bracket": k.bracket(), "skipped_fixed": k.skipped,
                                     "cut_by_time": k.cut})
                stop_all()
                log(f"   ({time.time() - began:.0f} s)")
    finally:
        stop_all()
        for d in cgroups:
            try:
                os.rmdir(d)
            except OSError:
                pass
    meta["load_secs"] = round(time.time() - began)
    json.dump({"meta": meta, "runs": runs, "searches": searches},
              open(f"{OUT}/runs.json", "w"), indent=1)
    meta["settle_secs"] = round(sum(r.get("settle_secs", 0) for r in runs))
    log(f"runs: {OUT}/runs.json ({len(runs)} runs, {meta['load_secs']} s, of which "
        f"{meta['settle_secs']} s waiting for the machine to settle between runs)")


if __name__ == "__main__":
    main()
