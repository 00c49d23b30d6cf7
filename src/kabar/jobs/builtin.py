"""Jobs that belong to no domain: housekeeping (retention of finished jobs and idempotency keys),
and probes used by operators and tests."""

from __future__ import annotations

import asyncio
import os
import time
from datetime import timedelta
from typing import TYPE_CHECKING

from kabar.db.uow import UnitOfWork
from kabar.idempotency import delete_expired_keys
from kabar.ingest.repository import delete_quarantine
from kabar.jobs import repository as repo
from kabar.jobs.periodic import schedule_periodic
from kabar.jobs.registry import Job, PermanentFailure, RetryLater, handler

if TYPE_CHECKING:
    from kabar.runtime import Runtime


HOUSEKEEPING = "system.housekeeping"
HOUSEKEEPING_INTERVAL = timedelta(hours=1)
KEEP_DONE = timedelta(days=7)
KEEP_DEAD = timedelta(days=30)  # long enough for an operator to look and `kabar jobs retry`
KEEP_IDEMPOTENCY_KEYS = timedelta(hours=24)  # clients retry within minutes; a day is generous
CLEANUP_BATCH = 5000  # rows per transaction: short write locks even with a large backlog


@handler(HOUSEKEEPING)
async def housekeeping(runtime: Runtime, job: Job) -> None:
    """Delete finished jobs, used idempotency keys and quarantined webhooks past retention, in batches;
    queue the next run."""

    def _jobs(uow: UnitOfWork) -> int:
        return repo.delete_finished(
            uow.conn, done_before=uow.now - KEEP_DONE, dead_before=uow.now - KEEP_DEAD, batch=CLEANUP_BATCH
        )

    def _keys(uow: UnitOfWork) -> int:
        return delete_expired_keys(uow.conn, before=uow.now - KEEP_IDEMPOTENCY_KEYS, batch=CLEANUP_BATCH)

    def _quarantine(uow: UnitOfWork) -> int:
        # Webhooks no workspace claimed (kabar.ingest.service.quarantine) are kept only briefly.
        before = uow.now - timedelta(hours=runtime.settings.webhook_quarantine_hours)
        return delete_quarantine(uow.conn, before=before, batch=CLEANUP_BATCH)

    for step in (_jobs, _keys, _quarantine):
        while await runtime.db.transaction(step) == CLEANUP_BATCH:
            pass
    if not job.payload.get("once"):
        await runtime.db.transaction(schedule_periodic, HOUSEKEEPING, HOUSEKEEPING_INTERVAL, exclude_job=job.id)


@handler("system.probe")
async def probe(runtime: Runtime, job: Job) -> None:
    """Fails on purpose ``payload.fail_times`` times (then succeeds): checks retry and dead-letter paths."""
    if job.attempts <= int(job.payload.get("fail_times", 0)):
        raise RuntimeError(f"probe failure {job.attempts}")
    if job.payload.get("permanent"):
        raise PermanentFailure("probe asked to fail permanently")


@handler("system.record")
async def record(runtime: Runtime, job: Job) -> None:
    """Appends ``<job id> <attempt> <pid> start|end <unix time> [<due at>]`` to ``payload.path``
    (O_APPEND: lines from several processes never interleave), holding ``payload.hold`` seconds in
    between; then fails like ``system.probe`` (``fail_times``; ``retry_after`` makes the failures
    ``RetryLater``). Lets tests and operators see exactly which process ran which attempt when."""
    path = str(job.payload["path"])
    hold = float(job.payload.get("hold", 0))
    due = f" {job.run_at.timestamp():.6f}" if job.run_at else ""
    _append(path, f"{job.id} {job.attempts} {os.getpid()} start {time.time():.6f}{due}\n")
    if hold:
        await asyncio.sleep(hold)
    _append(path, f"{job.id} {job.attempts} {os.getpid()} end {time.time():.6f}\n")
    if job.attempts <= int(job.payload.get("fail_times", 0)):
        if job.payload.get("retry_after") is not None:
            raise RetryLater(float(job.payload["retry_after"]), f"record retry {job.attempts}")
        raise RuntimeError(f"record failure {job.attempts}")


def _append(path: str, line: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)
