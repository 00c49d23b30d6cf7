"""SQL for channel rows. ``by_phone_number_ids`` is global by nature: an inbound webhook names
only its phone_number_id (the index on it is unique across workspaces)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import Connection, bindparam, insert, select, update

from kabar.auth.scope import Scope
from kabar.db import tables as t
from kabar.db.prepared_writes import Statement, fetch_all

C = t.channels


def get(conn: Connection, scope: Scope) -> Any:
    return conn.execute(scope.select(C)).first()


_BY_PHONE_NUMBER_ID = Statement(select(C).where(C.c.phone_number_id == bindparam("pnid")))


def by_phone_number_ids(conn: Connection, phone_number_ids: Iterable[str]) -> list[Any]:
    ids = sorted(set(phone_number_ids))
    if not ids:
        return []
    if len(ids) == 1:  # nearly every webhook: precompiled, on every delivery
        return fetch_all(conn, _BY_PHONE_NUMBER_ID, {"pnid": ids[0]})
    return conn.execute(select(C).where(C.c.phone_number_id.in_(ids))).all()


def owner_of(conn: Connection, phone_number_id: str) -> str | None:
    return conn.execute(select(C.c.workspace_id).where(C.c.phone_number_id == phone_number_id)).scalar()


def all_of_provider(conn: Connection, provider: str) -> list[Any]:
    return conn.execute(select(C).where(C.c.provider == provider)).all()


def save(conn: Connection, scope: Scope, values: dict[str, Any], *, exists: bool) -> None:
    if exists:
        conn.execute(update(C).where(C.c.workspace_id == scope.workspace_id).values(**values))
    else:
        conn.execute(insert(C).values(workspace_id=scope.workspace_id, **values))


def conversation_of_phone(conn: Connection, scope: Scope, phone_e164: str) -> Any:
    """(id, conversation_id) of the customer with this phone, if they have a conversation."""
    k, c = t.contacts, t.conversations
    return conn.execute(
        select(k.c.id, c.c.id.label("conversation_id"))
        .select_from(k.join(c, (c.c.workspace_id == k.c.workspace_id) & (c.c.contact_id == k.c.id)))
        .where(k.c.workspace_id == scope.workspace_id, k.c.phone_e164 == phone_e164)
        .limit(1)
    ).first()
