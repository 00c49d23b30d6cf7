"""Kapso webhooks (payload v2, single or batched, and Kapso-forwarded Meta bodies) → normalized events.

v2 event names travel in the ``X-Webhook-Event`` header (batches also carry ``type`` in the body);
a batch is recognised by ``X-Webhook-Batch: true`` or ``"batch": true``, never by guessing.
``message`` objects are Meta-shaped and parsed by the Meta adapter; ``message.kapso`` adds the
direction, origin, media URL and the raw Meta status history.
"""

from __future__ import annotations

from typing import Any

from kabar.channels import signing
from kabar.channels.meta import webhook as meta
from kabar.ingest.schemas import Event, IdentityChanged, Ignored, StatusUpdate, Typing, UnsupportedPayload

SIGNATURE_HEADERS = ("x-webhook-signature", "x-kapso-signature")  # the second is the legacy name
OUTBOUND_STATUSES = ("sent", "delivered", "read", "failed")
# Not a Kapso event: the fake provider's simulated customer is typing (kabar.channels.fake).
FAKE_TYPING_EVENT = "kabar.fake.typing"
IDENTITY_CHANGED_EVENT = "whatsapp.contact.identity_changed"


def verify(raw: bytes, headers: dict[str, str], webhook_secret: str | None, app_secret: str | None = None) -> bool:
    """Kapso's signature with the webhook secret; a forwarded Meta body may carry Meta's instead."""
    for name in SIGNATURE_HEADERS:
        if headers.get(name):
            return signing.matches(raw, webhook_secret, headers[name])
    return meta.verify(raw, headers, app_secret)


def is_batch(doc: Any, headers: dict[str, str]) -> bool:
    return headers.get("x-webhook-batch", "").lower() == "true" or (isinstance(doc, dict) and doc.get("batch") is True)


def _items(doc: Any, headers: dict[str, str]) -> list[Any]:
    if not isinstance(doc, dict):
        raise UnsupportedPayload("body is not a JSON object")
    if is_batch(doc, headers):
        items = doc.get("data")
        if not isinstance(items, list):
            raise UnsupportedPayload("batch without a data[] array")
        return [item for item in items if isinstance(item, dict)]
    return [doc]


def _pnid(item: dict[str, Any]) -> str | None:
    message = item.get("message") if isinstance(item.get("message"), dict) else {}
    conversation = item.get("conversation") if isinstance(item.get("conversation"), dict) else {}
    value = item.get("phone_number_id") or conversation.get("phone_number_id") or (message.get("kapso") or {}).get("phone_number_id")
    return str(value) if value else None


def routing(doc: Any, headers: dict[str, str]) -> set[str]:
    if meta.is_envelope(doc):
        return meta.routing(doc)
    try:
        items = _items(doc, headers)
    except UnsupportedPayload:
        return set()
    return {pnid for item in items if (pnid := _pnid(item))}


def event_name(doc: Any, headers: dict[str, str]) -> str:
    if meta.is_envelope(doc):
        return "meta"
    name = headers.get("x-webhook-event") or ""
    if not name and isinstance(doc, dict):
        name = str(doc.get("type") or doc.get("event") or "")
    return name


def normalise(doc: Any, headers: dict[str, str]) -> list[Event]:
    if meta.is_envelope(doc):
        return meta.normalise(doc)
    if headers.get("x-webhook-payload-version", "").lower() == "v1" or (isinstance(doc, dict) and "whatsapp_config" in doc):
        raise UnsupportedPayload("Kapso payload v1 is not supported: set the webhook's payload_version to v2")
    name = event_name(doc, headers)
    events: list[Event] = []
    for item in _items(doc, headers):
        events.extend(_item_events(name, item))
    return events or [Ignored(name or "unknown", "empty payload")]


def _item_events(name: str, item: dict[str, Any]) -> list[Event]:
    pnid = _pnid(item) or ""
    if name == FAKE_TYPING_EVENT:
        return [_fake_typing(pnid, item)]
    if name == IDENTITY_CHANGED_EVENT:
        return [_identity_changed(pnid, item)]
    if not name.startswith("whatsapp.message."):
        return [Ignored(name or "unknown", "event not used by Kabar", pnid or None)]
    m = item.get("message")
    if not isinstance(m, dict):
        return [Ignored(name, "message event without a message", pnid or None)]
    kapso = m.get("kapso") if isinstance(m.get("kapso"), dict) else {}
    conversation = item.get("conversation") if isinstance(item.get("conversation"), dict) else {}
    direction = kapso.get("direction") or ("inbound" if name == "whatsapp.message.received" else "outbound")
    phone_fallbacks = (conversation.get("phone_number"), kapso.get("phone_number"))
    # Kapso's identity fields for the customer (any of them may be missing: BSUID/usernames).
    contact = {"user_id": conversation.get("business_scoped_user_id"), "profile": {"username": conversation.get("username")}}
    if direction == "inbound":
        customer = meta.usable_wa_id(m.get("from"), *phone_fallbacks)
        contact_name = (conversation.get("kapso") or {}).get("contact_name")
        return meta.message_events(
            pnid, m, wa_id=customer, profile_name=contact_name, origin=kapso.get("origin"), kapso=kapso, contact=contact
        )
    # Outbound: the status history first (it may carry our message id as callback data, which
    # links a send still waiting for its API response), then the message itself as an echo.
    statuses: list[Event] = [meta.status_event(pnid, s) for s in kapso.get("statuses") or [] if isinstance(s, dict)]
    status = kapso.get("status")
    if not statuses and status in OUTBOUND_STATUSES and m.get("id"):
        statuses.append(StatusUpdate(pnid, str(m["id"]), status, meta.parse_ts(m.get("timestamp"))))
    customer = meta.usable_wa_id(m.get("to"), *phone_fallbacks)
    if m.get("type") == "reaction" and (kapso.get("origin") or "cloud_api") == "cloud_api":
        # The business's reaction sent through the API: Kabar records its own when staff react
        # (kabar.messages.service.react). Replaying the echo, whose timestamp has only whole
        # seconds, could bring back a reaction changed or removed a moment later.
        return statuses + [Ignored("reaction", "the business's own API reaction (recorded when sent)", pnid or None)]
    echo = meta.message_events(
        pnid, m, wa_id=customer, direction="outbound", origin=kapso.get("origin") or "cloud_api",
        status=status if status in OUTBOUND_STATUSES else None, kapso=kapso, contact=contact,
    )
    return statuses + echo


def _identity_changed(pnid: str, item: dict[str, Any]) -> Event:
    """``whatsapp.contact.identity_changed``: the customer's new business-scoped user id, with the
    previous one and the phone number when Kapso has them (either may be null)."""
    contact = next((item[key] for key in ("contact", "conversation") if isinstance(item.get(key), dict)), item)
    previous = item.get("previous") if isinstance(item.get("previous"), dict) else {}
    new = contact.get("business_scoped_user_id") or item.get("business_scoped_user_id")
    old = previous.get("business_scoped_user_id") or item.get("previous_business_scoped_user_id")
    phone = meta.usable_wa_id(contact.get("phone_number"), contact.get("wa_id"), previous.get("phone_number"))
    if not new:
        return Ignored(IDENTITY_CHANGED_EVENT, "identity change without a new business-scoped user id", pnid or None)
    return IdentityChanged(pnid, str(new), str(old) if old else None, phone, meta.parse_ts(item.get("timestamp")))


def _fake_typing(pnid: str, item: dict[str, Any]) -> Event:
    """``{"phone_number_id", "conversation": {"phone_number"}, "typing": {"state": "typing"|"paused"}}``."""
    conversation = item.get("conversation") if isinstance(item.get("conversation"), dict) else {}
    typing = item.get("typing") if isinstance(item.get("typing"), dict) else {}
    customer = meta.usable_wa_id(conversation.get("phone_number"))
    state = typing.get("state")
    if customer is None or state not in ("typing", "paused"):
        return Ignored(FAKE_TYPING_EVENT, "typing without a customer or a state", pnid or None)
    return Typing(pnid, customer, state)
