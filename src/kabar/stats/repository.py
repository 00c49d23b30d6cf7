"""The statistics' statements: contact counts by creation window, lead status and tag, each over
what the caller may see (``Scope.select_visible``)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, func, select, true

from kabar.auth.scope import Scope
from kabar.db import tables as t

MAX_TAGS = 100

k = t.contacts


def workspace_timezone(conn: Connection, ctx: Scope) -> str | None:
    return conn.execute(select(t.workspaces.c.timezone).where(t.workspaces.c.id == ctx.workspace_id)).scalar()


def created_counts(conn: Connection, ctx: Scope, starts: list[datetime | None], end: datetime) -> list[int]:
    """Contacts created in each window ``[start, end)`` (all of them for ``None``), in one statement.
    Each window is an index range on ix_contacts_ws_created, not a scan of all contacts."""

    def created_count(start: datetime | None):  # noqa: ANN202
        stmt = ctx.select_visible(k, k, func.count())
        if start is not None:
            stmt = stmt.where(k.c.created_at >= start, k.c.created_at < end)
        return stmt.scalar_subquery()

    return list(conn.execute(select(*(created_count(start) for start in starts))).one())


def counts_by_lead_status(conn: Connection, ctx: Scope) -> dict[str, int]:
    stmt = ctx.select_visible(k, k, k.c.lead_status, func.count()).group_by(k.c.lead_status)
    return {status: n for status, n in conn.execute(stmt)}


def tag_counts(conn: Connection, ctx: Scope) -> dict[str, int]:
    """Contacts per tag, most used first (the tags JSON array expanded per dialect)."""
    if conn.dialect.name == "postgresql":
        tag = func.jsonb_array_elements_text(k.c.tags).table_valued("value").render_derived()
    else:
        tag = func.json_each(k.c.tags).table_valued("value")
    n = func.count().label("n")
    stmt = (
        ctx.select_visible(k, k, tag.c.value, n)
        .select_from(k.join(tag, true()))
        .group_by(tag.c.value)
        .order_by(n.desc(), tag.c.value)
        .limit(MAX_TAGS)
    )
    return {str(value): int(count) for value, count in conn.execute(stmt)}
