"""Conversation resource shapes. ``conversation_out`` is the one place a conversation row becomes
JSON (list rows, single reads and event payloads)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec

from kabar.contacts.schemas import ContactSummary, contact_summary

ConversationStatus = Literal["open", "pending", "closed", "snoozed"]
CONVERSATION_STATUSES: tuple[str, ...] = ("open", "pending", "closed", "snoozed")
AwareDateTime = Annotated[datetime, msgspec.Meta(tz=True)]  # a time without an offset is refused


class ConversationOut(msgspec.Struct):
    id: str
    status: str
    assignee_id: str | None
    unread_count: int
    last_message_at: datetime
    last_message_preview: str
    last_inbound_at: datetime | None
    ai_paused: bool
    snoozed_until: datetime | None
    created_at: datetime
    updated_at: datetime
    contact: ContactSummary


def conversation_out(conversation: Any, contact: Any) -> ConversationOut:
    """``conversation`` is a conversations row, ``contact`` its contacts row."""
    return _conversation(conversation, contact_summary(contact))


_TAGS = msgspec.json.Decoder(list[str])


def conversation_from_join(row: Any) -> ConversationOut:
    """A row of conversations joined with ``CONTACT_SUMMARY_COLUMNS`` (see the repository).

    Builds the contact summary from the row's own columns: this runs for every row of every
    inbox page, where an adapter object per row was a measurable share of the request."""
    contact = ContactSummary(
        id=row.contact_id,
        phone=row.phone_e164,
        whatsapp_user_id=row.whatsapp_user_id,
        username=row.username,
        name=row.name,
        profile_name=row.profile_name,
        lead_status=row.lead_status,
        lead_score=row.lead_score,
        tags=_TAGS.decode(row.tags_json),
    )
    return _conversation(row, contact)


def conversation_from_list_row(row: Sequence[Any]) -> ConversationOut:
    """A row of ``LIST_COLUMNS`` (see the repository): the conversation's fields in
    ConversationOut's order, then the contact summary's, the tags as JSON text."""
    return ConversationOut(*row[:11], ContactSummary(*row[11:19], _TAGS.decode(row[19])))


def _conversation(row: Any, contact: ContactSummary) -> ConversationOut:
    # Positional, in ConversationOut's field order (above): the list builds fifty per page.
    return ConversationOut(
        row.id,
        row.status,
        row.assignee_id,
        row.unread_count,
        row.last_message_at,
        row.last_message_preview,
        row.last_inbound_at,
        row.ai_paused,
        row.snoozed_until,
        row.created_at,
        row.updated_at,
        contact,
    )


class ConversationPage(msgspec.Struct):
    data: list[ConversationOut]
    next_cursor: str | None
    total_count: int
    unread_count: int  # conversations with unread messages under the same filters


class ConversationPatch(msgspec.Struct, forbid_unknown_fields=True):
    # UNSET = not sent; None for assignee_id means "unassign".
    status: ConversationStatus | msgspec.UnsetType = msgspec.UNSET
    assignee_id: str | None | msgspec.UnsetType = msgspec.UNSET
    ai_paused: bool | msgspec.UnsetType = msgspec.UNSET
    snoozed_until: AwareDateTime | None | msgspec.UnsetType = msgspec.UNSET
