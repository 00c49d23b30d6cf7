"""Unit of work: the writes of one service call, its event-log rows and its jobs, in one transaction.

Event sequence numbers: each workspace row holds ``event_seq``, the last seq handed out. ``flush``
runs as the last statement of the transaction and does
``UPDATE workspaces SET event_seq = event_seq + n ... RETURNING event_seq``. On PostgreSQL the
row lock this takes is held until commit, so a second writer to the same workspace waits there and
receives the next numbers only after the first has committed: seqs become visible in order and
gap-free, and a subscriber reading ``seq > N`` can never miss an event that commits later with a
lower seq. The lock is taken at the very end of the transaction (only the jobs and the event
hooks follow it), so it is held for the commit only.
On SQLite writers are serialized anyway (``BEGIN IMMEDIATE``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, bindparam, insert, update

from kabar.db import tables as t
from kabar.db.prepared_writes import Statement, execute_many, fetch_first
from kabar.db.types import utcnow
from kabar.hooks import EVENTS_HOOKS
from kabar.ids import new_id

if TYPE_CHECKING:
    from kabar.db.engine import Database


# The event-log writes of every unit of work that emits, precompiled (``kabar.db.prepared_writes``).
_NEXT_SEQS = Statement(
    update(t.workspaces)
    .where(t.workspaces.c.id == bindparam("ws"))
    .values(event_seq=t.workspaces.c.event_seq + bindparam("n"))
    .returning(t.workspaces.c.event_seq)
)
_INSERT_EVENT = Statement(insert(t.events).values({c.name: bindparam(c.name, type_=c.type) for c in t.events.c}))


@dataclass(slots=True)
class PendingEvent:
    workspace_id: str
    type: str
    data: dict[str, Any]
    contact_id: str | None = None
    seq: int = 0


@dataclass(slots=True)
class PendingJob:
    kind: str
    payload: dict[str, Any]
    workspace_id: str | None
    serial_key: str | None
    run_at: datetime
    max_attempts: int
    id: str = field(default_factory=new_id)


class UnitOfWork:
    def __init__(self, conn: Connection, db: Database):
        self.conn = conn
        self.db = db
        self.dialect = db.dialect
        self.now = utcnow()
        self.events: list[PendingEvent] = []
        self.jobs: list[PendingJob] = []
        # Reads that stay valid until this transaction ends, for code that would repeat them.
        self.cache: dict[Any, Any] = {}

    def emit(self, workspace_id: str, type: str, data: dict[str, Any], *, contact_id: str | None = None) -> None:
        """Append an event to the workspace's log (written at commit, in emission order)."""
        self.events.append(PendingEvent(workspace_id, type, data, contact_id))

    def enqueue(
        self,
        kind: str,
        payload: dict[str, Any],
        *,
        workspace_id: str | None = None,
        serial_key: str | None = None,
        delay: timedelta | None = None,
        run_at: datetime | None = None,
        max_attempts: int | None = None,
    ) -> str:
        """Queue a job that runs after this transaction commits (and only if it does)."""
        job = PendingJob(
            kind=kind,
            payload=payload,
            workspace_id=workspace_id,
            serial_key=serial_key,
            run_at=run_at or (self.now + delay if delay else self.now),
            max_attempts=max_attempts or self.db.settings.job_max_attempts,
        )
        self.jobs.append(job)
        return job.id

    def flush(self) -> None:
        """Write the pending events, then the jobs. Called once, right before commit.

        ``EVENTS_HOOKS`` run in between, so a job a hook enqueues commits with the events. They run
        after the workspace row lock of ``_write_events``: every transaction then takes that lock
        before any job-row lock a hook takes (a service that updated its workspace row earlier
        already holds it), one lock order and no deadlock.
        """
        if self.events:
            self._write_events()
            for hook in EVENTS_HOOKS:
                hook(self)
        if self.jobs:
            self.conn.execute(
                insert(t.jobs),
                [
                    {
                        "id": job.id,
                        "workspace_id": job.workspace_id,
                        "kind": job.kind,
                        "payload": job.payload,
                        "status": "queued",
                        "serial_key": job.serial_key,
                        "run_at": job.run_at,
                        "attempts": 0,
                        "max_attempts": job.max_attempts,
                        "created_at": self.now,
                    }
                    for job in self.jobs
                ],
            )

    def _write_events(self) -> None:
        by_workspace: dict[str, list[PendingEvent]] = {}
        for ev in self.events:
            by_workspace.setdefault(ev.workspace_id, []).append(ev)
        rows = []
        for workspace_id in sorted(by_workspace):  # fixed order: no lock-order deadlocks
            evs = by_workspace[workspace_id]
            last = fetch_first(self.conn, _NEXT_SEQS, {"ws": workspace_id, "n": len(evs)}).event_seq
            first = last - len(evs) + 1
            for offset, ev in enumerate(evs):
                ev.seq = first + offset
                rows.append(
                    {
                        "workspace_id": workspace_id,
                        "seq": ev.seq,
                        "type": ev.type,
                        "data": ev.data,
                        "contact_id": ev.contact_id,
                        "created_at": self.now,
                    }
                )
        execute_many(self.conn, _INSERT_EVENT, rows)

    @property
    def last_seqs(self) -> dict[str, int]:
        """Highest seq written per workspace (for the realtime hub, after commit)."""
        out: dict[str, int] = {}
        for ev in self.events:
            out[ev.workspace_id] = max(out.get(ev.workspace_id, 0), ev.seq)
        return out
