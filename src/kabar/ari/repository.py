"""SQL for ARI. Every statement names its workspace; no business rules here."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Table, and_, bindparam, delete, func, insert, select, update
from sqlalchemy.sql import Select

from kabar.auth.scope import Scope
from kabar.db import tables as t
from kabar.db.prepared_writes import Statement, fetch_first

ACTIVE_APPOINTMENT = ("scheduled", "confirmed")


# -- rows of the small configuration tables (flow stages, knowledge, slots, destinations) -------


def list_rows(conn: Connection, table: Table, scope: Scope, *order_by: Any) -> list[Any]:
    stmt = scope.select(table).order_by(*order_by, table.c.id)
    return conn.execute(stmt).all()


def get_row(conn: Connection, table: Table, scope: Scope, row_id: str) -> Any:
    return conn.execute(scope.select(table).where(table.c.id == row_id)).first()


def insert_row(conn: Connection, table: Table, values: dict[str, Any]) -> None:
    conn.execute(insert(table).values(**values))


def update_row(conn: Connection, table: Table, scope: Scope, row_id: str, values: dict[str, Any]) -> None:
    conn.execute(update(table).where(table.c.workspace_id == scope.workspace_id, table.c.id == row_id).values(**values))


def delete_row(conn: Connection, table: Table, scope: Scope, row_id: str) -> None:
    conn.execute(delete(table).where(table.c.workspace_id == scope.workspace_id, table.c.id == row_id))


# -- per-workspace settings ---------------------------------------------------------------------


def get_config(conn: Connection, scope: Scope) -> Any:
    return conn.execute(scope.select(t.ari_configs)).first()


# What the inbound-message trigger reads inside every ingest transaction: two columns, precompiled.
_REPLY_SETTINGS = Statement(
    select(t.ari_configs.c.enabled, t.ari_configs.c.reply_delay_ms).where(t.ari_configs.c.workspace_id == bindparam("ws"))
)
_STATE_OF = Statement(
    select(t.ari_states.c.state).where(t.ari_states.c.workspace_id == bindparam("ws"), t.ari_states.c.conversation_id == bindparam("conversation_id"))
)


def reply_settings(conn: Connection, scope: Scope) -> Any:
    """``enabled`` and ``reply_delay_ms`` of the workspace's ARI, or None when it has none."""
    return fetch_first(conn, _REPLY_SETTINGS, {"ws": scope.workspace_id})


def state_of(conn: Connection, scope: Scope, conversation_id: str) -> str | None:
    row = fetch_first(conn, _STATE_OF, {"ws": scope.workspace_id, "conversation_id": conversation_id})
    return row.state if row is not None else None


def get_scoring(conn: Connection, scope: Scope) -> Any:
    return conn.execute(scope.select(t.ari_scoring)).first()


def upsert_settings(conn: Connection, table: Table, scope: Scope, values: dict[str, Any], now: datetime) -> None:
    """Insert or update a one-row-per-workspace table (config, scoring)."""
    exists = conn.execute(scope.select(table, table.c.workspace_id)).first()
    if exists:
        conn.execute(update(table).where(table.c.workspace_id == scope.workspace_id).values(**values, updated_at=now))
    else:
        conn.execute(insert(table).values(workspace_id=scope.workspace_id, **values, created_at=now, updated_at=now))


def configured_workspaces(conn: Connection) -> list[str]:
    """Workspaces that have configured ARI (the reminder sweep visits each; global by nature)."""
    return list(conn.execute(select(t.ari_configs.c.workspace_id)).scalars())


def max_stage_order(conn: Connection, scope: Scope) -> int | None:
    s = t.ari_flow_stages
    return conn.execute(scope.select(s, func.max(s.c.stage_order))).scalar()


def shift_stages_after(conn: Connection, scope: Scope, order: int) -> None:
    s = t.ari_flow_stages
    conn.execute(
        update(s).where(s.c.workspace_id == scope.workspace_id, s.c.stage_order > order).values(stage_order=s.c.stage_order - 1)
    )


def slot_exists(conn: Connection, scope: Scope, consultant_id: str | None, day: int, start: str, except_id: str | None) -> bool:
    s = t.ari_slots
    stmt = scope.select(s, s.c.id).where(
        s.c.day_of_week == day,
        s.c.start_time == start,
        s.c.consultant_id.is_(None) if consultant_id is None else s.c.consultant_id == consultant_id,
    )
    if except_id:
        stmt = stmt.where(s.c.id != except_id)
    return conn.execute(stmt.limit(1)).first() is not None


def active_slots(conn: Connection, scope: Scope) -> list[Any]:
    s = t.ari_slots
    stmt = scope.select(s).where(s.c.is_active.is_(True)).order_by(s.c.day_of_week, s.c.start_time)
    return conn.execute(stmt).all()


def is_member(conn: Connection, scope: Scope, user_id: str) -> bool:
    m = t.members
    return conn.execute(scope.select(m, m.c.user_id).where(m.c.user_id == user_id)).first() is not None


# -- conversation state -------------------------------------------------------------------------


def get_state(conn: Connection, scope: Scope, conversation_id: str) -> Any:
    s = t.ari_states
    return conn.execute(scope.select(s).where(s.c.conversation_id == conversation_id)).first()


def insert_state(conn: Connection, values: dict[str, Any]) -> None:
    conn.execute(insert(t.ari_states).values(**values))


def update_state(conn: Connection, scope: Scope, conversation_id: str, values: dict[str, Any]) -> None:
    s = t.ari_states
    conn.execute(update(s).where(s.c.workspace_id == scope.workspace_id, s.c.conversation_id == conversation_id).values(**values))


def get_conversation(conn: Connection, scope: Scope, conversation_id: str) -> Any:
    c = t.conversations
    return conn.execute(scope.select(c).where(c.c.id == conversation_id)).first()


def ai_paused_for_update(conn: Connection, scope: Scope, conversation_id: str) -> bool | None:
    """The conversation's ``ai_paused``, its row locked until commit (PostgreSQL; SQLite's
    writers are serialized anyway); None when there is no such conversation."""
    c = t.conversations
    stmt = scope.select(c, c.c.ai_paused).where(c.c.id == conversation_id).with_for_update()
    return conn.execute(stmt).scalar()


def get_contact(conn: Connection, scope: Scope, contact_id: str) -> Any:
    c = t.contacts
    return conn.execute(scope.select(c).where(c.c.id == contact_id)).first()


def inbound_texts_since(conn: Connection, scope: Scope, conversation_id: str, since: datetime) -> list[Any]:
    """Inbound text messages of a conversation created at or after ``since``, oldest first."""
    m = t.messages
    stmt = (
        select(m.c.id, m.c.text, m.c.created_at)
        .where(
            m.c.workspace_id == scope.workspace_id,
            m.c.conversation_id == conversation_id,
            m.c.created_at >= since,
            m.c.direction == "inbound",
            m.c.type == "text",
            m.c.deleted_at.is_(None),
        )
        .order_by(m.c.created_at, m.c.id)
        .limit(200)
    )
    return conn.execute(stmt).all()


def get_message(conn: Connection, scope: Scope, message_id: str) -> Any:
    m = t.messages
    return conn.execute(scope.select(m, m.c.id, m.c.created_at).where(m.c.id == message_id)).first()


def recent_transcript(conn: Connection, scope: Scope, conversation_id: str, limit: int) -> list[Any]:
    """The newest ``limit`` user/assistant turns, returned oldest first (not the first N: §6.3 bug)."""
    tr = t.ari_transcript
    stmt = (
        select(tr.c.role, tr.c.content)
        .where(tr.c.workspace_id == scope.workspace_id, tr.c.conversation_id == conversation_id, tr.c.role.in_(("user", "assistant")))
        .order_by(tr.c.created_at.desc(), tr.c.id.desc())
        .limit(limit)
    )
    return list(reversed(conn.execute(stmt).all()))


def insert_transcript(conn: Connection, rows: list[dict[str, Any]]) -> None:
    if rows:
        # executemany takes its columns from the first row: give every row every column.
        full = [{"model": None, "tokens_used": None, "latency_ms": None, "metadata": {}, **row} for row in rows]
        conn.execute(insert(t.ari_transcript), full)


# -- appointments -------------------------------------------------------------------------------


def taken_booking_keys(conn: Connection, scope: Scope, start: datetime, end: datetime) -> set[str]:
    a = t.ari_appointments
    stmt = select(a.c.booking_key).where(
        a.c.workspace_id == scope.workspace_id, a.c.scheduled_at >= start, a.c.scheduled_at <= end, a.c.booking_key.is_not(None)
    )
    return set(conn.execute(stmt).scalars())


def appointments_statement(scope: Scope) -> Select:
    """Appointments joined to their conversation (for member visibility) and contact."""
    a, c, k = t.ari_appointments, t.conversations, t.contacts
    return (
        select(a, c.c.assignee_id.label("conversation_assignee_id"), k.c.name.label("contact_name"), k.c.phone_e164.label("contact_phone"))
        .select_from(a.join(c, and_(c.c.workspace_id == a.c.workspace_id, c.c.id == a.c.conversation_id)).join(k, and_(k.c.workspace_id == a.c.workspace_id, k.c.id == a.c.contact_id)))
        .where(a.c.workspace_id == scope.workspace_id)
    )


def appointments_page(
    conn: Connection, scope: Scope, *, start: datetime | None, end: datetime | None, after: tuple[datetime, str] | None, limit: int
) -> list[Any]:
    """The appointments the caller may see (their conversation's visibility), by time then id;
    ``after`` is an exclusive (scheduled_at, id) key."""
    a = t.ari_appointments
    stmt = appointments_statement(scope)
    visible = scope.visible(t.conversations)
    if visible is not None:
        stmt = stmt.where(visible)
    if start is not None:
        stmt = stmt.where(a.c.scheduled_at >= start)
    if end is not None:
        stmt = stmt.where(a.c.scheduled_at < end)
    if after:
        at = after[0]
        stmt = stmt.where((a.c.scheduled_at > at) | ((a.c.scheduled_at == at) & (a.c.id > after[1])))
    return conn.execute(stmt.order_by(a.c.scheduled_at, a.c.id).limit(limit)).all()


def get_appointment(conn: Connection, scope: Scope, appointment_id: str) -> Any:
    return conn.execute(appointments_statement(scope).where(t.ari_appointments.c.id == appointment_id)).first()


def reminders_due(conn: Connection, scope: Scope, now: datetime, until: datetime) -> list[Any]:
    a = t.ari_appointments
    stmt = appointments_statement(scope).where(
        a.c.scheduled_at > now,
        a.c.scheduled_at <= until,
        a.c.reminder_sent_at.is_(None),
        a.c.status.in_(ACTIVE_APPOINTMENT),
    )
    return conn.execute(stmt.order_by(a.c.scheduled_at)).all()


def claim_reminder(conn: Connection, scope: Scope, appointment_id: str, now: datetime) -> bool:
    """Mark a reminder sent; False when another sweep got there first (never twice)."""
    a = t.ari_appointments
    result = conn.execute(
        update(a)
        .where(a.c.workspace_id == scope.workspace_id, a.c.id == appointment_id, a.c.reminder_sent_at.is_(None))
        .values(reminder_sent_at=now, status="confirmed", updated_at=now)
    )
    return bool(result.rowcount)
