"""The job queue: retries with exponential backoff, dead letter, RetryLater, serialization keys,
and several runners never running a job twice. Each test runs on its own database per backend."""

from __future__ import annotations

from collections import defaultdict
import pytest

from kabar.jobs.worker import backoff_seconds
from tests.conftest import create_database
from tests.foundation.jobs_support import enqueue, job_rows, read_runs, running_jobs, wait_finished


@pytest.fixture(scope="module")
def jobs_db(backend: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A database of its own: the shared app's in-process runner must not take these jobs."""
    return create_database(backend, tmp_path_factory.mktemp(f"jobs-{backend}"), "jobs")


def test_backoff_grows_exponentially_with_jitter_and_a_cap():
    for attempt in range(1, 8):
        samples = [backoff_seconds(attempt, 2.0, 60.0) for _ in range(200)]
        nominal = min(60.0, 2.0 * 2 ** (attempt - 1))
        assert all(0.75 * nominal <= s <= 1.25 * nominal for s in samples), attempt
        assert len(set(samples)) > 100  # jittered: retries of many jobs do not arrive in lockstep
    assert max(backoff_seconds(30, 2.0, 60.0) for _ in range(100)) <= 75.0


async def test_failing_job_retried_with_growing_backoff_then_dead(jobs_db, tmp_path):
    base = 0.5
    record = tmp_path / "runs.log"
    async with running_jobs(jobs_db, tmp_path, job_backoff_base=base, job_max_attempts=4) as runtime:
        ids = await enqueue(
            runtime,
            ("system.record", {"path": str(record), "fail_times": 99}, {}),
            ("system.probe", {"fail_times": 2}, {}),  # recovers on its third attempt
            ("system.probe", {"fail_times": 99}, {"max_attempts": 2}),  # per-job limit
            ("system.probe", {"permanent": True}, {}),  # no retry for a permanent failure
            ("no.such.kind", {}, {}),
        )
        rows = await wait_finished(runtime, ids, timeout=30)

    dead = rows[ids[0]]
    assert (dead.status, dead.attempts, dead.max_attempts) == ("dead", 4, 4)
    assert dead.last_error == "RuntimeError: record failure 4" and dead.finished_at is not None
    assert dead.locked_by is None

    runs = read_runs(record)
    assert len(runs) == 4
    # The delay the runner chose after each failure (next due time minus the failed attempt's end):
    # exact, whatever the machine's load. Jitter is ±25 %, so with doubling the ranges never overlap.
    delays = [after.due - before.end for before, after in zip(runs, runs[1:], strict=False)]
    for n, delay in enumerate(delays, start=1):
        nominal = base * 2 ** (n - 1)
        assert 0.75 * nominal - 0.01 <= delay <= 1.25 * nominal + 0.1, (n, delays)
    assert delays[0] < delays[1] < delays[2], delays
    # And no attempt ran before it was due.
    assert all(run.start >= run.due - 0.001 for run in runs), [(r.start, r.due) for r in runs]

    assert (rows[ids[1]].status, rows[ids[1]].attempts, rows[ids[1]].last_error) == ("done", 3, None)
    assert (rows[ids[2]].status, rows[ids[2]].attempts) == ("dead", 2)
    assert rows[ids[2]].last_error == "RuntimeError: probe failure 2"
    assert (rows[ids[3]].status, rows[ids[3]].attempts) == ("dead", 1)
    assert rows[ids[3]].last_error.startswith("permanent failure")
    assert (rows[ids[4]].status, rows[ids[4]].attempts) == ("dead", 1)
    assert "no handler" in rows[ids[4]].last_error


async def test_retry_later_is_honoured(jobs_db, tmp_path):
    record = tmp_path / "runs.log"
    async with running_jobs(jobs_db, tmp_path, job_backoff_base=0.05) as runtime:
        [job_id] = await enqueue(runtime, ("system.record", {"path": str(record), "fail_times": 1, "retry_after": 1.0}, {}))
        rows = await wait_finished(runtime, [job_id], timeout=30)
    assert (rows[job_id].status, rows[job_id].attempts) == ("done", 2)
    first, second = read_runs(record)
    # Not the 0.05 s backoff: the delay the handler asked for.
    assert 1.0 <= second.due - first.end < 1.2, second.due - first.end
    assert second.start >= second.due - 0.001


async def test_retry_later_at_the_last_attempt_dead_letters(jobs_db, tmp_path):
    record = tmp_path / "runs.log"
    async with running_jobs(jobs_db, tmp_path) as runtime:
        [job_id] = await enqueue(
            runtime, ("system.record", {"path": str(record), "fail_times": 9, "retry_after": 0.05}, {"max_attempts": 2})
        )
        rows = await wait_finished(runtime, [job_id], timeout=30)
    assert (rows[job_id].status, rows[job_id].attempts) == ("dead", 2)
    assert rows[job_id].last_error.startswith("retry later")


async def test_jobs_run_only_after_commit_and_delay(jobs_db, tmp_path):
    from datetime import timedelta

    record = tmp_path / "runs.log"
    async with running_jobs(jobs_db, tmp_path) as runtime:

        def _rolled_back(uow):  # noqa: ANN001, ANN202
            uow.enqueue("system.record", {"path": str(record)})
            raise RuntimeError("the write failed")

        with pytest.raises(RuntimeError):
            await runtime.db.transaction(_rolled_back)
        [delayed] = await enqueue(runtime, ("system.record", {"path": str(record)}, {"delay": timedelta(seconds=0.8)}))
        [now] = await enqueue(runtime, ("system.record", {"path": str(record)}, {}))
        rows = await wait_finished(runtime, [delayed, now], timeout=30)
    runs = read_runs(record)
    assert [r.job_id for r in runs] == [now, delayed]  # the rolled-back job never existed
    assert rows[delayed].run_at <= rows[delayed].finished_at
    assert (rows[delayed].finished_at - rows[delayed].created_at).total_seconds() >= 0.8


async def test_serial_key_jobs_never_overlap_and_run_in_order(jobs_db, tmp_path):
    record = tmp_path / "runs.log"
    jobs = []
    for i in range(10):
        for key in ("contact:1", "contact:2"):
            # The third job of contact:1 fails once: the ones after it must wait for its retry.
            fail = 1 if (key == "contact:1" and i == 2) else 0
            jobs.append(("system.record", {"path": str(record), "hold": 0.02, "fail_times": fail}, {"serial_key": key}))
    jobs += [("system.record", {"path": str(record), "hold": 0.05}, {}) for _ in range(8)]  # no key: run in parallel
    async with running_jobs(jobs_db, tmp_path, job_backoff_base=0.1, job_concurrency=8) as runtime:
        ids = await enqueue(runtime, *jobs)
        rows = await wait_finished(runtime, ids, timeout=60)
    assert {r.status for r in rows.values()} == {"done"}

    key_of = {job_id: opts.get("serial_key") for job_id, (_, _, opts) in zip(ids, jobs, strict=True)}
    by_key: dict[str, list] = defaultdict(list)
    runs = read_runs(record)
    for run in runs:
        if key_of[run.job_id]:
            by_key[key_of[run.job_id]].append(run)
    for key, key_runs in by_key.items():
        expected = [job_id for job_id in ids if key_of[job_id] == key]
        finished = [r.job_id for r in key_runs if not (r.job_id == ids[4] and r.attempt == 1)]
        assert finished == expected, f"{key} ran out of order"
        for before, after in zip(key_runs, key_runs[1:], strict=False):
            assert after.start >= before.end, f"{key}: {after.job_id} started before {before.job_id} ended"
    assert rows[ids[4]].attempts == 2
    # Unkeyed jobs do run concurrently with each other.
    free = [r for r in runs if not key_of[r.job_id]]
    assert any(b.start < a.end for a, b in zip(free, free[1:], strict=False))


async def test_two_runners_never_run_a_job_twice(jobs_db, tmp_path):
    record = tmp_path / "runs.log"
    jobs = [("system.record", {"path": str(record), "hold": 0.002}, {}) for _ in range(200)]
    jobs += [("system.record", {"path": str(record)}, {"serial_key": f"c{i % 5}"}) for i in range(50)]
    async with running_jobs(jobs_db, tmp_path, runners=2, job_concurrency=4) as runtime:
        ids = await enqueue(runtime, *jobs)
        rows = await wait_finished(runtime, ids, timeout=120)
    assert {r.status for r in rows.values()} == {"done"}
    assert {r.attempts for r in rows.values()} == {1}
    runs = read_runs(record)
    assert sorted(r.job_id for r in runs) == sorted(ids)  # each exactly once


async def test_expired_lease_is_released_and_rerun(jobs_db, tmp_path):
    """A worker that died mid-job: its lease expires and the job runs again (the attempt counts)."""
    from datetime import timedelta

    from sqlalchemy import update

    from kabar.db import tables as t
    from kabar.db.types import utcnow

    record = tmp_path / "runs.log"
    async with running_jobs(jobs_db, tmp_path) as runtime:
        await runtime.jobs.stop()  # set up the crashed state by hand first
        [job_id] = await enqueue(runtime, ("system.record", {"path": str(record)}, {}))

        def _crashed(uow):  # noqa: ANN001, ANN202
            uow.conn.execute(
                update(t.jobs)
                .where(t.jobs.c.id == job_id)
                .values(status="running", attempts=1, locked_by="dead-worker", locked_until=utcnow() - timedelta(seconds=1))
            )

        await runtime.db.transaction(_crashed)
        from kabar.jobs.worker import JobRunner

        runtime.jobs = JobRunner(runtime)
        await runtime.jobs.start()
        rows = await wait_finished(runtime, [job_id], timeout=30)
    assert (rows[job_id].status, rows[job_id].attempts) == ("done", 2)
    assert [r.attempt for r in read_runs(record)] == [2]


async def test_a_blocked_serial_key_does_not_starve_other_jobs(jobs_db, tmp_path):
    """Many queued jobs of one key wait behind its head job (here: in a 30 s backoff); jobs of
    other keys and unkeyed jobs behind them in the queue still run right away."""
    from sqlalchemy import delete

    from kabar.db import tables as t

    record = tmp_path / "runs.log"
    blocked = [("system.record", {"path": str(record), "fail_times": 1}, {"serial_key": "busy"})]
    blocked += [("system.record", {"path": str(record)}, {"serial_key": "busy"}) for _ in range(60)]
    others = [("system.record", {"path": str(record)}, {"serial_key": "calm"}), ("system.record", {"path": str(record)}, {})]
    async with running_jobs(jobs_db, tmp_path, job_backoff_base=30, job_concurrency=4) as runtime:
        ids = await enqueue(runtime, *blocked, *others)  # one unit of work: the busy ones sort first
        try:
            rows = await wait_finished(runtime, ids[-2:], timeout=15)
            assert {r.status for r in rows.values()} == {"done"}
            head = (await job_rows(runtime, ids[:2]))
            assert head[ids[0]].status == "queued" and head[ids[0]].attempts == 1  # in its backoff
            assert head[ids[1]].status == "queued" and head[ids[1]].attempts == 0  # waits its turn
        finally:
            await runtime.db.transaction(lambda uow: uow.conn.execute(delete(t.jobs).where(t.jobs.c.serial_key == "busy")))


async def test_housekeeping_removes_old_jobs_and_idempotency_keys(jobs_db, tmp_path):
    from datetime import timedelta

    from sqlalchemy import select, update

    from kabar.db import tables as t
    from kabar.db.types import utcnow
    from kabar.jobs.builtin import HOUSEKEEPING
    from kabar.jobs.periodic import schedule_periodic
    from kabar.auth.service import create_user
    from kabar.ids import new_id
    from kabar.jobs.repository import counts
    from kabar.workspaces.service import create_workspace

    async with running_jobs(jobs_db, tmp_path) as runtime:
        ids = await enqueue(runtime, *[("system.probe", {}, {}) for _ in range(5)])
        await wait_finished(runtime, ids)
        ages = {ids[0]: ("done", 8), ids[1]: ("done", 6), ids[2]: ("dead", 31), ids[3]: ("dead", 29), ids[4]: ("done", 0)}

        def _age(uow):  # noqa: ANN001, ANN202
            for job_id, (status, days) in ages.items():
                uow.conn.execute(
                    update(t.jobs).where(t.jobs.c.id == job_id).values(status=status, finished_at=utcnow() - timedelta(days=days))
                )

        await runtime.db.transaction(_age)
        assert (await runtime.db.read(counts))["dead"] >= 2

        def _keys(uow):  # noqa: ANN001, ANN202
            owner = create_user(uow, email=f"{new_id()}@example.test", password=None)
            workspace_id = create_workspace(uow, owner_id=owner, name="Housekeeping").id
            for key, hours in (("old", 25), ("fresh", 1)):
                uow.conn.execute(
                    t.idempotency_keys.insert().values(
                        workspace_id=workspace_id, scope="test", key=key, request_hash="x", status_code=201,
                        response={}, created_at=utcnow() - timedelta(hours=hours),
                    )
                )
            return workspace_id

        workspace_id = await runtime.db.transaction(_keys)
        [cleanup] = await enqueue(runtime, (HOUSEKEEPING, {"once": True}, {}))
        await wait_finished(runtime, [cleanup])
        left = await job_rows(runtime, ids)
        assert set(left) == {ids[1], ids[3], ids[4]}
        keys = await runtime.db.read(
            lambda conn: conn.execute(select(t.idempotency_keys.c.key).where(t.idempotency_keys.c.workspace_id == workspace_id)).scalars().all()
        )
        assert keys == ["fresh"]

        # The periodic chain: one queued run at a time, however many processes start.
        first = await runtime.db.transaction(schedule_periodic, HOUSEKEEPING, timedelta(hours=1))
        second = await runtime.db.transaction(schedule_periodic, HOUSEKEEPING, timedelta(hours=1))
        assert first is not None and second is None
        await runtime.db.transaction(lambda uow: uow.conn.execute(t.jobs.delete().where(t.jobs.c.id == first)))
