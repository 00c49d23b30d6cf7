"""Two real `kabar worker` processes on PostgreSQL share one queue: every job runs exactly once,
serialization keys hold across processes. (SQLite runs jobs in-process only; test_jobs.py covers
several runners on both backends.)"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import pytest

from kabar.runtime import Runtime
from tests.conftest import base_settings, create_database, server_env
from tests.foundation.jobs_support import enqueue, read_runs, wait_finished


class Worker:
    def __init__(self, env: dict[str, str], log_path: Path):
        self.log_path = log_path
        self._log = open(log_path, "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "kabar", "worker"], env={**os.environ, **env}, stdout=self._log, stderr=subprocess.STDOUT
        )

    async def wait_running(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"worker exited with {self.proc.returncode}: {self.log_path.read_text()[-2000:]}")
            if b"running" in self.log_path.read_bytes():
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"worker did not start: {self.log_path.read_text()[-2000:]}")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self._log.close()
        return self.proc.returncode


@pytest.fixture
def pg_url(tmp_path: Path) -> str:
    return create_database("postgres", tmp_path, "workers")


async def test_two_worker_processes_never_run_a_job_twice(pg_url, tmp_path):
    url = pg_url
    record = tmp_path / "runs.log"
    env = {**server_env(url, tmp_path), "KABAR_JOB_CONCURRENCY": "8"}
    runtime = Runtime.build(base_settings(url, tmp_path, run_jobs_in_process=False))
    workers = [Worker(env, tmp_path / f"worker-{i}.log") for i in range(2)]
    try:
        for worker in workers:
            await worker.wait_running()
        ids: list[str] = []
        key_of: dict[str, str | None] = {}
        for batch in range(4):  # enqueued while the workers poll, as in production
            jobs = [("system.record", {"path": str(record), "hold": 0.003}, {}) for _ in range(75)]
            jobs += [("system.record", {"path": str(record)}, {"serial_key": f"contact:{i % 10}"}) for i in range(25)]
            batch_ids = await enqueue(runtime, *jobs)
            ids += batch_ids
            key_of.update({job_id: opts.get("serial_key") for job_id, (_, _, opts) in zip(batch_ids, jobs, strict=True)})
            await asyncio.sleep(0.1 * batch)
        rows = await wait_finished(runtime, ids, timeout=180)
    finally:
        codes = [worker.stop() for worker in workers]
        await runtime.db.dispose()
    assert codes == [0, 0], [w.log_path.read_text()[-1000:] for w in workers]  # SIGTERM is a clean stop

    assert len(ids) == 400
    assert {r.status for r in rows.values()} == {"done"}
    assert {r.attempts for r in rows.values()} == {1}
    runs = read_runs(record)
    counts: dict[str, int] = defaultdict(int)
    for run in runs:
        counts[run.job_id] += 1
    assert set(counts) == set(ids) and set(counts.values()) == {1}, "a job ran twice or not at all"
    pids = {run.pid for run in runs}
    assert pids == {w.proc.pid for w in workers}, "both workers should have taken jobs"

    by_key: dict[str, list] = defaultdict(list)
    for run in runs:
        if key_of[run.job_id]:
            by_key[key_of[run.job_id]].append(run)
    for key, key_runs in by_key.items():
        assert [r.job_id for r in key_runs] == [i for i in ids if key_of[i] == key], f"{key} out of order"
        for before, after in zip(key_runs, key_runs[1:], strict=False):
            assert after.start >= before.end, f"{key}: overlapping runs in processes {before.pid} and {after.pid}"
