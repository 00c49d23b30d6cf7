"""Jobs that talk to the WhatsApp provider: send a message, mark a conversation read, download
inbound media. Provider calls happen outside any transaction; each state change is its own
short unit of work (``kabar.channels.outbound``)."""

from __future__ import annotations

import asyncio
import logging
import mimetypes
import tempfile
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from kabar.channels import outbound, providers
from kabar.channels.graph import ProviderError, message_body, reaction_body, recipient_of
from kabar.db.types import utcnow
from kabar.ids import new_id
from kabar.jobs.registry import Job, PermanentFailure, RetryLater, handler
from kabar.jobs.worker import backoff_seconds
from kabar.messages.service import REACT_JOB

if TYPE_CHECKING:
    from kabar.runtime import Runtime

log = logging.getLogger("kabar.channels")
MAX_INBOUND_MEDIA = 100 * 1024 * 1024  # WhatsApp documents go up to 100 MB
SEND_JOB = "message.send"
MARK_READ_JOB = "channel.mark_read"
MEDIA_JOB = "media.download"


def _retry_delay(runtime: Runtime, job: Job, error: ProviderError) -> float:
    if error.retry_after is not None:
        return error.retry_after
    return backoff_seconds(job.attempts, runtime.settings.job_backoff_base, runtime.settings.job_backoff_cap)


@handler(SEND_JOB)
async def send_message(runtime: Runtime, job: Job) -> None:
    db, ws, message_id = runtime.db, job.workspace_id, job.payload["message_id"]
    ctx = await db.read(outbound.load_send, runtime.cipher, ws, message_id)
    if ctx is None:
        return  # deleted meanwhile
    message = ctx.message
    if message.provider_message_id is not None or message.status != "pending":
        return  # sent (or failed) already: never twice
    state = outbound.send_state(message)
    if state.get("state") == "in_flight":
        waited = (utcnow() - datetime.fromisoformat(state["started_at"])).total_seconds()
        remaining = runtime.settings.send_confirm_seconds - waited
        if remaining > 0 and job.attempts < job.max_attempts:
            raise RetryLater(remaining, "waiting for the provider to confirm the previous attempt")
        log.warning("message %s: attempt %s was never confirmed; sending again", message_id, state.get("attempt"))
    if ctx.channel is None:
        await db.transaction(outbound.mark_failed, ws, message_id, {"code": "channel_not_configured", "title": "WhatsApp is not connected for this workspace"})
        return
    if ctx.contact is None:
        raise PermanentFailure("message without a contact")
    try:
        client = providers.client_for(runtime, ctx.channel)
        try:
            media_ref, provider_media_id = await _media_ref(runtime, client, ctx, state)
        except ProviderError as error:
            if error.kind == "uncertain":  # an upload that may have worked costs nothing: upload again
                error.kind = "retry"
            raise
        body = message_body(message, recipient_of(ctx.contact), reply_to=ctx.reply_to, media_ref=media_ref)
        if not await db.transaction(outbound.mark_in_flight, ws, message_id, job.attempts, provider_media_id):
            return
        result = await client.send(body)
    except ProviderError as error:
        await _send_failed(runtime, job, message_id, error)
        return
    await db.transaction(outbound.mark_sent, ws, message_id, result.provider_message_id)


async def _send_failed(runtime: Runtime, job: Job, message_id: str, error: ProviderError) -> None:
    db, ws = runtime.db, job.workspace_id
    last = job.attempts >= job.max_attempts
    if error.kind == "uncertain" and not last:
        log.warning("message %s: %s; waiting for the provider's confirmation", message_id, error)
        raise RetryLater(runtime.settings.send_confirm_seconds, str(error))  # stays in_flight
    if error.kind == "retry" and not last:
        await db.transaction(outbound.mark_not_sent, ws, message_id, error.as_error())
        raise RetryLater(_retry_delay(runtime, job, error), str(error))
    log.info("message %s failed: %s", message_id, error)
    await db.transaction(outbound.mark_failed, ws, message_id, error.as_error())


async def _media_ref(runtime: Runtime, client: Any, ctx: outbound.SendContext, state: dict[str, Any]) -> tuple[dict[str, str] | None, str | None]:
    """How the provider gets the file: our upload goes to the provider's media endpoint (Kabar
    is often not reachable from the internet, so a link to it would not work); a URL the staff
    gave is passed as ``link``."""
    media = ctx.message.media or {}
    if ctx.message.type not in ("image", "video", "audio", "document", "sticker"):
        return None, None
    if media.get("url"):
        return {"link": media["url"]}, None
    if state.get("provider_media_id"):
        return {"id": state["provider_media_id"]}, state["provider_media_id"]
    if ctx.upload is None:
        raise ProviderError("permanent", "media_missing", "The attached file no longer exists")
    path = Path(runtime.settings.data_dir) / ctx.upload.path
    try:
        content = await asyncio.to_thread(path.read_bytes)
    except OSError as exc:
        raise ProviderError("permanent", "media_missing", "The attached file no longer exists") from exc
    media_id = await client.upload_media(content, ctx.upload.mime_type, media.get("filename") or ctx.upload.filename)
    return {"id": media_id}, media_id


@handler(REACT_JOB)
async def send_reaction(runtime: Runtime, job: Job) -> None:
    """Send the business's reaction (payload ``{message_id, emoji, at}``; ``""`` removes it).
    Reacting is idempotent on WhatsApp's side, so any retry may simply send again."""
    db, ws, payload = runtime.db, job.workspace_id, job.payload
    ctx = await db.read(outbound.load_send, runtime.cipher, ws, payload["message_id"])
    if ctx is None or ctx.contact is None or ctx.message.provider_message_id is None:
        return  # the message is gone
    if ctx.channel is None:
        error = {"code": "channel_not_configured", "title": "WhatsApp is not connected for this workspace"}
        await db.transaction(outbound.mark_reaction, ws, payload, None, error)
        return
    body = reaction_body(recipient_of(ctx.contact), ctx.message.provider_message_id, payload["emoji"])
    try:
        result = await providers.client_for(runtime, ctx.channel).send(body)
    except ProviderError as error:
        if error.kind != "permanent" and job.attempts < job.max_attempts:
            raise RetryLater(_retry_delay(runtime, job, error), str(error)) from error
        log.info("reaction on %s failed: %s", payload["message_id"], error)
        await db.transaction(outbound.mark_reaction, ws, payload, None, error.as_error())
        return
    await db.transaction(outbound.mark_reaction, ws, payload, result.provider_message_id, None)


@handler(MARK_READ_JOB)
async def mark_read(runtime: Runtime, job: Job) -> None:
    """Tell WhatsApp the customer's messages were read (blue ticks). Payload: ``{conversation_id,
    typing?}``; with ``typing`` the customer also sees that staff are typing."""
    ws = job.workspace_id
    channel = await runtime.db.read(lambda conn: outbound.channels.load(conn, runtime.cipher, ws))
    wamid = await runtime.db.read(outbound.latest_inbound, ws, job.payload["conversation_id"])
    if channel is None or wamid is None:
        return
    try:
        await providers.client_for(runtime, channel).mark_read(wamid, typing=bool(job.payload.get("typing")))
    except ProviderError as error:
        if error.kind != "permanent" and job.attempts < job.max_attempts:
            raise RetryLater(_retry_delay(runtime, job, error), str(error)) from error
        log.info("mark-as-read for %s not delivered: %s", wamid, error)


def _is_meta_url(url: str) -> bool:
    host = (urlsplit(url).hostname or "").lower()
    return any(host == d or host.endswith("." + d) for d in ("fbsbx.com", "facebook.com", "fbcdn.net", "whatsapp.net"))


@handler(MEDIA_JOB)
async def download_media(runtime: Runtime, job: Job) -> None:
    """Fetch an inbound message's media through the provider and keep it under KABAR_DATA_DIR."""
    from kabar.auth.scope import system_scope
    from kabar.ingest import repository as ingest_repo
    from kabar.messages.service import clean_filename, upload_path, write_upload_file

    ws, message_id = job.workspace_id, job.payload["message_id"]

    def _load(conn: Any) -> tuple[Any, Any]:
        return ingest_repo.message_by_id(conn, system_scope(ws), message_id), outbound.channels.load(conn, runtime.cipher, ws)

    message, channel = await runtime.db.read(_load)
    if message is None or not message.media or message.media.get("id") or channel is None:
        return
    media = message.media
    try:
        client = providers.client_for(runtime, channel)
        url, mime_type = media.get("url"), media.get("mime_type")
        # Meta's own URLs (lookaside) need Meta's token and expire in minutes: resolve the media id
        # afresh through the API. Kapso's media_url is fetched as it is (with the Kapso key only
        # when it is on Kapso's own host, see ``providers.trusted_hosts``).
        if media.get("provider_media_id") and (channel.provider == "meta" or not url or _is_meta_url(url)):
            info = await client.media_info(media["provider_media_id"])  # a fresh 5-minute URL
            url, mime_type = info.get("url") or url, mime_type or info.get("mime_type")
        if not url:
            raise PermanentFailure("no media id or URL to download")
        upload_id = new_id()
        extension = mimetypes.guess_extension((mime_type or "").split(";")[0].strip()) or ""
        filename = clean_filename(media.get("filename") or f"{message.type}-{upload_id[-8:]}{extension}")
        relative = upload_path(ws, upload_id)
        with tempfile.TemporaryFile() as spool:
            async with client.download(url) as response:
                size = 0
                async for chunk in response.aiter_bytes(256 * 1024):
                    size += len(chunk)
                    if size > MAX_INBOUND_MEDIA:
                        raise PermanentFailure("media larger than 100 MB")
                    spool.write(chunk)
                mime_type = mime_type or response.headers.get("content-type", "application/octet-stream")
            spool.seek(0)
            size, sha256 = await asyncio.to_thread(write_upload_file, spool, Path(runtime.settings.data_dir) / relative, MAX_INBOUND_MEDIA)
    except PermanentFailure as failure:
        await runtime.db.transaction(outbound.mark_download_failed, ws, message_id, {"code": "media_unavailable", "title": str(failure)})
        raise
    except ProviderError as error:
        last = job.attempts >= job.max_attempts
        if (error.kind == "permanent" and error.http_status not in (401, 403, 404)) or last:
            await runtime.db.transaction(outbound.mark_download_failed, ws, message_id, error.as_error())
            raise PermanentFailure(str(error)) from error
        raise  # retried with backoff; a 404 re-resolves the URL next time
    upload = {"id": upload_id, "filename": filename, "mime_type": (mime_type or "application/octet-stream")[:200], "size": size, "sha256": sha256, "path": relative, "created_by": None}
    await runtime.db.transaction(outbound.attach_download, ws, message_id, upload)
