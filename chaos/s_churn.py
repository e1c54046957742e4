"""Scenario 5, churn: cycles of connect (WebSocket, `/chat` CONNECT), join a conversation, send
a message (waiting for `message:sent`), disconnect; 50 at a time. After a warm-up of 2,000 cycles
(the heap reaches its working size: glibc keeps freed heap for reuse) the server's RSS and open
files (/proc/PID/fd) are read, then after each of three windows of 10,000 cycles (the server's
connection gauge back to 0 each time). Judged: every window's open files equal the warm level
(within 2), and the RSS growth over the last two windows is at most LEAK_BAR bytes per cycle
(default 32): a leak grows RSS in every window by its size times the cycles, allocator noise
does not accumulate. The growth of each window, in % of the warm level, is printed too.
RSS hides a small leak (freed heap glibc keeps absorbs it), so the heap in use
(`chatwire_heap_bytes`, counted by the chaos build) is judged too: its growth over the last two
windows at most HEAP_BAR bytes per cycle (default 8; a connection leaking 128 B fails it).
"""

import asyncio
import os
import time

import cw

CYCLES = int(os.environ.get("CHAOS_CHURN_CYCLES", "10000"))  # per window
WINDOWS = 3
WORKERS = 50
WARM = int(os.environ.get("CHAOS_CHURN_WARM", "2000"))
# Most RSS growth per cycle allowed over the windows after the first (see chaos/README.md).
LEAK_BAR = int(os.environ.get("CHAOS_CHURN_LEAK_BAR", "32"))
# Most heap-in-use growth per cycle over the same windows.
HEAP_BAR = int(os.environ.get("CHAOS_CHURN_HEAP_BAR", "8"))
FD_SLACK = 2


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
            rss = [server.rss_kb()]
            heap = [server.heap_bytes()]
            fds = [server.fds()]
            secs = []
            settled = True
            for w in range(WINDOWS):
                t0 = time.monotonic()
                await run(server.port, convs, WARM + w * CYCLES, CYCLES, failures)
                secs.append(time.monotonic() - t0)
                settled = settled and await cw.settle(gone, 30) is not None
                await asyncio.sleep(1)
                rss.append(server.rss_kb())
                heap.append(server.heap_bytes())
                fds.append(server.fds())
            stored = db.count()
        finally:
            server.stop()
    total = WARM + WINDOWS * CYCLES
    rate = WINDOWS * CYCLES / sum(secs)
    steps = [(b - a) / rss[0] * 100 for a, b in zip(rss, rss[1:])]
    # Bytes per cycle over the windows after the first (the first may still fill the heap).
    per_cycle = (rss[-1] - rss[1]) * 1024 / ((WINDOWS - 1) * CYCLES)
    heap_per_cycle = (heap[-1] - heap[1]) / ((WINDOWS - 1) * CYCLES)
    fd_ok = all(abs(f - fds[0]) <= FD_SLACK for f in fds)
    print(f"{WINDOWS}x {CYCLES} cycles after {WARM} to warm up, {rate:.0f}/s, {len(failures)} "
          f"failed {failures[:3]}; stored {stored} of {total}; connections back to 0 after each "
          f"window: {settled}; RSS {rss} kB, per window "
          f"{', '.join(f'{d:+.1f}%' for d in steps)} of the warm level; windows 2-{WINDOWS}: "
          f"{per_cycle:+.1f} B/cycle (bar {LEAK_BAR}); heap in use {heap} B, windows 2-{WINDOWS}: "
          f"{heap_per_cycle:+.1f} B/cycle (bar {HEAP_BAR}); fds {fds}")
    ok = (not failures and stored == total and settled and per_cycle <= LEAK_BAR
          and heap_per_cycle <= HEAP_BAR and fd_ok)
    figure = (f"{WINDOWS}x {CYCLES} cycles at {rate:.0f}/s, {len(failures)} failed; RSS "
              f"{rss[0]}->{rss[1:]} kB (windows {', '.join(f'{d:+.1f}%' for d in steps)}), "
              f"windows 2-{WINDOWS} {per_cycle:+.1f} B/cycle (bar {LEAK_BAR}); heap windows "
              f"2-{WINDOWS} {heap_per_cycle:+.1f} B/cycle (bar {HEAP_BAR}); fds {fds[0]}->"
              f"{fds[1:]}")
    return ok, figure
