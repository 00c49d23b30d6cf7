"""The unit of work: writes, event-log rows and jobs commit together or not at all; event seqs
are per workspace, gap-free and in commit order; listeners hear only about commits; a database
outage is a 503 that wrote nothing."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest
from sqlalchemy import select, update

from kabar.db import tables as t
from kabar.db.engine import Database, StorageUnavailable
from tests.conftest import free_port
from tests.helpers import assert_problem


def _events(conn, workspace_id: str):  # noqa: ANN001, ANN202
    return conn.execute(select(t.events).where(t.events.c.workspace_id == workspace_id).order_by(t.events.c.seq)).all()


def _jobs(conn, marker: str):  # noqa: ANN001, ANN202
    return conn.execute(select(t.jobs).where(t.jobs.c.kind == marker)).all()


async def test_rollback_leaves_no_rows_events_or_jobs(client, tenant):
    db = client.runtime.db
    before = await db.read(_events, tenant.ws)
    heard: list[object] = []

    def listen(uow):  # noqa: ANN001, ANN202 - other tests' background commits share this database
        if tenant.ws in uow.last_seqs or any(job.workspace_id == tenant.ws for job in uow.jobs):
            heard.append(uow)

    db.on_commit(listen)
    marker = f"test.never-{tenant.ws[-8:]}"

    def _fails(uow):  # noqa: ANN001, ANN202
        uow.conn.execute(update(t.workspaces).where(t.workspaces.c.id == tenant.ws).values(name="Half-written"))
        uow.emit(tenant.ws, "workspace.updated", {"name": "Half-written"})
        uow.enqueue(marker, {}, workspace_id=tenant.ws)
        raise RuntimeError("a rule failed after the writes")

    try:
        with pytest.raises(RuntimeError):
            await db.transaction(_fails)
        assert await db.read(_events, tenant.ws) == before
        assert await db.read(_jobs, marker) == []
        assert (await client.get(tenant.base, headers=tenant.owner.headers)).json()["name"] != "Half-written"
        assert heard == []

        def _works(uow):  # noqa: ANN001, ANN202
            uow.emit(tenant.ws, "test.one", {"n": 1})
            uow.emit(tenant.ws, "test.two", {"n": 2})
            return uow.enqueue(marker, {"n": 3}, workspace_id=tenant.ws)

        job_id = await db.transaction(_works)
        rows = await db.read(_events, tenant.ws)
        assert [(r.type, r.seq) for r in rows[len(before) :]] == [("test.one", before[-1].seq + 1), ("test.two", before[-1].seq + 2)]
        assert [j.id for j in await db.read(_jobs, marker)] == [job_id]
        assert len(heard) == 1 and heard[0].last_seqs == {tenant.ws: before[-1].seq + 2}
    finally:
        db._after_commit.remove(listen)


async def test_concurrent_writers_get_gap_free_seqs(client, tenant, other_tenant):
    db = client.runtime.db
    start = {ws: len(await db.read(_events, ws)) for ws in (tenant.ws, other_tenant.ws)}

    def _write(uow, i: int):  # noqa: ANN001, ANN202
        uow.emit(tenant.ws, "test.concurrent", {"i": i})
        uow.emit(other_tenant.ws, "test.concurrent", {"i": i})  # two workspaces in one unit of work
        uow.emit(tenant.ws, "test.concurrent", {"i": i})

    await asyncio.gather(*(db.transaction(_write, i) for i in range(25)))
    for ws, per_tx in ((tenant.ws, 2), (other_tenant.ws, 1)):
        rows = await db.read(_events, ws)
        seqs = [r.seq for r in rows]
        assert seqs == list(range(1, len(seqs) + 1)), f"gaps or duplicates in {ws}"
        assert len(seqs) == start[ws] + 25 * per_tx
    # Events of one unit of work are consecutive in each workspace.
    rows = [r for r in await db.read(_events, tenant.ws) if r.type == "test.concurrent"]
    for first, second in zip(rows[::2], rows[1::2], strict=True):
        assert first.data == second.data and second.seq == first.seq + 1


async def test_unreachable_database_raises_storage_unavailable(settings):
    """Connection-level failures are told apart from SQL errors (they become 503s upstream)."""
    dead_url = (
        settings.database_url.rsplit("@", 1)[0] + f"@127.0.0.1:{free_port()}/nowhere"
        if not settings.is_sqlite
        else "sqlite:////nonexistent-dir/kabar.db"
    )
    dead = Database(replace(settings, database_url=dead_url))
    try:
        with pytest.raises(StorageUnavailable):
            await dead.read(lambda conn: conn.exec_driver_sql("SELECT 1").scalar())
        with pytest.raises(StorageUnavailable):
            await dead.transaction(lambda uow: None)
    finally:
        await dead.dispose()


async def test_storage_outage_is_503_and_readyz_says_so(client, tenant, monkeypatch):
    async def down(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise StorageUnavailable("connection refused")

    monkeypatch.setattr(client.runtime.db, "read", down)
    monkeypatch.setattr(client.runtime.db, "transaction", down)
    response = await client.post("/v1/auth/login", json={"email": tenant.owner.email, "password": "correct-horse-battery"})
    assert_problem(response, 503)
    assert response.headers["retry-after"]
    assert_problem(await client.get(tenant.base, headers=tenant.owner.headers), 503)
    response = await client.get("/readyz")
    assert response.status_code == 503 and response.json()["checks"]["database"].startswith("unavailable")


async def test_idempotency_key_runs_a_create_once_even_concurrently(client, tenant):
    from kabar.auth.permissions import Role
    from kabar.auth.scope import Principal, Scope
    from kabar.errors import Problem
    from kabar.idempotency import run_idempotent

    db = client.runtime.db
    ctx = Scope(tenant.ws, Role.OWNER, Principal("session", user_id=tenant.owner.user_id))
    before = len(await db.read(_events, tenant.ws))

    def _create(uow, n: int):  # noqa: ANN001, ANN202
        uow.emit(tenant.ws, "test.created", {"n": n})
        return {"created": n}

    def attempt(n: int, body: str = "same body"):  # noqa: ANN202
        return run_idempotent(
            db, ctx, key="retry-1", route="POST /test", request_hash=body, status_code=201, fn=_create, args=(n,)
        )

    results = await asyncio.gather(*(attempt(n) for n in range(6)))
    assert len({str(r) for r in results}) == 1 and results[0][0] == 201
    assert len(await db.read(_events, tenant.ws)) == before + 1  # the create ran once
    with pytest.raises(Problem) as reused:
        await attempt(9, body="another body")
    assert reused.value.status == 409
    # Without a key every call creates.
    await run_idempotent(db, ctx, key=None, route="POST /test", request_hash="", status_code=201, fn=_create, args=(10,))
    assert len(await db.read(_events, tenant.ws)) == before + 2


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)  # SQLite's single-writer lock
async def test_a_held_sqlite_write_lock_never_freezes_the_event_loop(client, tenant, backend):
    """Another connection (a bulk import, another process) holds SQLite's write lock: a write on
    the server waits for it off the event loop, reads keep being answered meanwhile, and the write
    lands once the lock is released."""
    import sqlite3

    path = client.runtime.settings.database_url.split("sqlite:///", 1)[1]
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    try:
        write = asyncio.create_task(
            client.post(f"/v1/workspaces/{tenant.ws}/contacts", json={"phone": "+6281355500017", "name": "Sabar"}, headers=tenant.owner.headers)
        )
        # The loop answers database reads while the write waits for the lock.
        for _ in range(3):
            response = await asyncio.wait_for(client.get(f"/v1/workspaces/{tenant.ws}/contacts", headers=tenant.owner.headers), 5)
            assert response.status_code == 200
        assert not write.done()
    finally:
        blocker.rollback()
        blocker.close()
    response = await asyncio.wait_for(write, 30)
    assert response.status_code == 201, response.text
    found = await client.get(f"/v1/workspaces/{tenant.ws}/contacts", params={"q": "Sabar"}, headers=tenant.owner.headers)
    assert [c["phone"] for c in found.json()["data"]] == ["+6281355500017"]
