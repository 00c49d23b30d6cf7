"""Hot statements of a unit of work (the webhook path), compiled once and run on the driver.

The write-side counterpart of ``kabar.db.prepared``: a ``Statement`` is a ``Prepared`` (built once,
compiled once per dialect, same SQL text, bind and result processing, query count and time) that
runs inside the caller's transaction. On SQLite it goes straight to the sqlite3 connection of
``conn`` (the transaction and any savepoint are that connection's, so it sees and is rolled back
with everything else in the unit of work); rows come back as named tuples with the statement's
column names, so callers read ``row.id`` as from a SQLAlchemy row. On PostgreSQL it is an
ordinary SQLAlchemy execution (the async driver begins its transaction lazily, on the first
statement executed through SQLAlchemy, so going around it could run outside the transaction).
"""

from __future__ import annotations

import time
from collections import namedtuple
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.engine import Dialect
from sqlalchemy.sql import Executable

from kabar.db.engine import query_stats
from kabar.db.prepared import Prepared, Reader


class Statement(Prepared):
    """A statement (SELECT, or INSERT/UPDATE … RETURNING) for ``fetch_all``/``fetch_first``."""

    __slots__ = ("_row_types",)

    def __init__(self, stmt: Executable):
        super().__init__(stmt)  # type: ignore[arg-type]
        self._row_types: dict[str, type] = {}

    def row_type(self, dialect: Dialect) -> type:
        found = self._row_types.get(dialect.name)
        if found is None:
            names = [column[0] for column in self.stmt.compile(dialect=dialect)._result_columns]  # noqa: SLF001
            found = self._row_types[dialect.name] = namedtuple("Row", names)  # type: ignore[misc]  # noqa: PYI024
        return found


def _reader(conn: Connection) -> Reader:
    """A ``Reader`` on ``conn``'s sqlite3 connection, kept with the connection."""
    driver = conn.connection.driver_connection
    kept = conn.info.get("kabar_reader")
    if kept is None or kept[0] is not driver:
        reader = Reader(conn.dialect, lambda sql, values: driver.execute(sql, values).fetchall())  # type: ignore[union-attr]
        kept = conn.info["kabar_reader"] = (driver, reader)
    return kept[1]


def fetch_all(conn: Connection, statement: Statement, params: dict[str, Any]) -> list[Any]:
    """The rows ``statement`` returns (none for a statement without RETURNING)."""
    if conn.dialect.name != "sqlite":
        return list(conn.execute(statement.stmt, params).all())  # type: ignore[arg-type]
    row_type = statement.row_type(conn.dialect)
    return [row_type(*row) for row in _reader(conn).all(statement, **params)]


def fetch_first(conn: Connection, statement: Statement, params: dict[str, Any]) -> Any:
    rows = fetch_all(conn, statement, params)
    return rows[0] if rows else None


def execute_many(conn: Connection, statement: Statement, rows: list[dict[str, Any]]) -> None:
    """``statement`` (an INSERT without RETURNING) once per row of ``rows``."""
    if conn.dialect.name != "sqlite":
        conn.execute(statement.stmt, rows)  # type: ignore[arg-type]
        return
    compiled = statement.compiled(conn.dialect)
    started = time.perf_counter()
    conn.connection.driver_connection.executemany(compiled.sql, [compiled.args(row) for row in rows])  # type: ignore[union-attr]
    stats = query_stats.get()
    if stats is not None:
        stats.append(time.perf_counter() - started)
