"""SQL for outgoing webhooks: endpoints, deliveries, and the dispatch job of each endpoint.

Every statement names its workspace (``workspace_id ==``) except ``lagging_endpoints``, the
process-wide safety sweep, which by nature looks at every workspace.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, bindparam, case, delete, exists, func, insert, literal, or_, select, update

from kabar.auth.scope import Scope, system_scope
from kabar.db import tables as t
from kabar.db.uow import UnitOfWork

E = t.webhook_endpoints
D = t.webhook_deliveries
EV = t.events
J = t.jobs

DISPATCH_KIND = "webhooks.dispatch"
# Dispatch jobs retry on their own schedule (see dispatch.py); the job queue's own retries only
# cover unexpected errors (a database outage), which must never dead-letter an endpoint's queue.
DISPATCH_MAX_ATTEMPTS = 1_000_000
OPEN = ("pending", "failed")  # deliveries still to be sent
WEBHOOK_FAMILY = "webhook."  # events about an endpoint (``data.id``): never sent to that endpoint


SERIAL_PREFIX = "webhooks:"  # + endpoint id: the job queue runs one dispatch per endpoint at a time


def serial_key(endpoint_id: str) -> str:
    return SERIAL_PREFIX + endpoint_id


# -- endpoints ----------------------------------------------------------------------------------


def endpoint(conn: Connection, scope: Scope, endpoint_id: str, *, lock: bool = False) -> Any:
    """``lock``: row-lock it first (PostgreSQL), for writers that go on to its deliveries and job.

    Lock order for outgoing webhooks: endpoint row, then delivery rows, then the workspace row
    (events), then job rows; every writer here keeps it.
    """
    stmt = select(E).where(E.c.workspace_id == scope.workspace_id, E.c.id == endpoint_id)
    return conn.execute(stmt.with_for_update() if lock else stmt).first()


def endpoints(conn: Connection, scope: Scope) -> list[Any]:
    return conn.execute(select(E).where(E.c.workspace_id == scope.workspace_id).order_by(E.c.created_at, E.c.id)).all()


def count_endpoints(conn: Connection, scope: Scope) -> int:
    return conn.execute(select(func.count()).select_from(E).where(E.c.workspace_id == scope.workspace_id)).scalar_one()


def insert_endpoint(conn: Connection, values: dict[str, Any]) -> None:
    conn.execute(insert(E).values(**values))


def update_endpoint(conn: Connection, scope: Scope, endpoint_id: str, **values: Any) -> int:
    result = conn.execute(update(E).where(E.c.workspace_id == scope.workspace_id, E.c.id == endpoint_id).values(**values))
    return result.rowcount or 0


def delete_endpoint(conn: Connection, scope: Scope, endpoint_id: str) -> int:
    if endpoint(conn, scope, endpoint_id, lock=True) is None:
        return 0
    conn.execute(delete(D).where(D.c.workspace_id == scope.workspace_id, D.c.endpoint_id == endpoint_id))
    conn.execute(delete(E).where(E.c.workspace_id == scope.workspace_id, E.c.id == endpoint_id))
    conn.execute(delete(J).where(J.c.serial_key == serial_key(endpoint_id), J.c.status == "queued"))
    return 1


# Built once: building a Select per call cost ~370 µs against ~73 µs prebuilt on SQLite here
# (`python -m tests.integrations.bench_nudge sqlite`, a host at load 16 on 2 cores).
_ACTIVE_ENDPOINTS = (
    select(E.c.id, E.c.events)
    .where(E.c.workspace_id == bindparam("workspace_id"), E.c.active.is_(True))
    .order_by(E.c.id)
)


def active_endpoints(conn: Connection, scope: Scope) -> list[Any]:
    """The workspace's active endpoints, in id order (a fixed lock order for their jobs)."""
    return conn.execute(_ACTIVE_ENDPOINTS, {"workspace_id": scope.workspace_id}).all()


class ActiveEndpoints:
    """Process-local memo of each workspace's active endpoints, ``(id, events)``, for ``MEMO_SECONDS``.

    The nudge runs in every event-writing transaction while it holds its workspace's row lock;
    most workspaces have no webhook, and asking costs a round trip each time: 300-690 µs uncached
    against 0.5-2 µs memoized on PostgreSQL (`python -m tests.integrations.bench_nudge <pg url>`,
    a host at load 16 on 2 cores). Changes made in this process are forgotten at once
    (``forget``); one made by another process is seen within ``MEMO_SECONDS``, and events written
    meanwhile wait at most for the next nudge or the sweep.
    """

    MEMO_SECONDS = 5.0
    MAX_ENTRIES = 100_000

    def __init__(self) -> None:
        self._memo: dict[str, tuple[float, list[tuple[str, list[str]]]]] = {}

    def get(self, conn: Any, workspace_id: str) -> list[tuple[str, list[str]]]:
        now = time.monotonic()
        hit = self._memo.get(workspace_id)
        if hit is not None and now - hit[0] < self.MEMO_SECONDS:
            return hit[1]
        rows = [(row.id, list(row.events)) for row in active_endpoints(conn, system_scope(workspace_id))]
        if len(self._memo) >= self.MAX_ENTRIES:
            self._memo.clear()
        self._memo[workspace_id] = (now, rows)
        return rows

    def forget(self, workspace_id: str) -> None:
        self._memo.pop(workspace_id, None)


ACTIVE = ActiveEndpoints()


def workspace_event_seq(conn: Connection, scope: Scope) -> int:
    return conn.execute(select(t.workspaces.c.event_seq).where(t.workspaces.c.id == scope.workspace_id)).scalar_one()


def lagging_endpoints(conn: Connection) -> list[Any]:
    """Active endpoints behind their workspace's log or with open deliveries, and no dispatch job."""
    W = t.workspaces
    has_job = exists().where(J.c.serial_key == literal(SERIAL_PREFIX) + E.c.id, J.c.status.in_(("queued", "running")))
    has_open = exists().where(D.c.workspace_id == E.c.workspace_id, D.c.endpoint_id == E.c.id, D.c.status.in_(OPEN))
    return conn.execute(
        select(E.c.id, E.c.workspace_id)
        .join(W, W.c.id == E.c.workspace_id)
        .where(E.c.active.is_(True), or_(E.c.last_seq < W.c.event_seq, has_open), ~has_job)
        .order_by(E.c.id)
    ).all()


def retention_floor(conn: Connection, scope: Scope) -> int | None:
    """The highest seq the event log may drop without an active endpoint missing an event."""
    position = conn.execute(
        select(func.min(E.c.last_seq)).where(E.c.workspace_id == scope.workspace_id, E.c.active.is_(True))
    ).scalar()
    if position is None:
        return None
    oldest_open = conn.execute(
        select(func.min(D.c.event_seq))
        .select_from(D.join(E, and_(E.c.workspace_id == D.c.workspace_id, E.c.id == D.c.endpoint_id)))
        .where(D.c.workspace_id == scope.workspace_id, D.c.status.in_(OPEN), E.c.active.is_(True))
    ).scalar()
    return int(min(position, oldest_open - 1) if oldest_open is not None else position)


# -- events and deliveries ----------------------------------------------------------------------


def events_after(conn: Connection, scope: Scope, seq: int, limit: int) -> list[Any]:
    return conn.execute(
        select(EV.c.seq, EV.c.type)
        .where(EV.c.workspace_id == scope.workspace_id, EV.c.seq > seq)
        .order_by(EV.c.seq)
        .limit(limit)
    ).all()


def webhook_event_subjects(conn: Connection, scope: Scope, after: int, upto: int) -> dict[int, Any]:
    """``seq -> data.id`` (the endpoint it is about) of the ``webhook.*`` events in ``(after, upto]``."""
    rows = conn.execute(
        select(EV.c.seq, EV.c.data)
        .where(EV.c.workspace_id == scope.workspace_id, EV.c.seq > after, EV.c.seq <= upto, EV.c.type.startswith(WEBHOOK_FAMILY))
    ).all()
    return {row.seq: (row.data or {}).get("id") for row in rows}


def insert_deliveries(conn: Connection, rows: list[dict[str, Any]]) -> None:
    if rows:
        conn.execute(insert(D), rows)


def open_deliveries(conn: Connection, scope: Scope, endpoint_id: str, limit: int) -> list[Any]:
    """The endpoint's unsent deliveries in event order, each with its event (None when pruned)."""
    return conn.execute(
        select(D, EV.c.data.label("event_data"), EV.c.created_at.label("event_created_at"), EV.c.seq.label("event_found"))
        .outerjoin(EV, and_(EV.c.workspace_id == D.c.workspace_id, EV.c.seq == D.c.event_seq))
        .where(D.c.workspace_id == scope.workspace_id, D.c.endpoint_id == endpoint_id, D.c.status.in_(OPEN))
        .order_by(D.c.event_seq)
        .limit(limit)
    ).all()


def delivery(conn: Connection, scope: Scope, endpoint_id: str, delivery_id: str) -> Any:
    return conn.execute(
        select(D).where(D.c.workspace_id == scope.workspace_id, D.c.endpoint_id == endpoint_id, D.c.id == delivery_id)
    ).first()


def delivery_page(
    conn: Connection, scope: Scope, endpoint_id: str, *, before_seq: int | None, status: str | None, limit: int
) -> list[Any]:
    """Newest first (by event seq); ``before_seq`` is the cursor."""
    stmt = select(D).where(D.c.workspace_id == scope.workspace_id, D.c.endpoint_id == endpoint_id)
    if before_seq is not None:
        stmt = stmt.where(D.c.event_seq < before_seq)
    if status is not None:
        stmt = stmt.where(D.c.status == status)
    return conn.execute(stmt.order_by(D.c.event_seq.desc()).limit(limit)).all()


def event_exists(conn: Connection, scope: Scope, seq: int) -> bool:
    return conn.execute(select(EV.c.seq).where(EV.c.workspace_id == scope.workspace_id, EV.c.seq == seq)).first() is not None


def retry_failed_now(conn: Connection, scope: Scope, endpoint_id: str, now: datetime) -> None:
    conn.execute(
        update(D)
        .where(D.c.workspace_id == scope.workspace_id, D.c.endpoint_id == endpoint_id, D.c.status == "failed")
        .values(next_attempt_at=now)
    )


def update_delivery(
    conn: Connection, scope: Scope, delivery_id: str, *, unchanged_since: datetime | None = None, **values: Any
) -> bool:
    """Set ``values``; with ``unchanged_since``, only if the row's ``updated_at`` is still that.
    True when the row was updated."""
    stmt = update(D).where(D.c.workspace_id == scope.workspace_id, D.c.id == delivery_id)
    if unchanged_since is not None:
        stmt = stmt.where(D.c.updated_at == unchanged_since)
    return conn.execute(stmt.values(**values)).rowcount > 0


# -- the dispatch job ---------------------------------------------------------------------------


# The nudge's statement (see schedule_dispatch): built once, it runs for every event-writing commit.
_TOUCH_QUEUED = (
    update(J)
    .where(J.c.serial_key == bindparam("key"), J.c.status == "queued", J.c.kind == DISPATCH_KIND)
    .values(run_at=J.c.run_at)
)


def schedule_dispatch(uow: UnitOfWork, scope: Scope, endpoint_id: str, *, at: datetime | None = None, mode: str = "keep") -> None:
    """Make sure one dispatch job for the endpoint is queued, committing with this unit of work.

    An already queued job is reused, so an endpoint has at most one queued (plus one running) job
    however many events arrive. ``mode`` says what happens to its run time: ``keep`` (new events
    wait behind a delivery in backoff), ``earlier`` (run no later than ``at``), ``set`` (run at
    ``at``: the dispatcher's backoff). On PostgreSQL the UPDATE also row-locks the queued job until
    this transaction commits; a worker claiming with SKIP LOCKED cannot start it before the events
    written here are visible, and one that claimed it first turns it ``running``, so the UPDATE
    matches nothing and a new job is queued.
    """
    at = at or uow.now
    key = serial_key(endpoint_id)
    for job in uow.jobs:  # queued earlier in this same unit of work
        if job.serial_key == key and job.kind == DISPATCH_KIND:
            job.run_at = _new_run_at(job.run_at, at, mode)
            return
    if mode == "keep":
        result = uow.conn.execute(_TOUCH_QUEUED, {"key": key})
    else:
        value = at if mode == "set" else case((J.c.run_at > at, at), else_=J.c.run_at)
        result = uow.conn.execute(
            update(J).where(J.c.serial_key == key, J.c.status == "queued", J.c.kind == DISPATCH_KIND).values(run_at=value)
        )
    if not result.rowcount:
        uow.enqueue(
            DISPATCH_KIND,
            {"endpoint_id": endpoint_id},
            workspace_id=scope.workspace_id,
            serial_key=key,
            run_at=at,
            max_attempts=DISPATCH_MAX_ATTEMPTS,
        )


def _new_run_at(current: datetime, at: datetime, mode: str) -> datetime:
    if mode == "set":
        return at
    if mode == "earlier":
        return min(current, at)
    return current
