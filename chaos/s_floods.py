"""Scenario 9, floods, with the default limits on: a bystander pair (from 127.0.0.2, its own
address) exchanges a message every 20 ms and measures `message:sent` and delivery latency, while
from 127.0.0.1 come, one after the other (each flood its own process, 3 s):
- 10,000 Engine.IO handshakes/s, a new connection each: at most the connection limit's burst
  plus its rate x time (RATE_LIMIT_CONN_PER_IP 100/s, burst 200) may open a session;
- 1,000 namespace reconnects/s on one connection (also connected to `/`, so that it stays open;
  `41/chat`, `40/chat`, a send in each): the sends stored may not exceed the per-connection
  limit's burst plus rate x time (20/s, burst 40; the per-user limit, 40/s, is on too);
- a REST search flood (2,000 `?q=` requests/s, one user, keep-alive): at most the per-user
  search limit's burst plus rate x time get an answer, the rest `429` with `Retry-After`.
The bystander's p99 must stay under 100 ms in every phase (and in a quiet phase first).
"""

import asyncio
import json
import os
import sys
import time

import cw

SECS = 3.0
B_IP = "127.0.0.2"
FLOOD = os.path.join(os.path.dirname(os.path.abspath(__file__)), "flood.py")


class Bystander:
    def __init__(self, port, cid):
        self.port = port
        self.cid = cid
        self.phase = "setup"
        self.sent_ms = {}
        self.delivery_ms = {}
        self.pending = {}

    def on_a(self, name, data):
        if name == "message:sent":
            t0, phase = self.pending.pop(data["tempId"], (None, None))
            if t0 is not None:
                self.sent_ms.setdefault(phase, []).append((time.monotonic() - t0) * 1000)

    def on_b(self, name, data):
        if name == "message:new" and data["content"].startswith("by "):
            _, t0, phase = data["content"].split(" ")
            self.delivery_ms.setdefault(phase, []).append((time.monotonic() - float(t0)) * 1000)

    async def run(self, stop):
        self.a = await cw.Sio(self.port, cw.token(1001), self.on_a).open(local_addr=B_IP)
        self.b = await cw.Sio(self.port, cw.token(1002), self.on_b).open(local_addr=B_IP)
        await self.b.join(self.cid)
        n = 0
        while not stop.is_set():
            n += 1
            now = time.monotonic()
            self.pending[f"b{n}"] = (now, self.phase)
            self.a.emit("message:send", {"conversationId": self.cid,
                                         "content": f"by {now} {self.phase}", "tempId": f"b{n}"})
            await asyncio.sleep(0.02)
        self.a.close()
        self.b.close()

    def p99(self, phase):
        s, d = self.sent_ms.get(phase, []), self.delivery_ms.get(phase, [])
        return max(cw.pct(s, 0.99), cw.pct(d, 0.99)), len(s), len(d)


async def flood(*args):
    p = await asyncio.create_subprocess_exec(
        sys.executable, FLOOD, *map(str, args), stdout=asyncio.subprocess.PIPE)
    out, _ = await p.communicate()
    return json.loads(out.decode().strip().splitlines()[-1])


async def main():
    env = {
        "RATE_LIMIT_CONN_PER_IP": "100", "RATE_LIMIT_CONN_BURST": "200",
        "RATE_LIMIT_REST_IP_FACTOR": "10", "MAX_SESSIONS_PER_IP": "1000",
        "RATE_LIMIT_PER_SOCKET": "20", "RATE_LIMIT_BURST": "40", "RATE_LIMIT_PER_USER": "40",
        "RATE_LIMIT_REST_SEARCHES": "2",
    }
    results = {}
    with cw.Database("floods") as db:
        server = cw.Server("floods", db.url, env)
        server.start()
        try:
            port = server.port
            cid_b = await cw.direct(port, cw.token(1001), 1002, "influencer")
            cid_n = await cw.direct(port, cw.token(2001), 2002, "influencer")
            cid_s = await cw.direct(port, cw.token(3001), 3002, "influencer")
            by = Bystander(port, cid_b)
            stop = asyncio.Event()
            task = asyncio.ensure_future(by.run(stop))
            await asyncio.sleep(1)
            by.phase = "quiet"
            await asyncio.sleep(SECS)
            by.phase = "handshakes"
            results["handshakes"] = await flood("handshakes", port, SECS, 10000)
            by.phase = "gap"
            await asyncio.sleep(2)
            by.phase = "namespace"
            results["namespace"] = await flood("namespace", port, SECS, 1000, cw.token(2001), cid_n)
            by.phase = "gap"
            await asyncio.sleep(2)
            by.phase = "search"
            results["search"] = await flood("search", port, SECS, 2000, cw.token(3001), cid_s)
            by.phase = "end"
            await asyncio.sleep(1)
            stop.set()
            await task
            nsp_stored = int(cw.psql(db.name, "SELECT count(*) FROM messages WHERE content LIKE 'nsp %'"))
            refused = server.metric("chatwire_connections_refused_total", 'reason="rate_limited"')
            rest429 = server.metric("chatwire_rest_rate_limited_total", 'kind="search"')
            alive = server.proc.poll() is None
        finally:
            server.stop()
    h, n, s = results["handshakes"], results["namespace"], results["search"]
    h_ok = h["outcomes"].get("ok", 0)
    h_cap = 1.2 * (200 + 100 * SECS) + 10
    n_cap = 1.2 * (40 + 20 * n["secs"]) + 5
    s_ok = s["outcomes"].get("ok", 0)
    s_cap = 1.2 * (4 + 2 * SECS) + 2
    s_limited = s["outcomes"].get("limited", 0)
    verdicts = {}
    lines = []
    for phase, limited, what in (
        ("quiet", True, "no flood"),
        ("handshakes", h_ok <= h_cap and h["attempts"] > 0,
         f"{h['attempts']} handshakes ({h['rate']}/s): {h['outcomes']}, sessions opened "
         f"{h_ok} (cap {h_cap:.0f}), refused at accept {refused:.0f}"),
        ("namespace", nsp_stored <= n_cap and n["attempts"] > 0,
         f"{n['attempts']} reconnects ({n['rate']}/s): {n['outcomes']}, sends stored "
         f"{nsp_stored} (cap {n_cap:.0f})"),
        ("search", s_ok <= s_cap and s_limited > 0,
         f"{s['attempts']} searches ({s['rate']}/s): {s['outcomes']} (cap {s_cap:.0f} ok), "
         f"429 counted {rest429:.0f}"),
    ):
        p99, ns, nd = by.p99(phase)
        verdicts[phase] = limited and p99 < 100 and ns > 0 and nd > 0
        lines.append(f"{phase}: {what}; bystander p99 {p99:.1f} ms ({ns} acks, {nd} deliveries)"
                     f" -> {'ok' if verdicts[phase] else 'NOT OK'}")
    print("\n".join(lines))
    ok = all(verdicts.values()) and alive
    figure = "; ".join(
        f"{p}: {'ok' if v else 'NOT OK'} p99 {by.p99(p)[0]:.0f} ms" for p, v in verdicts.items()
    ) + f"; handshakes {h_ok}/{h['attempts']} ok, nsp sends {nsp_stored}/{n['attempts']} stored, " \
        f"searches {s_ok}/{s['attempts']} ok"
    return ok, figure
