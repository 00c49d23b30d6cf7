"""Event-log retention: the ``events.cleanup`` job, which reschedules itself.

A startup hook of ``kabar serve`` queues the first run when none is queued; each run deletes
what is past retention (``KABAR_EVENT_RETENTION_DAYS`` / ``KABAR_EVENT_RETENTION_COUNT``, see
``kabar.realtime.service.cleanup``) and queues the next one ``CLEANUP_INTERVAL`` later
(``kabar.jobs.periodic``).
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import TYPE_CHECKING

from kabar.db.types import utcnow
from kabar.jobs.periodic import schedule_periodic, start_periodic
from kabar.jobs.registry import Job, handler
from kabar.realtime import service

if TYPE_CHECKING:
    from kabar.runtime import Runtime

log = logging.getLogger("kabar.realtime")

CLEANUP_KIND = "events.cleanup"
CLEANUP_INTERVAL = timedelta(hours=1)


@handler(CLEANUP_KIND)
async def cleanup_events(runtime: Runtime, job: Job) -> None:
    deleted = await service.cleanup(runtime.db, runtime.settings, utcnow())
    if deleted:
        log.info("event log cleanup deleted %d events", deleted)
    if not job.payload.get("once"):
        await runtime.db.transaction(schedule_periodic, CLEANUP_KIND, CLEANUP_INTERVAL, exclude_job=job.id)


async def on_startup(runtime: Runtime) -> None:
    await start_periodic(runtime, CLEANUP_KIND, timedelta(minutes=1))
