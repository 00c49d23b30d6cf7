"""Helpers for the job tests: a runner on its own database, enqueueing, waiting, reading records."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from kabar.db import tables as t
from kabar.jobs.worker import JobRunner
from kabar.runtime import Runtime
from tests.conftest import base_settings


@asynccontextmanager
async def running_jobs(database_url: str, tmp: Path, *, runners: int = 1, **overrides: Any) -> AsyncIterator[Runtime]:
    """A Runtime on ``database_url`` with ``runners`` job runners, each on its own engine."""
    settings = base_settings(database_url, tmp, run_jobs_in_process=False, **overrides)
    runtimes = [Runtime.build(settings) for _ in range(runners)]
    for runtime in runtimes:
        runtime.jobs = JobRunner(runtime)
        await runtime.jobs.start()
    try:
        yield runtimes[0]
    finally:
        for runtime in runtimes:
            await runtime.jobs.stop()
            await runtime.db.dispose()


async def enqueue(runtime: Runtime, *jobs: tuple[str, dict[str, Any], dict[str, Any]]) -> list[str]:
    """Enqueue ``(kind, payload, options)`` jobs in ONE unit of work; returns their ids in order."""

    def _enqueue(uow: Any) -> list[str]:
        return [uow.enqueue(kind, payload, **options) for kind, payload, options in jobs]

    return await runtime.db.transaction(_enqueue)


async def job_rows(runtime: Runtime, ids: list[str]) -> dict[str, Any]:
    def _rows(conn: Any) -> dict[str, Any]:
        return {r.id: r for r in conn.execute(select(t.jobs).where(t.jobs.c.id.in_(ids))).all()}

    return await runtime.db.read(_rows)


async def wait_finished(runtime: Runtime, ids: list[str], timeout: float = 60.0) -> dict[str, Any]:
    """Poll until every job is done or dead; returns the rows."""
    deadline = time.monotonic() + timeout
    while True:
        rows = await job_rows(runtime, ids)
        if len(rows) == len(ids) and all(r.status in ("done", "dead") for r in rows.values()):
            return rows
        if time.monotonic() > deadline:
            states = defaultdict(int)
            for r in rows.values():
                states[r.status] += 1
            raise AssertionError(f"jobs not finished after {timeout}s: {dict(states)}")
        await asyncio.sleep(0.05)


async def queue_counts(runtime: Runtime, ids: list[str]) -> dict[str, int]:
    def _counts(conn: Any) -> dict[str, int]:
        stmt = select(t.jobs.c.status, func.count()).where(t.jobs.c.id.in_(ids)).group_by(t.jobs.c.status)
        return dict(conn.execute(stmt).all())

    return await runtime.db.read(_counts)


@dataclass
class Run:
    job_id: str
    attempt: int
    pid: int
    start: float
    end: float | None = None
    due: float | None = None  # when the runner had scheduled this attempt


def read_runs(path: Path) -> list[Run]:
    """The ``system.record`` lines of ``path`` as runs (one per attempt), in start order."""
    runs: dict[tuple[str, int, int], Run] = {}
    if not path.exists():
        return []
    for line in path.read_text().splitlines():
        job_id, attempt, pid, what, at, *due = line.split()
        key = (job_id, int(attempt), int(pid))
        if what == "start":
            assert key not in runs, f"attempt {attempt} of job {job_id} started twice in process {pid}"
            runs[key] = Run(job_id, int(attempt), int(pid), float(at), due=float(due[0]) if due else None)
        else:
            runs[key].end = float(at)
    return sorted(runs.values(), key=lambda r: r.start)
