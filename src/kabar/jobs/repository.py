"""SQL for the job queue."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, and_, delete, func, select, text, update

from kabar.db import tables as t

J = t.jobs


def claim(conn: Connection, *, worker_id: str, now: datetime, limit: int, lease: timedelta) -> list[Any]:
    """Mark up to ``limit`` due jobs as running for this worker and return them.

    A job with a serialization key is a candidate only when no other job of its key is running
    or queued ahead of it (an earlier id, even one waiting out a backoff): keys run one job at a
    time, in order. That test is part of the candidate query itself, so a long line of blocked
    jobs of one key never hides the runnable jobs behind it.

    PostgreSQL: ``FOR UPDATE SKIP LOCKED`` lets any number of workers claim concurrently; a
    transaction-scoped advisory lock per key makes "may this key run now?" a question only one
    claimer answers at a time. SQLite writers are serialized already.
    """
    is_pg = conn.dialect.name == "postgresql"
    other = J.alias("other")
    blocked = (
        select(other.c.id)
        .where(
            other.c.serial_key == J.c.serial_key,
            other.c.id != J.c.id,
            ((other.c.status == "running") & (other.c.locked_until > now)) | ((other.c.status == "queued") & (other.c.id < J.c.id)),
        )
        .exists()
    )
    stmt = (
        select(J.c.id, J.c.serial_key)
        .where(J.c.status == "queued", J.c.run_at <= now, J.c.serial_key.is_(None) | ~blocked)
        .order_by(J.c.run_at, J.c.id)
        .limit(limit)
    )
    if is_pg:
        stmt = stmt.with_for_update(skip_locked=True, of=J)
    claimed: list[str] = []
    keys_taken: set[str] = set()
    for row in conn.execute(stmt).all():
        key = row.serial_key
        if key is not None:
            if key in keys_taken:
                continue
            if is_pg and not conn.execute(text("SELECT pg_try_advisory_xact_lock(hashtext(:k))"), {"k": key}).scalar():
                continue
            keys_taken.add(key)
        claimed.append(row.id)
    if not claimed:
        return []
    conn.execute(
        update(J)
        .where(J.c.id.in_(claimed))
        .values(status="running", attempts=J.c.attempts + 1, locked_by=worker_id, locked_until=now + lease)
    )
    return conn.execute(select(J).where(J.c.id.in_(claimed)).order_by(J.c.run_at, J.c.id)).all()


def finish(conn: Connection, job_id: str, worker_id: str, now: datetime) -> None:
    conn.execute(
        update(J)
        .where(J.c.id == job_id, J.c.locked_by == worker_id)
        .values(status="done", finished_at=now, locked_by=None, locked_until=None, last_error=None)
    )


def fail(conn: Connection, job_id: str, worker_id: str, *, error: str, retry_at: datetime | None, now: datetime) -> None:
    """Back to the queue at ``retry_at``, or to the dead letter when it is None."""
    values: dict[str, Any] = {"last_error": error[:4000], "locked_by": None, "locked_until": None}
    if retry_at is None:
        values.update(status="dead", finished_at=now)
    else:
        values.update(status="queued", run_at=retry_at)
    conn.execute(update(J).where(J.c.id == job_id, J.c.locked_by == worker_id).values(**values))


def release_expired_leases(conn: Connection, now: datetime) -> int:
    """Jobs whose worker died mid-run go back to the queue (their attempt still counts)."""
    result = conn.execute(
        update(J)
        .where(J.c.status == "running", J.c.locked_until < now)
        .values(status="queued", locked_by=None, locked_until=None, last_error="worker lease expired")
    )
    return result.rowcount or 0


def next_due(conn: Connection) -> datetime | None:
    return conn.execute(select(func.min(J.c.run_at)).where(J.c.status == "queued")).scalar()


def counts(conn: Connection) -> dict[str, int]:
    """Jobs still in the queue, running, or dead-lettered (done ones are history, not backlog;
    counting them would make every metrics scrape scan the table's whole past)."""
    stmt = select(J.c.status, func.count()).where(J.c.status.in_(("queued", "running", "dead"))).group_by(J.c.status)
    return {"queued": 0, "running": 0, "dead": 0, **dict(conn.execute(stmt).all())}


def pending_of_kind(conn: Connection, kind: str, *, exclude_id: str | None = None) -> bool:
    """Is a job of ``kind`` queued or running (other than ``exclude_id``)?"""
    stmt = select(J.c.id).where(J.c.kind == kind, J.c.status.in_(("queued", "running")))
    if exclude_id:
        stmt = stmt.where(J.c.id != exclude_id)
    return conn.execute(stmt.limit(1)).first() is not None


def delete_finished(conn: Connection, *, done_before: datetime, dead_before: datetime, batch: int = 5000) -> int:
    """Delete up to ``batch`` done jobs finished before ``done_before`` and dead ones before
    ``dead_before``; returns how many (call again while it returns ``batch``)."""
    old = (
        select(J.c.id)
        .where(
            ((J.c.status == "done") & (J.c.finished_at < done_before)) | ((J.c.status == "dead") & (J.c.finished_at < dead_before))
        )
        .limit(batch)
    )
    return conn.execute(delete(J).where(J.c.id.in_(old.scalar_subquery()))).rowcount or 0


def get(conn: Connection, job_id: str) -> Any:
    return conn.execute(select(J).where(J.c.id == job_id)).first()


def requeue(conn: Connection, job_id: str, now: datetime) -> bool:
    result = conn.execute(
        update(J)
        .where(and_(J.c.id == job_id, J.c.status == "dead"))
        .values(status="queued", run_at=now, attempts=0, finished_at=None)
    )
    return bool(result.rowcount)
