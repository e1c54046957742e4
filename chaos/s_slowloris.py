"""Scenario 3, slowloris: 1,000 connections at a time send their request headers one byte per
second and never finish them (each one the server closes is replaced, so 1,000 stay open the
whole time); each must be closed by the server within HEADER_READ_TIMEOUT_MS + 1 s of its
connect. Meanwhile 500 ordinary users (chatwire-loadgen, rooms of 10, 1 message/s each) keep
their p99 delivery latency under 100 ms.
"""

import asyncio
import json
import os
import time

import cw

SLOW = int(os.environ.get("CHAOS_SLOWLORIS_CONNS", "1000"))
USERS = int(os.environ.get("CHAOS_SLOWLORIS_USERS", "500"))
SEND_SECS = float(os.environ.get("CHAOS_SLOWLORIS_SECS", "20"))
HEADER_MS = 3000
LIMIT_S = HEADER_MS / 1000 + 1.0
GIVE_UP_S = HEADER_MS / 1000 + 6.0  # a connection still open then is recorded as never closed
HEAD = (
    b"GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    b"User-Agent: slowloris\r\nX-Padding: " + b"a" * 200
)


class Stats:
    def __init__(self):
        self.lifetimes = []  # seconds from connect to the server's close
        self.never_closed = 0
        self.connect_failures = 0
        self.open = 0
        self.peak = 0


async def one(port, stats):
    """One slow connection: connect, a header byte a second, until the server closes it."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(cw.HOST, port), 10)
    except (OSError, asyncio.TimeoutError):
        stats.connect_failures += 1
        await asyncio.sleep(0.5)
        return
    t0 = time.monotonic()
    stats.open += 1
    stats.peak = max(stats.peak, stats.open)

    async def trickle():
        for i in range(len(HEAD)):
            try:
                writer.write(HEAD[i:i + 1])
                await writer.drain()
            except (ConnectionError, OSError):
                return
            await asyncio.sleep(1.0)

    feeder = asyncio.ensure_future(trickle())
    try:
        while True:  # until EOF (a 408 or any answer is read, then the close)
            data = await asyncio.wait_for(reader.read(4096), GIVE_UP_S - (time.monotonic() - t0))
            if not data:
                break
        stats.lifetimes.append(time.monotonic() - t0)
    except (ConnectionError, OSError):
        stats.lifetimes.append(time.monotonic() - t0)
    except asyncio.TimeoutError:
        stats.never_closed += 1
    finally:
        stats.open -= 1
        feeder.cancel()
        writer.close()


async def keep_open(port, stats, stop):
    while not stop.is_set():
        await one(port, stats)


def loadgen_p99(path):
    """Delivery and message:sent p99 (ms) from a loadgen results file."""
    with open(path) as f:
        r = json.load(f)

    def p99(name):
        buckets = r["histograms"].get(name, [])
        total = sum(c for _, c in buckets)
        if not total:
            return None
        seen = 0
        for value, count in buckets:
            seen += count
            if seen >= 0.99 * total:
                return value / 1000
        return buckets[-1][0] / 1000

    return p99("delivery"), p99("sent"), p99("connect"), r


async def main():
    with cw.Database("slowloris") as db:
        server = cw.Server("slowloris", db.url, {"HEADER_READ_TIMEOUT_MS": str(HEADER_MS)})
        server.start()
        try:
            stats = Stats()
            stop = asyncio.Event()
            # The slow connections first: the users connect, join and send while they are open.
            slow = [asyncio.ensure_future(keep_open(server.port, stats, stop)) for _ in range(SLOW)]
            await asyncio.sleep(2)
            out = os.path.join(cw.OUT, "loadgen")
            lg = await asyncio.create_subprocess_exec(
                os.path.join(cw.BIN, "chatwire-loadgen"), "run", "-H",
                f"http://{cw.HOST}:{server.port}", "-u", str(USERS), "-r", "250",
                "--room-size", "10", "--rate", "1", "--duration", str(SEND_SECS),
                "--seed", "rest", "--out-dir", out, "--name", "slowloris",
                "--server-pid", str(server.pid), "--max-p99-ms", "100",
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
            )
            text, _ = await lg.communicate()
            with open(os.path.join(cw.OUT, "slowloris.loadgen.txt"), "wb") as f:
                f.write(text)
            stop.set()
            await asyncio.gather(*slow)
            server_alive = server.proc.poll() is None
        finally:
            server.stop()
    p99, sent99, connect99, r = loadgen_p99(os.path.join(out, "slowloris.results.json"))
    closed = len(stats.lifetimes)
    worst = max(stats.lifetimes, default=0.0)
    late = sum(1 for t in stats.lifetimes if t > LIMIT_S)
    print(f"slow connections: {closed} closed by the server (peak {stats.peak} open at once), "
          f"{stats.never_closed} never closed, {stats.connect_failures} connect failures; "
          f"lifetime p50 {cw.pct(stats.lifetimes, .5):.2f} s, max {worst:.2f} s, "
          f"{late} over {LIMIT_S:.1f} s")
    print(f"loadgen (exit {lg.returncode}): {r['connected']}/{r['users']} connected, "
          f"{r['sent_acks']}/{r['sends']} acked, {r['deliveries']}/{r['expected_deliveries']} "
          f"delivered, errors {r['errors']}, delivery p99 {p99} ms, message:sent p99 {sent99} ms, "
          f"connect p99 {connect99} ms")
    ok = (
        closed >= SLOW and stats.peak >= SLOW * 0.95 and stats.never_closed == 0 and late == 0
        and stats.connect_failures == 0 and lg.returncode == 0 and p99 is not None and p99 < 100
        and r["connected"] == USERS and server_alive
    )
    figure = (
        f"{closed} slow conns (peak {stats.peak} open) closed after max {worst:.2f} s "
        f"(limit {LIMIT_S:.1f}), {stats.never_closed} never; {USERS} users delivery p99 "
        f"{p99} ms, sent p99 {sent99} ms, connect p99 {connect99} ms"
    )
    return ok, figure
