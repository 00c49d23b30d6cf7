"""Conversation jobs: waking snoozed conversations."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from kabar.conversations import service
from kabar.jobs.registry import Job, handler

if TYPE_CHECKING:
    from kabar.runtime import Runtime


@handler(service.WAKE_JOB)
async def wake(runtime: Runtime, job: Job) -> None:
    until = datetime.fromisoformat(job.payload["snoozed_until"])
    await runtime.db.transaction(service.wake_snoozed, job.workspace_id, job.payload["conversation_id"], until)
