"""HTTP for the inbox: conversation list, read, change, mark read."""

from __future__ import annotations

from typing import Annotated

from litestar import Controller, Request, get, patch, post
from litestar.di import NamedDependency, Provide
from litestar.openapi import ResponseSpec
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter

from kabar.auth.scope import Scope
from kabar.contacts.schemas import LEAD_STATUSES
from kabar.conversations import service
from kabar.conversations.repository import ListFilters
from kabar.conversations.schemas import (
    CONVERSATION_STATUSES,
    ConversationOut,
    ConversationPage,
    ConversationPatch,
)
from kabar.errors import invalid_fields
from kabar.http import EncodedJSON, clamp_limit, provide_scope, runtime_of, scope_of

Many = Annotated[list[str] | None, QueryParameter(required=False)]


def _filters(
    unread: bool | None,
    status: list[str] | None,
    lead_status: list[str] | None,
    tag: list[str] | None,
    assignee_id: str | None,
    q: str | None,
) -> ListFilters:
    errors = [
        {"field": name, "message": f"{value!r} is not one of {', '.join(allowed)}"}
        for name, values, allowed in (("status", status, CONVERSATION_STATUSES), ("lead_status", lead_status, LEAD_STATUSES))
        for value in values or ()
        if value not in allowed
    ]
    if q is not None and len(q) > 200:
        errors.append({"field": "q", "message": "must be at most 200 characters"})
    if errors:
        raise invalid_fields(errors)
    return ListFilters(
        unread=bool(unread),
        statuses=tuple(dict.fromkeys(status or ())),
        lead_statuses=tuple(dict.fromkeys(lead_status or ())),
        tags=tuple(dict.fromkeys(tag.strip() for tag in tag or () if tag.strip())),
        assignee_id=assignee_id or None,
        q=q.strip() if q and q.strip() else None,
    )


class ConversationsController(Controller):
    path = "/v1/workspaces/{ws:str}/conversations"
    tags = ["conversations"]
    dependencies = {"ctx": Provide(provide_scope)}

    @get("/", responses={200: ResponseSpec(data_container=ConversationPage, description="A page of the inbox")})
    async def list_conversations(
        self,
        request: Request,
        ws: FromPath[str],  # declared for the OpenAPI schema; the scope comes from the workspace hook
        unread: FromQuery[bool | None] = None,
        status: Many = None,
        lead_status: Many = None,
        tag: Many = None,
        assignee_id: FromQuery[str | None] = None,
        q: FromQuery[str | None] = None,
        cursor: FromQuery[str | None] = None,
        limit: FromQuery[int | None] = None,
    ) -> EncodedJSON:
        """The inbox's hot path: the caller's Scope straight from the workspace hook (no
        dependency injection), the page encoded once to bytes (a ``ConversationPage``)."""
        filters = _filters(unread, status, lead_status, tag, assignee_id, q)
        body = await service.list_conversations_json(
            runtime_of(request).db, scope_of(request), filters, limit=clamp_limit(limit), cursor=cursor
        )
        return EncodedJSON(body)

    @get("/{conversation_id:str}")
    async def read(self, request: Request, ctx: NamedDependency[Scope], conversation_id: FromPath[str]) -> ConversationOut:
        return await runtime_of(request).db.read(service.get_conversation, ctx, conversation_id)

    @patch("/{conversation_id:str}")
    async def update(
        self, request: Request, ctx: NamedDependency[Scope], conversation_id: FromPath[str], data: JSONBody[ConversationPatch]
    ) -> ConversationOut:
        return await runtime_of(request).db.transaction(service.update_conversation, ctx, conversation_id, data)

    @post("/{conversation_id:str}/read", status_code=200)
    async def mark_read(self, request: Request, ctx: NamedDependency[Scope], conversation_id: FromPath[str]) -> ConversationOut:
        return await runtime_of(request).db.transaction(service.mark_read, ctx, conversation_id)


ROUTES = [ConversationsController]
