"""Assignment SQL: the contact's assignee (the one stored owner) and the conversations that copy it.

``conversations.assignee_id`` is kept equal to its contact's by triggers (migration 0006); this
module writes only ``contacts.assignee_id`` and reads the conversations back for the events.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, and_, bindparam, update

from kabar.auth.scope import Scope
from kabar.conversations.repository import CONTACT_SUMMARY_COLUMNS
from kabar.db import tables as t

k = t.contacts
c = t.conversations
CHUNK = 500  # ids per IN list


def _chunks(ids: Sequence[str]) -> list[Sequence[str]]:
    return [ids[start : start + CHUNK] for start in range(0, len(ids), CHUNK)]


def contacts(conn: Connection, ctx: Scope, contact_ids: Sequence[str]) -> list[Any]:
    """The contacts rows (any assignee: callers checked visibility), in no particular order."""
    return [row for ids in _chunks(contact_ids) for row in conn.execute(ctx.select(k).where(k.c.id.in_(ids))).all()]


def contact_ids_assigned_to(conn: Connection, ctx: Scope, user_id: str) -> list[str]:
    return list(conn.execute(ctx.select(k, k.c.id).where(k.c.assignee_id == user_id).order_by(k.c.id)).scalars())


def set_assignees(conn: Connection, ctx: Scope, rows: list[dict[str, Any]]) -> None:
    """``rows``: ``{"b_id": contact id, "assignee_id": …, "updated_at": …}``, one executemany.
    The 0006 triggers copy each contact's assignee to its conversation."""
    if rows:
        stmt = (
            update(k)
            .where(k.c.workspace_id == ctx.workspace_id, k.c.id == bindparam("b_id"))
            .values(assignee_id=bindparam("assignee_id"), updated_at=bindparam("updated_at"))
        )
        conn.execute(stmt, rows)


def update_conversations(conn: Connection, ctx: Scope, contact_ids: Sequence[str], values: dict[str, Any]) -> None:
    """Set ``values`` on the contacts' conversations (never ``assignee_id``: a trigger copies it)."""
    for ids in _chunks(contact_ids):
        conn.execute(update(c).where(c.c.workspace_id == ctx.workspace_id, c.c.contact_id.in_(ids)).values(**values))


def conversations_of(conn: Connection, ctx: Scope, contact_ids: Sequence[str]) -> list[Any]:
    """The contacts' conversations joined with their contact summary (``conversation_from_join``)."""
    joined = c.join(k, and_(k.c.id == c.c.contact_id, k.c.workspace_id == c.c.workspace_id))
    return [
        row
        for ids in _chunks(contact_ids)
        for row in conn.execute(ctx.select(c, c, *CONTACT_SUMMARY_COLUMNS).select_from(joined).where(c.c.contact_id.in_(ids))).all()
    ]


def members_among(conn: Connection, ctx: Scope, user_ids: Sequence[str]) -> set[str]:
    m = t.members
    return set(conn.execute(ctx.select(m, m.c.user_id).where(m.c.user_id.in_(list(user_ids)))).scalars()) if user_ids else set()
