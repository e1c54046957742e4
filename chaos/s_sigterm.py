"""Scenario 8, SIGTERM under load: 50 WebSocket clients keep 8 sends each in flight on
PostgreSQL; after 3 s the server gets SIGTERM. Every client must see the Engine.IO close packet,
every acknowledged message must be stored under its id, and the server must exit 0.
"""

import asyncio
import os
import time

import cw
import load

CLIENTS = int(os.environ.get("CHAOS_SIGTERM_CLIENTS", "50"))


async def main():
    with cw.Database("sigterm") as db:
        server = cw.Server("sigterm", db.url, {"RATE_LIMIT_PER_SOCKET": "0"})
        server.start()
        try:
            ss = await load.senders(server.port, CLIENTS)
            stop = asyncio.Event()
            tasks = [asyncio.ensure_future(s.run(stop)) for s in ss]
            await asyncio.sleep(3)
            in_flight = sum(s.outstanding() for s in ss)
            acked_before = sum(len(s.tracker.acked) for s in ss)
            t_term = time.monotonic()
            code = await asyncio.get_running_loop().run_in_executor(None, server.term, 30.0)
            exit_secs = time.monotonic() - t_term
            # The clients stop once their connection ends; give them a bound.
            await asyncio.wait([asyncio.ensure_future(s.client.closed.wait()) for s in ss],
                               timeout=10)
            stop.set()
            await asyncio.gather(*tasks)
            closed = sum(1 for s in ss if s.client.closed.is_set())
            eio_close = sum(1 for s in ss if s.client.eio_close)
            ends = {}
            for s in ss:
                e = f"{'Engine.IO close, ' if s.client.eio_close else ''}{s.client.ws.end}"
                ends[e] = ends.get(e, 0) + 1
            acked, errors, tried = load.merged(ss)
            rows, n = db.rows()
        finally:
            server.stop()
    lost = [t for t, i in acked.items() if rows.get(cw.key(t)) != i]
    unanswered = len(tried) - len(acked) - len(errors)
    print(f"{len(tried)} sends, {acked_before} acked before SIGTERM with {in_flight} in flight, "
          f"{len(acked)} acked in all, {len(errors)} errors {set(errors.values())}, "
          f"{unanswered} unanswered (sent after the close); rows {n}; acked but not stored "
          f"{len(lost)}; Engine.IO close seen by {eio_close}/{CLIENTS}, connections ended "
          f"{closed}/{CLIENTS} ({ends}); exit status {code} after {exit_secs:.1f} s")
    ok = (code == 0 and not lost and eio_close == CLIENTS and closed == CLIENTS
          and acked_before > 0 and in_flight > 0)
    figure = (f"{len(acked)} acked ({in_flight} in flight at SIGTERM), {len(lost)} lost; "
              f"Engine.IO close {eio_close}/{CLIENTS}; exit {code} in {exit_secs:.1f} s")
    return ok, figure
