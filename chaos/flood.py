"""The floods of scenario 9, each in a process of its own (so the bystander's latency is measured
in another process), paced to RATE per second for SECS seconds. Each prints one JSON object:
attempts, outcomes by class, the achieved rate.

    python3 chaos/flood.py handshakes PORT SECS RATE
        Engine.IO polling handshakes, a new connection each (`Connection: close`), on
        non-blocking sockets on one selector, at most 4,000 in flight.
    python3 chaos/flood.py search PORT SECS RATE TOKEN CONVERSATION_ID
        REST history searches (`?q=`) on 50 keep-alive connections (a closed one is reopened).
    python3 chaos/flood.py namespace PORT SECS RATE TOKEN CONVERSATION_ID
        One WebSocket connection, also on `/` (so it stays open): `message:send`, `41/chat`,
        `40/chat`, again and again (at most 32 CONNECTs unanswered).

Targets 127.0.0.1 only; stops by itself after SECS (+ 10 s for answers in flight).
"""

import asyncio
import errno
import json
import os
import resource
import selectors
import socket
import sys
import time

HOST = "127.0.0.1"
MAX_IN_FLIGHT = 4000


def classify(data):
    """`ok` (2xx), `limited` (429/503), `other` (another status) or `dropped` (no answer)."""
    if not data.startswith(b"HTTP/1.1 "):
        return "dropped"
    status = int(data[9:12])
    if 200 <= status < 300:
        return "ok"
    if status in (429, 503):
        return "limited" if (b"retry-after" in data.lower() or status == 503) else "limited_no_retry_after"
    return f"status_{status}"


def flood(port, secs, rate, request):
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    sel = selectors.DefaultSelector()
    stats = {}
    started = 0
    inflight = 0
    t0 = time.monotonic()

    def done(sock, cls):
        nonlocal inflight
        stats[cls] = stats.get(cls, 0) + 1
        sel.unregister(sock)
        sock.close()
        inflight -= 1

    while True:
        now = time.monotonic()
        if now - t0 < secs:
            due = int((now - t0) * rate) - started
            for _ in range(max(0, min(due, MAX_IN_FLIGHT - inflight))):
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                s.setblocking(False)
                started += 1
                err = s.connect_ex((HOST, port))
                if err not in (0, errno.EINPROGRESS):
                    stats["connect_error"] = stats.get("connect_error", 0) + 1
                    s.close()
                    continue
                sel.register(s, selectors.EVENT_WRITE, [b""])
                inflight += 1
        elif inflight == 0 or now - t0 > secs + 10:
            break
        for key, ev in sel.select(timeout=0.001):
            s = key.fileobj
            if ev & selectors.EVENT_WRITE:
                try:
                    s.send(request)
                except OSError:
                    done(s, "dropped")
                    continue
                sel.modify(s, selectors.EVENT_READ, key.data)
            else:
                try:
                    data = s.recv(65536)
                except OSError:
                    data = b""
                if data and len(key.data[0]) < 65536:
                    key.data[0] += data
                    continue
                done(s, classify(key.data[0]))
    timed_out = inflight
    for key in list(sel.get_map().values()):
        key.fileobj.close()
    if timed_out:
        stats["timeout"] = timed_out
    return {"attempts": started, "secs": secs, "rate": round(started / secs), "outcomes": stats}


async def search(port, secs, rate, token, cid):
    request = (
        f"GET /api/chat/conversations/{cid}/messages?q=chaos HTTP/1.1\r\nHost: {HOST}\r\n"
        f"Authorization: Bearer {token}\r\n\r\n"
    ).encode()
    stats = {}
    started = [0]
    t0 = time.monotonic()

    def count(cls):
        stats[cls] = stats.get(cls, 0) + 1

    async def worker():
        conn = None
        while time.monotonic() - t0 < secs:
            due = t0 + started[0] / rate
            if due > time.monotonic():
                await asyncio.sleep(due - time.monotonic())
                continue
            started[0] += 1
            try:
                if conn is None:
                    conn = await asyncio.wait_for(asyncio.open_connection(HOST, port), 5)
                reader, writer = conn
                writer.write(request)
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                await asyncio.wait_for(reader.readexactly(length), 5)
                count(classify(head))
                if b"connection: close" in head.lower():
                    writer.close()
                    conn = None
            except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError):
                count("dropped")
                if conn:
                    conn[1].close()
                conn = None
        if conn:
            conn[1].close()

    await asyncio.gather(*(worker() for _ in range(50)))
    return {"attempts": started[0], "secs": secs, "rate": round(started[0] / secs),
            "outcomes": stats}


async def namespace(port, secs, rate, token, cid):
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import cw

    c = cw.Sio(port, token)
    await c.open()
    stats = {}

    answers = [0]
    wake = asyncio.Event()

    def raw(m):
        if m.startswith("40/chat,"):
            cls = "connect_ok"
        elif m.startswith("44/chat"):
            cls = "connect_error"
        elif m.startswith('42/chat,["message:sent"'):
            cls = "sent"
        elif m.startswith('42/chat,["message:error"'):
            cls = "send_error:" + json.loads(m[8:])[1].get("error", "?")
        else:
            return
        stats[cls] = stats.get(cls, 0) + 1
        if cls.startswith("connect"):
            answers[0] += 1
            wake.set()

    # The main namespace stays connected, so the connection outlives each `/chat` DISCONNECT.
    main_ns = asyncio.get_running_loop().create_future()
    c.on_raw = lambda m: m.startswith("40{") and not main_ns.done() and main_ns.set_result(m)
    c.ws.send("40")
    await asyncio.wait_for(main_ns, 5)
    c.on_raw = raw
    t0 = time.monotonic()
    n = 0
    # Cycles are pipelined (the server handles a connection's packets in order), at most 32
    # CONNECTs waiting for their answer.
    while time.monotonic() - t0 < secs and not c.closed.is_set():
        if n - answers[0] >= 32:
            wake.clear()
            try:
                await asyncio.wait_for(wake.wait(), 5)
            except asyncio.TimeoutError:
                stats["connect_timeout"] = stats.get("connect_timeout", 0) + 1
                break
            continue
        c.emit("message:send", {"conversationId": cid, "content": f"nsp {n}", "tempId": f"n{n}"})
        c.ws.send("41/chat")
        c.ws.send("40/chat," + json.dumps({"token": token}))
        n += 1
        due = t0 + n / rate
        if due > time.monotonic():
            await asyncio.sleep(due - time.monotonic())
    elapsed = time.monotonic() - t0
    await asyncio.sleep(2)
    closed = c.closed.is_set()
    c.close()
    return {"attempts": n, "secs": round(elapsed, 2), "rate": round(n / elapsed),
            "outcomes": stats, "closed_by_server": closed}


def main(argv):
    mode, port, secs, rate = argv[0], int(argv[1]), float(argv[2]), float(argv[3])
    if mode == "handshakes":
        request = (
            f"GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: {HOST}\r\n"
            f"Connection: close\r\n\r\n"
        ).encode()
        result = flood(port, secs, rate, request)
    elif mode == "search":
        result = asyncio.run(search(port, secs, rate, argv[4], argv[5]))
    elif mode == "namespace":
        result = asyncio.run(namespace(port, secs, rate, argv[4], int(argv[5])))
    else:
        raise SystemExit(__doc__)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
