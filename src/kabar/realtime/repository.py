"""SQL for the event log: ordered reads (with what member visibility needs), bounds, retention.

Every statement filters on the Scope's workspace only, not on its visibility: the realtime readers
run for a workspace (the shared feeds with a system scope), not for one caller, and apply each
caller's visibility afterwards (``kabar.realtime.service``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, delete, func, select

from kabar.auth.scope import Scope
from kabar.auth.visibility import owner_columns
from kabar.db import tables as t

E = t.events
C = t.contacts
CONV = t.conversations


def read_after(conn: Connection, scope: Scope, after_seq: int, limit: int, upto: int | None = None) -> list[Any]:
    """Events with ``seq > after_seq`` (and ``<= upto``), oldest first, each with its contact's
    *current* owner columns (``kabar.auth.visibility.owner_columns``; ``contact_found`` is null
    when the contact no longer exists).

    The LEFT JOIN costs one primary-key probe per event and no write-time work; it is why member
    visibility needs no cache and no extra column (see ``kabar.realtime.service.audience``).
    """
    stmt = (
        select(
            E.c.seq,
            E.c.type,
            E.c.data,
            E.c.contact_id,
            E.c.created_at,
            C.c.id.label("contact_found"),
            *owner_columns(C),
        )
        .select_from(E.outerjoin(C, and_(C.c.workspace_id == E.c.workspace_id, C.c.id == E.c.contact_id)))
        .where(E.c.workspace_id == scope.workspace_id, E.c.seq > after_seq)
        .order_by(E.c.seq)
        .limit(limit)
    )
    if upto is not None:
        stmt = stmt.where(E.c.seq <= upto)
    return list(conn.execute(stmt).all())


def last_seq(conn: Connection, scope: Scope) -> int:
    """The last committed seq of the workspace (0 for none, or an unknown workspace)."""
    value = conn.execute(select(t.workspaces.c.event_seq).where(t.workspaces.c.id == scope.workspace_id)).scalar()
    return int(value or 0)


def bounds(conn: Connection, scope: Scope) -> tuple[int, int]:
    """(oldest retained seq, last seq). With an empty log, oldest is ``last + 1``.

    Retention only ever deletes a prefix of the log, so everything in [oldest, last] is present.
    """
    last = last_seq(conn, scope)
    oldest = conn.execute(select(func.min(E.c.seq)).where(E.c.workspace_id == scope.workspace_id)).scalar()
    return (int(oldest) if oldest is not None else last + 1), last


def conversation_audience(conn: Connection, scope: Scope, conversation_id: str) -> Any:
    """A conversation's ``contact_id`` and its contact's owner columns, or None."""
    return conn.execute(
        select(CONV.c.contact_id, *owner_columns(C))
        .select_from(CONV.join(C, and_(C.c.workspace_id == CONV.c.workspace_id, C.c.id == CONV.c.contact_id)))
        .where(CONV.c.workspace_id == scope.workspace_id, CONV.c.id == conversation_id)
    ).first()


def contact_assignee(conn: Connection, scope: Scope, contact_id: str) -> Any:
    """A contact's owner columns, or None when it is not in this workspace."""
    return conn.execute(select(*owner_columns(C)).where(C.c.workspace_id == scope.workspace_id, C.c.id == contact_id)).first()


# -- retention --------------------------------------------------------------------------------


def workspaces_with_events(conn: Connection) -> list[tuple[str, int]]:
    """(workspace id, last seq) of every workspace that ever wrote an event (the cleanup sweep)."""
    rows = conn.execute(select(t.workspaces.c.id, t.workspaces.c.event_seq).where(t.workspaces.c.event_seq > 0))
    return [(row.id, int(row.event_seq)) for row in rows]


def newest_seq_before(conn: Connection, scope: Scope, cutoff: datetime) -> int:
    """The seq of the newest event created before ``cutoff`` (0 if none); uses (ws, created_at)."""
    value = conn.execute(
        select(E.c.seq)
        .where(E.c.workspace_id == scope.workspace_id, E.c.created_at < cutoff)
        .order_by(E.c.created_at.desc(), E.c.seq.desc())  # events of one transaction share a time
        .limit(1)
    ).scalar()
    return int(value or 0)


def oldest_seq(conn: Connection, scope: Scope) -> int | None:
    value = conn.execute(select(func.min(E.c.seq)).where(E.c.workspace_id == scope.workspace_id)).scalar()
    return int(value) if value is not None else None


def delete_upto(conn: Connection, scope: Scope, seq: int) -> int:
    """Delete the log prefix ``seq <= seq`` of one workspace; returns the number of rows."""
    result = conn.execute(delete(E).where(E.c.workspace_id == scope.workspace_id, E.c.seq <= seq))
    return int(result.rowcount or 0)
