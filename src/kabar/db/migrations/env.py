"""Alembic environment: the URL comes from ``kabar.db.migrate`` (KABAR_DATABASE_URL), never a file."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy import Connection, pool
from sqlalchemy.ext.asyncio import create_async_engine

from kabar.db.engine import _BEGIN_KEY, make_sqlite_engine
from kabar.db.tables import metadata

config = context.config
url: str = config.attributes["database_url"]


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite ALTER support
        compare_type=True,
    )
    if connection.dialect.name == "sqlite":
        # Take the write lock up front: a deferred transaction that reads, then writes, fails at
        # once (no busy wait) if a running server committed in between.
        connection.connection.info[_BEGIN_KEY] = "BEGIN IMMEDIATE"
    with context.begin_transaction():
        context.run_migrations()


async def _run_async() -> None:
    engine = create_async_engine(url, poolclass=pool.NullPool)
    async with engine.connect() as connection:
        await connection.run_sync(_run)
        await connection.commit()
    await engine.dispose()


if url.startswith("sqlite"):
    engine = make_sqlite_engine(url)
    with engine.connect() as connection:
        _run(connection)
        connection.commit()
    engine.dispose()
else:
    asyncio.run(_run_async())
