"""Scenario 6, PostgreSQL outage: the server reaches PostgreSQL through a TCP proxy
(chaos/pgproxy.py, a process of the suite). 50 WebSocket clients send 5,000 messages/s in all;
after 10 s the proxy is cut for 60 s, then restored, and sending goes on for 15 s. Every
acknowledged message must be stored under its id, every other send must have been answered
`unavailable` (none left without an answer), writes must resume within 2 s of the restore
(the first `message:sent` after it), and no message may be stored twice. Then clients retry some
`unavailable` sends with their tempIds (every one that was stored anyway, and 10 per client):
each must be acknowledged, with the stored id where there was one.
"""

import asyncio
import os
import signal
import sys
import time
import urllib.request

import cw
import load

RATE = float(os.environ.get("CHAOS_OUTAGE_RATE", "5000"))
OUTAGE_S = float(os.environ.get("CHAOS_OUTAGE_SECS", "60"))
CLIENTS = 50
BEFORE_S = 10.0
AFTER_S = 15.0


def readyz(port):
    try:
        with urllib.request.urlopen(f"http://{cw.HOST}:{port}/readyz", timeout=2) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
    except OSError:
        return None


async def main():
    with cw.Database("pg_outage") as db:
        proxy_port = cw.free_port()
        log = open(os.path.join(cw.OUT, "pgproxy.log"), "ab")
        proxy = await asyncio.create_subprocess_exec(
            sys.executable, os.path.join(os.path.dirname(__file__), "pgproxy.py"),
            str(proxy_port), "5432", stdout=log, stderr=log,
        )
        log.close()
        server = None
        try:
            for _ in range(50):
                try:
                    _, w = await asyncio.open_connection(cw.HOST, proxy_port)
                    w.close()
                    break
                except OSError:
                    await asyncio.sleep(0.1)
            url = f"postgres://postgres@{cw.HOST}:{proxy_port}/{db.name}"
            server = cw.Server("pg_outage", url, {"RATE_LIMIT_PER_SOCKET": "0"})
            server.start()
            ss = await load.senders(server.port, CLIENTS)
            stop = asyncio.Event()
            t_start = time.monotonic()
            tasks = [asyncio.ensure_future(s.run(stop, rate=RATE / CLIENTS)) for s in ss]
            await asyncio.sleep(BEFORE_S)
            proxy.send_signal(signal.SIGUSR1)
            t_cut = time.monotonic()
            await asyncio.sleep(OUTAGE_S / 2)
            ready_during = readyz(server.port)
            await asyncio.sleep(OUTAGE_S / 2)
            proxy.send_signal(signal.SIGUSR2)
            t_restore = time.monotonic()
            await asyncio.sleep(AFTER_S)
            stop.set()
            await asyncio.gather(*tasks)
            t_stop = time.monotonic()
            # Every send is answered within the write deadline (5 s): wait for the stragglers.
            for _ in range(100):
                if sum(s.outstanding() for s in ss) == 0:
                    break
                await asyncio.sleep(0.1)
            ready_after = readyz(server.port)
            acked, errors, tried = load.merged(ss)
            acked, errors = dict(acked), dict(errors)
            ack_times = sorted(t for s in ss for t in s.tracker.ack_times)
            # Clients retry what was answered `unavailable` (same tempId): every one of those the
            # database holds anyway (a commit whose answer was cut off), and 10 more per client.
            rows0, _ = db.rows()
            retried = same = 0
            for s in ss:
                mine = [t for t in s.tracker.errors if t.startswith(f"{s.name}-")]
                pick = ([t for t in mine if cw.key(t) in rows0]
                        + [t for t in mine if cw.key(t) not in rows0][:10])
                ids = await load.resend_until_acked(server.port, s, pick, deadline_s=30)
                retried += len(pick)
                same += sum(1 for t in pick if ids[t] is not None
                            and (cw.key(t) not in rows0 or ids[t] == rows0[cw.key(t)]))
            for s in ss:
                s.client.close()
        finally:
            if server:
                server.stop()
            if proxy.returncode is None:
                proxy.send_signal(signal.SIGTERM)
                await proxy.wait()
        rows, n = db.rows()
        dups = int(cw.psql(db.name, "SELECT count(*) - count(DISTINCT content) FROM messages"))
    rate = len(tried) / (t_stop - t_start)
    during = sum(1 for t in ack_times if t_cut + 1 < t < t_restore)
    resume = next((t - t_restore for t in ack_times if t >= t_restore), None)
    lost = [t for t, i in acked.items() if rows.get(cw.key(t)) != i]
    codes = {}
    for c in errors.values():
        codes[c] = codes.get(c, 0) + 1
    unanswered = [t for t in tried if t not in acked and t not in errors]
    not_unavailable = sum(v for k, v in codes.items() if k != "unavailable")
    stored_unavailable = sum(1 for t in errors if cw.key(t) in rows0)
    print(f"{len(tried)} sends in {t_stop - t_start:.0f} s ({rate:.0f}/s offered), "
          f"{len(acked)} acked, errors {codes}, {len(unanswered)} unanswered; acks during the "
          f"cut {during}; /readyz during {ready_during}, after {ready_after}; first ack "
          f"{resume if resume is None else round(resume, 2)} s after the restore; rows {n}, "
          f"duplicates {dups}, acked but not stored {len(lost)}, stored though answered "
          f"unavailable {stored_unavailable}; retried {retried} unavailable tempIds: {same} "
          f"acked (with the stored id where one existed)")
    ok = (rate >= 0.9 * RATE and not lost and not unanswered and not_unavailable == 0
          and codes.get("unavailable", 0) > 0 and resume is not None and resume <= 2.0
          and dups == 0 and during == 0 and ready_during == 503 and same == retried)
    figure = (f"{rate:.0f} sends/s, {OUTAGE_S:.0f} s cut: {len(acked)} acked ({len(lost)} "
              f"lost), {codes.get('unavailable', 0)} unavailable, {len(unanswered)} unanswered, "
              f"resumed in {'-' if resume is None else f'{resume:.2f}'} s, {dups} duplicates")
    return ok, figure
