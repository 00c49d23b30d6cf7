"""HTTP for contacts: CRUD, search, by-phone context, notes, CSV import/export, merge."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar

from litestar import Controller, Request, Response, delete, get, patch, post
from litestar.datastructures import UploadFile
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath, FromQuery, JSONBody, MultipartBody, QueryParameter
from litestar.response import Stream
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED, HTTP_204_NO_CONTENT
from sqlalchemy.exc import IntegrityError

from kabar.auth.scope import Scope
from kabar.contacts import csv_io, service
from kabar.contacts import schemas as s
from kabar.contacts.repository import ContactFilters
from kabar.errors import invalid
from kabar.http import EncodedJSON, clamp_limit, decode_cursor, encode_cursor, provide_scope, runtime_of, scope_of
from kabar.idempotency import fingerprint, run_idempotent

T = TypeVar("T")
Many = Annotated[list[str] | None, QueryParameter(required=False)]
JSON = "application/json"
CSV = "text/csv; charset=utf-8"
IMPORT_MAX_BYTES = 16 * 1024 * 1024


def _after(cursor: str | None) -> tuple[datetime, str] | None:
    values = decode_cursor(cursor, (datetime, str))
    return (values[0], values[1]) if values is not None else None


def _next(keyset: tuple[datetime, str] | None) -> str | None:
    return encode_cursor(keyset[0].isoformat(), keyset[1]) if keyset else None


async def provide_filters(
    q: FromQuery[str | None] = None,
    lead_status: Many = None,
    tag: Many = None,
    assignee_id: FromQuery[str | None] = None,
) -> ContactFilters:
    """The list filters (``lead_status`` and ``tag`` may repeat: any of them matches)."""
    if q is not None and len(q) > 200:
        raise invalid("q", "at most 200 characters")
    return ContactFilters(
        q=q.strip() if q and q.strip() else None,
        lead_statuses=list(lead_status or []),
        tags=list(tag or []),
        assignee_id=assignee_id or None,
    )


async def _retry_on_race(run: Callable[[], Awaitable[T]]) -> T:
    """A concurrent create of the same phone loses on the unique constraint; run it again so it
    answers 409 from the committed row instead of failing."""
    try:
        return await run()
    except IntegrityError:
        return await run()


async def _create(request: Request, ctx: Scope, route: str, fn: Callable[..., Any], *args: Any) -> Response:
    """A create with ``Idempotency-Key`` support; ``route`` names what is created where (the
    same key and body for another contact's note is another request)."""
    db = runtime_of(request).db
    raw = await request.body()
    status, body = await _retry_on_race(
        lambda: run_idempotent(
            db,
            ctx,
            key=request.headers.get("idempotency-key"),
            route=route,
            request_hash=fingerprint(route.encode() + b"|" + raw),
            status_code=HTTP_201_CREATED,
            fn=fn,
            args=(ctx, *args),
        )
    )
    return Response(body, status_code=status)


def _attachment(name: str) -> dict[str, str]:
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    return {"Content-Disposition": f'attachment; filename="{name}-{stamp}.csv"'}


class ContactsController(Controller):
    path = "/v1/workspaces/{ws:str}/contacts"
    tags = ["contacts"]
    dependencies = {"ctx": Provide(provide_scope), "filters": Provide(provide_filters)}

    @get("/")
    async def list_contacts(
        self,
        request: Request,
        ctx: NamedDependency[Scope],
        filters: NamedDependency[ContactFilters],
        cursor: FromQuery[str | None] = None,
        limit: FromQuery[int | None] = None,
    ) -> dict[str, Any]:
        data, keyset = await runtime_of(request).db.read(service.list_contacts, ctx, filters, _after(cursor), clamp_limit(limit))
        return {"data": data, "next_cursor": _next(keyset)}

    @post("/", status_code=HTTP_201_CREATED)
    async def create(self, request: Request, ctx: NamedDependency[Scope], data: JSONBody[s.ContactCreate]) -> Response:
        return await _create(request, ctx, "contacts.create", service.create_contact, data)

    @get("/by-phone")
    async def by_phone(self, request: Request, ws: FromPath[str], phone: FromQuery[str | None] = None) -> EncodedJSON:
        """The bots' hot path, kept lean: the caller's Scope straight from the workspace hook (no
        dependency injection; ``ws`` is declared for the OpenAPI schema), the body encoded once to
        bytes, sent as is."""
        body = await service.phone_context_json(runtime_of(request).db, scope_of(request), phone)
        return EncodedJSON(body)

    @get("/export.csv", media_type=CSV)
    async def export(self, request: Request, ctx: NamedDependency[Scope], filters: NamedDependency[ContactFilters]) -> Stream:
        chunks = await service.export_csv(runtime_of(request).db, ctx, filters)
        return Stream(chunks, media_type=CSV, headers=_attachment("contacts"))

    @post("/import", status_code=HTTP_200_OK, request_max_body_size=IMPORT_MAX_BYTES)
    async def import_csv(
        self,
        request: Request,
        ctx: NamedDependency[Scope],
        data: MultipartBody[dict[str, Any]],
        dry_run: FromQuery[bool] = False,
    ) -> s.ImportResult:
        """Preview (``dry_run=true``) or apply a contacts CSV (multipart field ``file``)."""
        ctx.require("contacts.import")
        upload = data.get("file")
        if not isinstance(upload, UploadFile):
            raise invalid("file", "attach the CSV as the multipart field 'file'")
        rows = csv_io.read(await upload.read())
        db = runtime_of(request).db
        if dry_run:
            return await db.read(service.preview_import, ctx, rows)
        return await db.transaction(service.commit_import, ctx, rows)

    @post("/merge", status_code=HTTP_200_OK)
    async def merge(self, request: Request, ctx: NamedDependency[Scope], data: JSONBody[s.MergeRequest]) -> s.ContactOut:
        return await runtime_of(request).db.transaction(service.merge_contacts, ctx, data)

    @get("/{contact_id:str}")
    async def read(self, request: Request, ctx: NamedDependency[Scope], contact_id: FromPath[str]) -> s.ContactOut:
        return await runtime_of(request).db.read(service.get_contact, ctx, contact_id)

    @patch("/{contact_id:str}")
    async def update(
        self, request: Request, ctx: NamedDependency[Scope], contact_id: FromPath[str], data: JSONBody[s.ContactUpdate]
    ) -> s.ContactOut:
        db = runtime_of(request).db
        return await _retry_on_race(lambda: db.transaction(service.update_contact, ctx, contact_id, data))

    @delete("/{contact_id:str}", status_code=HTTP_204_NO_CONTENT)
    async def remove(self, request: Request, ctx: NamedDependency[Scope], contact_id: FromPath[str]) -> None:
        await runtime_of(request).db.transaction(service.delete_contact, ctx, contact_id)

    # -- notes and tasks ----------------------------------------------------------------------

    @get("/{contact_id:str}/notes")
    async def list_notes(
        self,
        request: Request,
        ctx: NamedDependency[Scope],
        contact_id: FromPath[str],
        cursor: FromQuery[str | None] = None,
        limit: FromQuery[int | None] = None,
    ) -> dict[str, Any]:
        data, keyset = await runtime_of(request).db.read(service.list_notes, ctx, contact_id, _after(cursor), clamp_limit(limit))
        return {"data": data, "next_cursor": _next(keyset)}

    @post("/{contact_id:str}/notes", status_code=HTTP_201_CREATED)
    async def create_note(
        self, request: Request, ctx: NamedDependency[Scope], contact_id: FromPath[str], data: JSONBody[s.NoteCreate]
    ) -> Response:
        return await _create(request, ctx, f"contacts.notes.create:{contact_id}", service.create_note, contact_id, data)

    @get("/{contact_id:str}/notes/export.csv", media_type=CSV)
    async def export_notes(self, request: Request, ctx: NamedDependency[Scope], contact_id: FromPath[str]) -> Stream:
        chunks = await service.export_notes_csv(runtime_of(request).db, ctx, contact_id)
        return Stream(chunks, media_type=CSV, headers=_attachment("notes"))

    @patch("/{contact_id:str}/notes/{note_id:str}")
    async def update_note(
        self,
        request: Request,
        ctx: NamedDependency[Scope],
        contact_id: FromPath[str],
        note_id: FromPath[str],
        data: JSONBody[s.NoteUpdate],
    ) -> s.NoteOut:
        return await runtime_of(request).db.transaction(service.update_note, ctx, contact_id, note_id, data)

    @delete("/{contact_id:str}/notes/{note_id:str}", status_code=HTTP_204_NO_CONTENT)
    async def remove_note(
        self, request: Request, ctx: NamedDependency[Scope], contact_id: FromPath[str], note_id: FromPath[str]
    ) -> None:
        await runtime_of(request).db.transaction(service.delete_note, ctx, contact_id, note_id)


@get("/v1/workspaces/{ws:str}/notes/export.csv", media_type=CSV, tags=["contacts"], dependencies={"ctx": Provide(provide_scope)})
async def export_workspace_notes(request: Request, ctx: NamedDependency[Scope]) -> Stream:
    """Every note and task of the workspace (of the contacts the caller may see), newest first."""
    chunks = await service.export_notes_csv(runtime_of(request).db, ctx, None)
    return Stream(chunks, media_type=CSV, headers=_attachment("notes"))


@get("/v1/contacts/import-template.csv", media_type=CSV, tags=["contacts"])
async def import_template() -> Response:
    return Response(
        csv_io.template(),
        media_type=CSV,
        headers={"Content-Disposition": 'attachment; filename="kabar-contacts-template.csv"'},
    )


ROUTES = [ContactsController, export_workspace_notes, import_template]
