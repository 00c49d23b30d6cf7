"""Polling the event log, retention and its job, and the Redis hub's failure behaviour, in-process
on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from sqlalchemy import select, update

from kabar.db import tables as t
from kabar.db.types import utcnow
from kabar.jobs.registry import Job
from kabar.realtime import service
from kabar.realtime.hub import RealtimeOptions, RedisHub
from kabar.jobs.periodic import schedule_periodic
from kabar.realtime.tasks import CLEANUP_KIND, cleanup_events
from tests.conftest import free_port
from tests.helpers import assert_problem


async def _writes(client, tenant, n: int) -> None:
    for i in range(n):
        response = await client.patch(tenant.base, json={"settings": {"i": i}}, headers=tenant.owner.headers)
        assert response.status_code == 200, response.text


async def test_polling_pages_through_the_log_in_order(client, tenant):
    await _writes(client, tenant, 5)  # seq 1 is workspace.created
    seen, since = [], 0
    while True:
        response = await client.get(f"{tenant.base}/events", params={"since": since, "limit": 2}, headers=tenant.owner.headers)
        assert response.status_code == 200
        page = response.json()
        seen += [e["seq"] for e in page["data"]]
        assert page["last_seq"] == 6 and page["resync"] is False
        since = page["next_since"]
        if not page["has_more"]:
            break
    assert seen == [1, 2, 3, 4, 5, 6] and since == 6
    event = page["data"][-1]
    assert set(event) == {"seq", "type", "data", "created_at"} and event["type"] == "workspace.updated"
    empty = (await client.get(f"{tenant.base}/events", params={"since": 6}, headers=tenant.owner.headers)).json()
    assert empty["data"] == [] and empty["next_since"] == 6 and empty["has_more"] is False


async def test_polling_input_and_access(client, tenant, other_tenant):
    headers = tenant.owner.headers
    assert_problem(await client.get(f"{tenant.base}/events", params={"limit": 0}, headers=headers), 422)
    assert_problem(await client.get(f"{tenant.base}/events", params={"limit": 1001}, headers=headers), 422)
    assert_problem(await client.get(f"{tenant.base}/events", params={"since": -1}, headers=headers), 422)
    assert_problem(await client.get(f"{tenant.base}/events"), 401)
    assert_problem(await client.get(f"{other_tenant.base}/events", headers=headers), 404)
    assert_problem(await client.get(f"{other_tenant.base}/events/stream", headers=headers), 404)
    key = await tenant.api_key()
    assert (await client.get(f"{tenant.base}/events", headers=key.headers)).status_code == 200


async def test_retention_by_count_and_by_age_deletes_only_a_prefix(client, tenant, settings):
    from dataclasses import replace

    db = client.runtime.db
    await _writes(client, tenant, 9)  # seqs 1..10
    old = utcnow() - timedelta(days=settings.event_retention_days, hours=1)
    await db.transaction(
        lambda uow: uow.conn.execute(
            update(t.events).where(t.events.c.workspace_id == tenant.ws, t.events.c.seq <= 3).values(created_at=old)
        )
    )
    await service.cleanup(db, settings, utcnow())  # by age: 1..3 are older than the retention days

    def seqs(conn):
        return [r.seq for r in conn.execute(select(t.events.c.seq).where(t.events.c.workspace_id == tenant.ws).order_by(t.events.c.seq))]

    assert await db.read(seqs) == list(range(4, 11))
    await service.cleanup(db, replace(settings, event_retention_count=2), utcnow())  # by count
    assert await db.read(seqs) == [9, 10]
    page = (await client.get(f"{tenant.base}/events", params={"since": 5}, headers=tenant.owner.headers)).json()
    assert page["resync"] is True and page["oldest_seq"] == 9 and [e["seq"] for e in page["data"]] == [9, 10]
    page = (await client.get(f"{tenant.base}/events", params={"since": 8}, headers=tenant.owner.headers)).json()
    assert page["resync"] is False


async def test_retention_keeps_events_an_outgoing_webhook_still_owes(client, tenant, settings):
    """An active endpoint that has delivered nothing yet holds the log: cleanup deletes none of it."""
    from dataclasses import replace

    import kabar.integrations.dispatch  # noqa: F401 - registers the webhooks' retention floor

    db = client.runtime.db
    # Created while nothing can deliver (the endpoint's position starts at the current seq).
    created = await client.post(
        f"{tenant.base}/webhooks",
        json={"url": "http://127.0.0.1:9/unreachable", "events": ["*"], "active": True},
        headers=tenant.owner.headers,
    )
    assert created.status_code == 201, created.text
    start = (await client.get(f"{tenant.base}/events", headers=tenant.owner.headers)).json()["last_seq"]
    await _writes(client, tenant, 5)

    def seqs(conn):
        return [r.seq for r in conn.execute(select(t.events.c.seq).where(t.events.c.workspace_id == tenant.ws).order_by(t.events.c.seq))]

    await db.transaction(
        lambda uow: uow.conn.execute(
            update(t.webhook_endpoints).where(t.webhook_endpoints.c.workspace_id == tenant.ws).values(last_seq=start)
        )
    )
    await service.cleanup(db, replace(settings, event_retention_count=0), utcnow())
    remaining = await db.read(seqs)
    assert remaining and remaining[0] <= start + 1 and remaining[-1] >= start + 5


async def test_cleanup_job_keeps_exactly_one_run_scheduled(client):
    runtime = client.runtime

    def queued(conn):
        return conn.execute(
            select(t.jobs.c.id, t.jobs.c.run_at).where(t.jobs.c.kind == CLEANUP_KIND, t.jobs.c.status == "queued")
        ).all()

    await runtime.db.transaction(schedule_periodic, CLEANUP_KIND, timedelta(hours=5))
    await runtime.db.transaction(schedule_periodic, CLEANUP_KIND, timedelta(hours=5))
    jobs = await runtime.db.read(queued)
    assert len(jobs) == 1
    # A run re-schedules itself only when no other run is waiting (chains collapse into one).
    await cleanup_events(runtime, Job("x", CLEANUP_KIND, {}, None, CLEANUP_KIND, 1, 8))
    assert [j.id for j in await runtime.db.read(queued)] == [jobs[0].id]
    await runtime.db.transaction(lambda uow: uow.conn.execute(update(t.jobs).where(t.jobs.c.id == jobs[0].id).values(status="done")))
    await cleanup_events(runtime, Job("y", CLEANUP_KIND, {}, None, CLEANUP_KIND, 1, 8))
    successor = await runtime.db.read(queued)
    assert len(successor) == 1 and successor[0].run_at > utcnow() + timedelta(minutes=50)


async def test_redis_hub_with_redis_unreachable_never_fails_a_write(client, tenant):
    hub = RedisHub(f"redis://127.0.0.1:{free_port()}/0", client.runtime.db, RealtimeOptions(poll_seconds=0.05))
    await hub.start()
    try:
        deadline = asyncio.get_running_loop().time() + 10
        while not (await hub.health()).startswith("unavailable"):
            assert asyncio.get_running_loop().time() < deadline, await hub.health()
            await asyncio.sleep(0.02)
        assert hub.degraded and hub.poll_interval == 0.05
        woken = []
        hub.subscribe(tenant.ws, lambda ws, seq: woken.append(seq))
        await hub.publish(tenant.ws, 7)  # returns at once; local listeners still woken
        assert woken == [7]
        await hub.publish_ephemeral(tenant.ws, {"op": "typing", "conversation_id": "c"})
    finally:
        await hub.stop()
