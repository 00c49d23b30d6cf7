"""Messages and uploads: thread history, outbound sends, media files. One unit of work per write.

Sending never calls a provider here: the message is stored as ``pending`` and a ``message.send``
job, enqueued in the same transaction, delivers it (``kabar.channels``). So a send either fully
happened (message, conversation preview, events, job) or not at all.
"""

from __future__ import annotations

import hashlib
import mimetypes
import os
import re
from datetime import datetime, timedelta
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

import msgspec
import regex
from sqlalchemy import Connection

from kabar.auth.scope import Scope, system_scope
from kabar.conversations import repository as conv_repo
from kabar.conversations.service import decode_keyset, visible_or_404, write_changes
from kabar.db.uow import UnitOfWork
from kabar.errors import Problem, bad_request, invalid, invalid_fields, not_found
from kabar.events import MESSAGE_CREATED, MESSAGE_UPDATED, UPLOAD_CREATED, payload
from kabar.http import encode_cursor
from kabar.ids import new_id
from kabar.messages import repository as repo
from kabar.messages.schemas import (
    MEDIA_TYPES,
    MediaIn,
    MessageCreate,
    MessageOut,
    MessagePage,
    TemplateIn,
    UploadOut,
    message_out,
    preview_text,
    upload_out,
)

SEND_JOB = "message.send"
REACT_JOB = "message.react"
BUSINESS = "business"  # reactions[].by of the business's own reaction (the customer's is "contact")
# WhatsApp accepts free-form messages only this long after the customer's last message.
CUSTOMER_SERVICE_WINDOW = timedelta(hours=24)
_MESSAGE_ID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
# The MIME family each media message type needs (documents may be anything).
_MIME_FAMILY = {"image": "image/", "audio": "audio/", "video": "video/"}


# -- history ------------------------------------------------------------------------------------


def list_messages(conn: Connection, ctx: Scope, conversation_id: str, *, before: str | None, limit: int) -> MessagePage:
    """Newest first. ``before`` is a ``next_cursor`` from a previous page, or a message id."""
    ctx.require("conversations.read")
    visible_or_404(conn, ctx, conversation_id)
    key = _before_key(conn, ctx, conversation_id, before)
    rows = repo.history(conn, ctx, conversation_id, limit=limit + 1, before=key)
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        next_cursor = encode_cursor(rows[-1].created_at.isoformat(), rows[-1].id)
    return MessagePage(data=[message_out(row) for row in rows], next_cursor=next_cursor)


def _before_key(conn: Connection, ctx: Scope, conversation_id: str, before: str | None) -> tuple[datetime, str] | None:
    if not before:
        return None
    if _MESSAGE_ID.match(before):
        row = repo.get_message(conn, ctx, before)
        if row is None or row.conversation_id != conversation_id:
            raise bad_request("before is not a message of this conversation")
        return row.created_at, row.id
    return decode_keyset(before, 1)


# -- sending ------------------------------------------------------------------------------------


def outside_window(detail: str) -> Problem:
    return Problem(
        422,
        "outside-customer-service-window",
        "Outside the customer service window",
        detail,
        errors=[{"field": "type", "message": "only a template message can be sent now"}],
    )


def require_open_window(conversation: Any, now: datetime) -> None:
    """422 unless the customer wrote within 24 hours (only templates may start a conversation)."""
    last_inbound = conversation.last_inbound_at
    if last_inbound is None:
        raise outside_window("The customer has not written yet; start the conversation with a template.")
    if now - last_inbound >= CUSTOMER_SERVICE_WINDOW:
        raise outside_window("The customer last wrote more than 24 hours ago; only a template can be sent.")


def send_message(uow: UnitOfWork, ctx: Scope, conversation_id: str, data: MessageCreate) -> MessageOut:
    """A staff member (or an API key) replies in a conversation they can see: a human takeover
    (ARI pauses there), unless an API key sends as a bot (``sender_type: "bot"``)."""
    ctx.require("messages.send")
    visible_or_404(uow.conn, ctx, conversation_id)
    via_key = ctx.principal.api_key_id
    if data.sender_type == "bot" and not via_key:
        raise invalid("sender_type", "only an API key (an integration) may send as a bot")
    return create_outbound_message(
        uow,
        workspace_id=ctx.workspace_id,
        conversation_id=conversation_id,
        sender_type=data.sender_type,
        sender_id=ctx.user_id,
        type=data.type,
        text=data.text,
        media=data.media,
        template=data.template,
        reply_to_id=data.reply_to_id,
        metadata={"api_key_id": via_key} if via_key else None,
        sent_by=ctx,
    )


def create_outbound_message(
    uow: UnitOfWork,
    *,
    workspace_id: str,
    conversation_id: str,
    sender_type: str,
    sender_id: str | None,
    type: str,
    text: str | None = None,
    media: MediaIn | dict[str, Any] | None = None,
    template: TemplateIn | dict[str, Any] | None = None,
    reply_to_id: str | None = None,
    metadata: dict[str, Any] | None = None,
    sent_by: Scope | None = None,
) -> MessageOut:
    """Store an outbound message as ``pending`` and queue its delivery, in ``uow``.

    ``sent_by``: the caller, who may only send uploads they may see (kabar.auth.visibility);
    None when the workspace itself sends (ARI).

    Also used by ARI for bot replies (``sender_type="bot"``); a ``user`` message is a human
    takeover: the conversation's ``ai_paused`` turns on with it (one conversation.updated),
    so ARI, which re-checks it before sending, stays quiet there. Raises 404 for a conversation not
    in the workspace, 422 with field errors for bad content, and 422
    ``outside-customer-service-window`` for a free-form message more than 24 hours after the
    customer last wrote (templates are always allowed).
    """
    if sender_type not in ("user", "bot"):
        raise ValueError(f"outbound sender_type must be user or bot, not {sender_type!r}")
    scope = system_scope(workspace_id)  # the workspace's own reads; the sender's visibility is sent_by's
    conversation = conv_repo.get_joined(uow.conn, scope, conversation_id)
    if conversation is None:
        raise not_found("Conversation")
    media_in, template_in = _coerce(media, MediaIn, "media"), _coerce(template, TemplateIn, "template")
    content = _validated_content(uow.conn, scope, conversation_id, type, text, media_in, template_in, reply_to_id, sent_by)
    if type != "template":
        require_open_window(conversation, uow.now)
    if content["media"] and content["media"].get("id"):
        content["media"]["id"] = _attach_upload(uow, scope, content["media"]["id"], conversation)
    message_id = new_id()
    row = {
        "id": message_id,
        "workspace_id": workspace_id,
        "conversation_id": conversation_id,
        "contact_id": conversation.contact_id,
        "direction": "outbound",
        "sender_type": sender_type,
        "sender_id": sender_id,
        "type": type,
        "status": "pending",
        "reactions": [],
        **content,
        "metadata": {**content["metadata"], **(metadata or {})},
        "created_at": uow.now,
        "updated_at": uow.now,
    }
    repo.insert_message(uow.conn, row)
    out = message_out(repo.get_message(uow.conn, scope, message_id))
    uow.emit(workspace_id, MESSAGE_CREATED, payload(out), contact_id=conversation.contact_id)
    caption = (content["media"] or {}).get("caption")
    template_name = template_in.name if template_in else None
    changes: dict[str, Any] = {
        # Never backwards (another process's clock may be a little behind).
        "last_message_at": max(uow.now, conversation.last_message_at),
        "last_message_preview": preview_text(type, text, caption, template_name),
    }
    if sender_type == "user" and not conversation.ai_paused:
        changes["ai_paused"] = True
    write_changes(uow, scope, conversation, changes)
    uow.enqueue(SEND_JOB, {"message_id": message_id}, workspace_id=workspace_id, serial_key=f"send:{conversation_id}")
    return out


def _attach_upload(uow: UnitOfWork, scope: Scope, upload_id: str, conversation: Any) -> str:
    """The id of the upload to send in ``conversation``: an unsent upload now belongs to it
    (kabar.auth.visibility); one already sent elsewhere is copied (same file, a new id that
    belongs here), so that each conversation's files follow that conversation's visibility."""
    if repo.attach_upload(uow.conn, scope, upload_id, conversation.id, conversation.contact_id):
        return upload_id
    row = repo.get_upload(uow.conn, scope, upload_id)
    if row.conversation_id == conversation.id:
        return upload_id
    copy_id = new_id()
    copy = {**row._asdict(), "id": copy_id, "conversation_id": conversation.id, "contact_id": conversation.contact_id, "created_at": uow.now}
    repo.insert_upload(uow.conn, copy)
    return copy_id


def _coerce(value: Any, struct: type, field: str) -> Any:
    """Callers inside Kabar (ARI) may pass plain dicts; validate them like API input."""
    if value is None or isinstance(value, struct):
        return value
    try:
        return msgspec.convert(value, struct)
    except msgspec.ValidationError as exc:
        raise invalid(field, str(exc)) from exc


def _validated_content(
    conn: Connection,
    scope: Scope,
    conversation_id: str,
    type: str,
    text: str | None,
    media: MediaIn | None,
    template: TemplateIn | None,
    reply_to_id: str | None,
    sent_by: Scope | None = None,
) -> dict[str, Any]:
    """The message columns for this content; 422 listing every problem."""
    errors: list[dict[str, str]] = []

    def err(field: str, message: str) -> None:
        errors.append({"field": field, "message": message})

    stored_text: str | None = None
    stored_media: dict[str, Any] | None = None
    meta: dict[str, Any] = {}
    if type == "text":
        stored_text = (text or "").strip()
        if not stored_text:
            err("text", "is required for a text message")
    elif text is not None:
        err("text", "is only for text messages (use media.caption for media)")
    if type != "text" and type not in MEDIA_TYPES and type != "template":
        err("type", f"{type!r} is not a type that can be sent")
    if type in MEDIA_TYPES:
        if media is None:
            err("media", f"is required for a {type} message")
        else:
            stored_media = _media_columns(conn, scope, type, media, err, sent_by)
    elif media is not None:
        err("media", "is only for image, document, audio and video messages")
    if type == "template":
        if template is None:
            err("template", "is required for a template message")
        else:
            meta["template"] = msgspec.to_builtins(template)
    elif template is not None:
        err("template", "is only for template messages")
    reply_to_provider_id = None
    if reply_to_id is not None:
        original = repo.get_message(conn, scope, reply_to_id)
        if original is None or original.conversation_id != conversation_id:
            err("reply_to_id", "is not a message of this conversation")
        else:
            reply_to_provider_id = original.provider_message_id
    if errors:
        raise invalid_fields(errors)
    return {
        "text": stored_text,
        "media": stored_media,
        "reply_to_id": reply_to_id,
        "reply_to_provider_id": reply_to_provider_id,
        "metadata": meta,
    }


def _media_columns(conn: Connection, scope: Scope, type: str, media: MediaIn, err: Any, sent_by: Scope | None) -> dict[str, Any] | None:
    if (media.url is None) == (media.upload_id is None):
        err("media", "give exactly one of url or upload_id")
        return None
    if type == "audio" and media.caption:
        err("media.caption", "audio messages cannot have a caption")
    out: dict[str, Any] = {"caption": media.caption.strip() if media.caption and media.caption.strip() else None}
    if media.url is not None:
        parts = urlsplit(media.url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            err("media.url", "must be an http(s) URL")
            return None
        guessed = mimetypes.guess_type(parts.path)[0]
        out.update(url=media.url, mime_type=guessed, filename=media.filename or (os.path.basename(parts.path) or None))
    else:
        # Not another member's unsent file, nor one sent in a conversation the sender cannot see.
        upload = repo.get_visible_upload(conn, sent_by, media.upload_id) if sent_by else repo.get_upload(conn, scope, media.upload_id)
        if upload is None:
            err("media.upload_id", "is not an upload of this workspace")
            return None
        family = _MIME_FAMILY.get(type)
        if family and not upload.mime_type.startswith(family):
            err("media.upload_id", f"is {upload.mime_type}, which cannot be sent as {type}")
        out.update(
            id=upload.id,
            mime_type=upload.mime_type,
            filename=media.filename or upload.filename,
            size=upload.size,
            sha256=upload.sha256,
        )
    return {key: value for key, value in out.items() if value is not None}


# -- typing indicator -----------------------------------------------------------------------------

MARK_READ_JOB = "channel.mark_read"


def show_typing(uow: UnitOfWork, ctx: Scope, conversation_id: str) -> None:
    """Staff are typing a reply: WhatsApp shows the customer "typing…" (a mark-as-read of their
    latest message with a typing indicator). Only inside the 24-hour window, where a reply can
    follow; otherwise nothing is sent."""
    ctx.require("messages.send")
    conversation = visible_or_404(uow.conn, ctx, conversation_id)
    last_inbound = conversation.last_inbound_at
    if last_inbound is not None and uow.now - last_inbound < CUSTOMER_SERVICE_WINDOW:
        uow.enqueue(MARK_READ_JOB, {"conversation_id": conversation_id, "typing": True}, workspace_id=ctx.workspace_id)


# -- reactions ----------------------------------------------------------------------------------


def react(uow: UnitOfWork, ctx: Scope, conversation_id: str, message_id: str, emoji: str) -> MessageOut:
    """Set (or, with ``""``, remove) the business's reaction to a message.

    The message shows it at once (``reactions``: one entry ``by: "business"``, ``status:
    "pending"``); a ``message.react`` job sends it to WhatsApp, in order with the conversation's
    other sends, and marks it ``sent`` or ``failed``. A reaction is a message to the customer, so
    the 24-hour window applies; the target needs a WhatsApp id to point at.
    """
    ctx.require("messages.send")
    conversation = visible_or_404(uow.conn, ctx, conversation_id)
    target = repo.get_message(uow.conn, ctx, message_id)
    if target is None or target.conversation_id != conversation_id:
        raise not_found("Message")
    emoji = emoji.strip()
    if emoji and not is_one_emoji(emoji):
        raise invalid("emoji", "must be one emoji, or empty to remove the reaction")
    if target.provider_message_id is None or target.deleted_at is not None:
        why = "was deleted" if target.deleted_at is not None else "has no WhatsApp message id (it was not sent, or is still sending)"
        raise Problem(422, "message-not-reactable", "Cannot react to this message", f"This message {why}, so WhatsApp cannot show a reaction to it.")
    reactions = list(target.reactions or [])
    mine = next((r for r in reactions if r.get("by") == BUSINESS), None)
    if (mine or {}).get("emoji", "") == emoji and (mine or {}).get("status") != "failed":
        return message_out(target)  # already so: nothing to send
    require_open_window(conversation, uow.now)
    at = uow.now.isoformat()
    reactions = [r for r in reactions if r.get("by") != BUSINESS]
    if emoji:
        reactions.append({"emoji": emoji, "by": BUSINESS, "at": at, "user_id": ctx.user_id, "status": "pending"})
    row = repo.update_message(uow.conn, ctx, message_id, {"reactions": reactions, "updated_at": uow.now})
    out = message_out(row)
    uow.emit(ctx.workspace_id, MESSAGE_UPDATED, payload(out), contact_id=row.contact_id)
    uow.enqueue(REACT_JOB, {"message_id": message_id, "emoji": emoji, "at": at}, workspace_id=ctx.workspace_id, serial_key=f"send:{conversation_id}")
    return out


_ONE_GRAPHEME = regex.compile(r"\X")
_PICTOGRAPHIC = regex.compile(r"[\p{Extended_Pictographic}\p{Regional_Indicator}]")


def is_one_emoji(text: str) -> bool:
    """One user-perceived character (a ZWJ family or a flag counts as one) that is an emoji."""
    return _ONE_GRAPHEME.fullmatch(text) is not None and _PICTOGRAPHIC.search(text) is not None


# -- uploads ------------------------------------------------------------------------------------


class UploadTooLarge(Exception):
    pass


def upload_path(workspace_id: str, upload_id: str) -> str:
    """Where an upload lives, relative to ``KABAR_DATA_DIR``."""
    return f"uploads/{workspace_id}/{upload_id}"


def write_upload_file(source: IO[bytes], destination: Path, max_bytes: int) -> tuple[int, str]:
    """Copy ``source`` to ``destination`` (atomically, via a temporary name); returns (size, sha256).

    Blocking file I/O: run it in a thread. Raises ``UploadTooLarge`` past ``max_bytes``."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    partial = destination.with_name(destination.name + ".part")
    digest, size = hashlib.sha256(), 0
    try:
        with open(partial, "wb") as out:
            while chunk := source.read(1024 * 1024):
                size += len(chunk)
                if size > max_bytes:
                    raise UploadTooLarge
                digest.update(chunk)
                out.write(chunk)
        os.replace(partial, destination)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return size, digest.hexdigest()


def clean_filename(raw: str | None) -> str:
    """The client's file name without any path, control characters or excess length."""
    name = (raw or "").replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in name if ch.isprintable()).strip()
    return name[:300] or "file"


def guess_mime(filename: str, declared: str | None) -> str:
    declared = (declared or "").split(";", 1)[0].strip().lower()
    if declared and declared != "application/octet-stream":
        return declared[:200]
    return mimetypes.guess_type(filename)[0] or "application/octet-stream"


def record_upload(
    uow: UnitOfWork, ctx: Scope, *, upload_id: str, filename: str, mime_type: str, size: int, sha256: str
) -> UploadOut:
    """The database half of an upload whose file is already stored at ``upload_path``."""
    ctx.require("messages.send")
    repo.insert_upload(
        uow.conn,
        {
            "id": upload_id,
            "workspace_id": ctx.workspace_id,
            "filename": filename,
            "mime_type": mime_type,
            "size": size,
            "sha256": sha256,
            "path": upload_path(ctx.workspace_id, upload_id),
            "origin": "upload",
            "created_by": ctx.user_id,
            "created_at": uow.now,
        },
    )
    out = upload_out(repo.get_upload(uow.conn, ctx, upload_id))
    uow.emit(ctx.workspace_id, UPLOAD_CREATED, payload(out))
    return out


def get_upload(conn: Connection, ctx: Scope, upload_id: str) -> Any:
    """An upload the caller may download: a sent one with its conversation, an unsent one by its
    uploader (kabar.auth.visibility); 404 otherwise, as for another workspace's."""
    ctx.require("conversations.read")
    row = repo.get_visible_upload(conn, ctx, upload_id)
    if row is None:
        raise not_found("Upload")
    return row
