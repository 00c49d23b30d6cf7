"""SQL for the mail outbox (global: mail is addressed to people, not to a workspace)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, insert, select, update

from kabar.db import tables as t
from kabar.ids import new_id

M = t.mail_outbox


def insert_mail(conn: Connection, *, to: str, subject: str, body: str, kind: str, status: str, now: datetime) -> str:
    mail_id = new_id()
    conn.execute(insert(M).values(id=mail_id, to_addr=to, subject=subject, body=body, kind=kind, status=status, created_at=now))
    return mail_id


def mail_by_id(conn: Connection, mail_id: str) -> Any:
    return conn.execute(select(M).where(M.c.id == mail_id)).first()


def mark_sent(conn: Connection, mail_id: str, now: datetime) -> None:
    # The body held single-use links: once delivered it has no business staying in the database.
    conn.execute(update(M).where(M.c.id == mail_id).values(status="sent", sent_at=now, body=None, last_error=None))


def mark_error(conn: Connection, mail_id: str, error: str, *, final: bool) -> None:
    values: dict[str, Any] = {"last_error": error[:2000]}
    if final:
        values.update(status="failed", body=None)
    conn.execute(update(M).where(M.c.id == mail_id).values(**values))


def recent(conn: Connection, *, to: str | None = None, limit: int = 50) -> list[Any]:
    stmt = select(M).order_by(M.c.created_at.desc(), M.c.id.desc()).limit(limit)
    if to:
        stmt = stmt.where(M.c.to_addr == to.strip().lower())
    return conn.execute(stmt).all()
