"""Hot read statements compiled once per dialect and run straight on the driver.

A SQLAlchemy Core execution costs tens of microseconds of Python (cache key, compiled-cache
lookup, execution context, result objects, events), several times the indexed lookup it runs.
For the few statements of the hottest read paths (the by-phone context), ``Prepared`` compiles
the statement once per dialect, and ``read_prepared`` runs a function whose reads go straight to
the driver: sqlite3 on the loop's connection, or asyncpg without a transaction.

What stays the same as a SQLAlchemy execution: the SQL text, bind and result type processing
(taken from the statement's column types), and the query count and time of the request
(``query_stats``, for Server-Timing and /metrics). What differs: rows are plain tuples in
selected-column order, and on PostgreSQL each statement runs on its own (autocommit), which at
the default READ COMMITTED isolation is what statements inside a transaction see anyway, and
saves the BEGIN and ROLLBACK round trips.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy.engine import Dialect
from sqlalchemy.sql import Select
from sqlalchemy.util import await_only, greenlet_spawn

from kabar.db.engine import StorageUnavailable, _is_unavailable, query_stats

if TYPE_CHECKING:
    from kabar.db.engine import Database

T = TypeVar("T")
Row = tuple[Any, ...]


class _Compiled:
    """One statement for one dialect: SQL text, how to order its parameters, how to decode rows."""

    __slots__ = ("_decoders", "_slots", "sql")

    def __init__(self, stmt: Select, dialect: Dialect):
        compiled = stmt.compile(dialect=dialect)
        if compiled.literal_execute_params or compiled.post_compile_params:
            raise ValueError("Prepared statements need plain bind parameters (no IN lists)")
        self.sql = compiled.string
        required = {bind.key for bind in compiled.binds.values() if bind.required}
        fixed = compiled.construct_params(dict.fromkeys(required))  # LIMIT and other literals
        processors = compiled._bind_processors
        # One (name, fixed value, bind processor) per positional parameter.
        self._slots = [
            (name if name in required else None, fixed[name], processors.get(name)) for name in compiled.positiontup or ()
        ]
        self._decoders = [
            (index, processor)
            for index, column in enumerate(compiled._result_columns)
            if (processor := column.type._cached_result_processor(dialect, None)) is not None
        ]

    def args(self, params: dict[str, Any]) -> list[Any]:
        out = []
        for name, value, processor in self._slots:
            if name is not None:
                value = params[name]
            out.append(value if processor is None else processor(value))
        return out

    def rows(self, raw: Sequence[Sequence[Any]]) -> list[Row]:
        if not self._decoders:
            return [tuple(row) for row in raw]
        out = []
        for row in raw:
            values = list(row)
            for index, decode in self._decoders:
                values[index] = decode(values[index])
            out.append(tuple(values))
        return out


class Prepared:
    """A SELECT built once (at import) and compiled once per dialect on first use."""

    __slots__ = ("_by_dialect", "stmt")

    def __init__(self, stmt: Select):
        self.stmt = stmt
        self._by_dialect: dict[str, _Compiled] = {}

    def compiled(self, dialect: Dialect) -> _Compiled:
        found = self._by_dialect.get(dialect.name)
        if found is None:
            found = self._by_dialect[dialect.name] = _Compiled(self.stmt, dialect)
        return found


class Reader:
    """Runs ``Prepared`` statements on one driver connection; what ``read_prepared`` hands out."""

    __slots__ = ("_dialect", "_fetch")

    def __init__(self, dialect: Dialect, fetch: Callable[[str, list[Any]], Sequence[Sequence[Any]]]):
        self._dialect = dialect
        self._fetch = fetch

    @property
    def dialect_name(self) -> str:
        return self._dialect.name

    def all(self, statement: Prepared, **params: Any) -> list[Row]:
        compiled = statement.compiled(self._dialect)
        args = compiled.args(params)
        started = time.perf_counter()
        raw = self._fetch(compiled.sql, args)
        stats = query_stats.get()
        if stats is not None:
            stats.append(time.perf_counter() - started)
        return compiled.rows(raw)

    def first(self, statement: Prepared, **params: Any) -> Row | None:
        rows = self.all(statement, **params)
        return rows[0] if rows else None


async def read_prepared(db: Database, fn: Callable[..., T], *args: Any) -> T:
    """Run ``fn(reader, *args)``, a plain function reading through ``reader``.

    SQLite: a read transaction (one snapshot) on the loop's sqlite3 connection, which never waits
    for a lock; should the database be busy (rare for WAL readers: a connection in exclusive
    locking mode, recovery after a crash), the same on a worker thread's connection, which waits
    it out (busy timeout) while the loop serves others, as ``Database.read`` does.
    PostgreSQL: in one greenlet on a pooled asyncpg connection, each statement one round trip,
    with no BEGIN or ROLLBACK.
    """
    if db.sync_engine is not None:
        try:
            return _sqlite(db.loop_driver_connection(), db.sync_engine.dialect, fn, args)
        except sqlite3.OperationalError as exc:
            if "database is locked" not in str(exc):
                if _is_unavailable(exc):
                    raise _unavailable(exc) from exc
                raise

        def _off_loop() -> T:
            with db.sync_engine.connect() as conn:  # type: ignore[union-attr]
                return _sqlite(conn.connection.driver_connection, conn.dialect, fn, args)  # type: ignore[arg-type]

        return await asyncio.to_thread(_off_loop)
    assert db.async_engine is not None
    return await greenlet_spawn(_postgres, db.async_engine.sync_engine, fn, args)


def _sqlite(driver: sqlite3.Connection, dialect: Dialect, fn: Callable[..., T], args: tuple[Any, ...]) -> T:
    reader = Reader(dialect, lambda sql, values: driver.execute(sql, values).fetchall())
    driver.execute("BEGIN")
    try:
        return fn(reader, *args)
    finally:
        driver.execute("COMMIT")  # read only: ends the snapshot


def _unavailable(exc: Exception) -> StorageUnavailable:
    return StorageUnavailable(str(exc).splitlines()[0])


def _postgres(engine: Any, fn: Callable[..., T], args: tuple[Any, ...]) -> T:
    try:
        pooled = engine.raw_connection()
    except Exception as exc:
        if _is_unavailable(exc):
            raise _unavailable(exc) from exc
        raise
    try:
        driver = pooled.driver_connection
        return fn(Reader(engine.dialect, lambda sql, values: await_only(driver.fetch(sql, *values))), *args)
    except Exception as exc:
        if _is_unavailable(exc):
            pooled.invalidate()
            raise _unavailable(exc) from exc
        raise
    finally:
        pooled.close()
