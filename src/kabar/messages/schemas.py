"""Message resource shapes. ``message_out`` is the one place a message row becomes JSON
(thread history, send responses and event payloads)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec

Direction = Literal["inbound", "outbound"]
SenderType = Literal["contact", "user", "bot"]
# Inbound messages are stored as "received"; outbound ones move pending → sent → delivered → read,
# or end as failed. Status only moves forward: see STATUS_RANK.
MessageStatus = Literal["pending", "received", "sent", "delivered", "read", "failed"]
STATUS_RANK = {"pending": 0, "sent": 1, "delivered": 2, "read": 3, "received": 3, "failed": 4}


class MediaOut(msgspec.Struct, omit_defaults=True):
    id: str | None = None  # an upload id (stored locally) or the provider's media id
    url: str | None = None
    mime_type: str | None = None
    filename: str | None = None
    caption: str | None = None
    provider_media_id: str | None = None
    size: int | None = None
    sha256: str | None = None


class ErrorOut(msgspec.Struct):
    code: int | str
    title: str


class MessageOut(msgspec.Struct):
    id: str
    conversation_id: str
    contact_id: str
    direction: str
    sender_type: str
    sender_id: str | None
    type: str
    text: str | None
    media: dict[str, Any] | None
    status: str
    error: dict[str, Any] | None
    provider_message_id: str | None
    reply_to_id: str | None
    reactions: list[dict[str, Any]]
    metadata: dict[str, Any]
    edited_at: datetime | None
    deleted_at: datetime | None
    created_at: datetime
    updated_at: datetime


def message_out(row: Any) -> MessageOut:
    return MessageOut(
        id=row.id,
        conversation_id=row.conversation_id,
        contact_id=row.contact_id,
        direction=row.direction,
        sender_type=row.sender_type,
        sender_id=row.sender_id,
        type=row.type,
        text=row.text,
        media=row.media,
        status=row.status,
        error=row.error,
        provider_message_id=row.provider_message_id,
        reply_to_id=row.reply_to_id,
        reactions=list(row.reactions or []),
        metadata=dict(row.metadata or {}),
        edited_at=row.edited_at,
        deleted_at=row.deleted_at,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


# -- sending -------------------------------------------------------------------------------------

OutboundType = Literal["text", "image", "document", "audio", "video", "template"]
MEDIA_TYPES: tuple[str, ...] = ("image", "document", "audio", "video")
PREVIEW_LENGTH = 200  # conversations.last_message_preview is VARCHAR(200)


class MediaIn(msgspec.Struct, forbid_unknown_fields=True):
    url: Annotated[str, msgspec.Meta(max_length=2000)] | None = None
    upload_id: Annotated[str, msgspec.Meta(max_length=64)] | None = None
    caption: Annotated[str, msgspec.Meta(max_length=1024)] | None = None  # WhatsApp's caption limit
    filename: Annotated[str, msgspec.Meta(max_length=240)] | None = None


class TemplateIn(msgspec.Struct, forbid_unknown_fields=True):
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=512, pattern=r"^[a-z0-9_]+$")]
    language: Annotated[str, msgspec.Meta(pattern=r"^[a-z]{2,3}(_[A-Za-z0-9]{2,8})?$")]
    components: list[dict[str, Any]] | None = None


class MessageCreate(msgspec.Struct, forbid_unknown_fields=True):
    type: OutboundType
    text: Annotated[str, msgspec.Meta(max_length=4096)] | None = None  # WhatsApp's text limit
    media: MediaIn | None = None
    template: TemplateIn | None = None
    reply_to_id: Annotated[str, msgspec.Meta(max_length=64)] | None = None
    # "bot": an API key sending as an automated integration (stored as a bot message; ARI keeps
    # answering). Any other send is a human takeover: ARI stops replying in the conversation.
    sender_type: Literal["user", "bot"] = "user"


class ReactionIn(msgspec.Struct, forbid_unknown_fields=True):
    emoji: Annotated[str, msgspec.Meta(max_length=32)]  # one emoji; "" removes the business's reaction


class MessagePage(msgspec.Struct):
    data: list[MessageOut]
    next_cursor: str | None


def preview_text(type: str, text: str | None, caption: str | None = None, template_name: str | None = None) -> str:
    """The conversation list's one-line preview of a message."""
    if type == "template":
        body = f"[template: {template_name}]" if template_name else "[template]"
    else:
        body = (text or caption or "").strip() or f"[{type}]"
    return " ".join(body.split())[:PREVIEW_LENGTH]


# -- uploads -------------------------------------------------------------------------------------


class UploadOut(msgspec.Struct):
    upload_id: str
    filename: str
    mime_type: str
    size: int
    sha256: str
    created_at: datetime
    created_by: str | None = None  # the uploader (null for an API key); the upload.created audience
    conversation_id: str | None = None  # set once it was sent (or received) in a conversation


def upload_out(row: Any) -> UploadOut:
    return UploadOut(
        upload_id=row.id, filename=row.filename, mime_type=row.mime_type, size=row.size, sha256=row.sha256, created_at=row.created_at,
        created_by=row.created_by, conversation_id=row.conversation_id,
    )
