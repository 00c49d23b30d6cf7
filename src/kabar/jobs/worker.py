"""The job runner: claims due jobs, runs their handlers, retries with backoff, dead-letters.

One runner runs inside ``kabar serve`` on SQLite; on PostgreSQL any number of ``kabar worker``
processes run one each. A runner wakes on a timer and, in-process, right after a commit that
enqueued jobs.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import socket
import time
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from kabar.db.engine import StorageUnavailable
from kabar.db.types import utcnow
from kabar.jobs import repository as repo
from kabar.jobs.registry import HANDLERS, Job, PermanentFailure, RetryLater, load_all
from kabar.observability import metrics
from kabar.observability.middleware import request_id_var, workspace_id_var

if TYPE_CHECKING:
    from kabar.runtime import Runtime

log = logging.getLogger("kabar.jobs")
LEASE = timedelta(minutes=5)


def backoff_seconds(attempt: int, base: float, cap: float) -> float:
    """Exponential backoff with jitter: about base·2^(attempt-1), ±25 %, at most ``cap``."""
    delay = min(cap, base * (2 ** max(0, attempt - 1)))
    return delay * random.uniform(0.75, 1.25)


class JobRunner:
    def __init__(self, runtime: Runtime, *, concurrency: int | None = None, worker_id: str | None = None):
        self.runtime = runtime
        self.settings = runtime.settings
        self.concurrency = concurrency or self.settings.job_concurrency
        self.worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}:{id(self) % 10000}"
        self._wake = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self._running: set[asyncio.Task[None]] = set()
        load_all()

    def wake(self) -> None:
        self._wake.set()

    @property
    def stopping(self) -> bool:
        """True once ``stop`` was called: long-running handlers end early and reschedule."""
        return self._stopping

    def after_commit(self, uow: Any) -> None:
        if uow.jobs:
            self._wake.set()

    async def start(self) -> None:
        self.runtime.db.on_commit(self.after_commit)
        self._task = asyncio.create_task(self._loop(), name="kabar-job-runner")

    async def stop(self, timeout: float = 10.0) -> None:
        self._stopping = True
        self._wake.set()
        if self._task:
            await asyncio.wait([self._task], timeout=timeout)
        if self._running:
            await asyncio.wait(self._running, timeout=timeout)

    async def run_until_idle(self, timeout: float = 30.0) -> None:
        """Run due jobs until none is left (CLI and tests)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            claimed = await self._claim_and_start(self.concurrency)
            if self._running:
                await asyncio.wait(self._running)
            elif not claimed:
                return

    async def _loop(self) -> None:
        last_reap = 0.0
        while not self._stopping:
            self._wake.clear()  # before claiming: a commit during the claim wakes us again
            try:
                if time.monotonic() - last_reap > 30:
                    last_reap = time.monotonic()
                    await self.runtime.db.transaction(lambda uow: repo.release_expired_leases(uow.conn, uow.now))
                free = self.concurrency - len(self._running)
                claimed = await self._claim_and_start(free) if free > 0 else 0
                if claimed and claimed == free:
                    continue  # there may be more due right now
            except StorageUnavailable as exc:
                log.warning("job queue unavailable: %s", exc)
            except Exception:
                log.exception("job runner loop error")
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=self.settings.job_poll_interval)
            except TimeoutError:
                pass

    async def _claim_and_start(self, limit: int) -> int:
        rows = await self.runtime.db.transaction(
            lambda uow: repo.claim(uow.conn, worker_id=self.worker_id, now=uow.now, limit=limit, lease=LEASE)
        )
        for row in rows:
            job = Job(row.id, row.kind, row.payload, row.workspace_id, row.serial_key, row.attempts, row.max_attempts, row.run_at)
            task = asyncio.create_task(self._execute(job), name=f"job-{job.kind}-{job.id}")
            self._running.add(task)
            task.add_done_callback(self._job_done)
        return len(rows)

    def _job_done(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        self._wake.set()  # a slot is free

    async def _execute(self, job: Job) -> None:
        # This task's log lines name the job and its workspace (the task has its own context copy).
        request_id_var.set(f"job-{job.id}")
        workspace_id_var.set(job.workspace_id or "-")
        handler = HANDLERS.get(job.kind)
        started = time.perf_counter()
        retry_at = None
        try:
            if handler is None:
                raise PermanentFailure(f"no handler for job kind {job.kind!r}")
            await handler(self.runtime, job)
        except RetryLater as exc:
            error = f"retry later: {exc}"
            retry_at = utcnow() + timedelta(seconds=max(0.0, exc.seconds)) if job.attempts < job.max_attempts else None
        except PermanentFailure as exc:
            error = f"permanent failure: {exc}"
        except Exception as exc:  # noqa: BLE001 - any handler error is retried
            error = f"{type(exc).__name__}: {exc}"
            if job.attempts < job.max_attempts:
                delay = backoff_seconds(job.attempts, self.settings.job_backoff_base, self.settings.job_backoff_cap)
                retry_at = utcnow() + timedelta(seconds=delay)
        else:
            metrics.JOBS_FINISHED.labels(job.kind, "done").inc()
            metrics.JOB_SECONDS.labels(job.kind).observe(time.perf_counter() - started)
            await self._record(lambda uow: repo.finish(uow.conn, job.id, self.worker_id, uow.now))
            return
        outcome = "retry" if retry_at else "dead"
        metrics.JOBS_FINISHED.labels(job.kind, outcome).inc()
        log.warning("job %s %s attempt %d/%d failed (%s): %s", job.kind, job.id, job.attempts, job.max_attempts, outcome, error)
        await self._record(
            lambda uow: repo.fail(uow.conn, job.id, self.worker_id, error=error, retry_at=retry_at, now=uow.now)
        )
        if retry_at is not None:
            asyncio.get_running_loop().call_later(max(0.0, (retry_at - utcnow()).total_seconds()), self._wake.set)

    async def _record(self, fn: Any) -> None:
        """Store a job's outcome, waiting out a database outage rather than losing it."""
        for attempt in range(60):
            try:
                await self.runtime.db.transaction(fn)
                return
            except StorageUnavailable:
                await asyncio.sleep(min(5.0, 0.1 * 2**attempt))
        log.error("could not record job outcome; its lease will expire and it will run again")
