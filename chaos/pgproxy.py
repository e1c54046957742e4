"""A TCP proxy in front of PostgreSQL that can be cut: SIGUSR1 drops every proxied connection
and refuses new ones (accepted, then closed at once), SIGUSR2 lets connections through again.
Listens on 127.0.0.1 only and forwards to 127.0.0.1 only.

    python3 chaos/pgproxy.py LISTEN_PORT TARGET_PORT
"""

import asyncio
import signal
import sys

HOST = "127.0.0.1"


class Proxy:
    def __init__(self, target_port):
        self.target_port = target_port
        self.up = True
        self.conns = set()

    async def pipe(self, reader, writer):
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    async def handle(self, creader, cwriter):
        if not self.up:
            cwriter.transport.abort()
            return
        try:
            sreader, swriter = await asyncio.open_connection(HOST, self.target_port)
        except OSError:
            cwriter.transport.abort()
            return
        pair = (cwriter, swriter)
        self.conns.add(pair)
        try:
            await asyncio.gather(self.pipe(creader, swriter), self.pipe(sreader, cwriter))
        finally:
            self.conns.discard(pair)

    def cut(self):
        self.up = False
        for a, b in list(self.conns):
            a.transport.abort()
            b.transport.abort()
        self.conns.clear()
        print("proxy: cut", flush=True)

    def restore(self):
        self.up = True
        print("proxy: restored", flush=True)


async def main(listen_port, target_port):
    proxy = Proxy(target_port)
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGUSR1, proxy.cut)
    loop.add_signal_handler(signal.SIGUSR2, proxy.restore)
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    server = await asyncio.start_server(proxy.handle, HOST, listen_port)
    print(f"proxy: {HOST}:{listen_port} -> {HOST}:{target_port}", flush=True)
    async with server:
        await stop.wait()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), int(sys.argv[2])))
