"""Schema and migrations: up from an empty database, down to nothing and up again, on both
backends; /readyz reports the migration state; the schema keeps its tenancy and uniqueness rules."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest
from typing import Any

from sqlalchemy import NullPool, create_engine, inspect
from sqlalchemy.ext.asyncio import create_async_engine

from kabar.db.migrate import downgrade, head_revision, upgrade
from kabar.db.tables import metadata
from tests.conftest import app_client, create_database


def on_database(url: str, fn: Any) -> Any:
    """Run ``fn(sync_connection)`` with the drivers Kabar itself uses (asyncpg on PostgreSQL)."""
    if url.startswith("sqlite"):
        engine = create_engine(url.replace("sqlite+aiosqlite://", "sqlite://"))
        try:
            with engine.connect() as conn:
                return fn(conn)
        finally:
            engine.dispose()

    async def run() -> Any:
        engine = create_async_engine(url, poolclass=NullPool)
        try:
            async with engine.connect() as conn:
                return await conn.run_sync(fn)
        finally:
            await engine.dispose()

    return asyncio.run(run())


def _schema(conn: Any) -> dict[str, dict[str, list]]:
    inspector = inspect(conn)
    out = {}
    for table in inspector.get_table_names():
        indexes = [i for i in inspector.get_indexes(table) if None not in i["column_names"]]
        out[table] = {
            "indexes": sorted(tuple(i["column_names"]) for i in indexes),
            # Unique constraints, and unique indexes (how SQLite may report them).
            "unique": sorted(
                {tuple(u["column_names"]) for u in inspector.get_unique_constraints(table)}
                | {tuple(i["column_names"]) for i in indexes if i["unique"]}
            ),
        }
    return out


def schema(url: str) -> dict[str, dict[str, list]]:
    """Tables with their indexes and unique constraints (as column lists), read from the database."""
    return on_database(url, _schema)


def _differences(conn: Any) -> list[Any]:
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    def known(obj: Any, name: str | None, kind: str, reflected: bool, compare_to: Any) -> bool:
        # Contact search lives in the migrations only: SQLite's FTS5 tables, PostgreSQL's trigram index.
        search = (name or "").startswith("contacts_fts") or name == "ix_contacts_search_global"
        return not (reflected and compare_to is None and search)

    context = MigrationContext.configure(conn, opts={"compare_type": True, "include_object": known})
    return compare_metadata(context, metadata)


def revision(url: str) -> str | None:
    from alembic.runtime.migration import MigrationContext

    return on_database(url, lambda conn: MigrationContext.configure(conn).get_current_revision())


@pytest.fixture
def empty_url(backend, tmp_path) -> str:
    return create_database(backend, tmp_path, "empty", migrate=False)


def test_upgrade_from_empty_downgrade_and_upgrade_again(empty_url):
    assert set(schema(empty_url)) == set()
    upgrade(empty_url)
    first = schema(empty_url)
    assert set(metadata.tables) <= set(first), set(metadata.tables) - set(first)
    assert revision(empty_url) == head_revision()
    # kabar.db.tables (what the code queries) and the migrations (what databases get) agree.
    assert on_database(empty_url, _differences) == []

    # Duplicates are impossible by constraint, not by application checks.
    assert ("workspace_id", "phone_e164") in first["contacts"]["unique"]
    assert ("workspace_id", "provider_message_id") in first["messages"]["unique"]
    assert ("workspace_id", "provider", "receipt_key") in first["webhook_receipts"]["unique"]

    downgrade(empty_url, "base")
    assert set(schema(empty_url)) <= {"alembic_version"}, "downgrade left tables behind"
    assert revision(empty_url) is None

    upgrade(empty_url)
    assert schema(empty_url) == first
    assert revision(empty_url) == head_revision()
    upgrade(empty_url)  # idempotent at head
    assert revision(empty_url) == head_revision()


def test_every_tenant_index_starts_with_workspace_id():
    """DESIGN.md: every index on a tenant table starts with workspace_id; the few global lookups
    say so in their name (``…_global``)."""
    offenders = []
    for table in metadata.tables.values():
        if "workspace_id" not in table.c:
            continue
        for index in table.indexes:
            first = next(iter(index.expressions), None)
            name = str(index.name)
            if getattr(first, "name", None) != "workspace_id" and not name.endswith("_global"):
                offenders.append(f"{table.name}.{name}")
        for constraint in table.constraints:
            columns = [c.name for c in getattr(constraint, "columns", [])]
            kind = type(constraint).__name__
            if kind == "UniqueConstraint" and columns and columns[0] != "workspace_id":
                offenders.append(f"{table.name}.{constraint.name}")
    assert not offenders, offenders


def test_every_tenant_table_names_its_workspace():
    """Tenant data is everything but identity (users, sessions, identities, account tokens, the
    mail outbox), the workspaces themselves and the system job queue (whose rows still carry
    workspace_id)."""
    global_tables = {"users", "user_identities", "sessions", "account_tokens", "mail_outbox", "workspaces", "alembic_version"}
    missing = [name for name, table in metadata.tables.items() if name not in global_tables and "workspace_id" not in table.c]
    assert not missing, missing


async def test_readyz_reports_migration_state(client, backend, tmp_path_factory):
    url = await asyncio.to_thread(create_database, backend, tmp_path_factory.mktemp("readyz"), "readyz")
    settings = replace(client.runtime.settings, database_url=url)
    async with app_client(settings) as app:
        response = await app.get("/readyz")
        assert response.status_code == 200 and response.json()["checks"]["migrations"] == "ok"

        await asyncio.to_thread(downgrade, url, "base")
        response = await app.get("/readyz")
        assert response.status_code == 503
        body = response.json()
        assert body["status"] == "unavailable" and body["checks"]["database"] == "ok"
        assert head_revision() in body["checks"]["migrations"]

        await asyncio.to_thread(upgrade, url)
        response = await app.get("/readyz")
        assert response.status_code == 200 and response.json()["checks"]["migrations"] == "ok"
