"""Senders for the durability scenarios (6, 7, 8): WebSocket clients in 1:1 conversations, each
keeping up to `window` `message:send`s in flight with unique tempIds (`<client>-<n>`), paced to
a total rate if one is given. Every outcome lands in the client's `cw.Tracker`.
"""

import asyncio
import time

import cw


class Sender:
    def __init__(self, port, uid, cid, name):
        self.port = port
        self.uid = uid
        self.cid = cid
        self.name = name
        self.tracker = cw.Tracker()
        self.client = None
        self.n = 0

    async def connect(self, timeout=10.0):
        self.client = cw.Sio(self.port, cw.token(self.uid), self.tracker.on_event)
        await self.client.open(timeout=timeout)

    def outstanding(self):
        t = self.tracker
        return len(t.sent_at) - len(t.acked) - len(t.errors)

    def next_temp(self):
        self.n += 1
        return f"{self.name}-{self.n}"

    async def run(self, stop, window=8, rate=None):
        """Sends until `stop` is set or the connection ends; `rate` is this client's messages/s."""
        t0 = time.monotonic()
        sent = 0
        # Like socket.io-client: nothing more is sent once the server said close (`1`).
        while not stop.is_set() and not self.client.closed.is_set() and not self.client.eio_close:
            if rate:
                due = int((time.monotonic() - t0) * rate) - sent
                for _ in range(due):
                    self.tracker.send(self.client, self.cid, self.next_temp())
                sent += max(due, 0)
                try:
                    await self.client.ws.drain()
                except (ConnectionError, OSError):
                    break
                await asyncio.sleep(0.01)
                continue
            if self.outstanding() >= window:
                await asyncio.sleep(0.002)
                continue
            self.tracker.send(self.client, self.cid, self.next_temp())
            sent += 1
            if sent % 16 == 0:
                try:
                    await self.client.ws.drain()
                except (ConnectionError, OSError):
                    break


async def senders(port, count, first_uid=1):
    """`count` senders, sender k is user 2k+first_uid (brand) in a 1:1 with the next user."""
    out = []
    for k in range(count):
        uid = first_uid + 2 * k
        cid = await cw.direct(port, cw.token(uid), uid + 1, "influencer")
        s = Sender(port, uid, cid, f"u{uid}")
        await s.connect()
        out.append(s)
    return out


def merged(all_senders):
    """(acked {temp: id}, errors {temp: code}, every temp tried) over the senders."""
    acked, errors, tried = {}, {}, set()
    for s in all_senders:
        acked.update(s.tracker.acked)
        errors.update(s.tracker.errors)
        tried.update(s.tracker.sent_at)
    return acked, errors, tried


async def resend_until_acked(port, sender, temps, deadline_s=60.0):
    """Reconnects `sender` if needed and sends each of `temps` again (same tempId and content)
    until every one is acknowledged; returns the ids of this retry round."""
    t = sender.tracker
    for temp in temps:
        t.acked.pop(temp, None)
        t.errors.pop(temp, None)
    pending = list(temps)
    t0 = time.monotonic()
    while pending and time.monotonic() - t0 < deadline_s:
        if sender.client is None or sender.client.closed.is_set():
            try:
                await sender.connect()
            except Exception:
                await asyncio.sleep(0.2)
                continue
        for i in range(0, len(pending), 64):
            for temp in pending[i:i + 64]:
                t.errors.pop(temp, None)
                t.send(sender.client, sender.cid, temp)
            await sender.client.ws.drain()
            end = time.monotonic() + 10
            while time.monotonic() < end and any(
                p not in t.acked and p not in t.errors for p in pending[i:i + 64]
            ):
                await asyncio.sleep(0.01)
        pending = [p for p in pending if p not in t.acked]
        if pending:
            await asyncio.sleep(0.2)
    return {temp: t.acked.get(temp) for temp in temps}
