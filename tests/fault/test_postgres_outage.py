"""PostgreSQL stopped and started again in the middle of a webhook ingest.

A private cluster (never the machine's shared server): ``kabar serve`` answers 503 while the
database is down (the provider retries, nothing half-written), ``/readyz`` says so, and after the
restart every delivery is stored exactly once — without restarting ``kabar serve``.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from kabar.db.engine import Database
from tests.conftest import base_settings, free_port, server_env
from tests.fault.support import PgCluster, Sender, assert_exactly_once, inbound_plan, stored_state
from tests.ingest.test_lossless import setup_workspace

DELIVERIES = 600
CUSTOMERS = 30


@pytest.fixture
def cluster() -> Iterator[PgCluster]:
    pg = PgCluster(free_port())
    pg.start()
    try:
        yield pg
    finally:
        pg.destroy()


async def test_postgres_restart_mid_ingest_is_503_then_nothing_lost(cluster: PgCluster, tmp_path: Path, start_server: Any) -> None:
    db_url = await asyncio.to_thread(cluster.create_database, "kabar_fault")
    env = server_env(db_url, tmp_path)
    server = await asyncio.to_thread(start_server, env)
    ws, pnid, secret = await setup_workspace(server.url, {**os.environ, **env})
    plan = inbound_plan(pnid, secret, deliveries=DELIVERIES, customers=CUSTOMERS, seed=11)
    sender = Sender(server.url)
    sending = asyncio.create_task(sender.run(plan))
    try:
        await sender.wait_acknowledged(DELIVERIES // 4)
        await asyncio.to_thread(cluster.stop, "fast")
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
            ready = await http.get("/readyz")
            assert ready.status_code == 503 and ready.json()["checks"]["database"].startswith("unavailable"), ready.text
            # Let the sender meet the outage for a while (it keeps retrying), then bring PostgreSQL back.
            deadline = asyncio.get_running_loop().time() + 30
            while sender.outcomes["503"] < 50:
                assert asyncio.get_running_loop().time() < deadline, sender.outcomes
                await asyncio.sleep(0.05)
            acknowledged_during_outage = sender.acknowledged
            await asyncio.sleep(0.5)
            assert sender.acknowledged == acknowledged_during_outage, "a 200 while the database was down"
            await asyncio.to_thread(cluster.start)
            await asyncio.wait_for(sending, timeout=180)
            assert (await http.get("/readyz")).status_code == 200
    finally:
        sending.cancel()
        await asyncio.gather(sending, return_exceptions=True)

    assert server.proc.poll() is None, "kabar serve must ride out a database outage"
    db = Database(base_settings(db_url, tmp_path))
    try:
        stored = await stored_state(db, ws, plan)
    finally:
        await db.dispose()
    print(
        f"\nFAULT PostgreSQL restart: {DELIVERIES} deliveries ({len(plan.messages)} messages), {sender.attempts} attempts "
        f"{dict(sender.outcomes)}; stored {stored.messages}, lost {len(sender.acked_wamids & stored.missing)}, duplicates {stored.duplicates}"
    )
    assert sender.outcomes["503"] >= 50
    assert set(sender.outcomes) <= {"200", "503"}, f"only 200 and 503 are acceptable answers: {sender.outcomes}"
    assert_exactly_once(stored, plan, sender)
