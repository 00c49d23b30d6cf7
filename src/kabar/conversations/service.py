"""Conversations: the inbox list, reads and the changes staff make. One unit of work per write."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec
from sqlalchemy import Connection

from kabar.assignment import service as assignment
from kabar.auth.scope import Scope, system_scope
from kabar.conversations import repository as repo
from kabar.conversations.schemas import (
    ConversationOut,
    ConversationPage,
    ConversationPatch,
    conversation_from_join,
    conversation_from_list_row,
)
from kabar.db.engine import Database
from kabar.db.prepared import Reader, read_prepared
from kabar.db.types import utcnow
from kabar.db.uow import UnitOfWork
from kabar.errors import bad_request, invalid_fields, not_found
from kabar.events import CONVERSATION_UPDATED, payload
from kabar.http import decode_cursor, encode_cursor

WAKE_JOB = "conversation.wake"


def decode_keyset(cursor: str | None, times: int) -> tuple[Any, ...] | None:
    """A cursor of ``times`` RFC 3339 instants then an id (as ``encode_cursor`` wrote it); 400 if
    it was not one of ours."""
    values = decode_cursor(cursor, times + 1)
    if values is None:
        return None
    try:
        instants = [datetime.fromisoformat(value) for value in values[:times]]
    except (TypeError, ValueError) as exc:
        raise bad_request("cursor is not valid") from exc
    if any(at.tzinfo is None for at in instants) or not isinstance(values[times], str):
        raise bad_request("cursor is not valid")
    return (*instants, values[times])


async def list_conversations_json(db: Database, ctx: Scope, filters: repo.ListFilters, *, limit: int, cursor: str | None) -> bytes:
    """The inbox list page as JSON (``ConversationPage``). Without a search its statements are
    prepared and run on the driver (``kabar.db.prepared``); a search goes through SQLAlchemy."""
    ctx.require("conversations.read")
    parsed = decode_keyset(cursor, 2)
    as_of, after = (parsed[0], parsed[1:]) if parsed is not None else (utcnow(), None)
    if filters.q:
        page = await db.read(_searched_page, db.dialect, ctx, filters, limit, after, as_of)
    else:
        page = await read_prepared(db, _prepared_page, db.dialect, ctx, filters, limit, after, as_of)
    return msgspec.json.encode(page)


def _prepared_page(reader: Reader, *args: Any) -> ConversationPage:
    return _page(lambda statement, params: reader.all(statement, **params), *args)


def _searched_page(conn: Connection, dialect: str, ctx: Scope, filters: repo.ListFilters, *args: Any) -> ConversationPage:
    filters = repo.with_search(conn, ctx, filters)
    return _page(repo.runner(conn, filters), dialect, ctx, filters, *args)


def _page(
    run: repo.Run, dialect: str, ctx: Scope, filters: repo.ListFilters, limit: int, after: Any, as_of: datetime
) -> ConversationPage:
    keyed = repo.list_page(run, dialect, ctx, filters, limit=limit + 1, after=after, as_of=as_of)
    next_cursor = None
    if len(keyed) > limit:
        keyed = keyed[:limit]
        (at, last_id), _ = keyed[-1]
        next_cursor = encode_cursor(as_of.isoformat(), at.isoformat(), last_id)
    total, unread = repo.counts(run, dialect, ctx, filters)
    return ConversationPage(
        data=[conversation_from_list_row(row) for _, row in keyed],
        next_cursor=next_cursor,
        total_count=total,
        unread_count=unread,
    )


def get_conversation(conn: Connection, ctx: Scope, conversation_id: str) -> ConversationOut:
    ctx.require("conversations.read")
    return conversation_from_join(visible_or_404(conn, ctx, conversation_id))


def visible_or_404(conn: Connection, ctx: Scope, conversation_id: str) -> Any:
    row = repo.get_visible(conn, ctx, conversation_id)
    if row is None:
        raise not_found("Conversation")
    return row


def _changes(uow: UnitOfWork, ctx: Scope, row: Any, patch: ConversationPatch) -> dict[str, Any]:
    """The column values ``patch`` asks for, validated against the row; 422 lists every problem."""
    errors: list[dict[str, str]] = []
    status = row.status if patch.status is msgspec.UNSET else patch.status
    values: dict[str, Any] = {"status": status}
    if patch.status is msgspec.UNSET and patch.snoozed_until is msgspec.UNSET:
        pass  # snooze untouched (even one already due: the wake job is on its way)
    elif status == "snoozed":
        until = row.snoozed_until if patch.snoozed_until is msgspec.UNSET else patch.snoozed_until
        if until is None:
            errors.append({"field": "snoozed_until", "message": "is required when status is snoozed"})
        elif until <= uow.now:
            errors.append({"field": "snoozed_until", "message": "must be in the future"})
        values["snoozed_until"] = until
    else:
        if patch.snoozed_until not in (msgspec.UNSET, None):
            errors.append({"field": "snoozed_until", "message": "may only be set with status snoozed"})
        values["snoozed_until"] = None
    if patch.assignee_id is not msgspec.UNSET:
        if not assignment.is_assignable(uow.conn, ctx, patch.assignee_id):
            errors.append({"field": "assignee_id", "message": assignment.NOT_A_MEMBER})
        values["assignee_id"] = patch.assignee_id
    if patch.ai_paused is not msgspec.UNSET:
        values["ai_paused"] = patch.ai_paused
    if errors:
        raise invalid_fields(errors)
    return {name: value for name, value in values.items() if getattr(row, name) != value}


def update_conversation(uow: UnitOfWork, ctx: Scope, conversation_id: str, patch: ConversationPatch) -> ConversationOut:
    ctx.require("conversations.write")
    row = visible_or_404(uow.conn, ctx, conversation_id)
    changes = _changes(uow, ctx, row, patch)
    if not changes:
        return conversation_from_join(row)
    if changes.get("snoozed_until") is not None:
        until = changes["snoozed_until"]
        uow.enqueue(
            WAKE_JOB,
            {"conversation_id": row.id, "snoozed_until": until.isoformat()},
            workspace_id=ctx.workspace_id,
            run_at=until,
        )
    if "assignee_id" in changes:
        # The owner is the customer's (contact and conversation together); assigning a person is
        # a takeover (ARI pauses) unless this same request says what ai_paused should be.
        takeover = patch.ai_paused is msgspec.UNSET
        owner = changes.pop("assignee_id")
        assignment.assign(uow, ctx, contact_id=row.contact_id, assignee_id=owner, takeover=takeover, conversation_values=changes)
        return conversation_from_join(repo.get_joined(uow.conn, ctx, row.id))
    return write_changes(uow, ctx, row, changes)


def mark_read(uow: UnitOfWork, ctx: Scope, conversation_id: str) -> ConversationOut:
    ctx.require("conversations.write")
    row = visible_or_404(uow.conn, ctx, conversation_id)
    if row.unread_count == 0:
        return conversation_from_join(row)
    # Blue ticks for the customer: the channel job tells WhatsApp (serialized with this chat's sends).
    uow.enqueue("channel.mark_read", {"conversation_id": row.id}, workspace_id=row.workspace_id, serial_key=f"send:{row.id}")
    return write_changes(uow, ctx, row, {"unread_count": 0})


def wake_snoozed(uow: UnitOfWork, workspace_id: str, conversation_id: str, snoozed_until: datetime) -> None:
    """The snooze ran out: back to open, unless it was changed or re-snoozed meanwhile."""
    scope = system_scope(workspace_id)
    row = repo.get_joined(uow.conn, scope, conversation_id)
    if row is None or row.status != "snoozed" or row.snoozed_until != snoozed_until:
        return
    write_changes(uow, scope, row, {"status": "open", "snoozed_until": None})


def write_changes(uow: UnitOfWork, scope: Scope, row: Any, changes: dict[str, Any]) -> ConversationOut:
    """Update the conversation ``row`` (a ``repo.get_joined`` row of ``scope``'s workspace) and emit
    ``conversation.updated``."""
    repo.update_conversation(uow.conn, scope, row.id, {**changes, "updated_at": uow.now})
    out = conversation_from_join(repo.get_joined(uow.conn, scope, row.id))
    uow.emit(scope.workspace_id, CONVERSATION_UPDATED, payload(out), contact_id=row.contact_id)
    return out
