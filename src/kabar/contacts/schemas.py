"""Contact resource shapes. ``contact_out`` is the one place a contact row becomes JSON
(API responses and event payloads alike)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec
from msgspec import UNSET, UnsetType

LeadStatus = Literal["prospect", "hot_lead", "cold_lead", "client", "student", "alumni", "lost"]
LEAD_STATUSES: tuple[str, ...] = ("prospect", "hot_lead", "cold_lead", "client", "student", "alumni", "lost")


class ContactOut(msgspec.Struct):
    id: str
    phone: str | None  # canonical E.164; None for a customer known only by WhatsApp user id
    phone_raw: str | None
    whatsapp_user_id: str | None  # WhatsApp's business-scoped user id (BSUID)
    username: str | None  # WhatsApp username, without the '@'
    name: str | None
    profile_name: str | None
    email: str | None
    tags: list[str]
    attributes: dict[str, Any]
    lead_status: str
    lead_score: int
    assignee_id: str | None
    source: str
    is_returning: bool
    first_contact_at: datetime | None
    last_interaction_at: datetime | None
    created_at: datetime
    updated_at: datetime


class ContactSummary(msgspec.Struct):
    """The contact as embedded in a conversation list row."""

    id: str
    phone: str | None
    whatsapp_user_id: str | None
    username: str | None
    name: str | None
    profile_name: str | None
    lead_status: str
    lead_score: int
    tags: list[str]


def is_returning(first_contact_at: datetime | None, last_interaction_at: datetime | None) -> bool:
    """Returning: they wrote to us before today's first interaction (has history before now)."""
    return last_interaction_at is not None and first_contact_at is not None and last_interaction_at > first_contact_at


def contact_out(row: Any) -> ContactOut:
    return ContactOut(
        id=row.id,
        phone=row.phone_e164,
        phone_raw=row.phone_raw,
        whatsapp_user_id=row.whatsapp_user_id,
        username=row.username,
        name=row.name,
        profile_name=row.profile_name,
        email=row.email,
        tags=list(row.tags or []),
        attributes=dict(row.attributes or {}),
        lead_status=row.lead_status,
        lead_score=row.lead_score,
        assignee_id=row.assignee_id,
        source=row.source,
        is_returning=is_returning(row.first_contact_at, row.last_interaction_at),
        first_contact_at=row.first_contact_at,
        last_interaction_at=row.last_interaction_at,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def contact_summary(row: Any) -> ContactSummary:
    return ContactSummary(
        id=row.id,
        phone=row.phone_e164,
        whatsapp_user_id=row.whatsapp_user_id,
        username=row.username,
        name=row.name,
        profile_name=row.profile_name,
        lead_status=row.lead_status,
        lead_score=row.lead_score,
        tags=list(row.tags or []),
    )


# -- requests ---------------------------------------------------------------------------------
# Types only: value rules (phone, email, ranges, membership) are checked by the service, which
# reports every bad field at once as 422 ``errors: [{field, message}]``.

AwareDateTime = Annotated[datetime, msgspec.Meta(tz=True)]


class ContactCreate(msgspec.Struct, forbid_unknown_fields=True):
    """``phone`` or ``whatsapp_user_id`` (or both) is required."""

    phone: str | None = None
    whatsapp_user_id: str | None = None
    username: str | None = None
    name: str | None = None
    email: str | None = None
    tags: list[str] | None = None
    lead_status: str | None = None
    lead_score: int | None = None
    assignee_id: str | None = None
    source: str | None = None
    attributes: dict[str, Any] | None = None


class ContactUpdate(msgspec.Struct, forbid_unknown_fields=True):
    """Only the fields sent change; ``null`` clears a nullable field. ``attributes`` is merged
    key by key (a key set to null is removed)."""

    phone: str | None | UnsetType = UNSET  # null only while the contact keeps a whatsapp_user_id
    whatsapp_user_id: str | None | UnsetType = UNSET
    username: str | None | UnsetType = UNSET
    name: str | None | UnsetType = UNSET
    email: str | None | UnsetType = UNSET
    tags: list[str] | None | UnsetType = UNSET
    lead_status: str | UnsetType = UNSET
    lead_score: int | UnsetType = UNSET
    assignee_id: str | None | UnsetType = UNSET
    source: str | UnsetType = UNSET
    attributes: dict[str, Any] | UnsetType = UNSET


class MergeRequest(msgspec.Struct, forbid_unknown_fields=True):
    keep_id: str
    merge_id: str


class NoteCreate(msgspec.Struct, forbid_unknown_fields=True):
    content: str
    due_at: AwareDateTime | None = None  # a note with a due time is a task
    completed_at: AwareDateTime | None = None


class NoteUpdate(msgspec.Struct, forbid_unknown_fields=True):
    content: str | UnsetType = UNSET
    due_at: AwareDateTime | None | UnsetType = UNSET
    completed_at: AwareDateTime | None | UnsetType = UNSET


# -- responses --------------------------------------------------------------------------------


class NoteOut(msgspec.Struct):
    id: str
    contact_id: str
    content: str
    note_type: str
    due_at: datetime | None
    completed_at: datetime | None
    author_id: str | None
    author_type: str
    metadata: dict[str, Any]
    created_at: datetime
    updated_at: datetime


def note_out(row: Any) -> NoteOut:
    return NoteOut(
        id=row.id,
        contact_id=row.contact_id,
        content=row.content,
        note_type=row.note_type,
        due_at=row.due_at,
        completed_at=row.completed_at,
        author_id=row.author_id,
        author_type=row.author_type,
        metadata=dict(row.metadata or {}),
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


# By-phone context: the bots' hot path. Lean structs, built straight from SQL rows.


class PhoneContextContact(msgspec.Struct):
    id: str
    phone: str
    name: str | None
    profile_name: str | None
    email: str | None
    lead_status: str
    lead_score: int
    tags: list[str]
    assignee_id: str | None
    is_returning: bool
    first_contact_at: datetime | None


class PhoneContextNote(msgspec.Struct):
    id: str
    content: str
    created_at: datetime


class PhoneContextMessage(msgspec.Struct):
    id: str
    direction: str
    type: str
    text: str | None
    created_at: datetime


class PhoneContext(msgspec.Struct):
    found: bool
    contact: PhoneContextContact
    notes: list[PhoneContextNote]
    last_interaction_at: datetime | None
    recent_messages: list[PhoneContextMessage]


class ImportRow(msgspec.Struct):
    row: int  # 1-based data row (the header is not counted)
    line: int  # line in the file, as a spreadsheet shows it
    phone: str | None  # canonical E.164 when the phone is valid
    status: Literal["create", "update", "duplicate", "invalid"]
    errors: list[dict[str, str]]
    contact_id: str | None = None  # the existing contact an update row matches
    changes: list[str] = msgspec.field(default_factory=list)  # fields an update row changes


class ImportResult(msgspec.Struct):
    dry_run: bool
    total_rows: int
    valid_rows: int  # create + update
    invalid_rows: int
    duplicates_in_file: int  # later rows repeating an earlier row's phone (not applied)
    created: int
    updated: int  # rows matching an existing contact (``unchanged`` of them changed nothing)
    unchanged: int
    rows: list[ImportRow]
