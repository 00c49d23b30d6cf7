"""HTTP plumbing shared by every domain's endpoints: caller resolution, errors, list pages."""

from __future__ import annotations

import base64
import logging
import re
from datetime import datetime
from typing import Annotated, Any

import msgspec
from litestar import Request, Response
from litestar.connection import ASGIConnection
from litestar.exceptions import HTTPException, NotAuthorizedException, ValidationException
from litestar.params import FromPath
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR
from sqlalchemy.exc import DBAPIError

from kabar.auth.scope import Principal, Scope
from kabar.auth.service import csrf_token_for
from kabar.db.engine import StorageUnavailable
from kabar.errors import Problem, bad_request, forbidden, invalid_fields, unauthorized, unavailable
from kabar.observability.middleware import workspace_id_var
from kabar.runtime import Runtime

log = logging.getLogger("kabar.http")

SESSION_COOKIE = "kabar_session"
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
PROBLEM_JSON = "application/problem+json"


def runtime_of(connection: ASGIConnection) -> Runtime:
    return connection.app.state.runtime


def credentials(connection: ASGIConnection) -> tuple[str, bool]:
    """The bearer token, or the session cookie; (token, came_from_cookie)."""
    # Straight from the ASGI headers: building Litestar's Headers costs more than the lookup.
    header = next((value.decode("latin-1") for name, value in connection.scope["headers"] if name == b"authorization"), None)
    if header:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise unauthorized("Use 'Authorization: Bearer <token>'")
        return token.strip(), False
    cookie = connection.cookies.get(SESSION_COOKIE)
    if cookie:
        return cookie, True
    # Browsers cannot set headers on WebSocket upgrades; allow ?token= there only.
    if connection.scope["type"] == "websocket" and connection.query_params.get("token"):
        return connection.query_params["token"], False
    raise unauthorized()


def check_csrf(connection: ASGIConnection, token: str) -> None:
    """Cookie-authenticated writes must echo the session's CSRF token (header or form field)."""
    if connection.scope["type"] != "http" or connection.method in SAFE_METHODS:
        return
    sent = connection.headers.get(CSRF_HEADER)
    expected = csrf_token_for(runtime_of(connection).settings, token)
    if not sent or not _eq(sent, expected):
        raise forbidden("Missing or wrong CSRF token (send the X-CSRF-Token header)")


def _eq(a: str, b: str) -> bool:
    import hmac

    return hmac.compare_digest(a.encode(), b.encode())


async def provide_principal(request: Request) -> Principal:
    token, via_cookie = credentials(request)
    principal, _ = await runtime_of(request).auth.resolve(token, workspace_id=None, via_cookie=via_cookie)
    if via_cookie:
        check_csrf(request, token)
    return principal


async def _resolve_scope(connection: ASGIConnection, ws: str) -> Scope:
    token, via_cookie = credentials(connection)
    scope = await runtime_of(connection).auth.scope(token, ws, via_cookie=via_cookie)
    if via_cookie:
        check_csrf(connection, token)
    workspace_id_var.set(scope.workspace_id)  # every log line of this request names its workspace
    return scope


async def provide_scope(request: Request, ws: FromPath[str]) -> Scope:
    """The caller inside workspace ``ws``: 404 when they are not in it."""
    cached = request.scope.get(_SCOPE_KEY)  # resolved by ``workspace_hook`` (HTTP routes)
    return cached if cached is not None else await _resolve_scope(request, ws)


_SCOPE_KEY = "kabar_scope"


def scope_of(request: Request) -> Scope:
    """The caller's Scope in the route's workspace, resolved by ``workspace_hook`` (for hot
    handlers that take ``request`` instead of ``ctx: Scope`` through dependency injection; they
    declare ``ws: FromPath[str]`` themselves, or the OpenAPI schema loses the path parameter)."""
    return request.scope[_SCOPE_KEY]  # type: ignore[typeddict-item]


async def workspace_hook(request: Request) -> None:
    """App-wide ``before_request`` hook: the caller of any ``/v1/workspaces/{ws}/…`` HTTP route
    must be in ``ws``.

    It runs before Litestar reads the body or the parameters, so an outsider gets 401/404 (never
    a 400/422 that reveals how the endpoint parses input), and a route that forgot
    ``provide_scope`` is still closed to other workspaces. The resolved Scope is kept for
    ``provide_scope`` and ``scope_of``. A hook rather than a guard because Litestar copies the
    route handler for every guard call, which costs more than the check. No router, controller
    or handler may set its own ``before_request``: it would replace this one
    (tests/security/test_isolation.py checks every route).
    """
    if request.scope["method"] == "OPTIONS" or "ws" not in request.scope["path_params"]:
        return
    if request.scope["path"].startswith("/v1/workspaces/"):
        request.scope[_SCOPE_KEY] = await _resolve_scope(request, request.scope["path_params"]["ws"])  # type: ignore[typeddict-unknown-key]


class EncodedJSON:
    """A 200 response whose JSON body is already encoded: two ASGI messages and nothing else, for
    the hot read paths (Litestar's Response objects cost more than the rest of such a request).
    ``KabarMiddleware`` adds the headers every response gets."""

    __slots__ = ("body",)

    def __init__(self, body: bytes):
        self.body = body

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(self.body))]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": self.body})


# -- list pages -------------------------------------------------------------------------------


def encode_cursor(*values: Any) -> str:
    return base64.urlsafe_b64encode(msgspec.json.encode(list(values))).decode().rstrip("=")


_INT64 = 2**63 - 1
# A cursor's values: instants in RFC 3339 with a zone, ids and sequence numbers that fit a column.
_CURSOR_KINDS: dict[type, Any] = {
    str: str,
    int: Annotated[int, msgspec.Meta(ge=-_INT64, le=_INT64)],
    datetime: Annotated[datetime, msgspec.Meta(tz=True)],
}
_CURSOR_VALUE = str | _CURSOR_KINDS[int]


def decode_cursor(cursor: str | None, shape: int | tuple[type, ...]) -> list[Any] | None:
    """The values of a cursor ``encode_cursor`` wrote: ``shape`` is their types (``str``, ``int``,
    ``datetime``: decoded to these) or just their count (each a string or an integer). Anything
    else (not base64 JSON, another length, a value of another type, an instant without a zone, a
    number no column holds) is a 400: never a 500, never read as something it was not."""
    if not cursor:
        return None
    kinds = tuple(_CURSOR_KINDS[kind] for kind in shape) if isinstance(shape, tuple) else (_CURSOR_VALUE,) * shape
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        return list(msgspec.json.decode(raw, type=tuple[kinds]))  # type: ignore[valid-type]
    except (ValueError, msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise bad_request("cursor is not valid") from exc


def clamp_limit(limit: int | None, default: int = 50, maximum: int = 200) -> int:
    if limit is None:
        return default
    if limit < 1 or limit > maximum:
        from kabar.errors import invalid

        raise invalid("limit", f"must be between 1 and {maximum}")
    return limit


# -- errors -----------------------------------------------------------------------------------

_FIELD_IN_MESSAGE = re.compile(r"field `([^`]+)`")


def problem_response(problem: Problem) -> Response:
    return Response(
        content=problem.to_dict(), status_code=problem.status, media_type=PROBLEM_JSON, headers=problem.headers
    )


def handle_problem(_: Request, exc: Problem) -> Response:
    return problem_response(exc)


def handle_validation(_: Request, exc: ValidationException) -> Response:
    """Litestar/msgspec validation → 422 with field errors; undecodable bodies → 400."""
    extra = exc.extra if isinstance(exc.extra, list) else []
    errors = []
    for item in extra:
        if not isinstance(item, dict):
            continue
        message = str(item.get("message", "is invalid"))
        key = str(item.get("key") or "")
        if key == "data" and message == "'data'":
            # Litestar's KeyError for a handler that takes a body when none was sent.
            return problem_response(bad_request("A JSON request body is required"))
        if key in ("", "data"):
            match = _FIELD_IN_MESSAGE.search(message)
            key = match.group(1) if match else "body"
        errors.append({"field": key, "message": message})
    if not errors:
        return problem_response(bad_request(exc.detail or "Malformed request body"))
    return problem_response(invalid_fields(errors))


_TITLES = {
    400: "Malformed request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    413: "Payload too large",
    415: "Unsupported media type",
    429: "Too many requests",
    500: "Internal error",
    503: "Service unavailable",
}


def handle_http_exception(_: Request, exc: HTTPException) -> Response:
    status = exc.status_code
    slugs = {
        400: "bad-request",
        401: "unauthorized",
        403: "forbidden",
        404: "not-found",
        405: "method-not-allowed",
        413: "payload-too-large",
        415: "unsupported-media-type",
        429: "rate-limited",
    }
    # Titles are fixed per type (RFC 9457); what went wrong this time goes in ``detail``.
    title = _TITLES.get(status, "Error")
    problem = Problem(status, slugs.get(status, "error"), title, exc.detail or title, headers=dict(exc.headers or {}))
    if isinstance(exc, NotAuthorizedException):
        problem.headers.setdefault("WWW-Authenticate", "Bearer")
    return problem_response(problem)


def handle_unavailable(_: Request, exc: StorageUnavailable) -> Response:
    log.warning("storage unavailable: %s", exc)
    return problem_response(unavailable("The database is unavailable; nothing was written. Retry shortly."))


def handle_database_error(request: Request, exc: DBAPIError) -> Response:
    """A value the database cannot store (PostgreSQL refuses NUL characters in text and integers
    beyond their column's range): bad input, rolled back with everything else in its transaction."""
    sqlstate = str(getattr(exc.orig, "sqlstate", None) or "")
    if sqlstate.startswith("22") or "invalid input for query argument" in str(exc.orig):
        return problem_response(invalid_fields([{"field": "body", "message": "contains a value that cannot be stored (a NUL character or a number out of range)"}]))
    return handle_unexpected(request, exc)


def handle_too_deep(_: Request, exc: RecursionError) -> Response:
    """msgspec refuses JSON nested deeper than the interpreter's recursion limit: bad input, not a 500."""
    return problem_response(bad_request("The JSON body is nested too deeply"))


def handle_not_utf8(_: Request, exc: UnicodeDecodeError) -> Response:
    """Invalid UTF-8 inside a JSON string escapes Litestar's decode-error mapping: bad input, not a 500."""
    return problem_response(bad_request("The request body is not valid UTF-8"))


def handle_unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    problem = Problem(HTTP_500_INTERNAL_SERVER_ERROR, "internal-error", "Internal error", "Something went wrong on our side")
    return problem_response(problem)


EXCEPTION_HANDLERS: dict[Any, Any] = {
    Problem: handle_problem,
    ValidationException: handle_validation,
    StorageUnavailable: handle_unavailable,
    DBAPIError: handle_database_error,
    HTTPException: handle_http_exception,
    RecursionError: handle_too_deep,
    UnicodeDecodeError: handle_not_utf8,
    Exception: handle_unexpected,
}
