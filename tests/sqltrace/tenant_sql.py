"""The tenant-SQL tracer: every statement Kabar's code runs over a tenant table (a table with a
``workspace_id`` column) must constrain ``workspace_id`` (in its WHERE, a JOIN's ON, or an
INSERT's columns), unless an entry of ``ALLOWED`` below says why it need not.

It sees every statement on both backends: SQLAlchemy executions through a listener on the
``Engine`` class (SQLite engines and the sync side of the asyncpg engine alike), and the hot
statements that go straight to the driver (``kabar.db.prepared`` / ``prepared_writes``) through
``Prepared.compiled``, which each of them calls once per execution. Statements run by test code
itself (no frame of ``src/kabar`` on the stack) are not Kabar's and are ignored.

Used by tests/conftest.py in the test process and, through ``sitecustomize.py`` in this directory,
in every server or CLI process the tests start.
"""

from __future__ import annotations

import functools
import json
import os
import re
import sys
import threading
from collections.abc import Callable
from pathlib import Path

# Each entry: (tenant tables it covers, or None for any; regex over the SQL, or None; regex over
# the calling Kabar code ``path:line function``, or None; why the statement needs no workspace_id).
# An entry covers a statement when all its given parts match.
ALLOWED: list[tuple[frozenset[str] | None, str | None, str | None, str]] = [
    # Webhook routing: an inbound webhook names a phone number id, not a workspace; the channel
    # found is what tells which workspace the webhook belongs to.
    (frozenset({"channels"}), r"\bchannels\.(phone_number_id|provider)\b", None, "webhook routing by phone_number_id"),
    # Webhook receipts are stored before routing decides their workspace (an unknown number has none).
    (frozenset({"webhook_receipts"}), None, r"^kabar/ingest/", "webhook receipts exist before (or without) a workspace"),
    # Credential lookup: the bearer key or the emailed token is what names the workspace.
    (frozenset({"api_keys"}), None, r"^kabar/auth/", "API key lookup by the presented key"),
    (frozenset({"invitations"}), r"\binvitations\.(token_hash|secret_hash)\b", None, "invitation lookup by the emailed token"),
    (frozenset({"members"}), r"\bmembers\.user_id\b", r"^kabar/(auth|workspaces)/", "a user's memberships: which workspaces they may enter"),
    # The job queue: workers claim due jobs of every workspace; each job carries its workspace_id.
    (frozenset({"jobs"}), None, None, "the job queue is shared by all workspaces"),
    # Sweeps over every workspace: retention and schedulers, each row then handled in its own.
    (frozenset({"idempotency_keys"}), r"^\s*DELETE\b", r"^kabar/idempotency\.py:\d+ delete_expired_keys$", "retention of expired idempotency keys"),
    (frozenset({"ari_configs"}), None, r" configured_workspaces$", "ARI's scheduler finds the workspaces that use ARI"),
    # Migrations, operator commands, the benchmark and the demo act on the installation as a whole.
    (None, None, r"^kabar/db/migrat", "migrations run over every workspace"),
    (None, None, r"^kabar/(ops|bench)/", "operator commands and the benchmark span the installation"),
    (None, None, r"^kabar/(demo\.py|ari/demo\.py|channels/fake/demo\.py)", "the demo seeds a workspace of its own"),
]

_COMPILED_ALLOWED = [
    (tables, re.compile(sql, re.S) if sql else None, re.compile(caller) if caller else None, why)
    for tables, sql, caller, why in ALLOWED
]
_DML = re.compile(r"^\s*(WITH|SELECT|INSERT|UPDATE|DELETE)\b", re.I)
_TABLE_REF = re.compile(r"\b(?:FROM|JOIN|INTO|UPDATE)\s+((?:\w+(?:\s+(?:AS\s+)?\w+)?\s*,\s*)*\w+)", re.I)
_CONSTRAINED = re.compile(
    r"workspace_id\s*(?:=|!=|<>|\bIN\b|\bIS\b)|(?:=|\bIN\b)\s*\(?\s*[\w.]*workspace_id\b"
    r"|\bINSERT\s+(?:OR\s+\w+\s+)?INTO\s+\w+\s*\([^)]*\bworkspace_id\b",
    re.I,
)
_SRC = str(Path(__file__).resolve().parents[2] / "src" / "kabar") + os.sep
# Kabar's plumbing: a statement is attributed to the first Kabar frame outside these.
_PLUMBING = tuple(_SRC + name for name in ("db" + os.sep + "engine.py", "db" + os.sep + "prepared"))


@functools.cache
def tenant_tables() -> frozenset[str]:
    from kabar.db.tables import metadata

    return frozenset(table.name for table in metadata.tables.values() if "workspace_id" in table.c)


@functools.cache
def unscoped_tables(sql: str) -> tuple[str, ...]:
    """The tenant tables ``sql`` reads or writes when it never constrains ``workspace_id``."""
    text = sql.replace('"', "")
    if not _DML.match(text) or _CONSTRAINED.search(text):
        return ()
    names = set()
    for match in _TABLE_REF.finditer(text):
        for part in match.group(1).split(","):
            names.add(part.split()[0].lower())
    return tuple(sorted(names & tenant_tables()))


def _callers() -> list[str]:
    """``path:line function`` of each Kabar frame that led to the statement, innermost first;
    empty when the statement comes from test code alone."""
    frames = []
    frame = sys._getframe(3)  # noqa: SLF001 - past check() and the hook
    while frame is not None:
        filename = frame.f_code.co_filename
        if filename.startswith(_SRC) and not filename.startswith(_PLUMBING):
            frames.append(f"{filename[len(_SRC) - len('kabar/') :]}:{frame.f_lineno} {frame.f_code.co_name}")
        frame = frame.f_back
    return frames


def _allowed(tables: tuple[str, ...], sql: str, callers: list[str]) -> bool:
    """Every unscoped table of the statement is covered by an entry of ``ALLOWED`` (a caller
    pattern may match any Kabar frame on the stack)."""
    return all(
        any(
            (covers is None or table in covers)
            and (pattern is None or pattern.search(sql))
            and (code is None or any(code.search(caller) for caller in callers))
            for covers, pattern, code, _ in _COMPILED_ALLOWED
        )
        for table in tables
    )


def check(sql: str, record: Callable[[dict[str, str]], None]) -> None:
    tables = unscoped_tables(sql)
    if not tables:
        return
    callers = _callers()
    if not callers or _allowed(tables, sql, callers):
        return
    record({"sql": " ".join(sql.split())[:400], "tables": ",".join(tables), "caller": " <- ".join(callers[:3])})


_installed: list[Callable[[dict[str, str]], None]] = []


def install(record: Callable[[dict[str, str]], None]) -> None:
    """Check every statement from now on; ``record`` gets each violation."""
    if _installed:
        _installed[0] = record
        return
    _installed.append(record)
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    from kabar.db.prepared import Prepared

    def _before(conn, cursor, statement, parameters, context, executemany):  # noqa: ANN001, ARG001
        check(statement, _installed[0])

    event.listen(Engine, "before_cursor_execute", _before)

    compiled = Prepared.compiled

    def _compiled(self, dialect):  # noqa: ANN001, ANN202 - called once per driver execution
        found = compiled(self, dialect)
        check(found.sql, _installed[0])
        return found

    Prepared.compiled = _compiled  # type: ignore[method-assign]


def install_writing_to(path: str) -> None:
    """In a process the tests started: append each violation to ``path`` as a JSON line."""
    lock = threading.Lock()

    def record(violation: dict[str, str]) -> None:
        line = json.dumps({**violation, "process": " ".join(sys.argv[:3])}) + "\n"
        with lock, open(path, "a", encoding="utf-8") as out:
            out.write(line)

    install(record)
