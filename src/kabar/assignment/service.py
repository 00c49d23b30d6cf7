"""Who owns a customer: the one function every writer of an assignment calls.

The contact's ``assignee_id`` is the stored owner; its conversation carries a copy that the
database keeps equal (triggers of migration 0006), so the inbox (conversations) and the contact
pages (contacts) can never disagree, and a member sees both or neither. Writers — PATCH of a
contact or a conversation, CSV import, merge, ARI's handoff, member removal, and any future
auto-assignment — call ``assign``/``assign_many``, which validate the assignee, write, and emit
``contact.updated`` and ``conversation.updated`` for every changed row with
``previous_assignee_id`` (so the realtime audience also reaches the person who lost it).

Assigning to a person is a human takeover: with ``takeover=True`` (staff decisions: PATCH,
import) ARI stops replying in the conversation (``ai_paused``) until someone turns it back on.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import Connection

from kabar import events
from kabar.assignment import repository as repo
from kabar.auth.scope import Scope
from kabar.contacts.schemas import contact_out
from kabar.conversations.schemas import conversation_from_join
from kabar.db.uow import UnitOfWork
from kabar.errors import invalid_fields

NOT_A_MEMBER = "is not a member of this workspace"


def is_assignable(conn: Connection, ctx: Scope, user_id: str | None) -> bool:
    """Nobody (unassigned), or a member of the workspace."""
    return user_id is None or bool(repo.members_among(conn, ctx, [user_id]))


def assign(
    uow: UnitOfWork,
    ctx: Scope,
    *,
    contact_id: str,
    assignee_id: str | None,
    takeover: bool = False,
    conversation_values: Mapping[str, Any] | None = None,
) -> Any:
    """Make ``assignee_id`` (None: nobody) the owner of the contact and its conversation.
    ``conversation_values``: other columns of the conversation changed by the same request
    (written with it: one ``conversation.updated``). Returns the contact row as written (None
    when there is no such contact)."""
    owners = {contact_id: assignee_id}
    return assign_many(uow, ctx, owners, takeover=takeover, conversation_values=conversation_values).get(contact_id)


def assign_many(
    uow: UnitOfWork,
    ctx: Scope,
    owners: Mapping[str, str | None],
    *,
    takeover: bool = False,
    conversation_values: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """``owners``: contact id → new assignee. Writes the changed ones in one pass (an import or a
    member's removal may touch thousands), then emits their events. 422 (nothing written) when an
    assignee is not a member. Returns contact id → contact row after the write."""
    conn, now = uow.conn, uow.now
    rows = {row.id: row for row in repo.contacts(conn, ctx, list(owners))}
    previous = {contact_id: row.assignee_id for contact_id, row in rows.items() if row.assignee_id != owners[contact_id]}
    if not previous:
        return rows
    changed = sorted(previous)
    wanted = {owners[contact_id] for contact_id in changed} - {None}
    missing = wanted - repo.members_among(conn, ctx, sorted(wanted))
    if missing:
        raise invalid_fields([{"field": "assignee_id", "message": f"{user_id} {NOT_A_MEMBER}"} for user_id in sorted(missing)])
    repo.set_assignees(conn, ctx, [{"b_id": contact_id, "assignee_id": owners[contact_id], "updated_at": now} for contact_id in changed])
    values = {**(conversation_values or {}), "updated_at": now}
    repo.update_conversations(conn, ctx, [i for i in changed if not (takeover and owners[i])], values)
    repo.update_conversations(conn, ctx, [i for i in changed if takeover and owners[i]], {"ai_paused": True, **values})
    rows.update((row.id, row) for row in repo.contacts(conn, ctx, changed))
    for contact_id in changed:
        data = events.reassigned(events.payload(contact_out(rows[contact_id])), previous[contact_id])
        uow.emit(ctx.workspace_id, events.CONTACT_UPDATED, data, contact_id=contact_id)
    for row in sorted(repo.conversations_of(conn, ctx, changed), key=lambda row: row.contact_id):
        data = events.reassigned(events.payload(conversation_from_join(row)), previous[row.contact_id])
        uow.emit(ctx.workspace_id, events.CONVERSATION_UPDATED, data, contact_id=row.contact_id)
    return rows


def unassign_member(uow: UnitOfWork, ctx: Scope, user_id: str) -> int:
    """A member left or was removed: their customers go back to the shared queue. Returns how many."""
    contact_ids = repo.contact_ids_assigned_to(uow.conn, ctx, user_id)
    assign_many(uow, ctx, dict.fromkeys(contact_ids), takeover=False)
    return len(contact_ids)
