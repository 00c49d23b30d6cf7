"""Group commit for webhooks on SQLite: one transaction for the webhooks that arrive together.

On SQLite every unit of work runs inline on the event loop, one at a time, and each pays for its
BEGIN, COMMIT (WAL pages written, and every so often a checkpoint's fsync), the event-log
sequence update and the workspace's channel lookup. Under load, webhooks queue up behind the
transaction being written; ``GroupCommit`` applies the ones waiting together, in ONE transaction,
each in its own savepoint:

- a webhook whose application raises (a bug, an unknown shape, a bad signature) is rolled back to
  its savepoint, with the events and jobs it had queued, and its caller gets the exception exactly
  as from a transaction of its own; the others in the batch are unaffected;
- an error that leaves the database unusable (locked, I/O, disk full) fails the whole batch, and
  every caller gets it (503: the provider retries, nothing was acknowledged);
- each caller is answered only after the batch's COMMIT returned: an acknowledged webhook is
  committed (WAL; it survives the process being killed).

A webhook arriving to an idle server waits no longer than one pass of the event loop.
"""

from __future__ import annotations

import asyncio
import sqlite3
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy.exc import OperationalError

from kabar.db.engine import Database
from kabar.db.uow import UnitOfWork

# Bounds how long one batch holds the event loop (each webhook costs about a millisecond).
MAX_BATCH = 32


@dataclass(slots=True)
class _Waiting:
    args: tuple[Any, ...]
    future: asyncio.Future[Any]


class GroupCommit:
    """Runs ``apply(uow, *args)`` for each submitted ``args``, batched as described above."""

    def __init__(self, db: Database, apply: Callable[..., Any]):
        self.db = db
        self.apply = apply
        self.waiting: list[_Waiting] = []
        self.writer: asyncio.Task[None] | None = None

    async def submit(self, *args: Any) -> Any:
        """``apply``'s result (or exception) for ``args``, once its transaction has committed."""
        future = asyncio.get_running_loop().create_future()
        self.waiting.append(_Waiting(args, future))
        if self.writer is None or self.writer.done():
            self.writer = asyncio.get_running_loop().create_task(self._write())
        return await future

    async def _write(self) -> None:
        while self.waiting:
            # Let webhooks that are already being handled reach ``submit`` and join this batch.
            await asyncio.sleep(0)
            batch, self.waiting = self.waiting[:MAX_BATCH], self.waiting[MAX_BATCH:]
            try:
                outcomes = await self.db.transaction(self._apply_each, batch)
            except BaseException as exc:  # nothing of this batch was committed
                for item in batch:
                    if not item.future.done():
                        item.future.set_exception(exc)
                if not isinstance(exc, Exception):
                    raise
                continue
            for item, (result, error) in zip(batch, outcomes, strict=True):
                if item.future.done():  # the caller went away; its webhook is committed anyway
                    continue
                if error is None:
                    item.future.set_result(result)
                else:
                    item.future.set_exception(error)

    def _apply_each(self, uow: UnitOfWork, batch: list[_Waiting]) -> list[tuple[Any, BaseException | None]]:
        # Savepoints straight on the driver: through SQLAlchemy each cost two full executions.
        driver = uow.conn.connection.driver_connection
        outcomes: list[tuple[Any, BaseException | None]] = []
        for item in batch:
            events, jobs = len(uow.events), len(uow.jobs)
            driver.execute("SAVEPOINT webhook")
            try:
                result = self.apply(uow, *item.args)
            except Exception as exc:
                if _breaks_transaction(exc):
                    raise
                driver.execute("ROLLBACK TO webhook")
                driver.execute("RELEASE webhook")
                del uow.events[events:], uow.jobs[jobs:]
                outcomes.append((None, exc))
            else:
                driver.execute("RELEASE webhook")
                outcomes.append((result, None))
        return outcomes


def _breaks_transaction(exc: BaseException) -> bool:
    """Errors of the database rather than of one webhook: the batch cannot go on."""
    return isinstance(exc, OperationalError | sqlite3.OperationalError | OSError)


_instances: weakref.WeakKeyDictionary[Database, dict[Callable[..., Any], GroupCommit]] = weakref.WeakKeyDictionary()


def group_commit(db: Database, apply: Callable[..., Any]) -> GroupCommit:
    """The ``GroupCommit`` of ``apply`` on ``db`` (one per database, so batches span requests)."""
    per_db = _instances.setdefault(db, {})
    if apply not in per_db:
        per_db[apply] = GroupCommit(db, apply)
    return per_db[apply]
