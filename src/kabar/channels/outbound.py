"""The database side of delivering an outbound message: the send job's state transitions.

A message is sent at most once per committed attempt marker. ``metadata.send`` records:
- ``in_flight`` — committed BEFORE the provider call. If the process dies, or the answer is lost
  (read timeout), after the provider may have accepted the message, the next attempt finds
  ``in_flight`` and waits ``send_confirm_seconds`` for the status webhook, which carries our
  message id (``biz_opaque_callback_data``) and links the provider id; only if nothing arrives by
  then is the message sent again. So a retry never resends a message the provider confirmed.
- ``not_sent`` — the provider answered with a retryable error: it did not take the message.
- ``accepted`` — the provider id is stored (``provider_message_id``); the job never sends a
  message that has one, whatever retries happen afterwards.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection

from kabar.auth.scope import Scope, system_scope
from kabar.channels import service as channels
from kabar.contacts import repository as contacts_repo
from kabar.crypto import Cipher
from kabar.db.uow import UnitOfWork
from kabar.events import MESSAGE_UPDATED, payload
from kabar.ingest import repository as ingest_repo
from kabar.messages import repository as messages_repo
from kabar.messages.schemas import message_out
from kabar.messages.service import BUSINESS

log = logging.getLogger("kabar.channels")


@dataclass(frozen=True, slots=True)
class SendContext:
    message: Any
    contact: Any
    channel: channels.ChannelConfig | None
    reply_to: str | None  # provider id of the quoted message
    upload: Any  # uploads row for media sent from a local upload


def load_send(conn: Connection, cipher: Cipher, workspace_id: str, message_id: str) -> SendContext | None:
    scope = system_scope(workspace_id)
    message = ingest_repo.message_by_id(conn, scope, message_id)
    if message is None:
        return None
    contact = contacts_repo.contact_row(conn, scope, message.contact_id)
    reply_to = message.reply_to_provider_id
    if reply_to is None and message.reply_to_id:
        original = ingest_repo.message_by_id(conn, scope, message.reply_to_id)
        reply_to = original.provider_message_id if original is not None else None
    upload = None
    upload_id = (message.media or {}).get("id")
    if upload_id:
        upload = messages_repo.get_upload(conn, scope, upload_id)
    return SendContext(message, contact, channels.load(conn, cipher, workspace_id), reply_to, upload)


def send_state(message: Any) -> dict[str, Any]:
    return dict((message.metadata or {}).get("send") or {})


def _set_state(conn: Connection, scope: Scope, row: Any, state: dict[str, Any], now: datetime, **values: Any) -> Any:
    metadata = {**(row.metadata or {}), "send": state}
    return ingest_repo.update_message(conn, scope, row.id, {"metadata": metadata, "updated_at": now, **values})


def mark_in_flight(uow: UnitOfWork, workspace_id: str, message_id: str, attempt: int, provider_media_id: str | None) -> bool:
    """Committed before calling the provider; False when the message is no longer waiting to be sent."""
    scope = system_scope(workspace_id)
    row = ingest_repo.message_by_id(uow.conn, scope, message_id, lock=True)
    if row is None or row.status != "pending" or row.provider_message_id is not None:
        return False
    state = {"state": "in_flight", "attempt": attempt, "started_at": uow.now.isoformat()}
    if provider_media_id:
        state["provider_media_id"] = provider_media_id
    row = _set_state(uow.conn, scope, row, state, uow.now)
    # The API shows the attempt (metadata.send): open threads get it too.
    uow.emit(workspace_id, MESSAGE_UPDATED, payload(message_out(row)), contact_id=row.contact_id)
    return True


def mark_not_sent(uow: UnitOfWork, workspace_id: str, message_id: str, error: dict[str, Any]) -> None:
    scope = system_scope(workspace_id)
    row = ingest_repo.message_by_id(uow.conn, scope, message_id, lock=True)
    if row is None or row.provider_message_id is not None:
        return
    row = _set_state(uow.conn, scope, row, {**send_state(row), "state": "not_sent", "last_error": error}, uow.now)
    uow.emit(workspace_id, MESSAGE_UPDATED, payload(message_out(row)), contact_id=row.contact_id)


def mark_sent(uow: UnitOfWork, workspace_id: str, message_id: str, provider_message_id: str) -> None:
    """Store the provider's id; statuses that arrived before it are applied now."""
    conn, scope = uow.conn, system_scope(workspace_id)
    ingest_repo.lock_provider_ids(conn, scope, {provider_message_id})  # vs. its status webhooks
    row = ingest_repo.message_by_id(conn, scope, message_id, lock=True)
    if row is None:
        return
    state = {**send_state(row), "state": "accepted"}
    if row.provider_message_id is None:
        twin = ingest_repo.message_by_provider_id(conn, scope, provider_message_id, lock=True)
        if twin is not None:
            # The provider's echo of this very send was stored as an external message (our commit
            # came after the confirmation window): fold it into this one.
            log.warning("message %s: folding external echo %s into it", message_id, twin.id)
            messages_repo.delete_folded_twin(conn, scope, twin.id)
        row = _set_state(conn, scope, row, state, uow.now, provider_message_id=provider_message_id, sent_at=uow.now)
        row = ingest_repo.advance_status(conn, scope, row.id, "sent", None, uow.now) or row
        row = ingest_repo.adopt_parked(conn, scope, row, uow.now)
    else:
        row = _set_state(conn, scope, row, state, uow.now)
    uow.emit(workspace_id, MESSAGE_UPDATED, payload(message_out(row)), contact_id=row.contact_id)


def mark_failed(uow: UnitOfWork, workspace_id: str, message_id: str, error: dict[str, Any]) -> None:
    scope = system_scope(workspace_id)
    row = ingest_repo.message_by_id(uow.conn, scope, message_id, lock=True)
    if row is None or row.provider_message_id is not None:
        return  # the provider took it after all: its statuses decide
    row = _set_state(uow.conn, scope, row, {**send_state(row), "state": "failed"}, uow.now)
    row = ingest_repo.advance_status(uow.conn, scope, row.id, "failed", error, uow.now) or row
    uow.emit(workspace_id, MESSAGE_UPDATED, payload(message_out(row)), contact_id=row.contact_id)


def mark_reaction(uow: UnitOfWork, workspace_id: str, job: dict[str, Any], provider_message_id: str | None,
                  error: dict[str, Any] | None) -> None:
    """The outcome of a ``message.react`` job on the reaction it sent: ``sent`` (WhatsApp reports
    nothing further for a reaction) or ``failed`` with the error. A reaction changed again
    meanwhile is left alone: its own job reports on it."""
    scope = system_scope(workspace_id)
    row = ingest_repo.message_by_id(uow.conn, scope, job["message_id"], lock=True)
    if row is None:
        return
    reactions = list(row.reactions or [])
    index = next((i for i, r in enumerate(reactions) if r.get("by") == BUSINESS and r.get("at") == job["at"]), None)
    if index is None:
        if error is not None:  # a removal that did not reach WhatsApp: the customer still sees the old one
            log.warning("message %s: removing the reaction failed: %s", row.id, error)
        return
    entry = {**reactions[index], "status": "failed" if error else "sent"}
    if error:
        entry["error"] = error
    if provider_message_id:
        entry["provider_message_id"] = provider_message_id
    reactions[index] = entry
    row = ingest_repo.update_message(uow.conn, scope, row.id, {"reactions": reactions, "updated_at": uow.now})
    uow.emit(workspace_id, MESSAGE_UPDATED, payload(message_out(row)), contact_id=row.contact_id)


def latest_inbound(conn: Connection, workspace_id: str, conversation_id: str) -> Any:
    return messages_repo.latest_inbound_provider_id(conn, system_scope(workspace_id), conversation_id)


def attach_download(uow: UnitOfWork, workspace_id: str, message_id: str, upload: dict[str, Any]) -> None:
    """Record a downloaded inbound media file and point the message's media at it."""
    scope = system_scope(workspace_id)
    row = ingest_repo.message_by_id(uow.conn, scope, message_id, lock=True)
    if row is None or row.media is None or row.media.get("id"):
        return
    # Received in this conversation: visible exactly when it is (kabar.auth.visibility).
    messages_repo.insert_upload(
        uow.conn,
        {**upload, "workspace_id": workspace_id, "origin": "inbound", "created_at": uow.now, "conversation_id": row.conversation_id, "contact_id": row.contact_id},
    )
    media = {**row.media, "id": upload["id"], "size": upload["size"], "sha256": upload["sha256"], "mime_type": upload["mime_type"]}
    media.pop("url", None)  # the provider's URL expires; the local copy is what the API serves
    media.pop("download_error", None)
    row = ingest_repo.update_message(uow.conn, scope, message_id, {"media": media, "updated_at": uow.now})
    uow.emit(workspace_id, MESSAGE_UPDATED, payload(message_out(row)), contact_id=row.contact_id)


def mark_download_failed(uow: UnitOfWork, workspace_id: str, message_id: str, error: dict[str, Any]) -> None:
    """Inbound media that will not be fetched (refused by the egress guard, too large, gone): the
    message says so in ``media.download_error``, and the provider's URL is dropped, so that nothing
    (the inbox included) follows it."""
    scope = system_scope(workspace_id)
    row = ingest_repo.message_by_id(uow.conn, scope, message_id, lock=True)
    if row is None or row.media is None or row.media.get("id"):
        return
    media = {k: v for k, v in row.media.items() if k != "url"}
    media["download_error"] = error
    row = ingest_repo.update_message(uow.conn, scope, message_id, {"media": media, "updated_at": uow.now})
    uow.emit(workspace_id, MESSAGE_UPDATED, payload(message_out(row)), contact_id=row.contact_id)
