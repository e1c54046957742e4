"""Scenario 5, churn: 10,000 cycles of connect (WebSocket, `/chat` CONNECT), join a
conversation, send a message (waiting for `message:sent`), disconnect; 50 at a time. After a
warm-up of 500 cycles the server's RSS and open files (/proc/PID/fd) are read; after the 10,000
(and the server's connection gauge back to 0), both must be within 5% of those levels. A second
10,000 follow, not judged: their RSS tells growth that stops from growth per cycle.
"""

import asyncio
import os
import time

import cw

CYCLES = int(os.environ.get("CHAOS_CHURN_CYCLES", "10000"))
WORKERS = 50
WARM = 500


async def cycle(port, uid, cid, n):
    done = asyncio.get_running_loop().create_future()

    def on(name, data):
        if name in ("message:sent", "message:error") and not done.done():
            done.set_result((name, data))

    c = cw.Sio(port, cw.token(uid), on)
    try:
        await c.open()
        await c.join(cid)
        c.emit("message:send", {"conversationId": cid, "content": f"churn {n}", "tempId": f"c{n}"})
        name, data = await asyncio.wait_for(done, 10)
        if name != "message:sent":
            raise RuntimeError(f"send: {data}")
    finally:
        c.close()


async def run(port, convs, first, count, failures):
    nxt = [first]

    async def worker(w):
        uid, cid = convs[w]
        while nxt[0] < first + count:
            n = nxt[0]
            nxt[0] += 1
            try:
                await cycle(port, uid, cid, n)
            except Exception as e:  # counted, the cycle is a failure
                failures.append(f"{type(e).__name__}: {e}")

    await asyncio.gather(*(worker(w) for w in range(WORKERS)))


async def main():
    with cw.Database("churn") as db:
        server = cw.Server("churn", db.url, {"RATE_LIMIT_PER_SOCKET": "0"})
        server.start()
        try:
            # One 1:1 conversation per worker: user 2w+1 (brand) with 2w+2 (influencer).
            convs = []
            for w in range(WORKERS):
                uid = 2 * w + 1
                convs.append((uid, await cw.direct(server.port, cw.token(uid), uid + 1, "influencer")))
            failures = []
            await run(server.port, convs, 0, WARM, failures)
            gone = lambda: server.metric("chatwire_connections") == 0  # noqa: E731
            await cw.settle(gone, 15)
            await asyncio.sleep(1)
            rss0, fd0 = server.rss_kb(), server.fds()
            t0 = time.monotonic()
            await run(server.port, convs, WARM, CYCLES, failures)
            secs = time.monotonic() - t0
            peak_rss = server.rss_kb()
            settled = await cw.settle(gone, 30)
            await asyncio.sleep(1)
            rss1, fd1 = server.rss_kb(), server.fds()
            # Not judged: 10,000 more, to tell growth that stops (heap kept for reuse) from
            # growth per cycle (a leak).
            await run(server.port, convs, WARM + CYCLES, CYCLES, failures)
            await cw.settle(gone, 30)
            await asyncio.sleep(1)
            rss2, fd2 = server.rss_kb(), server.fds()
            stored = db.count() - CYCLES
        finally:
            server.stop()
    drss = (rss1 - rss0) / rss0 * 100
    dfd = (fd1 - fd0) / fd0 * 100
    print(f"{CYCLES} cycles in {secs:.1f} s ({CYCLES / secs:.0f}/s), {len(failures)} failed "
          f"{failures[:3]}; stored {stored} of {WARM + CYCLES}; connections back to 0: "
          f"{settled is not None}; RSS {rss0} -> {peak_rss} (end of load) -> {rss1} kB "
          f"({drss:+.1f}%); fds {fd0} -> {fd1} ({dfd:+.1f}%); after 10,000 more (not judged): "
          f"RSS {rss2} kB ({(rss2 - rss1) / rss1 * 100:+.1f}%), fds {fd2}")
    ok = (not failures and stored == WARM + CYCLES and settled is not None and abs(drss) <= 5
          and abs(dfd) <= 5)
    figure = (f"{CYCLES} cycles at {CYCLES / secs:.0f}/s, {len(failures)} failed; "
              f"RSS {rss0}->{rss1} kB ({drss:+.1f}%), fds {fd0}->{fd1} ({dfd:+.1f}%); "
              f"10,000 more: RSS {rss2} kB ({(rss2 - rss1) / rss1 * 100:+.1f}%)")
    return ok, figure
