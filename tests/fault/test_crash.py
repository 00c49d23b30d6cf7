"""``kill -9`` of ``kabar serve`` during a sustained signed-webhook ingest.

The sender behaves like Kapso: every delivery is posted until it is answered 200 (a connection
reset or a 503 is retried with the same body and idempotency key). The server is killed hard five
times while requests are in flight and restarted on the same port. After the last restart every
acknowledged message is stored, none twice, contacts/conversations are one per customer and unread
counts match the messages (no delivery counted twice).
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

from kabar.db.engine import Database
from tests.conftest import base_settings, create_database, server_env
from tests.fault.support import Sender, assert_exactly_once, inbound_plan, kill_hard, stored_state
from tests.ingest.test_lossless import setup_workspace

DELIVERIES = 1200
CUSTOMERS = 40
KILLS = 5


async def test_kill_9_during_ingest_loses_and_duplicates_nothing(backend: str, tmp_path: Path, start_server: Any) -> None:
    db_url = await asyncio.to_thread(create_database, backend, tmp_path, "fault_kill")
    env = server_env(db_url, tmp_path)
    server = await asyncio.to_thread(start_server, env)
    ws, pnid, secret = await setup_workspace(server.url, {**os.environ, **env})
    plan = inbound_plan(pnid, secret, deliveries=DELIVERIES, customers=CUSTOMERS)
    sender = Sender(server.url)
    sending = asyncio.create_task(sender.run(plan))
    kills = 0
    try:
        for n in range(KILLS):
            # Kill while the ingest is in full flow: spread over the first ~80 % of the deliveries.
            await sender.wait_acknowledged((n + 1) * DELIVERIES * 4 // (5 * (KILLS + 1)) + 50)
            assert not sending.done(), "the ingest finished before all kills happened"
            await asyncio.to_thread(kill_hard, server)
            kills += 1
            server = await asyncio.to_thread(start_server, env, server.port)
        await asyncio.wait_for(sending, timeout=240)
    finally:
        sending.cancel()
        await asyncio.gather(sending, return_exceptions=True)

    db = Database(base_settings(db_url, tmp_path))
    try:
        stored = await stored_state(db, ws, plan)
    finally:
        await db.dispose()
    retried = sender.attempts - DELIVERIES
    print(
        f"\nFAULT kill -9 [{backend}]: {DELIVERIES} deliveries ({len(plan.messages)} messages, {CUSTOMERS} customers), "
        f"{kills} kills, {sender.attempts} attempts ({retried} retried: {dict(sender.outcomes)}); "
        f"stored {stored.messages}, lost {len(sender.acked_wamids & stored.missing)}, duplicates {stored.duplicates}"
    )
    assert kills == KILLS
    assert sender.acknowledged == DELIVERIES
    assert retried > 0, "no request was interrupted: the kills did not hit the ingest"
    assert_exactly_once(stored, plan, sender)
    assert not {o for o in sender.outcomes if o.startswith("5") and o != "503"}, sender.outcomes
