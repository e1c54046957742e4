"""Scenario 4, slow consumer: a busy group room (4 senders, 200 messages/s of ~2 KB, 10 members
that read) gains 100 members that join and then stop reading (a small receive buffer, nothing
read). Each of the 100 must be disconnected by the server (counted in
`chatwire_slow_client_disconnects_total`; the socket reaches EOF once drained), the readers must
get every message and stay connected. The storm is repeated (5 rounds, the same 100 users), and
the server's RSS is read after each (idle, 3 s after the round). The first rounds raise the heap
to its working size (glibc keeps freed heap for reuse), so the growth judged is that of the
rounds after the second: at most LEAK_BAR bytes per stalled client per round (default 2,048),
averaged over those rounds. A leak of anything a stalled client holds grows RSS in every round;
allocator noise does not accumulate. The rise of each round, in % of the idle level, is printed.
RSS hides a small leak (freed heap glibc keeps absorbs it), so the heap in use
(`chatwire_heap_bytes`, counted by the chaos build) is judged too, over the rounds after the
first: at most HEAP_BAR bytes per stalled client per round (default 256; a stalled client
leaking 4 KB fails it).
"""

import asyncio
import os
import time

import cw

STALLED = int(os.environ.get("CHAOS_SLOW_CLIENTS", "100"))
READERS = 10
SENDERS = 4
RATE = 200  # messages/s over all senders
CONTENT = "x" * 2000
WARM_SECS = 8.0
MAX_STORM_SECS = 40.0
ROUNDS = int(os.environ.get("CHAOS_SLOW_ROUNDS", "5"))
# Rounds that fill the heap to its working size before growth is judged.
SETTLE_ROUNDS = 2
# Most RSS growth per stalled client per round after those (see chaos/README.md).
LEAK_BAR = int(os.environ.get("CHAOS_SLOW_LEAK_BAR", "2048"))
# Most heap-in-use growth per stalled client per round after the first.
HEAP_BAR = int(os.environ.get("CHAOS_SLOW_HEAP_BAR", "256"))


async def traffic(senders, cid, secs, counter):
    """`RATE` messages/s spread over `senders` for `secs` seconds."""
    t0 = time.monotonic()
    n = 0
    while time.monotonic() - t0 < secs:
        for s in senders:
            s.emit("message:send", {"conversationId": cid, "content": CONTENT})
            n += 1
        counter[0] += len(senders)
        await asyncio.gather(*(s.ws.drain() for s in senders))
        due = t0 + n / RATE
        await asyncio.sleep(max(0.0, due - time.monotonic()))


async def storm(server, cid, senders, stalled_users, sent):
    """One round: the stalled members join and stop reading while the room is busy; returns
    (seconds until all were disconnected or None, disconnects counted, EOFs seen, RSS peak,
    RSS after, idle)."""
    slow0 = server.metric("chatwire_slow_client_disconnects_total")
    stalled = []
    for i in stalled_users:
        c = cw.Sio(server.port, cw.token(i))
        await c.open(rcvbuf=4096, read=False)
        c.emit("conversation:join", {"conversationId": cid})
        stalled.append(c)
    t_stall = time.monotonic()
    rss_peak = server.rss_kb()
    task = asyncio.ensure_future(traffic(senders, cid, MAX_STORM_SECS, sent))
    took = None
    while time.monotonic() - t_stall < MAX_STORM_SECS:
        await asyncio.sleep(0.5)
        rss_peak = max(rss_peak, server.rss_kb())
        if server.metric("chatwire_slow_client_disconnects_total") - slow0 >= len(stalled):
            took = time.monotonic() - t_stall
            break
    task.cancel()
    await asyncio.sleep(2)  # in-flight deliveries reach the readers
    disconnects = server.metric("chatwire_slow_client_disconnects_total") - slow0

    async def drained(c):
        """The stalled client now reads what it was sent: its connection must end (EOF)."""
        while True:
            try:
                m = await asyncio.wait_for(c.ws.recv(), 10)
            except asyncio.TimeoutError:
                return False
            if m is None:
                return True

    eof = sum(await asyncio.gather(*(drained(c) for c in stalled)))
    for c in stalled:
        c.close()
    await asyncio.sleep(3)
    return took, disconnects, eof, rss_peak, server.rss_kb()


async def main():
    members = list(range(1, 1 + SENDERS + READERS + STALLED))
    with cw.Database("slow_consumer") as db:
        # No per-socket rate limit for the senders (this is about the readers).
        server = cw.Server("slow_consumer", db.url, {"RATE_LIMIT_PER_SOCKET": "0"})
        server.start()
        try:
            cid = await cw.group(server.port, cw.token(1), [cw.user(i) for i in members[1:]])
            sent = [0]
            got = {}

            def counter(i):
                def on(name, data):
                    if name == "message:new":
                        got[i] = got.get(i, 0) + 1
                return on

            senders = [await cw.Sio(server.port, cw.token(i)).open() for i in members[:SENDERS]]
            readers = []
            for i in members[SENDERS:SENDERS + READERS]:
                c = await cw.Sio(server.port, cw.token(i), counter(i)).open()
                await c.join(cid)
                readers.append(c)
            # Warm-up: the same traffic without stalled members, then idle: the level "before".
            await traffic(senders, cid, WARM_SECS, sent)
            await asyncio.sleep(3)
            rss_before = server.rss_kb()
            rounds = []
            heap = [server.heap_bytes()]
            for r in range(ROUNDS):
                rounds.append(await storm(server, cid, senders, members[SENDERS + READERS:], sent))
                heap.append(server.heap_bytes())
            readers_up = sum(1 for c in readers if not c.closed.is_set())
            # Every send is broadcast once stored: each reader must have every stored message.
            stored = db.count()
            complete = sum(1 for i in members[SENDERS:SENDERS + READERS] if got.get(i) == stored)
            for c in senders + readers:
                c.close()
        finally:
            server.stop()
    took = [r[0] for r in rounds]
    disconnects = min(r[1] for r in rounds)
    eof = min(r[2] for r in rounds)
    rss_peak = max(r[3] for r in rounds)
    after = [r[4] for r in rounds]
    steps = [(b - a) / rss_before * 100 for a, b in zip([rss_before] + after, after)]
    # Bytes per stalled client per round over the rounds after the settling ones.
    judged = ROUNDS - SETTLE_ROUNDS
    per_client = (after[-1] - after[SETTLE_ROUNDS - 1]) * 1024 / (judged * STALLED)
    heap_per_client = (heap[-1] - heap[1]) / ((ROUNDS - 1) * STALLED)
    took_s = ", ".join("-" if t is None else f"{t:.1f}" for t in took)
    steps_s = ", ".join(f"{d:+.1f}%" for d in steps)
    print(f"room of {len(members)}: {sent[0]} sends, {stored} stored; {ROUNDS} rounds of "
          f"{STALLED} stalled: all disconnected after {took_s} s, at least {disconnects:.0f} "
          f"slow-client disconnects and {eof} EOFs per round; readers connected "
          f"{readers_up}/{READERS}, complete {complete}/{READERS}; RSS before {rss_before} kB, "
          f"peak {rss_peak} kB, after each round {after} kB (rise per round {steps_s} of the "
          f"idle level); rounds {SETTLE_ROUNDS + 1}-{ROUNDS}: {per_client:+.0f} B per stalled "
          f"client per round (bar {LEAK_BAR}); heap in use {heap} B, rounds 2-{ROUNDS}: "
          f"{heap_per_client:+.0f} B per stalled client per round (bar {HEAP_BAR})")
    ok = (None not in took and eof == STALLED and disconnects >= STALLED
          and readers_up == READERS and complete == READERS and per_client <= LEAK_BAR
          and heap_per_client <= HEAP_BAR)
    figure = (f"{ROUNDS}x {STALLED} stalled clients: all disconnected in {took_s} s, {eof} EOF; "
              f"readers {complete}/{READERS} complete; RSS {rss_before}->{after} kB (rounds "
              f"{steps_s}), rounds {SETTLE_ROUNDS + 1}-{ROUNDS} {per_client:+.0f} B/client/round "
              f"(bar {LEAK_BAR}); heap rounds 2-{ROUNDS} {heap_per_client:+.0f} B/client/round "
              f"(bar {HEAP_BAR})")
    return ok, figure
