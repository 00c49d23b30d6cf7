"""HTTP for workspaces, members, invitations and API keys."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, delete, get, patch, post
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath, JSONBody
from litestar.status_codes import HTTP_201_CREATED, HTTP_204_NO_CONTENT

from kabar.auth.scope import Principal, Scope
from kabar.errors import forbidden
from kabar.http import SESSION_COOKIE, provide_principal, provide_scope, runtime_of
from kabar.workspaces import schemas as s
from kabar.workspaces import service


def _user_id(principal: Principal) -> str:
    if principal.user_id is None:
        raise forbidden("API keys cannot create workspaces")
    return principal.user_id


class WorkspacesController(Controller):
    path = "/v1/workspaces"
    tags = ["workspaces"]

    @post("/", status_code=HTTP_201_CREATED, dependencies={"principal": Provide(provide_principal)})
    async def create(self, request: Request, principal: NamedDependency[Principal], data: JSONBody[s.WorkspaceCreate]) -> s.Workspace:
        user_id = _user_id(principal)
        return await runtime_of(request).db.transaction(service.create_workspace, owner_id=user_id, name=data.name, slug=data.slug)

    @get("/{ws:str}", dependencies={"ctx": Provide(provide_scope)})
    async def read(self, request: Request, ctx: NamedDependency[Scope]) -> s.Workspace:
        return await runtime_of(request).db.read(service.get_workspace, ctx)

    @patch("/{ws:str}", dependencies={"ctx": Provide(provide_scope)})
    async def update(self, request: Request, ctx: NamedDependency[Scope], data: JSONBody[s.WorkspaceUpdate]) -> s.Workspace:
        return await runtime_of(request).db.transaction(service.update_workspace, ctx, data)

    @delete("/{ws:str}", status_code=HTTP_204_NO_CONTENT, dependencies={"ctx": Provide(provide_scope)})
    async def remove(self, request: Request, ctx: NamedDependency[Scope]) -> None:
        await runtime_of(request).db.transaction(service.delete_workspace, ctx)


class MembersController(Controller):
    path = "/v1/workspaces/{ws:str}"
    tags = ["workspaces"]
    dependencies = {"ctx": Provide(provide_scope)}

    @get("/members")
    async def list_members(self, request: Request, ctx: NamedDependency[Scope]) -> dict[str, Any]:
        return {"data": await runtime_of(request).db.read(service.list_members, ctx), "next_cursor": None}

    @post("/members", status_code=HTTP_201_CREATED)
    async def add_member(self, request: Request, ctx: NamedDependency[Scope], data: JSONBody[s.InvitationCreate]) -> s.Invitation:
        """Adding a person is inviting them: this creates (and mails) an invitation they accept."""
        return await runtime_of(request).db.transaction(service.create_invitation, ctx, data)

    @patch("/members/{user_id:str}")
    async def update_member(self, request: Request, ctx: NamedDependency[Scope], user_id: FromPath[str], data: JSONBody[s.MemberUpdate]) -> s.Member:
        return await runtime_of(request).db.transaction(service.update_member, ctx, user_id, data)

    @delete("/members/{user_id:str}", status_code=HTTP_204_NO_CONTENT)
    async def remove_member(self, request: Request, ctx: NamedDependency[Scope], user_id: FromPath[str]) -> None:
        await runtime_of(request).db.transaction(service.remove_member, ctx, user_id)

    @get("/invitations")
    async def list_invitations(self, request: Request, ctx: NamedDependency[Scope]) -> dict[str, Any]:
        return {"data": await runtime_of(request).db.read(service.list_invitations, ctx), "next_cursor": None}

    @post("/invitations", status_code=HTTP_201_CREATED)
    async def invite(self, request: Request, ctx: NamedDependency[Scope], data: JSONBody[s.InvitationCreate]) -> s.Invitation:
        return await runtime_of(request).db.transaction(service.create_invitation, ctx, data)

    @delete("/invitations/{invitation_id:str}", status_code=HTTP_204_NO_CONTENT)
    async def revoke_invitation(self, request: Request, ctx: NamedDependency[Scope], invitation_id: FromPath[str]) -> None:
        await runtime_of(request).db.transaction(service.revoke_invitation, ctx, invitation_id)

    @get("/api-keys")
    async def list_api_keys(self, request: Request, ctx: NamedDependency[Scope]) -> dict[str, Any]:
        return {"data": await runtime_of(request).db.read(service.list_api_keys, ctx), "next_cursor": None}

    @post("/api-keys", status_code=HTTP_201_CREATED)
    async def create_api_key(self, request: Request, ctx: NamedDependency[Scope], data: JSONBody[s.ApiKeyCreate]) -> s.ApiKey:
        return await runtime_of(request).db.transaction(service.create_api_key, ctx, data)

    @delete("/api-keys/{key_id:str}", status_code=HTTP_204_NO_CONTENT)
    async def revoke_api_key(self, request: Request, ctx: NamedDependency[Scope], key_id: FromPath[str]) -> None:
        await runtime_of(request).db.transaction(service.revoke_api_key, ctx, key_id)


async def _caller_id(request: Request) -> str | None:
    """The signed-in person, if any credentials came with the request (bad ones are a 401)."""
    has_header = any(name == b"authorization" for name, _ in request.scope["headers"])
    if not has_header and not request.cookies.get(SESSION_COOKIE):
        return None
    return (await provide_principal(request)).user_id


@post("/v1/invitations/accept", tags=["workspaces"], status_code=200)
async def accept_invitation(request: Request, data: JSONBody[s.InvitationAccept]) -> dict[str, Any]:
    runtime = runtime_of(request)
    return await runtime.db.transaction(
        service.accept_invitation, runtime.settings, data, await _caller_id(request), request.headers.get("user-agent")
    )


ROUTES = [WorkspacesController, MembersController, accept_invitation]
