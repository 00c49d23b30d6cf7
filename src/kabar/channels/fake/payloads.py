"""Kapso v2 and Meta webhook bodies, built the way the providers send them (wire-formats §1, §3).

One place for the shapes the fake provider posts back, the customer simulator sends, and the
tests replay. ``encode`` keeps non-ASCII text as UTF-8 (signatures are over these exact bytes).
"""

from __future__ import annotations

import secrets
import time
import uuid
from typing import Any

import msgspec

from kabar.channels import signing


def encode(doc: Any) -> bytes:
    return msgspec.json.encode(doc)


def new_wamid() -> str:
    return "wamid.HBgN" + secrets.token_urlsafe(24).replace("-", "A").replace("_", "B")


def _conversation(
    pnid: str, phone: str | None, name: str | None = None, user_id: str | None = None, username: str | None = None
) -> dict[str, Any]:
    """Kapso's conversation object; a customer known only by business-scoped user id has no
    ``phone_number`` (Kapso: do not assume it is there)."""
    conversation: dict[str, Any] = {
        "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{pnid}/{phone or user_id}")),
        "status": "active",
        "metadata": {},
        "phone_number_id": pnid,
    }
    if phone:
        conversation["phone_number"] = phone if phone.startswith("+") else "+" + phone
    if user_id:
        conversation["business_scoped_user_id"] = user_id
    if username:
        conversation["username"] = username
    if name:
        conversation["kapso"] = {"contact_name": name}
    return conversation


def kapso_received(
    *,
    pnid: str,
    phone: str | None,
    text: str | None = None,
    wamid: str | None = None,
    name: str | None = None,
    ts: int | None = None,
    message: dict[str, Any] | None = None,
    origin: str = "cloud_api",
    is_new: bool = False,
    user_id: str | None = None,
    username: str | None = None,
) -> dict[str, Any]:
    """``whatsapp.message.received``: a text, or any Meta-shaped ``message`` given. ``phone=None``
    with a ``user_id``: a customer who uses a WhatsApp username and hides their number."""
    body = dict(message or {"type": "text", "text": {"body": text or ""}})
    body.setdefault("id", wamid or new_wamid())
    body.setdefault("timestamp", str(ts or int(time.time())))
    if phone:
        body.setdefault("from", phone.lstrip("+"))
    if user_id:
        body.setdefault("from_user_id", user_id)
    kapso = {"direction": "inbound", "status": "received", "processing_status": "pending", "origin": origin,
             "has_media": body["type"] in ("image", "video", "audio", "document", "sticker")}
    if body["type"] == "text":
        kapso["content"] = body["text"]["body"]
    body["kapso"] = {**kapso, **body.get("kapso", {})}
    conversation = _conversation(pnid, phone, name, user_id, username)
    return {"message": body, "conversation": conversation, "is_new_conversation": is_new, "phone_number_id": pnid}


def fake_typing(*, pnid: str, phone: str, state: str = "typing") -> dict[str, Any]:
    """The fake provider's own ``kabar.fake.typing`` event (WhatsApp has none): the customer is
    typing, or stopped (``state="paused"``)."""
    return {"typing": {"state": state}, "conversation": _conversation(pnid, phone), "phone_number_id": pnid}


def meta_status(wamid: str, status: str, phone: str, ts: int | None = None, *, callback: str | None = None,
                error: dict[str, Any] | None = None, user_id: str | None = None) -> dict[str, Any]:
    """One raw Meta status object (what Kapso keeps in ``message.kapso.statuses``); a send to a
    business-scoped user id has an empty ``recipient_id`` and a ``recipient_user_id``."""
    out: dict[str, Any] = {"id": wamid, "status": status, "timestamp": str(ts or int(time.time())), "recipient_id": phone.lstrip("+")}
    if user_id:
        out["recipient_user_id"] = user_id
    if callback:
        out["biz_opaque_callback_data"] = callback
    if error:
        out["errors"] = [error]
    return out


def kapso_outbound(
    *,
    pnid: str,
    phone: str,
    wamid: str,
    statuses: list[dict[str, Any]],
    message: dict[str, Any] | None = None,
    origin: str = "cloud_api",
    user_id: str | None = None,
) -> dict[str, Any]:
    """``whatsapp.message.sent|delivered|read|failed`` for an outbound message (status history oldest first)."""
    body = dict(message or {"type": "text", "text": {"body": ""}})
    body.update(id=wamid, timestamp=statuses[0]["timestamp"] if statuses else str(int(time.time())))
    if phone:
        body.setdefault("to", phone.lstrip("+"))
    body["kapso"] = {"direction": "outbound", "status": statuses[-1]["status"] if statuses else "sent",
                     "processing_status": "completed", "origin": origin, "has_media": False, "statuses": statuses}
    return {"message": body, "conversation": _conversation(pnid, phone, user_id=user_id), "is_new_conversation": False, "phone_number_id": pnid}


def kapso_batch(items: list[dict[str, Any]], event: str = "whatsapp.message.received") -> dict[str, Any]:
    conversation_id = items[0]["conversation"]["id"] if items else None
    return {"type": event, "batch": True, "data": items,
            "batch_info": {"size": len(items), "window_ms": 5000, "first_sequence": 1, "last_sequence": len(items),
                           "conversation_id": conversation_id}}


def meta_envelope(pnid: str, value: dict[str, Any], field: str = "messages", display: str = "6221500000") -> dict[str, Any]:
    body = {"messaging_product": "whatsapp", "metadata": {"display_phone_number": display, "phone_number_id": pnid}, **value}
    return {"object": "whatsapp_business_account", "entry": [{"id": "WABA-1", "changes": [{"field": field, "value": body}]}]}


def kapso_headers(raw: bytes, secret: str, event: str, *, key: str | None = None, batch: int | None = None) -> dict[str, str]:
    headers = {
        "content-type": "application/json",
        "x-webhook-event": event,
        "x-webhook-signature": signing.sign(secret, raw),
        "x-idempotency-key": key or str(uuid.uuid4()),
        "x-webhook-payload-version": "v2",
    }
    if batch is not None:
        headers.update({"x-webhook-batch": "true", "x-batch-size": str(batch)})
    return headers


def meta_headers(raw: bytes, app_secret: str) -> dict[str, str]:
    return {"content-type": "application/json", "x-hub-signature-256": "sha256=" + signing.sign(app_secret, raw)}
