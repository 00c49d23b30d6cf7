"""Tenancy by construction: tenant SQL lives in repository modules, and what runs is scoped.

The static half (this file) reads the source: statements over a tenant table (a table with a
``workspace_id`` column) are built only in ``repository.py`` modules, and every public repository
function that touches a tenant table takes the caller's ``Scope``. The dynamic half is the tracer every test runs
under (tests/sqltrace/tenant_sql.py, installed by tests/conftest.py): it fails the run on any
statement over a tenant table without ``workspace_id``; the last tests here check the tracer itself.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from kabar.db.prepared import Prepared, read_prepared
from kabar.db import tables as t
from tests.sqltrace import tenant_sql

SRC = Path(__file__).resolve().parents[2] / "src"
KABAR = SRC / "kabar"

# Modules outside repository.py that may build statements over tenant tables, and why.
SQL_OUTSIDE_REPOSITORIES = {
    "kabar/db/uow.py": "the unit of work appends its own workspace's event-log rows and jobs",
    "kabar/db/migrations/": "migrations rewrite every workspace's rows",
    "kabar/bench/": "the benchmark seeds and measures workspaces of its own",
    "kabar/demo.py": "demo seeding of its own workspace",
    "kabar/ari/demo.py": "demo seeding of its own workspace",
    "kabar/channels/fake/demo.py": "demo seeding of its own workspace",
    "kabar/cli.py": "`kabar jobs list`: the operator's view of the shared job queue",
    "kabar/idempotency.py": "request-level infrastructure with a table of its own, every statement scoped by the Scope",
}
# Not yet moved into their repository (issue 13, item 9): each is a service of another area that
# was being rewritten at the same time. Shrink this list; never add to it.
SQL_TO_MOVE = {
}

# Public repository functions that need no Scope, and why.
NO_SCOPE = {
    "kabar/jobs/repository.py": "the job queue: workers claim jobs of every workspace",
    "kabar/auth/repository.py": "credential lookup: sessions, API keys and memberships come before any Scope",
    "kabar/channels/repository.py:by_phone_number_ids": "webhook routing: the phone number id names the workspace",
    "kabar/channels/repository.py:owner_of": "webhook routing: the phone number id names the workspace",
    "kabar/channels/repository.py:all_of_provider": "webhook routing: a provider's channels, before any workspace is known",
    "kabar/realtime/repository.py:workspaces_with_events": "event-log retention runs over every workspace",
    "kabar/integrations/repository.py:lagging_endpoints": "the delivery sweeper runs over every workspace",
    "kabar/ari/repository.py:configured_workspaces": "ARI's scheduler runs over every workspace",
    "kabar/contacts/repository.py:search_terms": "pure: turns a query string into search terms",
    "kabar/contacts/repository.py:newest_first": "pure: orders and pages a statement built from a Scope",
    "kabar/ingest/repository.py:message_status_for": "pure: maps a provider status",
    "kabar/ingest/repository.py:quarantine_size": "the webhook quarantine: receipts that reached no workspace",
    "kabar/ingest/repository.py:delete_quarantine": "the webhook quarantine: receipts that reached no workspace",
    "kabar/ingest/repository.py:get_receipt": "`kabar webhooks replay`: the operator names a receipt by id; the row says its workspace (or none)",
    "kabar/ingest/repository.py:list_receipts": "`kabar webhooks list/replay`: the operator's view of every workspace's receipts",
    "kabar/integrations/repository.py:serial_key": "pure: names an advisory lock",
    "kabar/conversations/repository.py:runner": "pure: wraps a reader function",
    "kabar/workspaces/repository.py:workspaces_of_user": "a user's workspaces: what the user may pick a Scope from",
    "kabar/workspaces/repository.py:invitation_by_secret": "the invitation link's token names the workspace; no Scope before it is read",
}
# Inserts take the full row, workspace_id included (the tracer checks it is there).
INSERTS_TAKE_THE_ROW = ("insert_", "upsert_")

# Repository functions that take a bare ``workspace_id`` where the Scope belongs: tasks and
# webhooks call them with no caller to scope by. To convert (then delete from here); never add.
WORKSPACE_ID_NOT_SCOPE = {
}
# Statement builders: a call of one of these whose arguments name a tenant table is tenant SQL.
BUILDERS = {
    "select", "select_visible", "insert", "update", "delete", "where", "join", "join_from", "outerjoin", "execute",
    "values", "order_by", "group_by",
}


def _modules() -> list[tuple[str, ast.Module]]:
    return [(str(path.relative_to(SRC)), ast.parse(path.read_text(), str(path))) for path in sorted(KABAR.rglob("*.py"))]


def _tenant_names(tree: ast.Module) -> tuple[set[str], set[str]]:
    """(names bound to the tables module, names bound to tenant tables) in ``tree``."""
    modules, tables = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "kabar.db":
            modules |= {alias.asname or alias.name for alias in node.names if alias.name == "tables"}
        elif isinstance(node, ast.ImportFrom) and node.module == "kabar.db.tables":
            tables |= {alias.asname or alias.name for alias in node.names if alias.name in tenant_sql.tenant_tables()}
    return modules, tables


def _names_tenant_table(node: ast.AST, modules: set[str], tables: set[str]) -> bool:
    for sub in ast.walk(node):
        if isinstance(sub, ast.Attribute) and isinstance(sub.value, ast.Name) and sub.value.id in modules:
            if sub.attr in tenant_sql.tenant_tables():
                return True
        if isinstance(sub, ast.Name) and sub.id in tables:
            return True
    return False


def _statements_over_tenant_tables(tree: ast.Module) -> list[int]:
    modules, tables = _tenant_names(tree)
    if not modules and not tables:
        return []
    # Local aliases of tenant tables (``k = t.contacts``) count as the table.
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and _names_tenant_table(node.value, modules, tables):
            for target in node.targets:
                for name in ast.walk(target):
                    if isinstance(name, ast.Name) and isinstance(node.value, ast.Attribute | ast.Name | ast.Tuple):
                        tables.add(name.id)
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else None
            if name in BUILDERS and any(_names_tenant_table(arg, modules, tables) for arg in [*node.args, *(k.value for k in node.keywords)]):
                lines.append(node.lineno)
    return lines


def _allowed(path: str, allowed: dict[str, str] | set[str]) -> bool:
    return any(path == key or (key.endswith("/") and path.startswith(key)) for key in allowed)


def test_tenant_sql_is_built_only_in_repository_modules() -> None:
    found = {
        path: lines
        for path, tree in _modules()
        if not path.endswith("/repository.py") and (lines := _statements_over_tenant_tables(tree))
    }
    stray = {path: lines for path, lines in found.items() if not _allowed(path, SQL_OUTSIDE_REPOSITORIES) and path not in SQL_TO_MOVE}
    assert not stray, f"tenant SQL outside repository modules (move it into the domain's repository.py): {stray}"
    moved = set(SQL_TO_MOVE) - set(found)  # an emptied `{}` is a dict
    assert not moved, f"no tenant SQL left in {sorted(moved)}: remove them from SQL_TO_MOVE"


def _public_functions(tree: ast.Module) -> list[ast.FunctionDef]:
    return [node for node in tree.body if isinstance(node, ast.FunctionDef) and not node.name.startswith("_")]


def _takes_scope(function: ast.FunctionDef) -> bool:
    arguments = [*function.args.posonlyargs, *function.args.args, *function.args.kwonlyargs]
    return any(arg.annotation is not None and "Scope" in ast.unparse(arg.annotation) for arg in arguments)


def _tenant_aliases(tree: ast.Module) -> tuple[set[str], set[str]]:
    """Names of the tables module, and names bound to tenant tables or to statements over them
    (imports, module-level aliases such as ``M = t.messages``, prepared statements)."""
    modules, tables = _tenant_names(tree)
    for node in tree.body:
        if isinstance(node, ast.Assign | ast.AnnAssign) and node.value is not None:
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if _names_tenant_table(node.value, modules, tables):
                tables |= {target.id for target in targets if isinstance(target, ast.Name)}
    return modules, tables


def test_every_repository_function_takes_the_scope() -> None:
    """Public functions of repository modules that touch a tenant table take the Scope."""
    legacy = {module: set(names.split()) for module, names in WORKSPACE_ID_NOT_SCOPE.items()}
    missing, stale = [], []
    for path, tree in _modules():
        if not path.endswith("/repository.py") or path in NO_SCOPE:
            continue
        modules, tables = _tenant_aliases(tree)
        for function in _public_functions(tree):
            if not _names_tenant_table(function, modules, tables) and function.name not in legacy.get(path, ()):
                continue
            name = f"{path}:{function.name}"
            if function.name in legacy.get(path, ()):
                arguments = [a.arg for a in [*function.args.args, *function.args.kwonlyargs]]
                if _takes_scope(function) or "workspace_id" not in arguments:
                    stale.append(name)
                continue
            if _takes_scope(function) or name in NO_SCOPE or function.name.startswith(INSERTS_TAKE_THE_ROW):
                continue
            missing.append(name)
    assert not missing, f"repository functions without a `scope: Scope` parameter (or a reason in NO_SCOPE): {missing}"
    assert not stale, f"update WORKSPACE_ID_NOT_SCOPE (converted, or lost its workspace_id): {stale}"


# -- the tracer ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT messages.id FROM messages WHERE messages.id = ?",
        "UPDATE conversations SET unread_count=? WHERE conversations.id = $1::VARCHAR",
        "DELETE FROM contact_notes WHERE contact_notes.contact_id = ?",
        "SELECT a.id FROM users AS a, members WHERE members.user_id = a.id",
        'SELECT "events".seq FROM "events" ORDER BY "events".seq DESC',
    ],
)
def test_tracer_flags_statements_without_workspace(sql: str) -> None:
    assert tenant_sql.unscoped_tables(sql)


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT messages.id FROM messages WHERE messages.workspace_id = ? AND messages.id = ?",
        "SELECT m.id FROM messages AS m JOIN conversations ON conversations.id = m.conversation_id WHERE conversations.workspace_id = $1",
        "INSERT INTO messages (id, workspace_id, text) VALUES (?, ?, ?)",
        "UPDATE contacts SET name=? WHERE contacts.workspace_id IN (?) AND contacts.id = ?",
        "SELECT users.id FROM users WHERE users.email = ?",
        "CREATE INDEX ix ON messages (conversation_id)",
    ],
)
def test_tracer_passes_scoped_and_non_tenant_statements(sql: str) -> None:
    assert not tenant_sql.unscoped_tables(sql)


_UNSCOPED = Prepared(t.messages.select().where(t.messages.c.id == "nothing"))


def _kabar_like_read(reader) -> object:  # noqa: ANN001
    return reader.first(_UNSCOPED)


async def test_tracer_sees_prepared_and_core_statements_on_both_backends(client, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    """A statement run through the driver-level path (``read_prepared``) and through SQLAlchemy is
    seen and attributed to the Kabar code that ran it (here a stand-in: this file's function is
    presented as Kabar's by pointing the tracer's source root at the tests directory)."""
    seen: list[dict[str, str]] = []
    monkeypatch.setattr(tenant_sql, "_SRC", str(Path(__file__).parent) + "/")
    monkeypatch.setattr(tenant_sql, "_installed", [seen.append])
    db = client.runtime.db
    await read_prepared(db, _kabar_like_read)
    await db.read(lambda conn: conn.execute(t.contacts.select().where(t.contacts.c.id == "nothing")).all())
    tables = [violation["tables"] for violation in seen]
    assert "messages" in tables and "contacts" in tables, seen



_PROBE = """
from sqlalchemy import create_engine, select
from kabar.db import tables as t
engine = create_engine("sqlite://")
t.metadata.create_all(engine)
with engine.connect() as conn:
    conn.execute(select(t.messages.c.id).where(t.messages.c.id == "x")).all()
"""


def test_processes_the_tests_start_report_to_the_session(tmp_path: Path) -> None:
    """A ``kabar`` process started by a test (server, CLI) traces its statements too: the session
    fixture's environment (``PYTHONPATH`` with tests/sqltrace, ``KABAR_SQL_TRACE``) installs the
    tracer there, and it appends what it finds to the file. The probe's code is compiled as if it
    were a module of Kabar."""
    import os
    import subprocess
    import sys

    out = tmp_path / "violations.jsonl"
    code = f"exec(compile({_PROBE!r}, {str(KABAR / '_probe.py')!r}, 'exec'))"
    env = {**os.environ, "KABAR_SQL_TRACE": str(out)}
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=60)
    lines = out.read_text().splitlines()
    assert len(lines) == 1, lines
    assert '"tables": "messages"' in lines[0] and "kabar/_probe.py" in lines[0], lines[0]
