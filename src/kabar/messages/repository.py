"""Message and upload SQL, tenant-scoped (every statement names the workspace). No business rules."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, insert, or_, select, update

from kabar.db import tables as t

m = t.messages
u = t.uploads


def history(
    conn: Connection, workspace_id: str, conversation_id: str, *, limit: int, before: tuple[datetime, str] | None
) -> list[Any]:
    """Newest first, on ``ix_messages_ws_conv_created``; ``before`` is an exclusive (created_at, id) key."""
    stmt = select(m).where(m.c.workspace_id == workspace_id, m.c.conversation_id == conversation_id)
    if before is not None:
        at, last_id = before
        stmt = stmt.where(m.c.created_at <= at, or_(m.c.created_at < at, m.c.id < last_id))
    return conn.execute(stmt.order_by(m.c.created_at.desc(), m.c.id.desc()).limit(limit)).all()


def get_message(conn: Connection, workspace_id: str, message_id: str) -> Any:
    return conn.execute(select(m).where(m.c.workspace_id == workspace_id, m.c.id == message_id)).first()


def insert_message(conn: Connection, values: dict[str, Any]) -> None:
    conn.execute(insert(m).values(**values))


def update_message(conn: Connection, workspace_id: str, message_id: str, values: dict[str, Any]) -> Any:
    return conn.execute(
        update(m).where(m.c.workspace_id == workspace_id, m.c.id == message_id).values(**values).returning(*m.c)
    ).one()


def get_upload(conn: Connection, workspace_id: str, upload_id: str) -> Any:
    return conn.execute(select(u).where(u.c.workspace_id == workspace_id, u.c.id == upload_id)).first()


def insert_upload(conn: Connection, values: dict[str, Any]) -> None:
    conn.execute(insert(u).values(**values))
