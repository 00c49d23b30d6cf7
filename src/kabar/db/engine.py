"""The database: one object that runs repository code on SQLite or PostgreSQL.

Repository and service code is written once, as plain synchronous functions over a SQLAlchemy
Core ``Connection``. ``Database`` decides how to run it:

- **SQLite** (embedded default): the function runs inline on the event loop thread. An indexed
  SQLite statement takes microseconds, far less than a hop to a thread pool would cost (measured
  in DESIGN.md: inline 15k req/s against 9.6k through aiosqlite). Because the whole function runs
  without yielding to the loop, one process never interleaves two transactions; other processes
  (CLI commands) are kept out by ``BEGIN IMMEDIATE`` and ``busy_timeout``.
- **PostgreSQL**: the same function runs in a greenlet over an asyncpg connection
  (``AsyncConnection.run_sync``), so the loop serves other requests while it waits on the network.

Writes go through ``Database.transaction`` (see ``kabar.db.uow``), which appends event-log rows
and jobs inside the same transaction and notifies listeners after commit.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
import time
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import Any, TypeVar

import msgspec
from sqlalchemy import Connection, create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import StaticPool

from kabar.config import Settings

T = TypeVar("T")
log = logging.getLogger("kabar.db")

# Query count and time of the current request (for Server-Timing and /metrics).
query_stats: ContextVar[list[float] | None] = ContextVar("query_stats", default=None)


class StorageUnavailable(RuntimeError):
    """The database cannot be reached or refused the write; nothing was committed."""


def _attach_query_timer(engine: Engine) -> None:
    @event.listens_for(engine, "before_cursor_execute")
    def _before(conn, cursor, statement, parameters, context, executemany):  # noqa: ANN001
        conn.info["kabar_t0"] = time.perf_counter()

    @event.listens_for(engine, "after_cursor_execute")
    def _after(conn, cursor, statement, parameters, context, executemany):  # noqa: ANN001
        stats = query_stats.get()
        if stats is not None:
            stats.append(time.perf_counter() - conn.info.get("kabar_t0", time.perf_counter()))


_BEGIN_KEY = "kabar_begin"
# The loop's connection does not checkpoint the WAL inside its commits (an automatic checkpoint
# copies pages and fsyncs: milliseconds with every request on the loop waiting); a worker thread
# does, PASSIVE (never blocking writers or readers), at most this often while writes go on.
CHECKPOINT_INTERVAL = 0.5


def _json_text(value: Any) -> str:
    """JSON columns: msgspec writes (and reads, below) the same JSON values several times faster
    than the json module; text is compact UTF-8."""
    return msgspec.json.encode(value).decode()


def make_sqlite_engine(url: str, synchronous: str = "NORMAL", *, single_connection: bool = False) -> Engine:
    """A sync SQLite engine in WAL mode; transactions are opened explicitly (see ``_begin``)."""
    engine = create_engine(
        url,
        connect_args={"check_same_thread": False, "timeout": 30},
        poolclass=StaticPool if single_connection else None,
        json_serializer=_json_text,
        json_deserializer=msgspec.json.decode,
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record):  # noqa: ANN001
        # Let us issue BEGIN ourselves: the driver's implicit BEGIN is DEFERRED, which lets two
        # writers deadlock on lock upgrade. Readers get a plain BEGIN, writers BEGIN IMMEDIATE.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute(f"PRAGMA synchronous={synchronous}")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.execute("PRAGMA temp_store=MEMORY")
        cur.execute("PRAGMA cache_size=-65536")
        cur.execute("PRAGMA mmap_size=268435456")
        # After a burst (a bulk import, sustained ingest) the WAL file is cut back to 64 MB once
        # checkpointed, instead of keeping its high-water mark on disk.
        cur.execute("PRAGMA journal_size_limit=67108864")
        cur.close()

    # BEGIN goes straight to the driver from the dialect's ``do_begin`` (a ``begin`` event running
    # ``exec_driver_sql`` cost a full SQLAlchemy execution per transaction). ``Database`` puts the
    # mode in the connection record's ``info``: BEGIN IMMEDIATE for writers, a plain BEGIN otherwise.
    def _do_begin(dbapi_conn):  # noqa: ANN001
        dbapi_conn.driver_connection.execute(dbapi_conn.info.pop(_BEGIN_KEY, "BEGIN"))

    engine.dialect.do_begin = _do_begin  # type: ignore[method-assign]

    _attach_query_timer(engine)
    return engine


class Database:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.url = settings.database_url
        self.is_sqlite = settings.is_sqlite
        self.dialect = "sqlite" if self.is_sqlite else "postgresql"
        self._after_commit: list[Callable[[Any], Awaitable[None] | None]] = []
        self.sync_engine: Engine | None = None
        # SQLite: each thread (in the server, the loop thread) keeps one connection for its
        # reads and writes instead of a pool checkout per call. Safe because a unit of work
        # runs start to finish without yielding, so a thread never has two open at once.
        self._local = threading.local()
        self._thread_conns: list[Connection] = []
        self._checkpointing = threading.Lock()  # held while a WAL checkpoint runs
        self._checkpoint_at = 0.0  # when the last one started (monotonic)
        self._checkpoint_conn: Any = None  # the checkpoints' own pooled connection
        self.async_engine: AsyncEngine | None = None
        if self.is_sqlite:
            # The server's loop thread uses one connection; threads (imports, bench seeding) get
            # their own from the pool.
            self.sync_engine = make_sqlite_engine(self.url, settings.sqlite_synchronous)
        else:
            self.async_engine = create_async_engine(
                self.url,
                # A fixed set of connections, no overflow: under load, connections handed back
                # while the queue looked full were closed and new ones opened for the requests
                # waiting (a connect, TLS probe and statement preparation each: by-phone fell from
                # thousands to about 700 req/s with 64 requests in flight). Requests wait instead.
                pool_size=20,
                max_overflow=0,
                pool_pre_ping=False,
                # asyncpg: skip the reset round trip on release (DESIGN.md: ~50% faster pools);
                # every unit of work ends in an explicit commit or rollback anyway.
                pool_reset_on_return=None,
                connect_args={"server_settings": {"application_name": "kabar", "timezone": "UTC"}},
                json_serializer=_json_text,
                json_deserializer=msgspec.json.decode,
            )
            _attach_query_timer(self.async_engine.sync_engine)

    # -- listeners --------------------------------------------------------------------------

    def on_commit(self, callback: Callable[[Any], Awaitable[None] | None]) -> None:
        """Register ``callback(unit_of_work)``, called after every successful commit."""
        self._after_commit.append(callback)

    async def _notify(self, uow: Any) -> None:
        for callback in self._after_commit:
            try:
                result = callback(uow)
                if asyncio.iscoroutine(result):
                    await result
            except Exception:  # a listener must never turn a committed write into an error
                log.exception("after-commit listener failed")

    # -- running code -----------------------------------------------------------------------

    def _thread_connection(self) -> Connection:
        conn: Connection | None = getattr(self._local, "conn", None)
        if conn is None or conn.closed or conn.invalidated:
            assert self.sync_engine is not None
            conn = self.sync_engine.connect()
            self._local.conn = conn
            self._thread_conns.append(conn)
        return conn

    def _loop_connection(self) -> Connection:
        """The calling event loop's connection. It never waits for SQLite's write lock (busy
        timeout 0): a wait would freeze every request on the loop. When the lock is held
        elsewhere (a bulk import thread, another process), the unit of work waits on a worker
        thread instead (``_off_loop``)."""
        conn = self._thread_connection()
        if not conn.info.get("kabar_loop"):
            driver = conn.connection.driver_connection
            driver.execute("PRAGMA busy_timeout=0")
            driver.execute("PRAGMA wal_autocheckpoint=0")  # see ``_checkpoint_soon``
            conn.info["kabar_loop"] = True
        return conn

    def _checkpoint_soon(self) -> None:
        """After a write on the loop: checkpoint the WAL on a thread of its own, unless one runs or
        ran in the last ``CHECKPOINT_INTERVAL`` seconds. sqlite3 releases the GIL while it copies
        and fsyncs, so the loop goes on serving meanwhile."""
        now = time.monotonic()
        if now - self._checkpoint_at < CHECKPOINT_INTERVAL or not self._checkpointing.acquire(blocking=False):
            return
        self._checkpoint_at = now
        threading.Thread(target=self._run_checkpoint, name="kabar-wal-checkpoint", daemon=True).start()

    def _run_checkpoint(self) -> None:
        try:
            if self._checkpoint_conn is None:
                assert self.sync_engine is not None
                self._checkpoint_conn = self.sync_engine.raw_connection()
            self._checkpoint_conn.driver_connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        except Exception as exc:  # noqa: BLE001 - the next write tries again; the WAL only grows meanwhile
            log.warning("WAL checkpoint failed: %s", exc)
        finally:
            self._checkpointing.release()

    @staticmethod
    def _sqlite_read(conn: Connection, fn: Callable[..., T], args: Any, kwargs: Any) -> T:
        conn.info[_BEGIN_KEY] = "BEGIN"
        with conn.begin():
            return fn(conn, *args, **kwargs)

    def _sqlite_unit_of_work(self, conn: Connection, fn: Callable[..., T], args: Any, kwargs: Any) -> tuple[Any, T]:
        from kabar.db.uow import UnitOfWork

        conn.info[_BEGIN_KEY] = "BEGIN IMMEDIATE"
        with conn.begin():
            uow = UnitOfWork(conn, self)
            result = fn(uow, *args, **kwargs)
            uow.flush()
        return uow, result

    async def _sqlite(self, run: Callable[..., T], fn: Callable[..., Any], args: Any, kwargs: Any) -> T:
        """``run(conn, fn, args, kwargs)`` on the loop's connection; on a busy database, again on
        a worker thread's connection, which waits out the lock (busy timeout 30 s). Safe to
        repeat: the failed attempt was rolled back and a unit of work has no other effects."""
        try:
            return run(self._loop_connection(), fn, args, kwargs)
        except OperationalError as exc:
            if "database is locked" not in str(exc):
                raise
        return await asyncio.to_thread(lambda: run(self._thread_connection(), fn, args, kwargs))

    def loop_driver_connection(self) -> sqlite3.Connection:
        """SQLite: the loop's sqlite3 connection itself, for hot reads that skip SQLAlchemy
        (``kabar.db.prepared``). Use it without yielding to the loop in between."""
        return self._loop_connection().connection.driver_connection  # type: ignore[return-value]

    async def read(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run ``fn(conn, *args)`` in a read-only transaction (a consistent snapshot)."""
        try:
            if self.sync_engine is not None:
                return await self._sqlite(self._sqlite_read, fn, args, kwargs)
            assert self.async_engine is not None
            async with self.async_engine.connect() as aconn:
                try:
                    return await aconn.run_sync(lambda c: fn(c, *args, **kwargs))
                finally:
                    await aconn.rollback()
        except (OperationalError, DBAPIError, OSError, sqlite3.Error) as exc:
            if _is_unavailable(exc):
                raise StorageUnavailable(str(exc).splitlines()[0]) from exc
            raise

    async def transaction(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run ``fn(uow, *args)`` as one unit of work; commit, then notify listeners."""
        from kabar.db.uow import UnitOfWork

        try:
            if self.sync_engine is not None:
                uow, result = await self._sqlite(self._sqlite_unit_of_work, fn, args, kwargs)
                self._checkpoint_soon()
            else:
                assert self.async_engine is not None
                async with self.async_engine.begin() as aconn:

                    def _run(conn: Connection) -> Any:
                        nonlocal uow
                        uow = UnitOfWork(conn, self)
                        value = fn(uow, *args, **kwargs)
                        uow.flush()
                        return value

                    uow = None
                    result = await aconn.run_sync(_run)
        except (OperationalError, DBAPIError, OSError, sqlite3.Error) as exc:
            if _is_unavailable(exc):
                raise StorageUnavailable(str(exc).splitlines()[0]) from exc
            raise
        await self._notify(uow)
        return result

    def run_in_thread_transaction(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """A SQLite unit of work from a worker thread (bulk imports, seeding), on its own connection.

        Listeners are not notified; the caller does that on the loop when it needs to.
        """
        assert self.sync_engine is not None, "only SQLite runs units of work in threads"
        with self.sync_engine.connect() as conn:
            return self._sqlite_unit_of_work(conn, fn, args, kwargs)[1]

    async def ping(self) -> None:
        await self.read(lambda conn: conn.exec_driver_sql("SELECT 1").scalar())

    async def dispose(self) -> None:
        if self.async_engine is not None:
            await self.async_engine.dispose()
        if self.sync_engine is not None:
            await asyncio.to_thread(self._checkpointing.acquire)  # a checkpoint running finishes first
            if self._checkpoint_conn is not None:
                self._checkpoint_conn.close()
                self._checkpoint_conn = None
            self._checkpointing.release()
            for conn in self._thread_conns:
                conn.close()
            self._thread_conns.clear()
            self._local = threading.local()
            self.sync_engine.dispose()


def _is_unavailable(exc: BaseException) -> bool:
    """Connection-level failures (server down, disk I/O) as opposed to constraint or SQL errors."""
    if isinstance(exc, OSError | ConnectionError):
        return True
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    text = str(exc).lower()
    markers = (
        "connection refused",
        "could not connect",
        "connection was closed",
        "connection is closed",
        "connectiondoesnotexist",
        "cannot connect",
        "the database system is shutting down",
        "the database system is starting up",
        "terminating connection",
        "disk i/o error",
        "database is locked",
        "unable to open database",
        "no space left",
    )
    return any(marker in text for marker in markers)
