"""Inbound webhooks: verify, normalise, then apply everything in ONE transaction, then answer 200.

1. ``receive`` reads the raw body, routes it by ``phone_number_id`` to workspaces, and checks the
   signature with each workspace's secret (401 and nothing stored when it does not match).
2. The provider adapter turns the body into normalized events (``kabar.ingest.schemas``).
3. ``apply_delivery`` runs in one unit of work: the receipt row first (its unique key makes a
   duplicate delivery a no-op), then contacts, conversations, messages, statuses, reactions,
   edits, revokes, event-log rows, hooks and jobs. Commit, then 200.

Never drop a payload: when normalising or applying raises (an unknown shape, a bug), the receipt
is stored as ``failed`` with the error in a second transaction, the provider gets 200, the
failure is counted in ``/metrics``, and ``kabar webhooks replay`` applies it later. Only a storage
outage answers 503 (the provider retries). A body for a phone number no workspace has is kept as
``unrouted`` (its signature is checked when it is replayed after the channel is configured).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import random
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import msgspec
import regex
from sqlalchemy.exc import DBAPIError

from kabar.auth.scope import system_scope
from kabar.channels import customer_typing
from kabar.channels import service as channels
from kabar.channels.kapso import webhook as kapso_webhook
from kabar.channels.meta import webhook as meta_webhook
from kabar.contacts.schemas import contact_out
from kabar.contacts.service import clean_username, merge_rows, search_text_for
from kabar.conversations.schemas import conversation_out
from kabar.db import tables as t
from kabar.db.engine import Database, StorageUnavailable
from kabar.db.uow import UnitOfWork
from kabar.errors import Problem
from kabar.events import (
    CONTACT_CREATED,
    CONTACT_UPDATED,
    CONVERSATION_CREATED,
    CONVERSATION_UPDATED,
    MESSAGE_CREATED,
    MESSAGE_UPDATED,
    payload,
)
from kabar.hooks import on_inbound_message
from kabar.ids import new_id
from kabar.ingest import repository as repo
from kabar.ingest.group_commit import group_commit
from kabar.ingest.schemas import (
    Edit,
    Event,
    IdentityChanged,
    Ignored,
    InboundMessage,
    NumberChanged,
    PreferenceChanged,
    Reaction,
    Revoke,
    StatusUpdate,
    Typing,
    UnsupportedPayload,
)
from kabar.messages.schemas import PREVIEW_LENGTH, message_out, preview_text
from kabar.observability import metrics
from kabar.observability.middleware import workspace_id_var
from kabar.phones import from_wa_id

log = logging.getLogger("kabar.ingest")

UNROUTED = ""  # receipts.workspace_id of a body no workspace claims (yet)
STALE_AFTER = timedelta(hours=24)  # older inbound messages (provider retries) trigger no automation
MEDIA_JOB = "media.download"
ECHO_JOB = "ingest.reconcile_echo"
KEPT_HEADERS = (
    "content-type",
    "user-agent",
    "x-webhook-event",
    "x-webhook-signature",
    "x-kapso-signature",
    "x-hub-signature-256",
    "x-idempotency-key",
    "x-webhook-batch",
    "x-batch-size",
    "x-webhook-payload-version",
)
MAX_ERROR = 4000
RETRYABLE_SQLSTATES = {"40001", "40P01", "23505"}  # serialization failure, deadlock, unique race


def invalid_signature() -> Problem:
    return Problem(401, "invalid-signature", "Invalid signature", "The webhook signature is missing or does not match")


# -- deliveries -------------------------------------------------------------------------------


@dataclass(slots=True)
class Delivery:
    """One HTTP POST from a provider, as received."""

    provider: str  # kapso | meta: which endpoint received it
    raw: bytes
    headers: dict[str, str]
    doc: Any = None  # the decoded JSON, None when the body is not JSON
    received_at: datetime | None = None

    @property
    def receipt_key(self) -> str:
        key = self.headers.get("x-idempotency-key", "").strip()
        if self.provider == "kapso" and key:
            return key[:200]
        return "sha256:" + hashlib.sha256(self.raw).hexdigest()

    @property
    def event_type(self) -> str | None:
        if self.provider == "meta":
            return "meta"
        return kapso_webhook.event_name(self.doc, self.headers)[:100] or None

    def routing(self) -> set[str]:
        if self.doc is None:
            return set()
        if self.provider == "meta":
            return meta_webhook.routing(self.doc)
        return kapso_webhook.routing(self.doc, self.headers)

    def verify(self, channel: channels.ChannelConfig) -> bool:
        secrets = channel.secrets
        if self.provider == "meta":
            return meta_webhook.verify(self.raw, self.headers, secrets.get("app_secret"))
        return kapso_webhook.verify(self.raw, self.headers, secrets.get("webhook_secret"), secrets.get("app_secret"))

    def has_signature(self) -> bool:
        names = ("x-hub-signature-256",) if self.provider == "meta" else (*kapso_webhook.SIGNATURE_HEADERS, "x-hub-signature-256")
        return any(self.headers.get(name) for name in names)

    def normalise(self) -> list[Event]:
        if self.doc is None:
            raise UnsupportedPayload("the body is not JSON")
        if self.provider == "meta":
            return meta_webhook.normalise(self.doc)
        return kapso_webhook.normalise(self.doc, self.headers)

    def receipt_values(self, workspace_id: str, status: str, now: datetime, error: str | None = None) -> dict[str, Any]:
        return {
            "workspace_id": workspace_id,
            "provider": self.provider,
            "receipt_key": self.receipt_key,
            "event_type": self.event_type,
            "headers": {k: v for k, v in self.headers.items() if k in KEPT_HEADERS},
            "body": self.raw,
            "status": status,
            "error": error[:MAX_ERROR] if error else None,
            "attempts": 1,
            "received_at": self.received_at or now,
            "applied_at": now if status in ("applied", "ignored") else None,
        }


def decode(raw: bytes) -> Any:
    try:
        return msgspec.json.decode(raw)
    except msgspec.DecodeError:
        return None


def lower_headers(headers: Any) -> dict[str, str]:
    return {str(k).lower(): str(v) for k, v in headers.items()}


@dataclass(slots=True)
class Routed:
    """A delivery's events split by workspace; events for numbers nobody has go to ``unrouted``."""

    groups: dict[str, list[Event]] = field(default_factory=dict)
    unrouted: list[Event] = field(default_factory=list)


def route_events(events: list[Event], channels_by_pnid: dict[str, channels.ChannelConfig]) -> Routed:
    routed = Routed({ch.workspace_id: [] for ch in channels_by_pnid.values()})
    first = min(routed.groups) if routed.groups else None
    for event in events:
        pnid = getattr(event, "phone_number_id", None)
        channel = channels_by_pnid.get(pnid) if pnid else None
        if channel is not None:
            routed.groups[channel.workspace_id].append(event)
        elif not pnid and first is not None:
            routed.groups[first].append(event)  # e.g. an account-level error next to routed changes
        else:
            routed.unrouted.append(event)
    return routed


# -- receiving (HTTP) -------------------------------------------------------------------------


class _Rejected(Exception):
    """The signature does not verify: roll back, answer 401."""


class _Unclaimed(Exception):
    """No workspace has the body's phone_number_id: nothing authenticates it. It goes to the
    bounded quarantine (``quarantine``), outside this transaction."""


@dataclass(slots=True)
class _Routing:
    """What ``_receive`` learned before it failed (the caller stores failed receipts with it)."""

    found: dict[str, channels.ChannelConfig] = field(default_factory=dict)
    typing: list[customer_typing.Signal] = field(default_factory=list)  # published after commit


def _receive(uow: UnitOfWork, delivery: Delivery, cipher: Any, routing: _Routing) -> dict[str, str]:
    """Route, verify and apply in one transaction: the channel lookup costs no extra transaction
    (three round trips fewer on PostgreSQL) and cannot be stale."""
    pnids = delivery.routing()
    routing.found = found = _channels(uow, cipher, pnids)
    if (found and not all(delivery.verify(ch) for ch in found.values())) or not delivery.has_signature():
        raise _Rejected
    if not found:
        raise _Unclaimed
    routed = route_events(delivery.normalise(), found)
    routing.typing = customer_typing.take(uow.conn, routed.groups)
    outcomes = apply_delivery(uow, delivery, routed.groups)
    if routed.unrouted:
        error = "part of the body names an unknown phone_number_id"
        repo.insert_receipt(uow.conn, delivery.receipt_values(UNROUTED, "unrouted", uow.now, error))
    return outcomes


def _channels(uow: UnitOfWork, cipher: Any, pnids: set[str]) -> dict[str, channels.ChannelConfig]:
    """The channels of ``pnids``, read once per transaction (a group commit applies many webhooks
    for the same number in one)."""
    if not pnids:
        return {}
    key = ("ingest.channels", frozenset(pnids))
    if key not in uow.cache:
        uow.cache[key] = channels.load_by_phone_number_ids(uow.conn, cipher, pnids)
    return uow.cache[key]


async def receive(runtime: Any, provider: str, raw: bytes, headers: Any, source: str = "unknown") -> dict[str, Any]:
    """Handle one webhook POST from the client address ``source``; returns the 200 body, raises
    401 (bad signature), 429 (quarantine full or too many from ``source``) or StorageUnavailable
    (→ 503). Answers only after the webhook's transaction has committed; on SQLite, webhooks
    arriving together share one transaction (``kabar.ingest.group_commit``)."""
    db: Database = runtime.db
    delivery = Delivery(provider, raw, lower_headers(headers), decode(raw))
    routing = _Routing()
    try:
        if db.is_sqlite:
            outcomes = await group_commit(db, _receive).submit(delivery, runtime.cipher, routing)
        else:
            outcomes = await run_transaction(db, _receive, delivery, runtime.cipher, routing)
    except _Rejected:
        metrics.WEBHOOKS_RECEIVED.labels(provider, "unauthorized").inc()
        log.info("%s webhook with a missing or wrong signature refused (nothing stored)", provider)
        raise invalid_signature() from None
    except _Unclaimed:
        await quarantine(runtime, delivery, source, "no workspace has this phone_number_id")
        return {"status": "unrouted"}
    except StorageUnavailable:
        metrics.WEBHOOKS_RECEIVED.labels(provider, "unavailable").inc()
        raise
    except Exception as exc:  # noqa: BLE001 - never drop a payload: keep it as failed, answer 200
        _name_workspaces(routing)
        log.exception("webhook could not be applied; stored as failed (kabar webhooks replay)")
        workspaces = sorted({ch.workspace_id for ch in routing.found.values()})
        if not workspaces:  # failed before anything authenticated it
            await quarantine(runtime, delivery, source, f"{type(exc).__name__}: {exc}", status="failed")
            return {"status": "failed"}
        await store_receipts(db, delivery, workspaces, "failed", f"{type(exc).__name__}: {exc}")
        metrics.WEBHOOKS_RECEIVED.labels(provider, "failed").inc()
        return {"status": "failed"}
    _name_workspaces(routing)
    for outcome in outcomes.values():
        metrics.WEBHOOKS_RECEIVED.labels(provider, outcome).inc()
    await customer_typing.publish(runtime.hub, routing.typing)
    return {"status": "ok"}


def _name_workspaces(routing: _Routing) -> None:
    """This request's log lines name the workspace(s) it concerns."""
    if routing.found:
        workspace_id_var.set(",".join(sorted({channel.workspace_id for channel in routing.found.values()})))


async def run_transaction(db: Database, fn: Any, *args: Any) -> Any:
    """``db.transaction`` retried on PostgreSQL's serialization/deadlock/unique races."""
    for attempt in range(6):
        try:
            return await db.transaction(fn, *args)
        except DBAPIError as exc:
            code = getattr(exc.orig, "pgcode", None) or getattr(exc.orig, "sqlstate", None)
            if code not in RETRYABLE_SQLSTATES or attempt == 5:
                raise
            await asyncio.sleep(0.005 * 2**attempt * random.uniform(0.5, 1.5))
    raise AssertionError("unreachable")


async def quarantine(runtime: Any, delivery: Delivery, source: str, reason: str, *, status: str = "unrouted") -> None:
    """Keep a body no workspace claims, bounded: anyone can send one (there is no secret to check
    it against), so the quarantine is limited per client address (rate limit
    ``webhook_unrouted``), in rows (``KABAR_WEBHOOK_QUARANTINE_ROWS``; beyond that nothing more
    is kept: 429, the provider retries), in bytes per body (``..._BODY_BYTES``; a longer body is
    cut and marked ``truncated``: it can no longer be verified or replayed) and in time
    (``..._HOURS``; pruned here and by the housekeeping job). A legitimate webhook that arrived
    before its channel was configured is replayed from here (``kabar webhooks replay``)."""
    settings, provider = runtime.settings, delivery.provider
    try:
        await runtime.limiter.hit("webhook_unrouted", source)
    except Problem:
        metrics.WEBHOOKS_RECEIVED.labels(provider, "quarantine_rate_limited").inc()
        _QUARANTINE_LOG.warning("unrouted %s webhooks from %s not kept: too many from this address", provider, source)
        raise
    limit = settings.webhook_quarantine_body_bytes
    if len(delivery.raw) > limit:
        status = "truncated"
        reason = f"{reason}; body cut from {len(delivery.raw)} to {limit} bytes (cannot be verified or replayed)"

    def _store(uow: UnitOfWork) -> bool:
        repo.delete_quarantine(uow.conn, before=uow.now - timedelta(hours=settings.webhook_quarantine_hours), batch=1000)
        if repo.quarantine_size(uow.conn) >= settings.webhook_quarantine_rows:
            return False
        repo.insert_receipt(uow.conn, {**delivery.receipt_values(UNROUTED, status, uow.now, reason), "body": delivery.raw[:limit]})
        return True

    if not await runtime.db.transaction(_store):
        metrics.WEBHOOKS_RECEIVED.labels(provider, "quarantine_full").inc()
        _QUARANTINE_LOG.warning("unrouted %s webhooks not kept: the quarantine holds %d", provider, settings.webhook_quarantine_rows)
        raise Problem(429, "quarantine-full", "Too many unrouted webhooks", "No workspace has this phone_number_id; retry later",
                      headers={"Retry-After": "3600"})
    metrics.WEBHOOKS_RECEIVED.labels(provider, status).inc()
    _QUARANTINE_LOG.warning("%s webhooks for unknown phone_number_id(s) quarantined (latest: %s from %s, %d bytes)", provider,
                            sorted(delivery.routing()) or "-", source, len(delivery.raw))


class _ThrottledLog:
    """At most one line per message per ``every`` seconds, saying how many were left out: anonymous
    traffic must not fill the disk through the logs either."""

    def __init__(self, logger: logging.Logger, every: float = 60.0):
        self.logger, self.every = logger, every
        self.last: dict[str, tuple[float, int]] = {}

    def warning(self, message: str, *args: Any) -> None:
        now = time.monotonic()
        at, skipped = self.last.get(message, (-self.every, 0))
        if now - at < self.every:
            self.last[message] = (at, skipped + 1)
            return
        self.last[message] = (now, 0)
        self.logger.warning(message + (f" (and {skipped} more like it)" if skipped else ""), *args)


_QUARANTINE_LOG = _ThrottledLog(log)


async def store_receipts(db: Database, delivery: Delivery, workspace_ids: list[str], status: str, error: str) -> None:
    def _store(uow: UnitOfWork) -> None:
        for workspace_id in workspace_ids:
            if repo.insert_receipt(uow.conn, delivery.receipt_values(workspace_id, status, uow.now, error)) is None:
                log.info("receipt %s for %r stored already", delivery.receipt_key, workspace_id)

    await db.transaction(_store)


def apply_delivery(
    uow: UnitOfWork, delivery: Delivery, groups: dict[str, list[Event]], existing: dict[str, str] | None = None
) -> dict[str, str]:
    """One transaction for the whole delivery; the outcome per workspace
    (applied | ignored | duplicate). ``existing`` maps workspace → receipt id when replaying."""
    outcomes: dict[str, str] = {}
    for workspace_id in sorted(groups):
        events = groups[workspace_id]
        status = "ignored" if all(isinstance(e, Ignored) for e in events) else "applied"
        applier = Applier(uow, workspace_id)
        if existing and workspace_id in existing:
            repo.update_receipt(
                uow.conn,
                applier.scope,
                existing[workspace_id],
                {"status": status, "error": None, "applied_at": uow.now, "attempts": t.webhook_receipts.c.attempts + 1},
            )
        elif repo.insert_receipt(uow.conn, delivery.receipt_values(workspace_id, status, uow.now)) is None:
            outcomes[workspace_id] = "duplicate"
            continue
        applier.apply(events)
        outcomes[workspace_id] = status
    return outcomes


# -- applying events --------------------------------------------------------------------------


def _clamp(ts: datetime | None, now: datetime) -> datetime:
    """Provider time, never in the future (skewed clocks); now when the payload had none."""
    return now if ts is None or ts > now else ts


_GRAPHEME = regex.compile(r"\X")


def truncate_graphemes(text: str, limit: int) -> str:
    """At most ``limit`` code points, cut between graphemes (an emoji ZWJ sequence stays whole)."""
    if len(text) <= limit:
        return text
    out, used = [], 0
    for grapheme in _GRAPHEME.findall(text):
        if used + len(grapheme) > limit - 1:
            break
        out.append(grapheme)
        used += len(grapheme)
    return "".join(out) + "…"


def preview_of(message: InboundMessage) -> str:
    content = message.content
    caption = content.media.caption if content.media else None
    text = content.text
    if content.type == "unsupported":
        text = f"[unsupported: {content.metadata.get('unsupported_type') or 'unknown'}]"
    elif content.type in ("location", "contacts") and text:
        text = f"[{content.type}] {text}"
    template = (content.metadata.get("template") or {}).get("name") if content.type == "template" else None
    body = " ".join((text or caption or "").split())
    return preview_text(content.type, truncate_graphemes(body, PREVIEW_LENGTH) if body else None, None, template)


@dataclass(slots=True)
class _ConversationDelta:
    unread: int = 0
    last_at: datetime | None = None
    preview: str | None = None
    inbound_at: datetime | None = None
    reopen: bool = False
    takeover: bool = False  # staff replied from the WhatsApp Business app: ARI stops here


class Applier:
    """Applies one workspace's events inside the caller's unit of work, then emits the events."""

    def __init__(self, uow: UnitOfWork, workspace_id: str):
        self.uow = uow
        self.conn = uow.conn
        self.ws = workspace_id
        self.scope = system_scope(workspace_id)  # Kabar applying a provider's events: one per applier
        self.now = uow.now
        self.contacts: dict[tuple[str, str], Any] = {}  # ("phone", e164) / ("user_id", BSUID) -> row
        self.contacts_by_id: dict[str, Any] = {}
        self.conversations: dict[str, Any] = {}  # contact_id -> row
        self.created_contacts: set[str] = set()
        self.changed_contacts: set[str] = set()
        self.created_conversations: set[str] = set()
        self.deltas: dict[str, _ConversationDelta] = {}
        self.touches: dict[str, datetime] = {}  # contact_id -> latest interaction
        self.contact_changes: dict[str, dict[str, Any]] = {}
        self.messages: dict[str, tuple[str, Any]] = {}  # message id -> (created|updated, latest row)
        self.new_inbound: list[str] = []

    # -- entry point ------------------------------------------------------------------------

    def apply(self, events: list[Event]) -> None:
        # A message stored by an earlier delivery (another receipt key) has no effect at all — not
        # even on its customer, who may have moved to another number since.
        events = [
            e for e in events
            if not isinstance(e, InboundMessage) or repo.id_of_provider_message(self.conn, self.scope, e.provider_message_id) is None
        ]
        repo.lock_provider_ids(self.conn, self.scope, {
            e.provider_message_id for e in events
            if isinstance(e, StatusUpdate) or (isinstance(e, InboundMessage) and e.direction == "outbound")
        })
        # Customers next, in a fixed order: two transactions never lock them in opposite orders.
        # Every identity pair (phone, WhatsApp user id) is resolved here, merges included, before
        # any message is written.
        first_seen: dict[tuple[str, str], InboundMessage] = {}
        for event in events:
            if isinstance(event, InboundMessage) and not (event.direction == "outbound" and event.origin == "cloud_api"):
                first_seen.setdefault((from_wa_id(event.wa_id) if event.wa_id else "", event.user_id or ""), event)
        for key in sorted(first_seen):
            self.party(first_seen[key])
        for event in events:
            handler = getattr(self, "_on_" + type(event).__name__.lower())
            handler(event)
        self.finish()

    # -- contacts and conversations ---------------------------------------------------------

    def party(self, event: InboundMessage) -> tuple[Any, Any]:
        phone = from_wa_id(event.wa_id) if event.wa_id else None
        at = _clamp(event.timestamp, self.now)
        contact = self._customer(phone, event.user_id)
        if contact is None:
            username = clean_username(event.username)
            if username:
                self._release_username(username, None)
            contact = repo.insert_contact(
                self.conn,
                {
                    "workspace_id": self.ws,
                    "phone_e164": phone,
                    "phone_raw": event.wa_id if phone else None,
                    "whatsapp_user_id": event.user_id,
                    "username": username,
                    "name": None,
                    "profile_name": event.profile_name,
                    "email": None,
                    "tags": [],
                    "attributes": {},
                    "lead_status": "prospect",
                    "lead_score": 0,
                    "source": "whatsapp",
                    "first_contact_at": at,
                    "last_interaction_at": at,
                    "search_text": search_text_for(name=None, profile_name=event.profile_name, email=None, phone_e164=phone, username=username),
                    "created_at": self.now,
                    "updated_at": self.now,
                },
            )
            created = contact is not None
            if contact is None:  # a concurrent twin won the insert
                contact = self._customer(phone, event.user_id)
            if created:
                self.created_contacts.add(contact.id)
            self._remember_contact(contact)
        else:
            contact = self._link(contact, phone, event)
        if event.direction == "inbound":
            self._note_profile(contact, event)
        conversation = self.conversations.get(contact.id)
        if conversation is None:
            conversation, created = repo.upsert_conversation(
                self.conn,
                {
                    "workspace_id": self.ws,
                    "contact_id": contact.id,
                    "status": "open",
                    "unread_count": 0,
                    "last_message_at": at,
                    "last_message_preview": "",
                    "ai_paused": False,
                    "created_at": self.now,
                    "updated_at": self.now,
                },
            )
            if created:
                self.created_conversations.add(conversation.id)
            self.conversations[contact.id] = conversation
        return contact, conversation

    def _remember_contact(self, row: Any) -> None:
        for key in (("phone", row.phone_e164), ("user_id", row.whatsapp_user_id)):
            if key[1]:
                self.contacts[key] = row
        self.contacts_by_id[row.id] = row

    def _forget_contact(self, row: Any) -> None:
        for key in (("phone", row.phone_e164), ("user_id", row.whatsapp_user_id)):
            if self.contacts.get(key) is not None and self.contacts[key].id == row.id:
                del self.contacts[key]
        self.contacts_by_id.pop(row.id, None)

    def _lookup(self, phone: str | None, user_id: str | None) -> Any:
        """The contact with this phone (or, given only ``user_id``, this WhatsApp user id)."""
        key = ("phone", phone) if phone else ("user_id", user_id)
        if not key[1]:
            return None
        row = self.contacts.get(key)
        if row is None:
            row = repo.contact_by_phone(self.conn, self.scope, phone) if phone else repo.contact_by_user_id(self.conn, self.scope, user_id)
            if row is not None:
                self._remember_contact(row)
        return row

    def _customer(self, phone: str | None, user_id: str | None) -> Any:
        """The one contact for a customer known by ``phone``, ``user_id`` or both. A payload naming
        both links them: when one contact has the phone and another the user id (the customer
        wrote without their number first), they are one person and are merged, the phone
        contact kept (it holds the older history and the CRM data staff entered); the merge
        moves every message and note, so nothing of either is lost."""
        by_phone = self._lookup(phone, None)
        if by_phone is not None and by_phone.whatsapp_user_id == user_id:
            return by_phone  # the usual case: one lookup
        by_user_id = self._lookup(None, user_id)
        if by_phone is not None and by_user_id is not None and by_phone.id != by_user_id.id:
            return self._merge(by_phone, by_user_id)
        return by_phone or by_user_id

    def _link(self, contact: Any, phone: str | None, event: InboundMessage) -> Any:
        """Attach the identities this payload adds: the phone of a contact known by user id, the
        (new) user id of a phone contact, a changed username."""
        values: dict[str, Any] = {}
        if phone and contact.phone_e164 != phone:
            attributes = dict(contact.attributes or {})
            if contact.phone_e164:
                attributes["previous_phones"] = sorted({*attributes.get("previous_phones", []), contact.phone_e164})
            values.update(phone_e164=phone, phone_raw=event.wa_id, attributes=attributes)
        if event.user_id and contact.whatsapp_user_id != event.user_id:
            values["whatsapp_user_id"] = event.user_id
        username = clean_username(event.username)
        if event.direction == "inbound" and username and contact.username != username:
            values["username"] = username
        return self._set_identity(contact, values) if values else contact

    def _set_identity(self, contact: Any, values: dict[str, Any]) -> Any:
        """Write identity changes at once: later events of this delivery look contacts up by them."""
        if values.get("username"):
            self._release_username(values["username"], contact.id)
        merged = {**contact._asdict(), **values}
        values["search_text"] = search_text_for(
            name=merged["name"], profile_name=merged["profile_name"], email=merged["email"], phone_e164=merged["phone_e164"],
            username=merged["username"],
        )
        self._forget_contact(contact)
        row = repo.update_contact(self.conn, self.scope, contact.id, {**values, "updated_at": self.now})
        self._remember_contact(row)
        self.changed_contacts.add(row.id)
        return row

    def _release_username(self, username: str, keeper: str | None) -> None:
        """WhatsApp usernames move between people over time: whoever had it before gives it up."""
        holder = repo.contact_by_username(self.conn, self.scope, username)
        if holder is not None and holder.id != keeper:
            self._set_identity(holder, {"username": None})

    def _merge(self, keep: Any, gone: Any) -> Any:
        """Fold contact ``gone`` into ``keep`` (``kabar.contacts.service.merge_rows``), then make
        this delivery's bookkeeping point at the kept contact and conversation."""
        gone_conversation = self.conversations.pop(gone.id, None)
        merge_rows(self.uow, self.scope, keep, gone, {"author_id": None, "author_type": "system", "metadata": {"reason": "whatsapp_identity"}})
        self._forget_contact(gone)
        self._forget_contact(keep)
        self.conversations.pop(keep.id, None)
        row = repo.contact_by_id(self.conn, self.scope, keep.id)
        self._remember_contact(row)
        for bucket in (self.created_contacts, self.changed_contacts):
            bucket.discard(gone.id)
        self.changed_contacts.add(row.id)
        if gone.id in self.touches:
            self._touch(row.id, self.touches.pop(gone.id))
        self.contact_changes.pop(gone.id, None)
        if gone_conversation is not None:
            self.created_conversations.discard(gone_conversation.id)
            kept = repo.conversation_of(self.conn, self.scope, row.id)
            delta = self.deltas.pop(gone_conversation.id, None)
            if delta is not None and kept is not None:
                into = self._delta(kept.id)
                into.unread += delta.unread
                into.reopen = into.reopen or delta.reopen
                into.inbound_at = max((x for x in (into.inbound_at, delta.inbound_at) if x), default=None)
                if delta.last_at is not None and (into.last_at is None or delta.last_at >= into.last_at):
                    into.last_at, into.preview = delta.last_at, delta.preview
        for message_id, (kind, message) in list(self.messages.items()):
            if message.contact_id == gone.id:
                self.messages[message_id] = (kind, repo.message_by_id(self.conn, self.scope, message_id))
        return row

    def _learn_identity(self, contact_id: str, user_id: str | None, username: str | None) -> None:
        """A status about our message to this contact names their user id or username: keep them,
        so that a later message without the phone finds this contact (no merge from a status:
        an id another contact holds stays there)."""
        contact = self.contacts_by_id.get(contact_id) or repo.contact_by_id(self.conn, self.scope, contact_id)
        values: dict[str, Any] = {}
        if user_id and contact.whatsapp_user_id != user_id and self._lookup(None, user_id) is None:
            values["whatsapp_user_id"] = user_id
        username = clean_username(username)
        if username and contact.username != username:
            values["username"] = username
        if values:
            self._set_identity(contact, values)

    def _note_profile(self, contact: Any, event: InboundMessage) -> None:
        """A newer WhatsApp profile name replaces the stored one; ``name`` stays staff's."""
        changes = self.contact_changes.setdefault(contact.id, {})
        if event.profile_name and event.profile_name != (changes.get("profile_name") or contact.profile_name):
            changes["profile_name"] = event.profile_name

    def _delta(self, conversation_id: str) -> _ConversationDelta:
        return self.deltas.setdefault(conversation_id, _ConversationDelta())

    def _touch(self, contact_id: str, at: datetime) -> None:
        if contact_id not in self.touches or self.touches[contact_id] < at:
            self.touches[contact_id] = at

    def _record(self, kind: str, row: Any) -> None:
        previous = self.messages.get(row.id)
        self.messages[row.id] = ("created" if previous and previous[0] == "created" else kind, row)

    # -- messages ---------------------------------------------------------------------------

    def _on_inboundmessage(self, event: InboundMessage) -> None:
        if event.direction == "outbound" and event.origin == "cloud_api":
            self._api_echo(event)
            return
        contact, conversation = self.party(event)
        at = _clamp(event.timestamp, self.now)
        inbound = event.direction == "inbound"
        content = event.content
        metadata = dict(content.metadata)
        if event.reply_to:
            metadata["reply_to_provider_id"] = event.reply_to
        if not inbound:
            metadata["origin"] = event.origin or "business_app"
        row = repo.insert_message(
            self.conn,
            {
                "id": new_id(),
                "workspace_id": self.ws,
                "conversation_id": conversation.id,
                "contact_id": contact.id,
                "direction": event.direction,
                "sender_type": "contact" if inbound else "user",
                "sender_id": None,
                "type": content.type,
                "text": content.text,
                "media": msgspec.to_builtins(content.media) if content.media else None,
                "status": "received" if inbound else _echo_status(event.status),
                "error": None,
                "provider_message_id": event.provider_message_id,
                "reply_to_id": repo.id_of_provider_message(self.conn, self.scope, event.reply_to) if event.reply_to else None,
                "reply_to_provider_id": event.reply_to,
                "reactions": [],
                "metadata": metadata,
                "sent_at": event.timestamp,
                "created_at": at,
                "updated_at": self.now,
            },
        )
        if row is None:
            return  # this message was stored by an earlier delivery
        if not inbound:
            row = repo.adopt_parked(self.conn, self.scope, row, self.now)
        self._record("created", row)
        history = event.origin == "history_sync"
        delta = self._delta(conversation.id)
        if delta.last_at is None or at >= delta.last_at:
            delta.last_at, delta.preview = at, preview_of(event)
        if not inbound and not history and event.origin != "cloud_api":
            delta.takeover = True
        if inbound and content.type != "system":
            delta.inbound_at = max(delta.inbound_at or at, at)
            if not history:
                delta.unread += 1
                delta.reopen = True
                if self.now - at < STALE_AFTER:
                    self.new_inbound.append(row.id)
                if event.timestamp is not None:
                    metrics.INGEST_LAG.observe(max(0.0, (self.now - event.timestamp).total_seconds()))
        self._touch(contact.id, at)
        if content.media is not None and (content.media.provider_media_id or content.media.url):
            self.uow.enqueue(MEDIA_JOB, {"message_id": row.id}, workspace_id=self.ws)

    def _api_echo(self, event: InboundMessage) -> None:
        """A message sent through the provider's API. Usually ours (already stored, or linked by its
        status's callback data); otherwise another tool sent it: wait a little for our own send to
        record its provider id, then store it as an external message (``kabar.ingest.tasks``)."""
        if repo.id_of_provider_message(self.conn, self.scope, event.provider_message_id) is not None:
            return
        self.uow.enqueue(
            ECHO_JOB,
            {"event": msgspec.to_builtins(event)},
            workspace_id=self.ws,
            delay=timedelta(seconds=self.uow.db.settings.send_confirm_seconds),
        )

    def _on_statusupdate(self, event: StatusUpdate) -> None:
        message = repo.message_by_provider_id(self.conn, self.scope, event.provider_message_id)
        if message is None and event.callback:
            # A status that beat our send's API response: the callback data is our message id.
            linked = repo.attach_provider_id(self.conn, self.scope, event.callback, event.provider_message_id, self.now)
            if linked is not None:
                message = repo.adopt_parked(self.conn, self.scope, linked, self.now)
                self._record("updated", message)
        repo.record_status(
            self.conn,
            self.scope,
            message_id=message.id if message is not None else None,
            provider_message_id=event.provider_message_id,
            status=event.status[:10],
            error=event.error,
            occurred_at=event.timestamp,
            now=self.now,
        )
        if message is not None and (event.user_id or event.username):
            self._learn_identity(message.contact_id, event.user_id, event.username)
        status = repo.message_status_for(event.status)
        if message is None or status is None:
            return  # kept; applied when the message appears
        advanced = repo.advance_status(self.conn, self.scope, message.id, status, event.error, self.now)
        if advanced is not None:
            self._record("updated", advanced)

    def _target(self, provider_message_id: str) -> Any:
        row = repo.message_by_provider_id(self.conn, self.scope, provider_message_id, lock=True)
        if row is None:
            log.info("%s refers to unknown message %s", self.ws, provider_message_id)
        return row

    def _on_reaction(self, event: Reaction) -> None:
        target = self._target(event.target)
        if target is None:
            return
        by = "business" if event.from_business else "contact"
        at = (event.timestamp or self.now).isoformat()
        reactions = list(target.reactions or [])
        mine = next((r for r in reactions if r.get("by") == by), None)
        if mine is not None and mine.get("at", "") > at:
            return  # an older reaction delivered late
        reactions = [r for r in reactions if r.get("by") != by]
        if event.emoji:
            reactions.append({"emoji": event.emoji, "by": by, "at": at, "provider_message_id": event.provider_message_id})
        if reactions != list(target.reactions or []):
            self._record("updated", repo.update_message(self.conn, self.scope, target.id, {"reactions": reactions, "updated_at": self.now}))

    def _on_typing(self, event: Typing) -> None:
        """Live only (``kabar.channels.customer_typing``): a replayed receipt has nothing to apply."""

    def _on_edit(self, event: Edit) -> None:
        target = self._target(event.target)
        if target is None:
            return
        metadata = dict(target.metadata or {})
        edits = list(metadata.get("edits", []))
        if any(e.get("provider_message_id") == event.provider_message_id for e in edits):
            return  # this edit was applied by an earlier delivery
        edits.append({"text": target.text, "media": target.media, "edited_at": (event.timestamp or self.now).isoformat(),
                      "provider_message_id": event.provider_message_id})
        metadata["edits"] = edits
        values: dict[str, Any] = {"text": event.content.text, "metadata": metadata, "edited_at": event.timestamp or self.now, "updated_at": self.now}
        if event.content.media is not None and target.media is not None:
            values["media"] = {**target.media, "caption": event.content.media.caption}
        self._record("updated", repo.update_message(self.conn, self.scope, target.id, values))

    def _on_revoke(self, event: Revoke) -> None:
        target = self._target(event.target)
        if target is None or target.deleted_at is not None:
            return
        metadata = {**(target.metadata or {}), "deleted": {"text": target.text, "media": target.media}}  # audit copy
        values = {"text": None, "media": None, "metadata": metadata, "deleted_at": event.timestamp or self.now, "updated_at": self.now}
        self._record("updated", repo.update_message(self.conn, self.scope, target.id, values))

    def _on_numberchanged(self, event: NumberChanged) -> None:
        old = self._lookup(from_wa_id(event.old_wa_id), None)
        if old is None:
            return
        new_phone = from_wa_id(event.new_wa_id)
        attributes = dict(old.attributes or {})
        attributes["previous_phones"] = sorted({*attributes.get("previous_phones", []), old.phone_e164})
        values: dict[str, Any] = {"attributes": attributes}
        if self._lookup(new_phone, None) is None:
            values.update(phone_e164=new_phone, phone_raw=event.new_wa_id)
        else:
            attributes["changed_number_to"] = new_phone  # both exist: merging is a person's decision
        if event.new_user_id and self._lookup(None, event.new_user_id) is None:
            values["whatsapp_user_id"] = event.new_user_id  # a new number comes with a new user id
        self._set_identity(old, values)

    def _on_identitychanged(self, event: IdentityChanged) -> None:
        """The customer's business-scoped user id changed: the contact (found by the old id, or
        its phone) takes the new one. If a message under the new id came first and made a
        contact of its own, that contact is the same person and is merged into this one."""
        contact = self._lookup(None, event.old_user_id) if event.old_user_id else None
        if contact is None and event.wa_id:
            contact = self._lookup(from_wa_id(event.wa_id), None)
        if contact is None or contact.whatsapp_user_id == event.new_user_id:
            return
        holder = self._lookup(None, event.new_user_id)
        if holder is not None and holder.id != contact.id:
            contact = self._merge(contact, holder)
        attributes = dict(contact.attributes or {})
        if event.old_user_id:
            attributes["previous_user_ids"] = sorted({*attributes.get("previous_user_ids", []), event.old_user_id})
        self._set_identity(contact, {"whatsapp_user_id": event.new_user_id, "attributes": attributes})

    def _on_preferencechanged(self, event: PreferenceChanged) -> None:
        contact = self._lookup(from_wa_id(event.wa_id), None) if event.wa_id else None
        contact = contact or self._lookup(None, event.user_id)
        if contact is None:
            return
        attributes = dict(contact.attributes or {})
        key = "whatsapp_" + (event.category or "preference")
        if attributes.get(key) == event.value:
            return
        attributes[key] = event.value
        row = repo.update_contact(self.conn, self.scope, contact.id, {"attributes": attributes, "updated_at": self.now})
        self._remember_contact(row)
        self.changed_contacts.add(row.id)

    def _on_ignored(self, event: Ignored) -> None:
        # Account/app-level errors Meta reports with no message to attach them to: worth an alert.
        log.log(logging.WARNING if event.kind == "error" else logging.DEBUG, "%s: %s %s", self.ws, event.kind, event.reason)

    # -- counters, events, hooks ------------------------------------------------------------

    def finish(self) -> None:
        conn, ws = self.conn, self.ws
        for contact_id in sorted(set(self.touches) | set(self.contact_changes)):
            changes = {k: v for k, v in self.contact_changes.get(contact_id, {}).items()}
            current = self.contacts_by_id[contact_id]
            if "profile_name" in changes:
                changes["search_text"] = search_text_for(
                    name=current.name, profile_name=changes["profile_name"], email=current.email, phone_e164=current.phone_e164,
                    username=current.username,
                )
            if changes:
                self.changed_contacts.add(contact_id)
            at = self.touches.get(contact_id)
            if changes:
                row = repo.update_contact(conn, self.scope, contact_id, {**changes, "updated_at": self.now})
            if at is not None:
                row = repo.touch_contact(conn, self.scope, contact_id, at=at, now=self.now)
                # The contact panel shows first contact, last interaction and "returning": tell it.
                if (row.first_contact_at, row.last_interaction_at) != (current.first_contact_at, current.last_interaction_at):
                    self.changed_contacts.add(contact_id)
            elif not changes:
                continue
            self._remember_contact(row)
        conversations_by_id = {row.id: row for row in self.conversations.values()}
        for conversation_id in sorted(self.deltas):
            d = self.deltas[conversation_id]
            row = repo.bump_conversation(
                conn, self.scope, conversation_id, now=self.now, unread=d.unread, last_at=d.last_at, preview=d.preview,
                inbound_at=d.inbound_at, reopen=d.reopen, takeover=d.takeover,
            )
            conversations_by_id[row.id] = row
            self.conversations[row.contact_id] = row
        # Event log: customers, then conversations, then messages (a client learns of the
        # conversation before its first message).
        for contact_id in sorted(self.created_contacts | self.changed_contacts):
            row = self.contacts_by_id[contact_id]
            kind = CONTACT_CREATED if contact_id in self.created_contacts else CONTACT_UPDATED
            self.uow.emit(ws, kind, payload(contact_out(row)), contact_id=row.id)
        for conversation_id in sorted(self.created_conversations | set(self.deltas)):
            row = conversations_by_id[conversation_id]
            contact = self.contacts_by_id.get(row.contact_id) or repo.contact_by_id(conn, self.scope, row.contact_id)
            kind = CONVERSATION_CREATED if conversation_id in self.created_conversations else CONVERSATION_UPDATED
            self.uow.emit(ws, kind, payload(conversation_out(row, contact)), contact_id=row.contact_id)
        for kind, row in self.messages.values():
            self.uow.emit(ws, MESSAGE_CREATED if kind == "created" else MESSAGE_UPDATED, payload(message_out(row)), contact_id=row.contact_id)
        for message_id in self.new_inbound:
            message = self.messages[message_id][1]
            conversation = conversations_by_id[message.conversation_id]
            on_inbound_message(self.uow, message, conversation, self.contacts_by_id[message.contact_id])


def _echo_status(status: str | None) -> str:
    return repo.message_status_for(status) or "sent"


# -- replay -----------------------------------------------------------------------------------


async def replay(runtime: Any, receipt_id: str) -> str:
    """Apply a stored receipt again: ``applied``/``ignored``/``routed`` or ``failed``/``unrouted``."""
    db: Database = runtime.db
    row = await db.read(repo.get_receipt, receipt_id)
    if row is None:
        raise LookupError(f"no receipt {receipt_id}")
    if row.status == "truncated":
        return "truncated"  # only part of the body was kept (``quarantine``): nothing to verify or apply
    delivery = Delivery(row.provider, bytes(row.body), dict(row.headers or {}), decode(bytes(row.body)), row.received_at)
    pnids = delivery.routing()
    found = await db.read(channels.load_by_phone_number_ids, runtime.cipher, pnids) if pnids else {}
    if row.workspace_id == UNROUTED:
        if not found:
            await _mark(db, row, "unrouted", "still no workspace has this phone_number_id")
            return "unrouted"
        if not all(delivery.verify(ch) for ch in found.values()):
            await _mark(db, row, "unrouted", "the signature does not match the channel's secret")
            return "unrouted"
        found = {pnid: ch for pnid, ch in found.items()}
        existing: dict[str, str] = {}
    else:
        found = {pnid: ch for pnid, ch in found.items() if ch.workspace_id == row.workspace_id}
        if not found:
            await _mark(db, row, "failed", "the workspace no longer has this phone_number_id")
            return "failed"
        existing = {row.workspace_id: row.id}
    try:
        routed = route_events(delivery.normalise(), found)
        outcomes = await run_transaction(db, apply_delivery, delivery, routed.groups, existing)
    except StorageUnavailable:
        raise
    except Exception as exc:  # noqa: BLE001 - recorded on the receipt
        log.exception("replay of receipt %s failed", receipt_id)
        await _mark(db, row, "failed", f"{type(exc).__name__}: {exc}")
        return "failed"
    if row.workspace_id == UNROUTED:
        await _mark(db, row, "routed", None)
        return "routed"
    return outcomes.get(row.workspace_id, "applied")


async def _mark(db: Database, receipt: Any, status: str, error: str | None) -> None:
    def _update(uow: UnitOfWork) -> None:
        repo.update_receipt(
            uow.conn,
            system_scope(receipt.workspace_id),  # the quarantine's receipts are those of workspace ""
            receipt.id,
            {"status": status, "error": error[:MAX_ERROR] if error else None, "attempts": t.webhook_receipts.c.attempts + 1},
        )

    await db.transaction(_update)
