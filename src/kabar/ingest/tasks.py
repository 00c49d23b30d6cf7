"""Ingest jobs: store a provider's echo of an API send that turned out not to be ours."""

from __future__ import annotations

from typing import TYPE_CHECKING

import msgspec

from kabar.ingest import repository as repo
from kabar.ingest.schemas import InboundMessage
from kabar.ingest.service import ECHO_JOB, Applier, run_transaction
from kabar.jobs.registry import Job, handler

if TYPE_CHECKING:
    from kabar.db.uow import UnitOfWork
    from kabar.runtime import Runtime


@handler(ECHO_JOB)
async def reconcile_echo(runtime: Runtime, job: Job) -> None:
    """Runs ``send_confirm_seconds`` after an API echo for an unknown message id: if no send of ours
    has claimed that id by now, another tool (Kapso inbox, a workflow) sent it; keep it."""
    event = msgspec.convert(job.payload["event"], InboundMessage)

    def _apply(uow: UnitOfWork) -> None:
        applier = Applier(uow, job.workspace_id)
        if repo.id_of_provider_message(uow.conn, applier.scope, event.provider_message_id) is None:
            applier.apply([msgspec.structs.replace(event, origin="external")])

    await run_transaction(runtime.db, _apply)
