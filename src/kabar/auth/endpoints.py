"""HTTP for sign-in: login, logout, the current user."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, get, post
from litestar.datastructures import Cookie
from litestar.di import NamedDependency, Provide
from litestar.params import JSONBody
from litestar.status_codes import HTTP_201_CREATED, HTTP_202_ACCEPTED, HTTP_204_NO_CONTENT

from kabar.auth import repository as repo
from kabar.auth import service
from kabar.auth.idp import InvalidToken
from kabar.auth.schemas import IdentityLink, LoginIn, PasswordChange, PasswordResetConfirm, PasswordResetRequest, VerifyEmail
from kabar.auth.scope import Principal
from kabar.errors import forbidden, invalid, not_found
from kabar.http import SESSION_COOKIE, credentials, provide_principal, runtime_of
from kabar.ratelimit import client_address
from kabar.workspaces.service import workspaces_of_user

principal_dep = {"principal": Provide(provide_principal)}


@post("/v1/auth/login", tags=["auth"], status_code=200)
async def login(request: Request, data: JSONBody[LoginIn]) -> Response[dict[str, Any]]:
    runtime = runtime_of(request)
    # Password guessing: per account and per client address, shared by every process via Redis.
    await runtime.limiter.hit("login", data.email.strip().lower())
    await runtime.limiter.hit("login_address", client_address(request, runtime.settings))
    result = await runtime.db.transaction(
        service.login, runtime.settings, email=data.email, password=data.password, user_agent=request.headers.get("user-agent")
    )
    csrf = service.csrf_token_for(runtime.settings, result["token"])
    body = {"token": result["token"], "user": result["user"], "csrf_token": csrf}
    secure = runtime.settings.is_production
    max_age = runtime.settings.session_ttl_hours * 3600
    return Response(
        body,
        cookies=[
            Cookie(key=SESSION_COOKIE, value=result["token"], httponly=True, samesite="lax", secure=secure, max_age=max_age, path="/"),
            # Readable by the page's JavaScript, which echoes it in X-CSRF-Token.
            Cookie(key="kabar_csrf", value=csrf, httponly=False, samesite="lax", secure=secure, max_age=max_age, path="/"),
        ],
    )


@post("/v1/auth/logout", tags=["auth"], status_code=HTTP_204_NO_CONTENT, dependencies=principal_dep)
async def logout(request: Request, principal: NamedDependency[Principal]) -> Response[None]:
    await runtime_of(request).db.transaction(service.logout, principal)
    response: Response[None] = Response(None, status_code=HTTP_204_NO_CONTENT)
    response.delete_cookie(SESSION_COOKIE, path="/")
    response.delete_cookie("kabar_csrf", path="/")
    return response


@get("/v1/me", tags=["auth"], dependencies=principal_dep)
async def me(request: Request, principal: NamedDependency[Principal]) -> dict[str, Any]:
    runtime = runtime_of(request)
    if principal.user_id is None:
        # An API key: it has no user, only its workspace.
        def _key_ws(conn):  # noqa: ANN001, ANN202
            from sqlalchemy import select

            from kabar.db import tables as t

            return conn.execute(select(t.workspaces).where(t.workspaces.c.id == principal.api_key_workspace_id)).first()

        row = await runtime.db.read(_key_ws)
        return {
            "user": None,
            "api_key_id": principal.api_key_id,
            "workspaces": [{"id": row.id, "name": row.name, "slug": row.slug, "role": "api"}] if row else [],
        }

    def _me(conn):  # noqa: ANN001, ANN202
        user = repo.user_by_id(conn, principal.user_id)
        if user is None:
            raise not_found("User")
        return service.user_json(user), workspaces_of_user(conn, user.id)

    user, workspaces = await runtime.db.read(_me)
    out: dict[str, Any] = {
        "user": user,
        "workspaces": [{"id": w.id, "name": w.name, "slug": w.slug, "role": w.role} for w in workspaces],
    }
    token, via_cookie = credentials(request)
    if principal.kind == "session":
        out["csrf_token"] = service.csrf_token_for(runtime.settings, token)
    return out


@post("/v1/auth/password", tags=["auth"], status_code=HTTP_204_NO_CONTENT, dependencies=principal_dep)
async def change_password(request: Request, principal: NamedDependency[Principal], data: JSONBody[PasswordChange]) -> None:
    if principal.user_id is None:
        raise forbidden("API keys have no password")
    await runtime_of(request).db.transaction(
        service.change_password,
        principal.user_id,
        current=data.current_password,
        new=data.new_password,
        keep_session_id=principal.session_id,
    )


def _user_id(principal: Principal) -> str:
    if principal.user_id is None:
        raise forbidden("API keys have no account; sign in as a person")
    return principal.user_id


@post("/v1/auth/password-reset", tags=["auth"], status_code=HTTP_202_ACCEPTED)
async def request_password_reset(request: Request, data: JSONBody[PasswordResetRequest]) -> dict[str, str]:
    """Mail a reset link if the address has an account. Always 202: the answer says nothing
    about which addresses have accounts."""
    runtime = runtime_of(request)
    # Mail bombing and probing: the login buckets (per address asked for, per client).
    await runtime.limiter.hit("login", data.email.strip().lower())
    await runtime.limiter.hit("login_address", client_address(request, runtime.settings))
    await runtime.db.transaction(service.request_password_reset, data.email)
    return {"detail": "If an account uses this address, a link to reset its password is on its way."}


@post("/v1/auth/password-reset/confirm", tags=["auth"], status_code=HTTP_204_NO_CONTENT)
async def confirm_password_reset(request: Request, data: JSONBody[PasswordResetConfirm]) -> None:
    runtime = runtime_of(request)
    await runtime.limiter.hit("login_address", client_address(request, runtime.settings))
    await runtime.db.transaction(service.confirm_password_reset, data.token, data.password)


@post("/v1/auth/verify-email", tags=["auth"], status_code=HTTP_204_NO_CONTENT, dependencies=principal_dep)
async def verify_email(request: Request, principal: NamedDependency[Principal], data: JSONBody[VerifyEmail]) -> None:
    await runtime_of(request).db.transaction(service.verify_email, _user_id(principal), data.token)


@post("/v1/auth/verify-email/resend", tags=["auth"], status_code=HTTP_202_ACCEPTED, dependencies=principal_dep)
async def resend_verification(request: Request, principal: NamedDependency[Principal]) -> dict[str, str]:
    runtime = runtime_of(request)
    user_id = _user_id(principal)
    await runtime.limiter.hit("login", f"resend:{user_id}")
    await runtime.db.transaction(service.resend_verification, user_id)
    return {"detail": "A new confirmation link is on its way."}


@get("/v1/me/identities", tags=["auth"], dependencies=principal_dep)
async def list_identities(request: Request, principal: NamedDependency[Principal]) -> dict[str, Any]:
    user_id = _user_id(principal)
    return {"data": await runtime_of(request).db.read(service.identities_json, user_id), "next_cursor": None}


@post("/v1/me/identities", tags=["auth"], status_code=HTTP_201_CREATED, dependencies=principal_dep)
async def link_identity(request: Request, principal: NamedDependency[Principal], data: JSONBody[IdentityLink]) -> dict[str, Any]:
    """Link an identity-provider sign-in (its JWT in ``token``) to the signed-in account."""
    runtime = runtime_of(request)
    user_id = _user_id(principal)
    try:
        claims = await runtime.auth.idp.verify(data.token)
    except InvalidToken as exc:
        raise invalid("token", f"is not a valid sign-in of the identity provider: {exc}") from exc
    issuer, subject = service.identity_of(claims)
    return await runtime.db.transaction(service.link_identity_to, user_id, issuer, subject)


ROUTES = [
    login,
    logout,
    me,
    change_password,
    request_password_reset,
    confirm_password_reset,
    verify_email,
    resend_verification,
    list_identities,
    link_identity,
]
