"""Scenario 7, kill -9 in the middle of a batch: 50 WebSocket clients keep 8 sends each in
flight on PostgreSQL; after 2 s the server gets SIGKILL (with sends in flight, so batches are
being written). It is restarted on the same port; each client reconnects and sends every
tempId that was not acknowledged again (same tempId, same content) until acknowledged, and a
sample of acknowledged ones too. Then: one row per tempId tried (0 duplicates), every
acknowledged message stored under the id it was acknowledged with (0 lost).
"""

import asyncio
import os

import cw
import load

CLIENTS = int(os.environ.get("CHAOS_KILL9_CLIENTS", "50"))


async def main():
    with cw.Database("kill9") as db:
        server = cw.Server("kill9", db.url, {"RATE_LIMIT_PER_SOCKET": "0"})
        server.start()
        try:
            ss = await load.senders(server.port, CLIENTS)
            stop = asyncio.Event()
            tasks = [asyncio.ensure_future(s.run(stop)) for s in ss]
            await asyncio.sleep(2)
            batches_before = server.metric("chatwire_write_batch_size_count")
            in_flight = sum(s.outstanding() for s in ss)
            server.kill9()
            await asyncio.wait([asyncio.ensure_future(s.client.closed.wait()) for s in ss],
                               timeout=10)
            stop.set()
            await asyncio.gather(*tasks)
            acked_at_kill, _, tried = load.merged(ss)
            acked_at_kill = dict(acked_at_kill)
            server = cw.Server("kill9", db.url, {"RATE_LIMIT_PER_SOCKET": "0"}, port=server.port)
            server.start()
            retried = 0
            again_same = again_total = 0
            for s in ss:
                t = s.tracker
                missing = [temp for temp in t.sent_at if temp not in t.acked]
                retried += len(missing)
                await load.resend_until_acked(server.port, s, missing)
                sample = [temp for temp in list(acked_at_kill) if temp.startswith(f"{s.name}-")][:4]
                ids = await load.resend_until_acked(server.port, s, sample)
                again_total += len(sample)
                again_same += sum(1 for temp in sample if ids[temp] == acked_at_kill[temp])
            acked, _, _ = load.merged(ss)
            rows, n = db.rows()
            dups = int(cw.psql(db.name, "SELECT count(*) - count(DISTINCT content) FROM messages"))
            for s in ss:
                s.client.close()
        finally:
            server.stop()
    lost = [t for t, i in acked_at_kill.items() if rows.get(cw.key(t)) != i]
    unacked_after = [t for t in tried if t not in acked]
    print(f"{len(tried)} tempIds sent, {len(acked_at_kill)} acked before kill -9 with {in_flight} "
          f"in flight ({batches_before:.0f} batches committed before); {retried} retried after "
          f"restart, {len(unacked_after)} never acked; rows {n}, duplicate rows {dups}; acked "
          f"before the kill but missing or changed {len(lost)}; acked resent: {again_same}/"
          f"{again_total} kept their id")
    ok = (n == len(tried) and dups == 0 and not lost and not unacked_after
          and again_same == again_total and in_flight > 0 and retried > 0)
    figure = (f"{len(tried)} tempIds, {len(acked_at_kill)} acked before kill with {in_flight} "
              f"in flight, {retried} retried: {n} rows, {dups} duplicates, {len(lost)} lost")
    return ok, figure
