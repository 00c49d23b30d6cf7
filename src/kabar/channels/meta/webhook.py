"""Meta WhatsApp Cloud API webhooks → normalized events.

Loops over every entry, change, message and status (one POST may carry many, for several phone
numbers). Meta message objects are also what Kapso v2 puts under ``message``, so the Kapso
adapter reuses ``message_events`` and ``status_event``.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from kabar.channels import signing
from kabar.ingest.schemas import (
    Content,
    Edit,
    Event,
    IdentityChanged,
    Ignored,
    InboundMessage,
    Media,
    NumberChanged,
    PreferenceChanged,
    Reaction,
    Revoke,
    StatusUpdate,
    UnsupportedPayload,
)
from kabar.phones import InvalidPhone, from_wa_id

SIGNATURE_HEADER = "x-hub-signature-256"
MEDIA_TYPES = ("image", "video", "audio", "document", "sticker")
MAX_TYPE_LENGTH = 20  # messages.type


def verify(raw: bytes, headers: dict[str, str], app_secret: str | None) -> bool:
    return signing.matches(raw, app_secret, headers.get(SIGNATURE_HEADER))


def is_envelope(doc: Any) -> bool:
    return isinstance(doc, dict) and isinstance(doc.get("entry"), list)


def _changes(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return [c for e in doc.get("entry") or [] if isinstance(e, dict) for c in e.get("changes") or [] if isinstance(c, dict)]


def routing(doc: Any) -> set[str]:
    """The phone_number_ids a body concerns (empty for account-level fields)."""
    if not is_envelope(doc):
        return set()
    ids = set()
    for change in _changes(doc):
        pnid = ((change.get("value") or {}).get("metadata") or {}).get("phone_number_id")
        if pnid:
            ids.add(str(pnid))
    return ids


def parse_ts(value: Any) -> datetime | None:
    """Provider timestamps are Unix seconds as strings (sometimes numbers); None when unreadable."""
    try:
        return datetime.fromtimestamp(int(value), UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        return None


def usable_wa_id(*candidates: Any) -> str | None:
    """The first candidate that is a WhatsApp phone id (placeholders and BSUID-only users are not)."""
    for value in candidates:
        if isinstance(value, str | int) and str(value).strip():
            try:
                from_wa_id(str(value))
            except InvalidPhone:
                continue
            return "".join(ch for ch in str(value) if ch.isdigit())
    return None


def normalise(doc: Any) -> list[Event]:
    if not is_envelope(doc):
        raise UnsupportedPayload("not a WhatsApp Business Account webhook (no entry[])")
    events: list[Event] = []
    for change in _changes(doc):
        events.extend(_change_events(change))
    return events or [Ignored("empty", "no entries or changes")]


def _change_events(change: dict[str, Any]) -> list[Event]:
    field = change.get("field")
    value = change.get("value") or {}
    pnid = str(((value.get("metadata") or {}).get("phone_number_id")) or "")
    contacts = [c for c in value.get("contacts") or [] if isinstance(c, dict)]
    out: list[Event] = []
    if field == "messages":
        for message in value.get("messages") or []:
            contact = _contact_for(contacts, message.get("from"), message.get("from_user_id"))
            customer = usable_wa_id(message.get("from"), (contact or {}).get("wa_id"))
            out.extend(message_events(pnid, message, wa_id=customer, contact=contact))
        for status in value.get("statuses") or []:
            out.append(status_event(pnid, status, _contact_for(contacts, status.get("recipient_id"), status.get("recipient_user_id"))))
        for error in value.get("errors") or []:
            out.append(Ignored("error", f"{error.get('code')}: {error.get('title')}", pnid or None))
    elif field == "smb_message_echoes":
        for message in value.get("message_echoes") or []:
            contact = _contact_for(contacts, message.get("to"), message.get("to_user_id"))
            customer = usable_wa_id(message.get("to"), (contact or {}).get("wa_id"))
            out.extend(message_events(pnid, message, wa_id=customer, contact=contact, direction="outbound", origin="business_app"))
    elif field == "user_preferences":
        for pref in value.get("user_preferences") or []:
            customer, user_id = usable_wa_id(pref.get("wa_id")), _str(pref.get("user_id") or None)
            if customer or user_id:
                out.append(PreferenceChanged(pnid, customer, str(pref.get("category") or ""), str(pref.get("value") or ""),
                                             parse_ts(pref.get("timestamp")), user_id))
    else:
        out.append(Ignored(str(field or "unknown"), "field not used by Kabar", pnid or None))
    return out or [Ignored(str(field or "unknown"), "nothing to apply", pnid or None)]


def _contact_for(contacts: list[dict[str, Any]], wa: Any, user_id: Any = None) -> dict[str, Any] | None:
    """The ``contacts[]`` entry of a message's customer: by business-scoped user id, else by phone."""
    for contact in contacts:
        if (user_id and contact.get("user_id") == user_id) or (wa and contact.get("wa_id") == wa):
            return contact
    return contacts[0] if len(contacts) == 1 else None


def message_events(
    pnid: str,
    m: dict[str, Any],
    *,
    wa_id: str | None,
    contact: dict[str, Any] | None = None,
    profile_name: str | None = None,
    direction: str = "inbound",
    origin: str | None = None,
    status: str | None = None,
    kapso: dict[str, Any] | None = None,
) -> list[Event]:
    """The events one Meta-shaped message object stands for."""
    mid = m.get("id")
    mtype = str(m.get("type") or "unknown")
    if not mid:
        return [Ignored(mtype, "message without id", pnid or None)]
    from_business = direction == "outbound"
    user_id = _str(m.get("to_user_id" if from_business else "from_user_id") or (contact or {}).get("user_id") or None)
    if wa_id is None and user_id is None:
        return [Ignored(mtype, "neither a phone number nor a WhatsApp user id for the customer", pnid or None)]
    profile = (contact or {}).get("profile") or {}
    name = profile_name or profile.get("name") or None
    ts = parse_ts(m.get("timestamp"))
    if mtype == "reaction":
        reaction = m.get("reaction") or {}
        if not reaction.get("message_id"):
            return [Ignored("reaction", "reaction without message_id", pnid)]
        return [Reaction(pnid, mid, reaction["message_id"], wa_id, reaction.get("emoji") or None, from_business, ts)]
    if mtype == "edit":
        edit = m.get("edit") or {}
        if not edit.get("original_message_id"):
            return [Ignored("edit", "edit without original_message_id", pnid)]
        return [Edit(pnid, mid, edit["original_message_id"], wa_id, content_of(edit.get("message") or {}), ts)]
    if mtype == "revoke":
        revoke = m.get("revoke") or {}
        if not revoke.get("original_message_id"):
            return [Ignored("revoke", "revoke without original_message_id", pnid)]
        return [Revoke(pnid, mid, revoke["original_message_id"], wa_id, ts)]
    context = m.get("context") or {}
    message = InboundMessage(
        phone_number_id=pnid,
        provider_message_id=mid,
        wa_id=wa_id,
        content=content_of(m, kapso),
        direction=direction,
        origin=origin,
        profile_name=name,
        user_id=user_id,
        username=_str(profile.get("username") or None),
        timestamp=ts,
        reply_to=context.get("id") or None,
        status=status,
    )
    events: list[Event] = [message]
    system = m.get("system") or {}
    # After the system message, so that message still lands on the customer's old contact.
    if mtype == "system" and system.get("type") == "user_changed_number":
        new = usable_wa_id(system.get("wa_id"))
        if wa_id and new and new != wa_id:
            events.append(NumberChanged(pnid, wa_id, new, ts, _str(system.get("user_id") or None)))
    elif mtype == "system" and system.get("type") == "user_changed_user_id" and system.get("user_id"):
        new_user_id = str(system["user_id"])
        if new_user_id != user_id:
            events.append(IdentityChanged(pnid, new_user_id, user_id, wa_id, ts))
    return events


def content_of(m: dict[str, Any], kapso: dict[str, Any] | None = None) -> Content:
    """Type, text, media and type-specific details of a Meta message object."""
    mtype = str(m.get("type") or "unknown")
    body = m.get(mtype) if isinstance(m.get(mtype), dict) else {}
    meta: dict[str, Any] = {}
    context = m.get("context") or {}
    for flag in ("forwarded", "frequently_forwarded"):
        if context.get(flag):
            meta[flag] = True
    if context.get("referred_product"):
        meta["referred_product"] = context["referred_product"]
    if m.get("referral"):
        meta["referral"] = m["referral"]
    if m.get("errors"):
        meta["errors"] = m["errors"]
    text: str | None = None
    media: Media | None = None
    if mtype == "text":
        text = body.get("body")
    elif mtype in MEDIA_TYPES:
        media = Media(
            provider_media_id=_str(body.get("id")),
            url=body.get("url"),
            mime_type=body.get("mime_type"),
            sha256=body.get("sha256"),
            filename=body.get("filename"),
            caption=body.get("caption"),
            voice=body.get("voice"),
            animated=body.get("animated"),
        )
        text = body.get("caption") or None
    elif mtype == "location":
        meta["location"] = body
        text = body.get("name") or body.get("address") or None
    elif mtype == "contacts":
        cards = m.get("contacts") or []
        meta["contacts"] = cards
        names = [((c.get("name") or {}).get("formatted_name") or "") for c in cards if isinstance(c, dict)]
        text = ", ".join(n for n in names if n) or None
    elif mtype == "interactive":
        text = _interactive(body, meta)
    elif mtype == "button":
        meta["button"] = body
        text = body.get("text") or None
    elif mtype == "order":
        meta["order"] = body
        text = body.get("text") or None
    elif mtype == "system":
        meta["system"] = body
        text = body.get("body") or None
    elif mtype in ("unsupported", "unknown"):
        mtype = "unsupported"
        meta["unsupported_type"] = (m.get("unsupported") or {}).get("type")
    elif mtype == "template":
        meta["template"] = body
    elif body:
        meta[mtype] = body  # a type Kabar does not know yet: keep what came
    if kapso:
        _add_kapso_extras(kapso, meta)
        if media is not None:
            media = _with_kapso_media(media, kapso)
        if text is None and mtype not in MEDIA_TYPES and kapso.get("content") and mtype not in ("text", "unsupported"):
            text = kapso["content"]
    return Content(type=mtype[:MAX_TYPE_LENGTH], text=text, media=media, metadata=meta)


def _interactive(body: dict[str, Any], meta: dict[str, Any]) -> str | None:
    kind = body.get("type")
    if kind in ("button_reply", "list_reply"):
        reply = body.get(kind) or {}
        meta["interactive"] = {"type": kind, **{k: reply[k] for k in ("id", "title", "description") if k in reply}}
        return reply.get("title") or None
    if kind == "nfm_reply":
        reply = body.get("nfm_reply") or {}
        raw = reply.get("response_json")
        try:
            response = json.loads(raw) if isinstance(raw, str) else raw
        except ValueError:
            response = raw
        meta["interactive"] = {"type": kind, "name": reply.get("name"), "response": response}
        return reply.get("body") or None
    if body:
        meta["interactive"] = body
    return None


def _add_kapso_extras(kapso: dict[str, Any], meta: dict[str, Any]) -> None:
    transcript = (kapso.get("transcript") or {}).get("text") if isinstance(kapso.get("transcript"), dict) else None
    if transcript:
        meta["transcript"] = transcript
    if kapso.get("origin"):
        meta["origin"] = kapso["origin"]


def _with_kapso_media(media: Media, kapso: dict[str, Any]) -> Media:
    data = kapso.get("media_data") or {}
    return Media(
        provider_media_id=media.provider_media_id,
        url=kapso.get("media_url") or data.get("url") or media.url,
        mime_type=media.mime_type or data.get("content_type"),
        sha256=media.sha256,
        filename=media.filename or data.get("filename"),
        caption=media.caption,
        size=data.get("byte_size") if isinstance(data.get("byte_size"), int) else None,
        voice=media.voice,
        animated=media.animated,
    )


def _str(value: Any) -> str | None:
    return None if value is None else str(value)


def status_event(pnid: str, status: dict[str, Any], contact: dict[str, Any] | None = None) -> Event:
    if not status.get("id") or not status.get("status"):
        return Ignored("status", "status without id or status", pnid or None)
    error = None
    errors = status.get("errors") or []
    if errors:
        first = errors[0] or {}
        error = {
            "code": first.get("code"),
            "title": first.get("title") or first.get("message") or "",
            "details": (first.get("error_data") or {}).get("details") or first.get("message"),
        }
    return StatusUpdate(
        phone_number_id=pnid,
        provider_message_id=str(status["id"]),
        status=str(status["status"]),
        timestamp=parse_ts(status.get("timestamp")),
        error=error,
        recipient=_str(status.get("recipient_id")),
        callback=status.get("biz_opaque_callback_data") or None,
        user_id=_str((contact or {}).get("user_id") or status.get("recipient_user_id") or None),
        username=_str(((contact or {}).get("profile") or {}).get("username") or None),
    )
