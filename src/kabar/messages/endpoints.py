"""HTTP for a conversation's messages (history, send) and for media uploads."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from litestar import Controller, Request, Response, get, post
from litestar.datastructures import UploadFile
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath, FromQuery, JSONBody
from litestar.response import File

from kabar.auth.scope import Scope
from kabar.config import MAX_UPLOAD_BYTES
from kabar.errors import invalid, too_large
from kabar.http import clamp_limit, provide_scope, runtime_of
from kabar.idempotency import fingerprint, run_idempotent
from kabar.ids import new_id
from kabar.messages import service
from kabar.messages.schemas import MessageCreate, MessageOut, MessagePage, ReactionIn, UploadOut

# The largest file plus a little multipart framing. (Route limits are fixed when the app is
# built; the file itself is held to KABAR_MAX_UPLOAD_BYTES, which may only be lower.)
UPLOAD_BODY_LIMIT = MAX_UPLOAD_BYTES + 256 * 1024
# Types a browser may show inline; anything else (HTML, SVG…) is only ever downloaded.
_INLINE_TYPES = frozenset(
    {"image/jpeg", "image/png", "image/gif", "image/webp", "audio/ogg", "audio/mpeg", "audio/aac", "audio/mp4", "video/mp4", "video/3gpp", "application/pdf"}
)


class MessagesController(Controller):
    path = "/v1/workspaces/{ws:str}/conversations/{conversation_id:str}/messages"
    tags = ["messages"]
    dependencies = {"ctx": Provide(provide_scope)}

    @get("/")
    async def history(
        self,
        request: Request,
        ctx: NamedDependency[Scope],
        conversation_id: FromPath[str],
        before: FromQuery[str | None] = None,
        cursor: FromQuery[str | None] = None,  # the same as `before`, under the list convention's name
        limit: FromQuery[int | None] = None,
    ) -> MessagePage:
        return await runtime_of(request).db.read(
            service.list_messages, ctx, conversation_id, before=before or cursor, limit=clamp_limit(limit)
        )

    @post("/", status_code=202)
    async def send(
        self, request: Request, ctx: NamedDependency[Scope], conversation_id: FromPath[str], data: JSONBody[MessageCreate]
    ) -> Response[Any]:
        await runtime_of(request).limiter.hit("send", ctx.workspace_id)  # per workspace, across processes
        status, body = await run_idempotent(
            runtime_of(request).db,
            ctx,
            key=request.headers.get("idempotency-key"),
            route=f"POST conversations/{conversation_id}/messages",
            request_hash=fingerprint(await request.body()),
            status_code=202,
            fn=service.send_message,
            args=(ctx, conversation_id, data),
        )
        return Response(body, status_code=status)

    @post("/{message_id:str}/reactions", status_code=202)
    async def react(
        self,
        request: Request,
        ctx: NamedDependency[Scope],
        conversation_id: FromPath[str],
        message_id: FromPath[str],
        data: JSONBody[ReactionIn],
    ) -> MessageOut:
        """Set the business's reaction (``{"emoji": "👍"}``) or remove it (``{"emoji": ""}``);
        WhatsApp gets it from a job. Returns the message with its ``reactions``."""
        await runtime_of(request).limiter.hit("send", ctx.workspace_id)
        return await runtime_of(request).db.transaction(service.react, ctx, conversation_id, message_id, data.emoji)


@post("/v1/workspaces/{ws:str}/conversations/{conversation_id:str}/typing", status_code=204,
      dependencies={"ctx": Provide(provide_scope)}, tags=["messages"])
async def typing(request: Request, ctx: NamedDependency[Scope], conversation_id: FromPath[str]) -> None:
    """Show the customer that staff are typing (the inbox calls this at most every ~20 s while
    someone types; WhatsApp's indicator lasts about 25 s)."""
    await runtime_of(request).limiter.hit("send", ctx.workspace_id)
    await runtime_of(request).db.transaction(service.show_typing, ctx, conversation_id)


class UploadsController(Controller):
    path = "/v1/workspaces/{ws:str}/uploads"
    tags = ["messages"]
    dependencies = {"ctx": Provide(provide_scope)}

    @post("/", status_code=201, request_max_body_size=UPLOAD_BODY_LIMIT)
    async def upload(self, request: Request, ctx: NamedDependency[Scope]) -> UploadOut:
        ctx.require("messages.send")
        runtime = runtime_of(request)
        form = await request.form()
        part = form.get("file")
        if not isinstance(part, UploadFile):
            raise invalid("file", "send the file as the multipart field 'file'")
        upload_id = new_id()
        max_bytes = runtime.settings.max_upload_bytes
        destination = Path(runtime.settings.data_dir) / service.upload_path(ctx.workspace_id, upload_id)
        try:
            size, sha256 = await asyncio.to_thread(service.write_upload_file, part.file, destination, max_bytes)
        except service.UploadTooLarge:
            raise too_large(max_bytes) from None
        finally:
            await part.close()
        filename = service.clean_filename(part.filename)
        try:
            return await runtime.db.transaction(
                service.record_upload,
                ctx,
                upload_id=upload_id,
                filename=filename,
                mime_type=service.guess_mime(filename, part.content_type),
                size=size,
                sha256=sha256,
            )
        except BaseException:
            destination.unlink(missing_ok=True)  # no row, no file
            raise

    @get("/{upload_id:str}")
    async def download(self, request: Request, ctx: NamedDependency[Scope], upload_id: FromPath[str]) -> File:
        runtime = runtime_of(request)
        row = await runtime.db.read(service.get_upload, ctx, upload_id)
        return File(
            path=Path(runtime.settings.data_dir) / row.path,
            filename=row.filename,
            media_type=row.mime_type,
            content_disposition_type="inline" if row.mime_type in _INLINE_TYPES else "attachment",
            headers={"Cache-Control": "private, max-age=86400", "ETag": f'"{row.sha256}"'},
        )


ROUTES = [MessagesController, typing, UploadsController]
