"""Contacts, notes, CSV import and merge: the rules. Each write is one unit of work that also
appends its events (payload = the resource as the API shows it)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import msgspec
import phonenumbers
from msgspec import UNSET
from sqlalchemy import Connection

from kabar import events
from kabar.assignment import service as assignment
from kabar.auth.permissions import Role
from kabar.auth.scope import Scope, system_scope
from kabar.contacts import repository as repo
from kabar.contacts import csv_io
from kabar.contacts import schemas as s
from kabar.contacts.csv_io import CsvRow
from kabar.conversations.schemas import conversation_out
from kabar.db.prepared import read_prepared
from kabar.db.uow import UnitOfWork
from kabar.errors import conflict, forbidden, invalid, invalid_fields, not_found
from kabar.events import payload
from kabar.ids import new_id
from kabar.phones import InvalidPhone, to_e164

EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
MAX_NAME = 200
MAX_EMAIL = 320
MAX_TAGS = 50
MAX_TAG = 50
MAX_SOURCE = 40
MAX_ATTRIBUTES_BYTES = 16 * 1024
MAX_NOTE = 10_000
# Lead statuses of the original system's import/webhook paths, mapped onto ours.
LEGACY_LEAD_STATUS = {"new": "prospect", "hot": "hot_lead", "warm": "prospect", "cold": "cold_lead", "converted": "client"}


# -- derived values ---------------------------------------------------------------------------


def local_phone(phone_e164: str) -> str | None:
    """The number as people at home dial it (``0812…`` for ``+62812…``), digits only."""
    if phone_e164.startswith("+62"):
        return "0" + phone_e164[3:]
    try:
        parsed = phonenumbers.parse(phone_e164, None)
    except phonenumbers.NumberParseException:
        return None
    national = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.NATIONAL)
    return "".join(ch for ch in national if ch.isdigit()) or None


def search_text_for(
    *, name: str | None, profile_name: str | None, email: str | None, phone_e164: str | None, username: str | None = None
) -> str:
    """``contacts.search_text``: what ``q`` searches (lower-cased name, profile name, email, the
    phone as E.164 and in its local form, the WhatsApp ``@username``). Whoever writes those
    columns writes this too."""
    parts = [name, profile_name, email, phone_e164, local_phone(phone_e164) if phone_e164 else None, f"@{username}" if username else None]
    return " ".join(part.strip().lower() for part in parts if part and part.strip())


def _search_text(row: Any) -> str:
    return search_text_for(name=row.name, profile_name=row.profile_name, email=row.email, phone_e164=row.phone_e164, username=row.username)


MAX_USER_ID = 256
MAX_USERNAME = 100
_USER_ID = re.compile(r"^[A-Za-z0-9._-]+$")


def clean_username(value: str | None) -> str | None:
    """A WhatsApp username as stored: without the '@', lower-cased (WhatsApp ignores case when
    comparing usernames); None when empty."""
    value = (value or "").strip().lstrip("@").strip().lower()
    return value[:MAX_USERNAME] or None


def check_user_id(value: str | None, errors: FieldErrors, field: str = "whatsapp_user_id") -> str | None:
    value = (value or "").strip()
    if value and (len(value) > MAX_USER_ID or not _USER_ID.match(value)):
        errors.add(field, f"a WhatsApp user id: letters, digits, '.', '_' or '-', at most {MAX_USER_ID} characters")
    return value or None


def check_username(value: str | None, errors: FieldErrors, field: str = "username") -> str | None:
    if value is not None and len(value.strip().lstrip("@")) > MAX_USERNAME:
        errors.add(field, f"at most {MAX_USERNAME} characters")
    return clean_username(value)


def _status_set_by(ctx: Scope) -> str:
    return "system" if ctx.role is Role.API else "human"


# -- field rules ------------------------------------------------------------------------------


class FieldErrors:
    """Collects every bad field of a request, then raises one 422 with all of them."""

    def __init__(self) -> None:
        self.errors: list[dict[str, str]] = []

    def add(self, field: str, message: str) -> None:
        self.errors.append({"field": field, "message": message})

    def raise_if_any(self) -> None:
        if self.errors:
            raise invalid_fields(self.errors)


def clean_phone(raw: str, errors: FieldErrors, field: str = "phone") -> str | None:
    try:
        return to_e164(raw)
    except InvalidPhone as exc:
        errors.add(field, f"not a valid phone number ({exc})")
        return None


def clean_text(value: str | None, errors: FieldErrors, field: str, limit: int) -> str | None:
    """Trimmed; empty means none."""
    if value is None:
        return None
    value = value.strip()
    if len(value) > limit:
        errors.add(field, f"at most {limit} characters")
    return value or None


def clean_email(value: str | None, errors: FieldErrors, field: str = "email") -> str | None:
    value = clean_text(value, errors, field, MAX_EMAIL)
    if value is None:
        return None
    if not EMAIL.match(value):
        errors.add(field, "not a valid email address")
    return value.lower()


def clean_tags(values: Sequence[str] | None, errors: FieldErrors, field: str = "tags") -> list[str]:
    """Trimmed, lower-cased, empty ones dropped, duplicates removed (first position kept)."""
    out: list[str] = []
    for value in values or []:
        tag = " ".join(value.split()).lower()
        if not tag or tag in out:
            continue
        if len(tag) > MAX_TAG:
            errors.add(field, f"each tag at most {MAX_TAG} characters ({tag[:20]}…)")
            continue
        out.append(tag)
    if len(out) > MAX_TAGS:
        errors.add(field, f"at most {MAX_TAGS} tags")
    return out


def clean_lead_status(value: str, errors: FieldErrors, field: str = "lead_status", *, legacy: bool = False) -> str:
    """One of LEAD_STATUSES; ``legacy`` also maps the old system's values (CSV files made for it)."""
    value = value.strip().lower()
    if legacy:
        value = LEGACY_LEAD_STATUS.get(value, value)
    if value not in s.LEAD_STATUSES:
        errors.add(field, f"must be one of {', '.join(s.LEAD_STATUSES)}")
    return value


def clean_score(value: int, errors: FieldErrors, field: str = "lead_score") -> int:
    if not 0 <= value <= 100:
        errors.add(field, "must be an integer from 0 to 100")
    return value


def clean_attributes(value: dict[str, Any], errors: FieldErrors, field: str = "attributes") -> dict[str, Any]:
    if len(msgspec.json.encode(value)) > MAX_ATTRIBUTES_BYTES:
        errors.add(field, f"at most {MAX_ATTRIBUTES_BYTES} bytes of JSON")
    return value


def check_assignee(conn: Connection, ctx: Scope, user_id: str | None, errors: FieldErrors) -> str | None:
    if not assignment.is_assignable(conn, ctx, user_id):
        errors.add("assignee_id", assignment.NOT_A_MEMBER)
    return user_id


# -- contacts ---------------------------------------------------------------------------------


def _visible_contact(conn: Connection, ctx: Scope, contact_id: str) -> Any:
    row = repo.get_contact(conn, ctx, contact_id)
    if row is None:
        raise not_found("Contact")
    return row


def _phone_taken(conn: Connection, ctx: Scope, phone_e164: str) -> None:
    _taken(ctx, repo.contact_by_phone(conn, ctx, phone_e164), f"phone {phone_e164}")


def _identity_taken(conn: Connection, ctx: Scope, values: dict[str, Any]) -> None:
    """409 when another contact of the workspace has this WhatsApp user id or username."""
    for column, label in (("whatsapp_user_id", "WhatsApp user id"), ("username", "username @")):
        if values.get(column):
            _taken(ctx, repo.contact_by_identity(conn, ctx, column, values[column]), f"{label}{'' if label.endswith('@') else ' '}{values[column]}")


def _taken(ctx: Scope, existing: Any, what: str) -> None:
    if existing is not None:
        # The id only for callers who may open it; the identity's existence itself is not a
        # secret inside the workspace (it is what makes the write fail).
        extra = {"existing_id": existing.id} if ctx.may_see(existing) else {}
        raise conflict(f"A contact with {what} already exists", slug="contact-exists", **extra)


def get_contact(conn: Connection, ctx: Scope, contact_id: str) -> s.ContactOut:
    ctx.require("contacts.read")
    return s.contact_out(_visible_contact(conn, ctx, contact_id))


def list_contacts(
    conn: Connection, ctx: Scope, filters: repo.ContactFilters, after: tuple[datetime, str] | None, limit: int
) -> tuple[list[s.ContactOut], tuple[datetime, str] | None]:
    """A page (newest first) and the keyset of its last row when more may follow."""
    ctx.require("contacts.read")
    validate_filters(filters)
    rows, keyset = _page(repo.list_page(conn, ctx, filters, after, limit + 1), limit)
    return [s.contact_out(r) for r in rows], keyset


def _page(rows: list[Any], limit: int) -> tuple[list[Any], tuple[datetime, str] | None]:
    """``limit + 1`` rows read → the page, and the keyset to continue from when there are more."""
    if len(rows) <= limit:
        return rows, None
    rows = rows[:limit]
    return rows, (rows[-1].created_at, rows[-1].id)


def validate_filters(filters: repo.ContactFilters) -> None:
    errors = FieldErrors()
    filters.lead_statuses = [clean_lead_status(v, errors) for v in filters.lead_statuses]
    filters.tags = clean_tags(filters.tags, errors, "tag")
    errors.raise_if_any()


def create_contact(uow: UnitOfWork, ctx: Scope, data: s.ContactCreate) -> s.ContactOut:
    ctx.require("contacts.write")
    conn = uow.conn
    errors = FieldErrors()
    phone = clean_phone(data.phone, errors) if data.phone and data.phone.strip() else None
    fields: dict[str, Any] = {
        "whatsapp_user_id": check_user_id(data.whatsapp_user_id, errors),
        "username": check_username(data.username, errors),
        "name": clean_text(data.name, errors, "name", MAX_NAME),
        "email": clean_email(data.email, errors),
        "tags": clean_tags(data.tags, errors),
        "assignee_id": check_assignee(conn, ctx, data.assignee_id, errors),
        "attributes": clean_attributes(data.attributes or {}, errors),
        "source": clean_text(data.source, errors, "source", MAX_SOURCE) or "manual",
    }
    if data.lead_score is not None:
        fields["lead_score"] = clean_score(data.lead_score, errors)
    if data.lead_status is not None:
        fields["lead_status"] = clean_lead_status(data.lead_status, errors)
    if phone is None and fields["whatsapp_user_id"] is None and not errors.errors:
        errors.add("phone", "a phone or a whatsapp_user_id is required")
    errors.raise_if_any()
    if phone is not None:
        _phone_taken(conn, ctx, phone)
    _identity_taken(conn, ctx, fields)
    values = _new_contact(ctx, uow.now, phone, data.phone, fields)
    repo.insert_contacts(conn, [values])
    out = s.contact_out(SimpleNamespace(**values))
    uow.emit(ctx.workspace_id, events.CONTACT_CREATED, payload(out), contact_id=out.id)
    return out


def _new_contact(ctx: Scope, now: datetime, phone: str | None, phone_raw: str | None, fields: dict[str, Any]) -> dict[str, Any]:
    """A complete contacts row: defaults, then the validated ``fields`` that were given."""
    row: dict[str, Any] = {
        "id": new_id(),
        "workspace_id": ctx.workspace_id,
        "phone_e164": phone,
        "phone_raw": phone_raw.strip()[:64] if phone is not None and phone_raw else None,
        "whatsapp_user_id": None,
        "username": None,
        "name": None,
        "profile_name": None,  # WhatsApp's, set by ingest
        "email": None,
        "tags": [],
        "attributes": {},
        "lead_status": "prospect",
        "lead_status_set_by": "system",
        "lead_score": 0,
        "assignee_id": None,
        "source": "manual",
        "first_contact_at": None,  # when they first write to us (ingest)
        "last_interaction_at": None,
        "created_at": now,
        "updated_at": now,
        **fields,
    }
    if "lead_status" in fields:
        row["lead_status_set_by"] = _status_set_by(ctx)
    row["search_text"] = _search_text(SimpleNamespace(**row))
    return row


def update_contact(uow: UnitOfWork, ctx: Scope, contact_id: str, data: s.ContactUpdate) -> s.ContactOut:
    ctx.require("contacts.write")
    conn = uow.conn
    row = _visible_contact(conn, ctx, contact_id)
    errors = FieldErrors()
    values: dict[str, Any] = {}
    if data.phone is not UNSET:
        if data.phone is None or not data.phone.strip():
            values["phone_e164"], values["phone_raw"] = None, None  # allowed while a whatsapp_user_id stays
        elif (phone := clean_phone(data.phone, errors)) is not None and phone != row.phone_e164:
            values["phone_e164"], values["phone_raw"] = phone, data.phone.strip()[:64]
    if data.whatsapp_user_id is not UNSET:
        values["whatsapp_user_id"] = check_user_id(data.whatsapp_user_id, errors)
    if data.username is not UNSET:
        values["username"] = check_username(data.username, errors)
    if data.name is not UNSET:
        values["name"] = clean_text(data.name, errors, "name", MAX_NAME)
    if data.email is not UNSET:
        values["email"] = clean_email(data.email, errors)
    if data.tags is not UNSET:
        values["tags"] = clean_tags(data.tags, errors)
    if data.lead_status is not UNSET:
        values["lead_status"] = clean_lead_status(data.lead_status, errors)
        values["lead_status_set_by"] = _status_set_by(ctx)
    if data.lead_score is not UNSET:
        values["lead_score"] = clean_score(data.lead_score, errors)
    if data.assignee_id is not UNSET:
        values["assignee_id"] = check_assignee(conn, ctx, data.assignee_id, errors)
    if data.source is not UNSET:
        values["source"] = clean_text(data.source, errors, "source", MAX_SOURCE) or row.source
    if data.attributes is not UNSET:
        merged = dict(row.attributes or {})
        for key, value in data.attributes.items():
            if value is None:
                merged.pop(key, None)
            else:
                merged[key] = value
        values["attributes"] = clean_attributes(merged, errors)
    values = {key: value for key, value in values.items() if getattr(row, key) != value}
    if values.get("phone_e164", row.phone_e164) is None and values.get("whatsapp_user_id", row.whatsapp_user_id) is None:
        errors.add("phone", "a contact keeps a phone or a whatsapp_user_id")
    errors.raise_if_any()
    if values.get("phone_e164"):
        _phone_taken(conn, ctx, values["phone_e164"])
    _identity_taken(conn, ctx, values)
    if "assignee_id" in values:  # the customer's owner: contact and conversation, with their events
        row = assignment.assign(uow, ctx, contact_id=contact_id, assignee_id=values.pop("assignee_id"), takeover=True)
    if not values:
        return s.contact_out(row)
    if values.keys() & {"name", "email", "phone_e164", "username"}:
        values["search_text"] = _search_text(SimpleNamespace(**{**row._asdict(), **values}))
    values["updated_at"] = uow.now
    repo.update_contact(conn, ctx, contact_id, values)
    out = s.contact_out(SimpleNamespace(**{**row._asdict(), **values}))
    uow.emit(ctx.workspace_id, events.CONTACT_UPDATED, payload(out), contact_id=contact_id)
    return out


def delete_contact(uow: UnitOfWork, ctx: Scope, contact_id: str) -> None:
    ctx.require("contacts.delete")
    row = _visible_contact(uow.conn, ctx, contact_id)
    repo.delete_contact(uow.conn, ctx, contact_id)
    uow.emit(ctx.workspace_id, events.CONTACT_DELETED, payload(s.contact_out(row)), contact_id=contact_id)


# -- CSV export -------------------------------------------------------------------------------

EXPORT_BATCH = 1000


async def export_csv(db: Any, ctx: Scope, filters: repo.ContactFilters) -> AsyncIterator[str]:
    """The contacts CSV as chunks (see ``_csv_stream``)."""
    ctx.require("contacts.export")
    validate_filters(filters)
    return await _csv_stream(
        db, csv_io.export_header(), csv_io.export_rows, lambda conn, after: repo.export_batch(conn, ctx, filters, after, EXPORT_BATCH)
    )


async def export_notes_csv(db: Any, ctx: Scope, contact_id: str | None) -> AsyncIterator[str]:
    """Notes and tasks as CSV: one contact's (anyone who may see it), or the whole workspace's
    (those allowed to export contacts)."""
    if contact_id is None:
        ctx.require("contacts.export")
    else:
        await db.read(get_contact, ctx, contact_id)
    return await _csv_stream(
        db, csv_io.notes_header(), csv_io.notes_rows, lambda conn, after: repo.notes_export_batch(conn, ctx, contact_id, after, EXPORT_BATCH)
    )


async def _csv_stream(db: Any, header: str, render: Callable[[list[Any]], str], fetch: Callable[..., list[Any]]) -> AsyncIterator[str]:
    """Rows newest first in keyset batches, each its own short read: a large workspace streams in
    constant memory without holding a connection between chunks. The first batch is read before
    the response starts, so a failing query is an error status, not a truncated download."""
    first = await db.read(fetch, None)

    async def chunks() -> AsyncIterator[str]:
        yield header
        rows = first
        while True:
            if rows:
                yield render(rows)
            if len(rows) < EXPORT_BATCH:
                return
            rows = await db.read(fetch, (rows[-1].created_at, rows[-1].id))

    return chunks()


# -- by-phone context -------------------------------------------------------------------------

NOT_FOUND_CONTEXT = msgspec.json.encode({"found": False})


async def phone_context_json(db: Any, ctx: Scope, phone: str | None) -> bytes:
    """What a bot needs about the person writing from ``phone`` (any format), as JSON;
    ``{"found": false}`` if unknown or not visible to the caller. Three indexed queries (see
    repository), run on the driver: this is the bots' hot path."""
    ctx.require("contacts.read")
    if not phone:
        raise invalid("phone", "is required")
    try:
        phone_e164 = to_e164(phone)
    except InvalidPhone as exc:
        raise invalid("phone", f"not a valid phone number ({exc})") from exc
    found = await read_prepared(db, repo.phone_context, ctx, phone_e164)
    if found is None:
        return NOT_FOUND_CONTEXT
    c, notes, messages = found
    # Tuples in CONTEXT_CONTACT's column order: id, phone_e164, name, profile_name, email,
    # lead_status, lead_score, tags, assignee_id, first_contact_at, last_interaction_at.
    first_contact_at, last_interaction_at = c[9], c[10]
    return msgspec.json.encode(
        s.PhoneContext(
            found=True,
            contact=s.PhoneContextContact(
                *c[:7],
                tags=c[7] or [],
                assignee_id=c[8],
                is_returning=s.is_returning(first_contact_at, last_interaction_at),
                first_contact_at=first_contact_at,
            ),
            notes=[s.PhoneContextNote(*row) for row in notes],
            last_interaction_at=last_interaction_at,
            recent_messages=[s.PhoneContextMessage(*row) for row in messages],
        )
    )


# -- notes ------------------------------------------------------------------------------------


def list_notes(
    conn: Connection, ctx: Scope, contact_id: str, after: tuple[datetime, str] | None, limit: int
) -> tuple[list[s.NoteOut], tuple[datetime, str] | None]:
    ctx.require("contacts.read")
    _visible_contact(conn, ctx, contact_id)
    rows, keyset = _page(repo.notes_page(conn, ctx, contact_id, after, limit + 1), limit)
    return [s.note_out(r) for r in rows], keyset


def _note_content(value: str, errors: FieldErrors) -> str:
    content = value.strip()
    if not content:
        errors.add("content", "must not be empty")
    elif len(content) > MAX_NOTE:
        errors.add("content", f"at most {MAX_NOTE} characters")
    return content


def _author(ctx: Scope) -> dict[str, Any]:
    if ctx.user_id is not None:
        return {"author_id": ctx.user_id, "author_type": "user", "metadata": {}}
    return {"author_id": None, "author_type": "api", "metadata": {"api_key_id": ctx.principal.api_key_id}}


def _may_edit_note(ctx: Scope, note: Any) -> bool:
    if ctx.can("notes.manage"):
        return True
    if ctx.user_id is not None:
        return note.author_id == ctx.user_id
    return note.author_type == "api" and (note.metadata or {}).get("api_key_id") == ctx.principal.api_key_id


def create_note(uow: UnitOfWork, ctx: Scope, contact_id: str, data: s.NoteCreate) -> s.NoteOut:
    ctx.require("contacts.write")
    _visible_contact(uow.conn, ctx, contact_id)
    errors = FieldErrors()
    content = _note_content(data.content, errors)
    errors.raise_if_any()
    return _add_note(uow, ctx, contact_id, content=content, due_at=_utc(data.due_at), completed_at=_utc(data.completed_at))


def _utc(value: datetime | None) -> datetime | None:
    return value.astimezone(UTC) if value is not None else None


def _add_note(uow: UnitOfWork, ctx: Scope, contact_id: str, *, content: str, note_type: str = "note", **extra: Any) -> s.NoteOut:
    return _insert_note(uow, ctx.workspace_id, contact_id, _author(ctx), content=content, note_type=note_type, **extra)


def _insert_note(
    uow: UnitOfWork, ws: str, contact_id: str, author: dict[str, Any], *, content: str, note_type: str = "note", **extra: Any
) -> s.NoteOut:
    values = {
        "id": new_id(),
        "workspace_id": ws,
        "contact_id": contact_id,
        "note_type": note_type,
        "content": content,
        "due_at": None,
        "completed_at": None,
        **author,
        "created_at": uow.now,
        "updated_at": uow.now,
    }
    values.update(extra)
    repo.insert_note(uow.conn, values)
    out = s.note_out(SimpleNamespace(**values))
    uow.emit(ws, events.NOTE_CREATED, payload(out), contact_id=contact_id)
    return out


def _editable_note(conn: Connection, ctx: Scope, contact_id: str, note_id: str) -> Any:
    ctx.require("contacts.write")
    _visible_contact(conn, ctx, contact_id)
    note = repo.get_note(conn, ctx, contact_id, note_id)
    if note is None:
        raise not_found("Note")
    if not _may_edit_note(ctx, note):
        raise forbidden("Only the note's author or an owner/admin may change it")
    return note


def update_note(uow: UnitOfWork, ctx: Scope, contact_id: str, note_id: str, data: s.NoteUpdate) -> s.NoteOut:
    note = _editable_note(uow.conn, ctx, contact_id, note_id)
    errors = FieldErrors()
    values: dict[str, Any] = {}
    if data.content is not UNSET:
        values["content"] = _note_content(data.content, errors)
    if data.due_at is not UNSET:
        values["due_at"] = _utc(data.due_at)
    if data.completed_at is not UNSET:
        values["completed_at"] = _utc(data.completed_at)
    errors.raise_if_any()
    if not values:
        return s.note_out(note)
    values["updated_at"] = uow.now
    repo.update_note(uow.conn, ctx, note_id, values)
    out = s.note_out(SimpleNamespace(**{**note._asdict(), **values}))
    uow.emit(ctx.workspace_id, events.NOTE_UPDATED, payload(out), contact_id=contact_id)
    return out


def delete_note(uow: UnitOfWork, ctx: Scope, contact_id: str, note_id: str) -> None:
    note = _editable_note(uow.conn, ctx, contact_id, note_id)
    repo.delete_note(uow.conn, ctx, note_id)
    uow.emit(ctx.workspace_id, events.NOTE_DELETED, payload(s.note_out(note)), contact_id=contact_id)


# -- CSV import -------------------------------------------------------------------------------

Progress = Callable[[str, int, int], None]  # (stage, done, total)


class _Plan:
    """What an import would do: the report, and the rows to insert and update."""

    def __init__(self) -> None:
        self.report: list[s.ImportRow] = []
        self.creates: list[tuple[str, str, dict[str, Any]]] = []  # (phone, as written, fields)
        self.updates: list[tuple[Any, dict[str, Any]]] = []  # (existing row, changed values)


def _read_import_row(row: CsvRow, members: dict[str, str]) -> tuple[str | None, dict[str, Any], list[dict[str, str]]]:
    """Validate one CSV row: (canonical phone, the fields it sets, errors). Empty cells set nothing."""
    v = row.values
    errors = FieldErrors()
    phone = clean_phone(v["phone"], errors) if v["phone"] else None
    if not v["phone"]:
        errors.add("phone", "is required")
    fields: dict[str, Any] = {}
    if v["name"]:
        fields["name"] = clean_text(v["name"], errors, "name", MAX_NAME)
    if v["email"]:
        fields["email"] = clean_email(v["email"], errors)
    if v["tags"]:
        fields["tags"] = clean_tags(re.split(r"[,;]", v["tags"]), errors)
    if v["lead_status"]:
        fields["lead_status"] = clean_lead_status(v["lead_status"], errors, legacy=True)
    if v["lead_score"]:
        try:
            fields["lead_score"] = clean_score(int(float(v["lead_score"])), errors)
        except ValueError:
            errors.add("lead_score", "must be an integer from 0 to 100")
    if v["assignee_email"]:
        user_id = members.get(v["assignee_email"].lower())
        if user_id is None:
            errors.add("assignee_email", "not a member of this workspace")
        fields["assignee_id"] = user_id
    if v["source"]:
        fields["source"] = clean_text(v["source"], errors, "source", MAX_SOURCE)
    if v["attributes"]:
        try:
            attributes = msgspec.json.decode(v["attributes"])
        except msgspec.DecodeError:
            attributes = None
        if isinstance(attributes, dict):
            fields["attributes"] = clean_attributes(attributes, errors)
        else:
            errors.add("attributes", "must be a JSON object")
    return phone, fields, errors.errors


def _changes(existing: Any, fields: dict[str, Any]) -> dict[str, Any]:
    """The values an import row changes on an existing contact: cells overwrite, tags are added,
    attributes are merged key by key; the source (where the contact came from) is kept."""
    out: dict[str, Any] = {}
    for key, value in fields.items():
        if key == "source":
            continue
        if key == "tags":
            value = list(existing.tags or []) + [tag for tag in value if tag not in (existing.tags or [])]
        elif key == "attributes":
            value = {**(existing.attributes or {}), **value}
        if getattr(existing, key) != value:
            out[key] = value
    return out


def plan_import(conn: Connection, ctx: Scope, rows: list[CsvRow], progress: Progress | None = None) -> _Plan:
    """Validate every row, find duplicates in the file and contacts that exist (by canonical
    phone), and decide per row: create, update, duplicate or invalid. Writes nothing."""
    ctx.require("contacts.import")
    members = repo.member_ids_by_email(conn, ctx)
    plan = _Plan()
    checked: list[tuple[CsvRow, str | None, dict[str, Any], list[dict[str, str]]]] = []
    first_row_of: dict[str, int] = {}
    for i, row in enumerate(rows, 1):
        phone, fields, errors = _read_import_row(row, members)
        checked.append((row, phone, fields, errors))
        if progress and (i % 500 == 0 or i == len(rows)):
            progress("check", i, len(rows))
    valid_phones = sorted({phone for _, phone, _, errors in checked if phone and not errors})
    existing = repo.contacts_by_phones(conn, ctx, valid_phones)
    for row, phone, fields, errors in checked:
        report = s.ImportRow(row=row.row, line=row.line, phone=phone, status="invalid", errors=errors)
        plan.report.append(report)
        if errors or phone is None:
            continue
        if phone in first_row_of:
            report.status = "duplicate"
            report.errors = [{"field": "phone", "message": f"same phone as row {first_row_of[phone]}; this row is skipped"}]
            continue
        first_row_of[phone] = row.row
        current = existing.get(phone)
        if current is None:
            report.status = "create"
            plan.creates.append((phone, row.values["phone"], fields))
        else:
            report.status = "update"
            report.contact_id = current.id
            changed = _changes(current, fields)
            report.changes = sorted(changed)
            if changed:
                plan.updates.append((current, changed))
    return plan


def import_result(plan: _Plan, *, dry_run: bool) -> s.ImportResult:
    count = {status: 0 for status in ("create", "update", "duplicate", "invalid")}
    for row in plan.report:
        count[row.status] += 1
    return s.ImportResult(
        dry_run=dry_run,
        total_rows=len(plan.report),
        valid_rows=count["create"] + count["update"],
        invalid_rows=count["invalid"],
        duplicates_in_file=count["duplicate"],
        created=count["create"],
        updated=count["update"],
        unchanged=count["update"] - len(plan.updates),
        rows=plan.report,
    )


def preview_import(conn: Connection, ctx: Scope, rows: list[CsvRow], progress: Progress | None = None) -> s.ImportResult:
    return import_result(plan_import(conn, ctx, rows, progress), dry_run=True)


def commit_import(uow: UnitOfWork, ctx: Scope, rows: list[CsvRow], progress: Progress | None = None) -> s.ImportResult:
    """Apply every valid row in this one unit of work, with an event per contact written."""
    plan = plan_import(uow.conn, ctx, rows, progress)
    now, ws = uow.now, ctx.workspace_id
    set_by = _status_set_by(ctx)
    inserts = [
        _new_contact(ctx, now, phone, phone_raw, {"source": "import", **fields}) for phone, phone_raw, fields in plan.creates
    ]
    updates: list[dict[str, Any]] = []
    update_columns = ("name", "email", "tags", "attributes", "lead_status", "lead_status_set_by", "lead_score", "search_text", "updated_at")
    after_update: list[SimpleNamespace] = []
    owners: dict[str, str | None] = {}  # new assignees: written by kabar.assignment (with the conversations)
    for current, changed in plan.updates:
        changed = dict(changed)
        if "assignee_id" in changed:
            owners[current.id] = changed.pop("assignee_id")
        if not changed:
            continue
        row = {**current._asdict(), **changed, "updated_at": now}
        if "lead_status" in changed:
            row["lead_status_set_by"] = set_by
        row["search_text"] = _search_text(SimpleNamespace(**row))
        updates.append({"b_id": current.id, **{column: row[column] for column in update_columns}})
        after_update.append(SimpleNamespace(**row))
    total = len(inserts) + len(updates)
    batch = 1000
    for start in range(0, len(inserts), batch):
        repo.insert_contacts(uow.conn, inserts[start : start + batch])
        if progress:
            progress("write", min(start + batch, len(inserts)), total)
    for start in range(0, len(updates), batch):
        repo.update_contacts(uow.conn, ctx, updates[start : start + batch])
        if progress:
            progress("write", len(inserts) + min(start + batch, len(updates)), total)
    for values in inserts:
        uow.emit(ws, events.CONTACT_CREATED, payload(s.contact_out(SimpleNamespace(**values))), contact_id=values["id"])
    for row in after_update:
        uow.emit(ws, events.CONTACT_UPDATED, payload(s.contact_out(row)), contact_id=row.id)
    assignment.assign_many(uow, ctx, owners, takeover=True)
    return import_result(plan, dry_run=False)


# -- merge ------------------------------------------------------------------------------------


def merge_contacts(uow: UnitOfWork, ctx: Scope, data: s.MergeRequest) -> s.ContactOut:
    """Fold ``merge_id`` into ``keep_id``: empty fields filled, tags united, attributes merged
    (the kept contact's values win), the higher score; its conversation, messages, notes and ARI
    rows moved; a ``merge`` note recording it; the merged contact deleted."""
    ctx.require("contacts.merge")
    if data.keep_id == data.merge_id:
        raise invalid("merge_id", "must differ from keep_id")
    keep = _visible_contact(uow.conn, ctx, data.keep_id)
    gone = _visible_contact(uow.conn, ctx, data.merge_id)
    return merge_rows(uow, ctx, keep, gone, _author(ctx))


def merge_rows(uow: UnitOfWork, scope: Scope, keep: Any, gone: Any, author: dict[str, Any]) -> s.ContactOut:
    """The merge itself (``merge_contacts``), for any caller: staff through the API, or ingest
    when a webhook shows that a phone contact and a WhatsApp-user-id contact are one person."""
    conn, ws = uow.conn, scope.workspace_id
    values: dict[str, Any] = {
        "phone_e164": keep.phone_e164 or gone.phone_e164,
        "phone_raw": keep.phone_raw if keep.phone_e164 else gone.phone_raw,
        "whatsapp_user_id": keep.whatsapp_user_id or gone.whatsapp_user_id,
        "username": keep.username or gone.username,
        "name": keep.name or gone.name,
        "profile_name": keep.profile_name or gone.profile_name,
        "email": keep.email or gone.email,
        "tags": list(keep.tags or []) + [tag for tag in (gone.tags or []) if tag not in (keep.tags or [])],
        "attributes": {**(gone.attributes or {}), **(keep.attributes or {})},
        "lead_score": max(keep.lead_score, gone.lead_score),
        "first_contact_at": min((x for x in (keep.first_contact_at, gone.first_contact_at) if x), default=None),
        "last_interaction_at": max((x for x in (keep.last_interaction_at, gone.last_interaction_at) if x), default=None),
        "updated_at": uow.now,
    }
    if keep.lead_status == "prospect" and gone.lead_status != "prospect":
        values["lead_status"] = gone.lead_status
        values["lead_status_set_by"] = gone.lead_status_set_by
    merged = SimpleNamespace(**{**keep._asdict(), **values})
    values["search_text"] = _search_text(merged)
    merged.search_text = values["search_text"]

    moved, removed_conversation = _merge_conversations(uow, scope, keep, gone)
    repo.move_references(conn, scope, "contact_id", "contacts", gone.id, keep.id)  # notes, messages, ARI rows
    repo.delete_contact(conn, scope, gone.id)
    repo.update_contact(conn, scope, keep.id, values)
    # The kept customer's owner, else the merged one's: contact and conversation, with their events.
    merged.assignee_id = keep.assignee_id or gone.assignee_id
    assignment.assign(uow, system_scope(ws), contact_id=keep.id, assignee_id=merged.assignee_id)

    out = s.contact_out(merged)
    gone_out = s.contact_out(gone)
    address = gone.phone_e164 or (f"@{gone.username}" if gone.username else gone.whatsapp_user_id)
    label = gone.name or gone.profile_name or address
    _insert_note(
        uow,
        ws,
        keep.id,
        {**author, "metadata": {**author["metadata"], "merged_contact": payload(gone_out)}},
        content=f"Merged {label} ({address}) into this contact.",
        note_type="merge",
    )
    uow.emit(ws, events.CONTACT_DELETED, payload(gone_out), contact_id=gone.id)
    uow.emit(ws, events.CONTACT_UPDATED, payload(out), contact_id=keep.id)
    uow.emit(ws, events.CONTACT_MERGED, {"contact": payload(out), "merged_id": gone.id}, contact_id=keep.id)
    if moved:
        conversation = repo.conversation_of(conn, scope, keep.id)
        if removed_conversation is not None:
            # assignee_id: the contact is gone, so the payload says who had it (kabar.realtime.service.audience).
            deleted = {"id": removed_conversation, "contact_id": gone.id, "assignee_id": gone.assignee_id, "merged_into": conversation.id}
            uow.emit(ws, events.CONVERSATION_DELETED, deleted, contact_id=gone.id)
        uow.emit(ws, events.CONVERSATION_UPDATED, payload(conversation_out(conversation, merged)), contact_id=keep.id)
    return out


def _merge_conversations(uow: UnitOfWork, scope: Scope, keep: Any, gone: Any) -> tuple[bool, str | None]:
    """One conversation per contact: the merged contact's conversation moves over, or, when both
    have one, its messages (and ARI rows) move into the kept one, which takes the newer last
    message and both unread counts. Returns (anything moved, id of the conversation removed)."""
    conn = uow.conn
    kept_conv = repo.conversation_of(conn, scope, keep.id)
    gone_conv = repo.conversation_of(conn, scope, gone.id)
    if gone_conv is None:
        return False, None
    if kept_conv is None:
        repo.update_conversation(conn, scope, gone_conv.id, {"contact_id": keep.id, "updated_at": uow.now})
        return True, None
    repo.move_references(conn, scope, "conversation_id", "conversations", gone_conv.id, kept_conv.id)
    repo.delete_conversation(conn, scope, gone_conv.id)
    newer = gone_conv if gone_conv.last_message_at > kept_conv.last_message_at else kept_conv
    values = {
        "unread_count": kept_conv.unread_count + gone_conv.unread_count,
        "last_message_at": newer.last_message_at,
        "last_message_preview": newer.last_message_preview,
        "last_inbound_at": max((x for x in (kept_conv.last_inbound_at, gone_conv.last_inbound_at) if x), default=None),
        "updated_at": uow.now,
    }
    repo.update_conversation(conn, scope, kept_conv.id, values)
    return True, gone_conv.id
