"""Message and upload SQL, tenant-scoped (every statement names the workspace). No business rules."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, delete, insert, or_, select, update

from kabar.auth import visibility
from kabar.auth.scope import Scope
from kabar.db import tables as t

m = t.messages
u = t.uploads
c = t.conversations


def history(
    conn: Connection, scope: Scope, conversation_id: str, *, limit: int, before: tuple[datetime, str] | None
) -> list[Any]:
    """Newest first, on ``ix_messages_ws_conv_created``; ``before`` is an exclusive (created_at, id) key."""
    stmt = scope.select(m).where(m.c.conversation_id == conversation_id)
    if before is not None:
        at, last_id = before
        stmt = stmt.where(m.c.created_at <= at, or_(m.c.created_at < at, m.c.id < last_id))
    return conn.execute(stmt.order_by(m.c.created_at.desc(), m.c.id.desc()).limit(limit)).all()


def get_message(conn: Connection, scope: Scope, message_id: str) -> Any:
    return conn.execute(scope.select(m).where(m.c.id == message_id)).first()


def insert_message(conn: Connection, values: dict[str, Any]) -> None:
    conn.execute(insert(m).values(**values))


def update_message(conn: Connection, scope: Scope, message_id: str, values: dict[str, Any]) -> Any:
    return conn.execute(
        update(m).where(m.c.workspace_id == scope.workspace_id, m.c.id == message_id).values(**values).returning(*m.c)
    ).one()


def latest_inbound_provider_id(conn: Connection, scope: Scope, conversation_id: str) -> str | None:
    """The provider id of the conversation's newest inbound message (what a read receipt names)."""
    return conn.execute(
        select(m.c.provider_message_id)
        .where(
            m.c.workspace_id == scope.workspace_id,
            m.c.conversation_id == conversation_id,
            m.c.direction == "inbound",
            m.c.provider_message_id.is_not(None),
        )
        .order_by(m.c.created_at.desc(), m.c.id.desc())
        .limit(1)
    ).scalar()


def delete_folded_twin(conn: Connection, scope: Scope, twin_id: str) -> None:
    """Delete a message folded into another; its status history stays, detached from it."""
    h = t.message_status_history
    conn.execute(update(h).where(h.c.workspace_id == scope.workspace_id, h.c.message_id == twin_id).values(message_id=None))
    conn.execute(delete(m).where(m.c.workspace_id == scope.workspace_id, m.c.id == twin_id))


def get_upload(conn: Connection, scope: Scope, upload_id: str) -> Any:
    return conn.execute(scope.select(u).where(u.c.id == upload_id)).first()


def get_visible_upload(conn: Connection, ctx: Scope, upload_id: str) -> Any:
    """The upload if the caller may see it (kabar.auth.visibility: a sent one with its
    conversation, an unsent one by its uploader), else None."""
    stmt = ctx.select(u).outerjoin(c, and_(c.c.workspace_id == u.c.workspace_id, c.c.id == u.c.conversation_id))
    clause = visibility.attached_clause(ctx.viewer, c, u.c.conversation_id, u.c.created_by)
    if clause is not None:
        stmt = stmt.where(clause)
    return conn.execute(stmt.where(u.c.id == upload_id)).first()


def attach_upload(conn: Connection, ctx: Scope, upload_id: str, conversation_id: str, contact_id: str) -> bool:
    """Give an unsent upload its conversation; False if it already has one."""
    result = conn.execute(
        update(u)
        .where(u.c.workspace_id == ctx.workspace_id, u.c.id == upload_id, u.c.conversation_id.is_(None))
        .values(conversation_id=conversation_id, contact_id=contact_id)
    )
    return bool(result.rowcount)


def insert_upload(conn: Connection, values: dict[str, Any]) -> None:
    conn.execute(insert(u).values(**values))
