"""Scenario 1 (what runs in place of Autobahn, see chaos/autobahn.sh): WebSocket conformance of
chatwire's transport layer, in the case families of the Autobahn fuzzing client (1-7, 9, 10),
against `chatwire conformance`.

Autobahn needs a server that echoes every WebSocket message verbatim. chatwire has none: its
WebSocket carries Engine.IO, so its first frame is the Engine.IO open packet and a message that
is not Engine.IO closes the session. Here the echo goes through the conformance app instead:
a text message `42["message",S]` comes back as `42["message-back",S]` (S any string, so any
valid UTF-8 of any length up to maxPayload), and a binary frame attached to
`451-["message",{"_placeholder":true,"num":0}]` comes back byte for byte. The frames around
that payload are built by hand (lengths on the 7/16/64-bit boundaries, fragments, interleaved
control frames, reserved bits and opcodes, bad UTF-8, close codes), as Autobahn does.

    python3 chaos/wsconf.py PORT      # one line per case, then `FIGURE: ...`; exit 1 if any not OK
"""

import asyncio
import json
import os
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import cw  # noqa: E402

PATH = "/socket.io/?EIO=4&transport=websocket"
WRAP = len('42["message",""]')


def frame(opcode, payload=b"", fin=True, rsv=0, mask=True):
    n = len(payload)
    b0 = (0x80 if fin else 0) | (rsv << 4) | opcode
    m = 0x80 if mask else 0
    if n < 126:
        head = struct.pack("!BB", b0, m | n)
    elif n < 65536:
        head = struct.pack("!BBH", b0, m | 126, n)
    else:
        head = struct.pack("!BBQ", b0, m | 127, n)
    if not mask:
        return head + payload
    key = os.urandom(4)
    return head + key + cw._mask(payload, key)


class Unclean(Exception):
    """The closing handshake was not answered (Autobahn's UNCLEAN)."""


class Conn:
    """An Engine.IO session on `/` of the conformance app, with raw frame access."""

    async def open(self, port):
        ws = await cw.WS.connect(port, PATH)
        self.r, self.w = ws.r, ws.w
        op, data = await self.read()
        assert op == 1 and data.startswith(b"0{"), data[:40]
        self.max_payload = json.loads(data[1:])["maxPayload"]
        self.send(frame(1, b"40"))
        await self.expect(lambda op, d: op == 1 and d.startswith(b"40"), "CONNECT answer")
        return self

    def send(self, raw):
        if not self.w.is_closing():
            self.w.write(raw)

    async def read(self, timeout=3.0):
        """The next frame as (opcode, payload); (None, reason) once the connection ended.
        Engine.IO pings (`2`) are answered on the way and not returned."""
        try:
            while True:
                h = await asyncio.wait_for(self.r.readexactly(2), timeout)
                n = h[1] & 0x7F
                if n == 126:
                    n = struct.unpack("!H", await self.r.readexactly(2))[0]
                elif n == 127:
                    n = struct.unpack("!Q", await self.r.readexactly(8))[0]
                data = await self.r.readexactly(n)
                op = h[0] & 0x0F
                if op == 1 and data == b"2":
                    self.send(frame(1, b"3"))
                    continue
                return op, data
        except asyncio.TimeoutError:
            return None, "timeout"
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            return None, "closed"

    async def expect(self, pred, what, timeout=3.0):
        while True:
            op, data = await self.read(timeout)
            if op is None:
                raise AssertionError(f"{what}: {data}")
            if op == 1 and data.startswith(b"42") and b'"auth"' in data[:12]:
                continue
            if pred(op, data):
                return op, data
            raise AssertionError(f"{what}: got opcode {op} {data[:60]!r}")

    async def echo_text(self, s, timeout=5.0):
        want = b'42["message-back",' + json.dumps(s, ensure_ascii=False).encode() + b"]"
        await self.expect(lambda op, d: op == 1 and d == want, "text echo", timeout)

    async def echo_binary(self, payload, timeout=5.0):
        await self.expect(lambda op, d: op == 1 and d.startswith(b'451-["message-back"'),
                          "binary echo header", timeout)
        await self.expect(lambda op, d: op == 2 and d == payload, "binary echo", timeout)

    async def failed(self, codes=(1002,), timeout=3.0, clean=False):
        """The server ends the connection: a close frame (with one of `codes`) or, unless `clean`
        (a closing handshake the client started, which the server must answer with a close
        frame), the TCP close alone, with nothing echoed before. Returns how it ended."""
        while True:
            op, data = await self.read(timeout)
            if op is None:
                if data == "timeout":
                    raise AssertionError("connection still open")
                if clean:
                    raise Unclean("TCP closed without a close frame in reply")
                return "tcp close"
            if op == 8:
                code = struct.unpack("!H", data[:2])[0] if len(data) >= 2 else None
                if code not in codes:
                    raise AssertionError(f"close code {code}, expected {codes}")
                return f"close {code}"
            if op == 1 and data.startswith(b"42") and b'"auth"' in data[:12]:
                continue
            raise AssertionError(f"unexpected frame {op} {data[:40]!r}")

    def close(self):
        self.w.close()


def text_msg(s):
    return b'42["message",' + json.dumps(s, ensure_ascii=False).encode() + b"]"


def cases():
    """(id, description, coroutine function taking a fresh Conn)."""
    out = []

    def case(cid, what):
        def deco(fn):
            out.append((cid, what, fn))
            return fn
        return deco

    for i, n in enumerate([WRAP, 125, 126, 127, 128, 65535, 65536]):
        @case(f"1.1.{i + 1}", f"text message, frame of {n} bytes")
        async def _(c, n=n):
            s = "*" * (n - WRAP)
            c.send(frame(1, text_msg(s)))
            await c.echo_text(s)

    for i, n in enumerate([0, 125, 126, 127, 128, 65535, 65536]):
        @case(f"1.2.{i + 1}", f"binary message of {n} bytes")
        async def _(c, n=n):
            p = bytes(range(256)) * (n // 256) + bytes(range(n % 256))
            c.send(frame(1, b'451-["message",{"_placeholder":true,"num":0}]') + frame(2, p))
            await c.echo_binary(p)

    for i, p in enumerate([b"", b"Hello", b"\xfe\xff" * 62 + b"x"]):
        @case(f"2.{i + 1}", f"ping with {len(p)} payload bytes -> pong with the same")
        async def _(c, p=p):
            c.send(frame(9, p))
            await c.expect(lambda op, d: op == 10 and d == p, "pong")

    @case("2.4", "ping with 126 payload bytes (over 125) -> fail")
    async def _(c):
        c.send(frame(9, b"x" * 126))
        return await c.failed()

    @case("2.5", "unsolicited pong ignored, then an echo")
    async def _(c):
        c.send(frame(10, b"unsolicited") + frame(1, text_msg("after pong")))
        await c.echo_text("after pong")

    @case("2.6", "10 pings -> 10 pongs in order")
    async def _(c):
        c.send(b"".join(frame(9, f"ping {k}".encode()) for k in range(10)))
        for k in range(10):
            await c.expect(lambda op, d, k=k: op == 10 and d == f"ping {k}".encode(), "pong")

    for rsv in range(1, 8):
        @case(f"3.{rsv}", f"text frame with RSV bits {rsv} -> fail")
        async def _(c, rsv=rsv):
            c.send(frame(1, text_msg("rsv"), rsv=rsv))
            return await c.failed()

    for i, op in enumerate([3, 4, 5, 6, 7, 11, 12, 13, 14, 15]):
        @case(f"4.{i + 1}", f"reserved opcode {op} -> fail")
        async def _(c, op=op):
            c.send(frame(op, b"reserved"))
            return await c.failed()

    @case("5.1", "fragmented ping -> fail")
    async def _(c):
        c.send(frame(9, b"frag", fin=False) + frame(0, b"ment"))
        return await c.failed()

    @case("5.2", "fragmented pong -> fail")
    async def _(c):
        c.send(frame(10, b"frag", fin=False) + frame(0, b"ment"))
        return await c.failed()

    for i, size in enumerate([1, 2, 7, 64]):
        @case(f"5.{3 + i}", f"text message in fragments of {size} bytes")
        async def _(c, size=size):
            m = text_msg("fragmented message " * 8)
            parts = [m[k:k + size] for k in range(0, len(m), size)]
            c.send(b"".join(frame(1 if k == 0 else 0, p, fin=k == len(parts) - 1)
                            for k, p in enumerate(parts)))
            await c.echo_text("fragmented message " * 8)

    @case("5.7", "ping between two fragments -> pong, then the echo")
    async def _(c):
        m = text_msg("with ping")
        c.send(frame(1, m[:5], fin=False) + frame(9, b"mid") + frame(0, m[5:]))
        await c.expect(lambda op, d: op == 10 and d == b"mid", "pong")
        await c.echo_text("with ping")

    @case("5.8", "continuation frame with nothing to continue -> fail")
    async def _(c):
        c.send(frame(0, b"orphan"))
        return await c.failed()

    @case("5.9", "new text frame inside a fragmented message -> fail")
    async def _(c):
        c.send(frame(1, b"42[", fin=False) + frame(1, b"again"))
        return await c.failed()

    valid = ["κόσμε", "\U0001d11e clef", "\ufffd\uffff", "\U0010ffff", "mixed ä€𝄞 text"]
    for i, s in enumerate(valid):
        @case(f"6.1.{i + 1}", f"valid UTF-8 {s!r} echoed")
        async def _(c, s=s):
            c.send(frame(1, text_msg(s)))
            await c.echo_text(s)

    @case("6.2.1", "valid UTF-8 split inside a code point across fragments")
    async def _(c):
        m = text_msg("κόσμε")
        cut = m.index("ό".encode()) + 1
        c.send(frame(1, m[:cut], fin=False) + frame(0, m[cut:]))
        await c.echo_text("κόσμε")

    invalid = [b"\xff", b"\xc0\xaf", b"\xed\xa0\x80", b"\xce\xba\xe1\xbd", b"\xf4\x90\x80\x80"]
    for i, bad in enumerate(invalid):
        @case(f"6.3.{i + 1}", f"invalid UTF-8 {bad!r} in a text frame -> fail (1007)")
        async def _(c, bad=bad):
            c.send(frame(1, b'42["message","' + bad + b'"]'))
            return await c.failed((1007, 1002))

    @case("6.4.1", "invalid UTF-8 in the second fragment -> fail (1007)")
    async def _(c):
        c.send(frame(1, b'42["message","ok', fin=False) + frame(0, b'\xff"]'))
        return await c.failed((1007, 1002))

    def closes(payload, codes, clean=False):
        async def run(c):
            c.send(frame(8, payload))
            return await c.failed(codes, clean=clean)
        return run

    out.append(("7.1.1", "close 1000 -> close 1000 back",
                closes(struct.pack("!H", 1000), (1000,), True)))
    out.append(("7.1.2", "close without payload -> close back",
                closes(b"", (1000, 1005, None), True)))
    out.append(("7.1.3", "close with 1 byte payload -> fail", closes(b"x", (1002,))))
    out.append(("7.1.4", "close 1000 with a reason -> close back",
                closes(struct.pack("!H", 1000) + b"bye", (1000,), True)))
    out.append(("7.1.5", "close with invalid UTF-8 reason -> fail",
                closes(struct.pack("!H", 1000) + b"\xff", (1007, 1002))))
    for i, code in enumerate([1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999]):
        out.append((f"7.7.{i + 1}", f"close {code} (valid) -> close back",
                    closes(struct.pack("!H", code), (1000, code), True)))
    for i, code in enumerate([0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535]):
        out.append((f"7.9.{i + 1}", f"close {code} (invalid) -> fail",
                    closes(struct.pack("!H", code), (1002,))))

    @case("7.3.1", "text after the client's close is not answered")
    async def _(c):
        c.send(frame(8, struct.pack("!H", 1000)) + frame(1, text_msg("late")))
        return await c.failed((1000,), clean=True)

    for i, n in enumerate([64 << 10, 256 << 10, 960 << 10]):
        @case(f"9.1.{i + 1}", f"text message of {n >> 10} KiB echoed")
        async def _(c, n=n):
            s = "t" * n
            c.send(frame(1, text_msg(s)))
            await c.echo_text(s, timeout=10)

        @case(f"9.2.{i + 1}", f"binary message of {n >> 10} KiB echoed")
        async def _(c, n=n):
            p = os.urandom(n)
            c.send(frame(1, b'451-["message",{"_placeholder":true,"num":0}]') + frame(2, p))
            await c.echo_binary(p, timeout=10)

    @case("9.3.1", "text message over maxPayload -> fail (1009)")
    async def _(c):
        c.send(frame(1, text_msg("o" * (c.max_payload + 64))))
        return await c.failed((1009, 1002))

    for i, size in enumerate([1300, 4096, 65536]):
        @case(f"10.1.{i + 1}", f"64 KiB text message in fragments of {size} bytes")
        async def _(c, size=size):
            s = "f" * (64 << 10)
            m = text_msg(s)
            parts = [m[k:k + size] for k in range(0, len(m), size)]
            c.send(b"".join(frame(1 if k == 0 else 0, p, fin=k == len(parts) - 1)
                            for k, p in enumerate(parts)))
            await c.echo_text(s, timeout=10)

    return out


async def main(port):
    """Runs every case on a fresh connection. As in Autobahn, a case whose data exchange passed
    ends with the client's closing handshake (close 1000), which the server must answer with a
    close frame: a case is OK when both held, UNCLEAN when only the close reply was missing."""
    results = []
    for cid, what, fn in cases():
        c = Conn()
        try:
            await c.open(port)
            how = await fn(c)
            if how is None:
                c.send(frame(8, struct.pack("!H", 1000)))
                how = await c.failed((1000, None), clean=True)
            results.append((cid, "OK", how))
        except Unclean as e:
            results.append((cid, "UNCLEAN", str(e)))
        except Exception as e:
            results.append((cid, "FAILED", f"{type(e).__name__}: {e}"))
        finally:
            c.close()
        print(f"{cid:8} {results[-1][1]:8} {what} ({results[-1][2]})", flush=True)
    by = {}
    for r in results:
        by.setdefault(r[1], []).append(r[0])
    not_ok = [r[0] for r in results if r[1] != "OK"]
    counts = ", ".join(f"{len(v)} {k}" for k, v in sorted(by.items()))
    first = ", ".join(not_ok[:5]) + (" ..." if len(not_ok) > 5 else "")
    note = " (UNCLEAN: the client's close frame got no close frame back)" if "UNCLEAN" in by else ""
    print(f"FIGURE: {len(results)} cases of Autobahn's families 1-7, 9, 10 through the "
          f"conformance echo: {counts}{note}" + (f" [{first}]" if not_ok else ""))
    return not not_ok


if __name__ == "__main__":
    sys.exit(0 if asyncio.run(main(int(sys.argv[1]))) else 1)
