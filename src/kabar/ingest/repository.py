"""SQL for applying inbound events. Every statement names the workspace.

Upserts are ``INSERT … ON CONFLICT DO NOTHING`` on the unique constraints (then a SELECT when
nothing was inserted), so concurrent deliveries about one new customer cannot create two
contacts, conversations or messages: on PostgreSQL the second insert waits for the first
transaction and then does nothing; on SQLite writers are serialized.
Counters and "latest" columns are computed in SQL (``unread_count + n``, max of times), never
read-modify-write in Python, so concurrent deliveries cannot lose an increment.

The statements on the webhook path are built once, with bind parameters: building a statement
with fresh literals costs SQLAlchemy a cache-key walk on every call, which (measured with
cProfile on 300 deliveries) was most of a delivery's time.
"""

from __future__ import annotations

from datetime import datetime
from functools import cache
from typing import Any

from sqlalchemy import Connection, and_, bindparam, case, delete, func, or_, select, text, update
from sqlalchemy.dialects import postgresql, sqlite

from kabar.auth.scope import Scope
from kabar.db import tables as t
from kabar.db.prepared_writes import Statement, fetch_first
from kabar.db.types import JSONType, UTCDateTime
from kabar.ids import new_id
from kabar.messages.schemas import STATUS_RANK

R = t.webhook_receipts
K = t.contacts
V = t.conversations
M = t.messages
H = t.message_status_history

_ws = bindparam("ws")
_id = bindparam("b_id")  # (an UPDATE may not bind under a column's own name)


_UNIQUE_KEYS = {
    "webhook_receipts": ("workspace_id", "provider", "receipt_key"),
    "contacts": (),  # any of its unique keys: (workspace, phone), (workspace, user id), (workspace, username)
    "conversations": ("workspace_id", "contact_id"),
    "messages": ("workspace_id", "provider_message_id"),
}


@cache
def _upsert(dialect: str, table_name: str, keys: tuple[str, ...]) -> Statement:
    """``INSERT (keys) … ON CONFLICT (unique key) DO NOTHING RETURNING *`` for the dialect; columns
    not in ``keys`` get their defaults."""
    table = t.metadata.tables[table_name]
    module = postgresql if dialect == "postgresql" else sqlite
    values = {key: bindparam(key, type_=table.c[key].type) for key in keys}
    unique = [table.c[key] for key in _UNIQUE_KEYS[table_name]]
    return Statement(module.insert(table).values(values).on_conflict_do_nothing(index_elements=unique or None).returning(*table.c))


def _insert_new(conn: Connection, table_name: str, values: dict[str, Any]) -> Any:
    return fetch_first(conn, _upsert(conn.dialect.name, table_name, tuple(values)), values)


# -- receipts ---------------------------------------------------------------------------------


def insert_receipt(conn: Connection, values: dict[str, Any]) -> str | None:
    """The receipt's id, or None when this (workspace, provider, key) was received before."""
    row = _insert_new(conn, "webhook_receipts", {"id": new_id(), **values})
    return row.id if row is not None else None


# The quarantine: receipts no workspace claims (workspace_id ""), i.e. unauthenticated bodies.
_QUARANTINED = select(func.count()).select_from(R).where(R.c.workspace_id == "")


def quarantine_size(conn: Connection) -> int:
    return conn.execute(_QUARANTINED).scalar_one()


def delete_quarantine(conn: Connection, *, before: datetime, batch: int) -> int:
    """Delete up to ``batch`` quarantined receipts received before ``before``; how many went."""
    old = select(R.c.id).where(R.c.workspace_id == "", R.c.received_at < before).limit(batch).scalar_subquery()
    return conn.execute(delete(R).where(R.c.workspace_id == "", R.c.id.in_(old))).rowcount


def get_receipt(conn: Connection, receipt_id: str) -> Any:
    return conn.execute(select(R).where(R.c.id == receipt_id)).first()


def update_receipt(conn: Connection, scope: Scope, receipt_id: str, values: dict[str, Any]) -> None:
    """``scope``: the receipt's workspace (``system_scope("")`` for one in the quarantine)."""
    conn.execute(update(R).where(R.c.workspace_id == scope.workspace_id, R.c.id == receipt_id).values(**values))


def list_receipts(conn: Connection, *, statuses: tuple[str, ...] | None, workspace_id: str | None, limit: int) -> list[Any]:
    stmt = select(R.c.id, R.c.workspace_id, R.c.provider, R.c.event_type, R.c.status, R.c.error, R.c.attempts, R.c.received_at)
    if workspace_id is not None:
        stmt = stmt.where(R.c.workspace_id == workspace_id)
    if statuses:
        stmt = stmt.where(R.c.status.in_(statuses))
    return conn.execute(stmt.order_by(R.c.received_at.desc(), R.c.id.desc()).limit(limit)).all()


# -- contacts and conversations ---------------------------------------------------------------

_CONTACT_BY_PHONE = Statement(select(K).where(K.c.workspace_id == _ws, K.c.phone_e164 == bindparam("phone")))
_CONTACT_BY_ID = select(K).where(K.c.workspace_id == _ws, K.c.id == _id)
_CONVERSATION_OF = Statement(select(V).where(V.c.workspace_id == _ws, V.c.contact_id == bindparam("contact_id")))


def contact_by_phone(conn: Connection, scope: Scope, phone_e164: str) -> Any:
    return fetch_first(conn, _CONTACT_BY_PHONE, {"ws": scope.workspace_id, "phone": phone_e164})


def contact_by_id(conn: Connection, scope: Scope, contact_id: str) -> Any:
    return conn.execute(_CONTACT_BY_ID, {"ws": scope.workspace_id, "b_id": contact_id}).one()


_CONTACT_BY_USER_ID = Statement(select(K).where(K.c.workspace_id == _ws, K.c.whatsapp_user_id == bindparam("user_id")))
_CONTACT_BY_USERNAME = Statement(select(K).where(K.c.workspace_id == _ws, K.c.username == bindparam("username")))


def contact_by_user_id(conn: Connection, scope: Scope, user_id: str) -> Any:
    return fetch_first(conn, _CONTACT_BY_USER_ID, {"ws": scope.workspace_id, "user_id": user_id})


def contact_by_username(conn: Connection, scope: Scope, username: str) -> Any:
    return fetch_first(conn, _CONTACT_BY_USERNAME, {"ws": scope.workspace_id, "username": username})


def insert_contact(conn: Connection, values: dict[str, Any]) -> Any:
    """The new row, or None when a concurrent delivery inserted one of its identities first."""
    return _insert_new(conn, "contacts", {"id": new_id(), **values})


def conversation_of(conn: Connection, scope: Scope, contact_id: str) -> Any:
    return fetch_first(conn, _CONVERSATION_OF, {"ws": scope.workspace_id, "contact_id": contact_id})


def upsert_conversation(conn: Connection, values: dict[str, Any]) -> tuple[Any, bool]:
    key = {"ws": values["workspace_id"], "contact_id": values["contact_id"]}
    found = fetch_first(conn, _CONVERSATION_OF, key)
    if found is not None:
        return found, False
    row = _insert_new(conn, "conversations", {"id": new_id(), **values})
    if row is not None:
        return row, True
    return fetch_first(conn, _CONVERSATION_OF, key), False


def _later(column: Any, value: Any) -> Any:
    """``max(column, value)``: NULL counts as older than anything, a NULL value changes nothing."""
    return case((and_(value.is_not(None), or_(column.is_(None), column < value)), value), else_=column)


_at = bindparam("at", type_=UTCDateTime())
_now = bindparam("now", type_=UTCDateTime())
_TOUCH_CONTACT = Statement(
    update(K)
    .where(K.c.workspace_id == _ws, K.c.id == _id)
    .values(
        last_interaction_at=_later(K.c.last_interaction_at, _at),
        first_contact_at=case((or_(K.c.first_contact_at.is_(None), K.c.first_contact_at > _at), _at), else_=K.c.first_contact_at),
        updated_at=_now,
    )
    .returning(*K.c)
)


def touch_contact(conn: Connection, scope: Scope, contact_id: str, *, at: datetime, now: datetime) -> Any:
    return fetch_first(conn, _TOUCH_CONTACT, {"ws": scope.workspace_id, "b_id": contact_id, "at": at, "now": now})


def update_contact(conn: Connection, scope: Scope, contact_id: str, values: dict[str, Any]) -> Any:
    stmt = update(K).where(K.c.workspace_id == scope.workspace_id, K.c.id == contact_id).values(**values).returning(*K.c)
    return conn.execute(stmt).one()


_last_at = bindparam("last_at", type_=UTCDateTime())
_inbound_at = bindparam("inbound_at", type_=UTCDateTime())
_reopen = bindparam("reopen", type_=t.conversations.c.ai_paused.type)
_asleep = and_(_reopen, or_(V.c.status == "closed", V.c.status == "snoozed"))  # no IN list: precompiled
# One UPDATE for a delivery's whole effect on a conversation. SET expressions read the old row,
# so the preview test below compares with the old last_message_at: the preview follows the
# newest message by provider time, and a late (retried) delivery does not overwrite it.
_BUMP_CONVERSATION = Statement(
    update(V)
    .where(V.c.workspace_id == _ws, V.c.id == _id)
    .values(
        unread_count=V.c.unread_count + bindparam("unread"),
        last_message_at=_later(V.c.last_message_at, _last_at),
        last_message_preview=case(
            (and_(_last_at.is_not(None), V.c.last_message_at <= _last_at), bindparam("preview")), else_=V.c.last_message_preview
        ),
        last_inbound_at=_later(V.c.last_inbound_at, _inbound_at),
        status=case((_asleep, "open"), else_=V.c.status),
        snoozed_until=case((_asleep, None), else_=V.c.snoozed_until),
        ai_paused=or_(V.c.ai_paused, bindparam("takeover", type_=t.conversations.c.ai_paused.type)),
        updated_at=_now,
    )
    .returning(*V.c)
)


def bump_conversation(
    conn: Connection,
    scope: Scope,
    conversation_id: str,
    *,
    now: datetime,
    unread: int,
    last_at: datetime | None,
    preview: str | None,
    inbound_at: datetime | None,
    reopen: bool,
    takeover: bool = False,
) -> Any:
    params = {"ws": scope.workspace_id, "b_id": conversation_id, "now": now, "unread": unread, "last_at": last_at,
              "preview": preview or "", "inbound_at": inbound_at, "reopen": reopen, "takeover": takeover}
    return fetch_first(conn, _BUMP_CONVERSATION, params)


# -- messages ---------------------------------------------------------------------------------

_MESSAGE_BY_PROVIDER_ID = select(M).where(M.c.workspace_id == _ws, M.c.provider_message_id == bindparam("pmid"))
_MESSAGE_BY_ID = select(M).where(M.c.workspace_id == _ws, M.c.id == _id)
_ID_OF_PROVIDER_MESSAGE = Statement(select(M.c.id).where(M.c.workspace_id == _ws, M.c.provider_message_id == bindparam("pmid")))


def insert_message(conn: Connection, values: dict[str, Any]) -> Any:
    """The new row, or None when a message with this provider id exists already."""
    return _insert_new(conn, "messages", values)


def message_by_provider_id(conn: Connection, scope: Scope, provider_message_id: str, *, lock: bool = False) -> Any:
    stmt = _MESSAGE_BY_PROVIDER_ID.with_for_update() if lock else _MESSAGE_BY_PROVIDER_ID
    return conn.execute(stmt, {"ws": scope.workspace_id, "pmid": provider_message_id}).first()


def message_by_id(conn: Connection, scope: Scope, message_id: str, *, lock: bool = False) -> Any:
    stmt = _MESSAGE_BY_ID.with_for_update() if lock else _MESSAGE_BY_ID
    return conn.execute(stmt, {"ws": scope.workspace_id, "b_id": message_id}).first()


def id_of_provider_message(conn: Connection, scope: Scope, provider_message_id: str) -> str | None:
    row = fetch_first(conn, _ID_OF_PROVIDER_MESSAGE, {"ws": scope.workspace_id, "pmid": provider_message_id})
    return row.id if row is not None else None


def update_message(conn: Connection, scope: Scope, message_id: str, values: dict[str, Any]) -> Any:
    return conn.execute(
        update(M).where(M.c.workspace_id == scope.workspace_id, M.c.id == message_id).values(**values).returning(*M.c)
    ).one()


_ATTACH_PROVIDER_ID = (
    update(M)
    .where(M.c.workspace_id == _ws, M.c.id == _id, M.c.direction == "outbound", M.c.provider_message_id.is_(None))
    .values(provider_message_id=bindparam("pmid"), updated_at=_now)
    .returning(*M.c)
)


def attach_provider_id(conn: Connection, scope: Scope, message_id: str, provider_message_id: str, now: datetime) -> Any:
    """Give an outbound message its provider id, unless it already has one."""
    return conn.execute(_ATTACH_PROVIDER_ID, {"ws": scope.workspace_id, "b_id": message_id, "pmid": provider_message_id, "now": now}).first()


_RANK = case(STATUS_RANK, value=M.c.status, else_=0)
_forward = and_(M.c.workspace_id == _ws, M.c.id == _id, M.c.direction == "outbound", _RANK < bindparam("rank"))
_ADVANCE = update(M).where(_forward).values(status=bindparam("b_status"), updated_at=_now).returning(*M.c)
_ADVANCE_FAILED = (
    update(M).where(_forward).values(status=bindparam("b_status"), error=bindparam("b_error", type_=JSONType), updated_at=_now).returning(*M.c)
)


def advance_status(conn: Connection, scope: Scope, message_id: str, status: str, error: dict[str, Any] | None, now: datetime) -> Any:
    """Move an outbound message's status forward (never back); the new row, or None if unchanged."""
    params = {"ws": scope.workspace_id, "b_id": message_id, "b_status": status, "rank": STATUS_RANK[status], "now": now}
    if status == "failed":
        return conn.execute(_ADVANCE_FAILED, {**params, "b_error": error}).first()
    return conn.execute(_ADVANCE, params).first()


# -- status history ---------------------------------------------------------------------------

_LOCK = text("SELECT pg_advisory_xact_lock(hashtext(:key))")


def lock_provider_ids(conn: Connection, scope: Scope, provider_message_ids: set[str]) -> None:
    """Serialize work on these outbound message ids until commit (PostgreSQL; SQLite writers are
    serialized already). Without it, a status read under READ COMMITTED could miss the message a
    concurrent transaction is inserting and stay parked forever. Taken first, in sorted order."""
    if conn.dialect.name != "postgresql":
        return
    for pmid in sorted(provider_message_ids):
        conn.execute(_LOCK, {"key": f"{scope.workspace_id}:{pmid}"})


_SAME_STATUS = select(H.c.id).where(H.c.workspace_id == _ws, H.c.provider_message_id == bindparam("pmid"), H.c.status == bindparam("status"))
_SAME_STATUS_AT = _SAME_STATUS.where(H.c.occurred_at == bindparam("occurred_at", type_=UTCDateTime())).limit(1)
_SAME_STATUS = _SAME_STATUS.limit(1)
_INSERT_STATUS = H.insert()


def record_status(
    conn: Connection,
    scope: Scope,
    *,
    message_id: str | None,
    provider_message_id: str,
    status: str,
    error: dict[str, Any] | None,
    occurred_at: datetime | None,
    now: datetime,
) -> bool:
    """Keep a reported status; False when the same report was kept already (a re-delivery)."""
    key = {"ws": scope.workspace_id, "pmid": provider_message_id, "status": status}
    same = conn.execute(_SAME_STATUS_AT, {**key, "occurred_at": occurred_at}) if occurred_at else conn.execute(_SAME_STATUS, key)
    if same.first() is not None:
        return False
    conn.execute(
        _INSERT_STATUS,
        {"id": new_id(), "workspace_id": scope.workspace_id, "message_id": message_id, "provider_message_id": provider_message_id,
         "status": status, "error": error, "occurred_at": occurred_at or now, "created_at": now},
    )
    return True


def message_status_for(reported: str | None) -> str | None:
    """The message status a reported status moves to (a voice note's ``played`` counts as read)."""
    status = {"played": "read"}.get(reported or "", reported)
    return status if status in ("sent", "delivered", "read", "failed") else None


def adopt_parked(conn: Connection, scope: Scope, row: Any, now: datetime) -> Any:
    """Apply the statuses that arrived before this outbound message got its provider id."""
    parked = _adopt_parked_statuses(conn, scope, row.provider_message_id, row.id)
    best = max(parked, key=lambda p: STATUS_RANK.get(message_status_for(p.status) or "", -1), default=None)
    if best is not None and (status := message_status_for(best.status)):
        row = advance_status(conn, scope, row.id, status, best.error, now) or row
    return row


_PARKED = select(H.c.status, H.c.error).where(H.c.workspace_id == _ws, H.c.provider_message_id == bindparam("pmid"), H.c.message_id.is_(None))
_ADOPT = (
    update(H)
    .where(H.c.workspace_id == _ws, H.c.provider_message_id == bindparam("pmid"), H.c.message_id.is_(None))
    .values(message_id=bindparam("b_message_id"))
)


def _adopt_parked_statuses(conn: Connection, scope: Scope, provider_message_id: str, message_id: str) -> list[Any]:
    params = {"ws": scope.workspace_id, "pmid": provider_message_id}
    parked = conn.execute(_PARKED, params).all()
    if parked:
        conn.execute(_ADOPT, {**params, "b_message_id": message_id})
    return parked
