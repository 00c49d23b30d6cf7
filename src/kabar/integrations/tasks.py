"""Job handlers for outgoing webhooks."""

from __future__ import annotations

from typing import TYPE_CHECKING

from kabar.integrations import dispatch
from kabar.integrations.repository import DISPATCH_KIND
from kabar.jobs.registry import Job, PermanentFailure, handler

if TYPE_CHECKING:
    from kabar.runtime import Runtime


@handler(DISPATCH_KIND)
async def dispatch_endpoint(runtime: Runtime, job: Job) -> None:
    """Deliver one endpoint's queue; it reschedules itself while a delivery waits out its backoff."""
    endpoint_id = job.payload.get("endpoint_id")
    if not endpoint_id or not job.workspace_id:
        raise PermanentFailure("webhooks.dispatch needs workspace_id and payload.endpoint_id")
    await dispatch.dispatch(runtime, job.workspace_id, endpoint_id)
