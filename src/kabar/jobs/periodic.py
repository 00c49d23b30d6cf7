"""Periodic jobs (housekeeping, event-log retention, ARI reminders): each run queues its successor.

Several processes starting at once may each queue a first run; a run only queues its successor
when no other run of its kind is waiting, so the chains collapse back into one.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import TYPE_CHECKING

from kabar.db.uow import UnitOfWork
from kabar.jobs import repository as repo

if TYPE_CHECKING:
    from kabar.runtime import Runtime

log = logging.getLogger("kabar.jobs")


def schedule_periodic(uow: UnitOfWork, kind: str, delay: timedelta | None = None, *, exclude_job: str | None = None) -> str | None:
    """Queue a run of ``kind`` unless one is queued or running (other than ``exclude_job``: the run
    asking for its successor). Returns the new job's id, or None."""
    if repo.pending_of_kind(uow.conn, kind, exclude_id=exclude_job):
        return None
    return uow.enqueue(kind, {}, serial_key=kind, delay=delay)


async def start_periodic(runtime: Runtime, kind: str, first_delay: timedelta | None = None) -> None:
    """At startup: make sure a chain exists. A failure is logged, never keeps the server from starting."""
    try:
        await runtime.db.transaction(schedule_periodic, kind, first_delay)
    except Exception as exc:  # noqa: BLE001
        log.warning("could not schedule %s: %s", kind, exc)
