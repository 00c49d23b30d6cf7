"""ARI's jobs: a reply turn per contact (serialized), and the periodic reminder sweep."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

from kabar.ari import service
from kabar.ari.hooks import register  # noqa: F401 - workers also run the inbound trigger
from kabar.jobs.periodic import schedule_periodic
from kabar.jobs.registry import Job, handler

if TYPE_CHECKING:
    from kabar.runtime import Runtime

REMINDER_EVERY = timedelta(minutes=5)


@handler(service.REPLY_JOB)
async def reply(runtime: Runtime, job: Job) -> None:
    await service.process_turn(runtime, job.workspace_id or job.payload["workspace_id"], job.payload["conversation_id"], job.payload.get("message_id"))


@handler(service.REMINDERS_JOB)
async def reminders(runtime: Runtime, job: Job) -> None:
    try:
        await service.send_reminders(runtime)
    finally:
        await runtime.db.transaction(schedule_periodic, service.REMINDERS_JOB, REMINDER_EVERY, exclude_job=job.id)
