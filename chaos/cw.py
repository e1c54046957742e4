"""Shared pieces of the `make chaos` scenarios: a WebSocket / Engine.IO / Socket.IO client on raw
asyncio streams (standard library only), a one-shot HTTP client, the chatwire server process (started
on 127.0.0.1, stopped by its own PID), the scenario's own PostgreSQL database, /proc readings and
percentiles.

Everything here talks to 127.0.0.1 only.
"""

import asyncio
import base64
import json
import os
import resource
import signal
import socket
import struct
import subprocess
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
BIN = os.environ.get("CHAOS_BIN", os.path.join(TARGET, "release"))
OUT = os.environ.get("CHAOS_OUT", os.path.join(ROOT, "target", "chaos"))
PG_ADMIN = os.environ.get("CHAOS_PG", "postgres://postgres@127.0.0.1:5432")
HOST = "127.0.0.1"


def raise_nofile():
    """One descriptor per connection: take the hard limit as the soft one."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def free_port():
    s = socket.socket()
    s.bind((HOST, 0))
    port = s.getsockname()[1]
    s.close()
    return port


def pct(values, q):
    """The q-quantile (0..1) of a list, nearest rank; 0 for an empty list."""
    if not values:
        return 0.0
    v = sorted(values)
    return v[min(len(v) - 1, max(0, int(round(q * len(v) + 0.5)) - 1))]


# ---------------------------------------------------------------- WebSocket (RFC 6455) client


class HandshakeError(Exception):
    def __init__(self, status, head):
        super().__init__(f"HTTP {status}")
        self.status = status
        self.head = head


def _mask(data, key):
    n = len(data)
    if n == 0:
        return data
    k = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "little") ^ int.from_bytes(k, "little")).to_bytes(n, "little")


def ws_frame(opcode, payload):
    n = len(payload)
    b0 = 0x80 | opcode
    if n < 126:
        head = struct.pack("!BB", b0, 0x80 | n)
    elif n < 65536:
        head = struct.pack("!BBH", b0, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", b0, 0x80 | 127, n)
    key = os.urandom(4)
    return head + key + _mask(payload, key)


class WS:
    """A WebSocket client connection; text messages in and out."""

    def __init__(self, reader, writer):
        self.r = reader
        self.w = writer
        self.close_code = None
        self.end = None  # how the connection ended: "close frame", "eof" or "reset"

    @classmethod
    async def connect(cls, port, path, headers="", rcvbuf=None, local_addr=None, timeout=10.0):
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        if rcvbuf:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        if local_addr:
            sock.bind((local_addr, 0))
        try:
            await asyncio.wait_for(loop.sock_connect(sock, (HOST, port)), timeout)
            reader, writer = await asyncio.open_connection(sock=sock, limit=1 << 16)
        except BaseException:
            sock.close()
            raise
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write(
            (
                f"GET {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                f"Sec-WebSocket-Version: 13\r\n{headers}\r\n"
            ).encode()
        )
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
        except BaseException:
            writer.close()
            raise
        status = int(head.split(b" ", 2)[1])
        if status != 101:
            writer.close()
            raise HandshakeError(status, head)
        return cls(reader, writer)

    def send(self, text):
        if not self.w.is_closing():
            self.w.write(ws_frame(1, text.encode()))

    async def drain(self):
        await self.w.drain()

    async def recv(self):
        """The next text message, or None once the connection is closed (either side)."""
        parts = []
        try:
            while True:
                h = await self.r.readexactly(2)
                op = h[0] & 0x0F
                n = h[1] & 0x7F
                if n == 126:
                    n = struct.unpack("!H", await self.r.readexactly(2))[0]
                elif n == 127:
                    n = struct.unpack("!Q", await self.r.readexactly(8))[0]
                key = await self.r.readexactly(4) if h[1] & 0x80 else None
                data = await self.r.readexactly(n)
                if key:
                    data = _mask(data, key)
                if op == 8:
                    self.end = "close frame"
                    self.close_code = struct.unpack("!H", data[:2])[0] if len(data) >= 2 else 1005
                    return None
                if op == 9:
                    self.w.write(ws_frame(10, data))
                    continue
                if op == 10:
                    continue
                parts.append(data)
                if h[0] & 0x80:
                    return b"".join(parts).decode()
        except asyncio.IncompleteReadError:
            self.end = self.end or "eof"
            return None
        except (ConnectionError, OSError):
            self.end = self.end or "reset"
            return None

    def close(self):
        try:
            self.w.close()
        except Exception:
            pass


# ---------------------------------------------------------------- Engine.IO + Socket.IO client


def parse_sio(text):
    """`42/chat,["name",{...}]` -> (type, nsp, data); None for Engine.IO-only packets."""
    if not text or text[0] != "4" or len(text) < 2:
        return None
    t = text[1]
    rest = text[2:]
    nsp = "/"
    if rest.startswith("/"):
        nsp, _, rest = rest.partition(",")
    i = 0
    while i < len(rest) and rest[i].isdigit():
        i += 1
    rest = rest[i:]
    return t, nsp, (json.loads(rest) if rest else None)


class Sio:
    """A Socket.IO client on a direct WebSocket, connected to `/chat` with a dev token.

    `on_event(name, data)` is called for every event of `/chat`; pings are answered. `eio_close`
    is set when the server sent the Engine.IO close packet, `closed` when the connection ended.
    """

    def __init__(self, port, token, on_event=None):
        self.port = port
        self.token = token
        self.on_event = on_event or (lambda name, data: None)
        self.ws = None
        self.task = None
        self.eio_close = False
        self.closed = asyncio.Event()
        self.closed_at = None
        self.socket_id = None
        self.on_raw = None  # called with every Engine.IO message read after the connect

    async def open(self, timeout=10.0, rcvbuf=None, local_addr=None, read=True):
        self.ws = await WS.connect(
            self.port, "/socket.io/?EIO=4&transport=websocket", rcvbuf=rcvbuf,
            local_addr=local_addr, timeout=timeout,
        )
        try:
            await asyncio.wait_for(self._join(), timeout)
        except BaseException:
            self.ws.close()
            raise
        if read:
            self.task = asyncio.ensure_future(self._read())
        return self

    async def _join(self):
        first = await self.ws.recv()
        if not first or first[0] != "0":
            raise RuntimeError(f"no Engine.IO open: {first!r}")
        self.ws.send("40/chat," + json.dumps({"token": self.token}))
        while True:
            m = await self.ws.recv()
            if m is None:
                raise RuntimeError("closed during connect")
            if m == "2":
                self.ws.send("3")
                continue
            p = parse_sio(m)
            if p is None:
                continue
            if p[0] == "4":
                raise RuntimeError(f"connect_error {p[2]}")
            if p[0] == "2" and p[2] and p[2][0] == "connection:success":
                self.socket_id = p[2][1].get("socketId")
                return

    async def _read(self):
        while True:
            m = await self.ws.recv()
            if m is None:
                break
            if self.on_raw:
                self.on_raw(m)
            if m == "2":
                self.ws.send("3")
                continue
            if m == "1":
                self.eio_close = True
                continue
            p = parse_sio(m)
            if p and p[0] == "2" and p[2]:
                self.on_event(p[2][0], p[2][1] if len(p[2]) > 1 else None)
        self.closed_at = time.monotonic()
        self.closed.set()

    def emit(self, event, data):
        self.ws.send("42/chat," + json.dumps([event, data], separators=(",", ":")))

    async def join(self, cid, timeout=10.0):
        """conversation:join, waiting for conversation:joined (the caller's on_event sees it too)."""
        fut = asyncio.get_running_loop().create_future()
        prev = self.on_event

        def hook(name, data):
            if name in ("conversation:joined", "conversation:error") and not fut.done():
                fut.set_result((name, data))
            prev(name, data)

        self.on_event = hook
        self.emit("conversation:join", {"conversationId": cid})
        try:
            name, data = await asyncio.wait_for(fut, timeout)
        finally:
            self.on_event = prev
        if name != "conversation:joined":
            raise RuntimeError(f"join {cid}: {data}")

    def close(self):
        if self.ws:
            self.ws.close()
        if self.task:
            self.task.cancel()


class Tracker:
    """Outcomes of `message:send`s by tempId: acked ids, error codes, and latencies."""

    def __init__(self):
        self.sent_at = {}
        self.acked = {}
        self.errors = {}
        self.latency_ms = []
        self.last_ack_at = None
        self.ack_times = []

    def on_event(self, name, data):
        if name == "message:sent":
            t = data.get("tempId")
            self.acked[t] = data["message"]["id"]
            now = time.monotonic()
            self.last_ack_at = now
            self.ack_times.append(now)
            s = self.sent_at.get(t)
            if s is not None:
                self.latency_ms.append((now - s) * 1000)
        elif name == "message:error":
            self.errors[data.get("tempId")] = data.get("error")

    def send(self, client, cid, temp, content=None):
        self.sent_at[temp] = time.monotonic()
        client.emit(
            "message:send",
            {"conversationId": cid, "content": content or f"chaos {temp}", "tempId": temp},
        )


# ---------------------------------------------------------------- HTTP


async def http(port, method, path, token=None, body=None, timeout=10.0, local_addr=None):
    """One HTTP/1.1 request on a fresh connection: (status, headers text, body text)."""

    async def go():
        reader, writer = await asyncio.open_connection(
            HOST, port, local_addr=(local_addr, 0) if local_addr else None
        )
        data = json.dumps(body) if body is not None else ""
        auth = f"Authorization: Bearer {token}\r\n" if token else ""
        writer.write(
            (
                f"{method} {path} HTTP/1.1\r\nHost: {HOST}\r\n{auth}"
                f"Content-Type: application/json\r\nContent-Length: {len(data.encode())}\r\n"
                f"Connection: close\r\n\r\n{data}"
            ).encode()
        )
        raw = await reader.read(-1)
        writer.close()
        text = raw.decode(errors="replace")
        head, _, rest = text.partition("\r\n\r\n")
        return int(head.split(" ", 2)[1]), head, rest

    return await asyncio.wait_for(go(), timeout)


async def group(port, owner, members, title="chaos"):
    """A group conversation made by `owner` (`"1:brand"`) with `members` [(id, type)]; its id."""
    status, _, body = await http(
        port, "POST", "/api/chat/conversations", owner,
        {"participants": [{"userId": i, "userType": t} for i, t in members], "title": title},
    )
    if status not in (200, 201):
        raise RuntimeError(f"group creation: {status} {body[:200]}")
    return json.loads(body)["id"]


async def direct(port, owner, other_id, other_type):
    status, _, body = await http(
        port, "POST", "/api/chat/conversations", owner,
        {"participantId": other_id, "participantType": other_type},
    )
    if status not in (200, 201):
        raise RuntimeError(f"conversation creation: {status} {body[:200]}")
    return json.loads(body)["id"]


def token(i):
    return f"{i}:{'brand' if i % 2 else 'influencer'}"


def user(i):
    return (i, "brand" if i % 2 else "influencer")


# ---------------------------------------------------------------- PostgreSQL


def psql(db, sql):
    out = subprocess.run(
        ["psql", f"{PG_ADMIN}/{db}", "-v", "ON_ERROR_STOP=1", "-qtAF", "\t", "-c", sql],
        check=True, capture_output=True, text=True,
    )
    return out.stdout


class Database:
    """A PostgreSQL database of the suite's own, named after the run and scenario; dropped after."""

    def __init__(self, name):
        run = os.environ.get("CHAOS_RUN_ID") or str(os.getpid())
        self.name = f"chatwire_chaos_{run}_{name}"
        self.url = f"{PG_ADMIN}/{self.name}"

    def __enter__(self):
        psql("postgres", f'DROP DATABASE IF EXISTS "{self.name}"')
        psql("postgres", f'CREATE DATABASE "{self.name}"')
        return self

    def __exit__(self, *exc):
        psql("postgres", f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')

    def rows(self):
        """{temp_id_key: id} of every stored message, and the number of rows."""
        out = psql(self.name, "SELECT temp_id_key, id FROM messages")
        pairs = [line.split("\t") for line in out.splitlines() if line]
        return {k: int(v) for k, v in pairs}, len(pairs)

    def count(self):
        return int(psql(self.name, "SELECT count(*) FROM messages").strip())


def key(temp):
    """How the store keys a string tempId."""
    return f"s:{temp}"


# ---------------------------------------------------------------- the server process


class Server:
    """`chatwire serve` on 127.0.0.1 in the background; stopped by its PID only."""

    BASE = {
        "RATE_LIMIT_CONN_PER_IP": "0",
        "RATE_LIMIT_REST_IP_FACTOR": "0",
        "MAX_SESSIONS_PER_IP": "0",
        "RATE_LIMIT_REST_CREATES": "1000",
        # Load scenarios send fast from few users; the per-connection limit stays on.
        "RATE_LIMIT_PER_USER": "0",
        "DEV_TOKENS": "true",
        "LOG_LEVEL": "warn",
    }

    def __init__(self, name, db_url, env=None, port=None):
        self.name = name
        self.db_url = db_url
        self.port = port or free_port()
        self.env = dict(self.BASE)
        self.env.update(env or {})
        self.proc = None
        os.makedirs(OUT, exist_ok=True)
        self.log_path = os.path.join(OUT, f"{name}.log")

    def start(self, wait=30.0):
        env = {k: v for k, v in os.environ.items() if not k.startswith("JWT_")}
        env.update(self.env)
        env.update({"HOST": HOST, "PORT": str(self.port), "DATABASE_URL": self.db_url})
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [os.path.join(BIN, "chatwire"), "serve"], env=env, stdout=log, stderr=log,
            stdin=subprocess.DEVNULL,
        )
        log.close()
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited {self.proc.returncode}, see {self.log_path}")
            try:
                with urllib.request.urlopen(f"http://{HOST}:{self.port}/healthz", timeout=1) as r:
                    if r.status == 200:
                        return self
            except OSError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"server did not come up, see {self.log_path}")

    @property
    def pid(self):
        return self.proc.pid

    def rss_kb(self):
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def heap_bytes(self):
        """Heap in use (`chatwire_heap_bytes`; the chaos build counts its allocations)."""
        return int(self.metric("chatwire_heap_bytes"))

    def fds(self):
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    def metrics(self):
        with urllib.request.urlopen(f"http://{HOST}:{self.port}/metrics", timeout=5) as r:
            return r.read().decode()

    def metric(self, name, label=""):
        """Sum of the samples of `name` whose labels contain `label`."""
        total = 0.0
        for line in self.metrics().splitlines():
            if line.startswith(name) and (line[len(name)] in " {") and label in line:
                total += float(line.rsplit(" ", 1)[1])
        return total

    def term(self, timeout=30.0):
        """SIGTERM; the exit status (None if it had to be killed)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill9()
            return None

    def kill9(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
        if self.proc:
            self.proc.wait()

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.term(15.0)


async def settle(predicate, timeout):
    """Polls `predicate()` every 0.25 s until true; seconds taken, or None after `timeout`."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if predicate():
            return time.monotonic() - t0
        await asyncio.sleep(0.25)
    return None
