"""Small holes (issue 13, item 10), generated over the route table where the rule is general.

- A malformed cursor (``cursor``, ``before``, ``since`` on any list route) is a 400/422 problem,
  never a 500 and never silently read as something else.
- A timestamp without a zone is refused wherever a route takes one: in query parameters (by name
  or type) and in request bodies (every ``datetime`` of every body schema must demand a zone).
- ``/schema`` loads nothing from another origin and carries the CSP.
- The login page's ``next`` only takes same-origin paths.
"""

from __future__ import annotations

import base64
import json
import re
from typing import Any
from urllib.parse import quote

import msgspec
import pytest
from litestar.routes import HTTPRoute

from kabar.observability.middleware import CSP
from tests.foundation.test_tenancy import fill, populate, tenant_routes
from tests.helpers import assert_problem, make_tenant

CURSOR_PARAMS = {"cursor", "before", "since", "after"}
TIME_PARAMS = {"from", "to", "since", "until", "start", "end", "before", "after", "due_before", "due_after", "send_at"}
NAIVE = "2026-01-01T10:00:00"


def _b64(value: Any) -> str:
    raw = value if isinstance(value, bytes) else json.dumps(value).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


# Values that are not a cursor Kabar wrote (Kabar's cursors are ``[seq]`` or ``[instant…, id]``
# with zoned instants): not base64, not JSON, the wrong shape, values of the wrong types, an
# instant without a zone, numbers no column holds.
GARBAGE_CURSORS = [
    "!!!",
    "a" * 5000,
    _b64(b"not json"),
    _b64({"a": 1}),
    _b64([]),
    _b64([None]),
    _b64([1, 2]),
    _b64(["x", "y"]),
    _b64([None, None]),
    _b64([[], {}]),
    _b64([True, False]),
    _b64([NAIVE, "x"]),
    _b64(["x", "y", "z"]),
    _b64([NAIVE, NAIVE, "x"]),
    _b64([10**30]),
    _b64([1e308, "x"]),
    "-1.5",
]
# Well-formed integers are not malformed for an integer parameter (the event feed's ``since``).
_INTEGER = re.compile(r"-?\d+")


def _query_params(handler: Any) -> dict[str, Any]:
    """The query parameters of a route handler: their names on the wire and annotations."""
    path_params = set(handler.paths and re.findall(r"\{(\w+)", next(iter(handler.paths))))
    out = {}
    for name, field in handler.parsed_fn_signature.parameters.items():
        if name in {"self", "request", "data", "socket", "ctx", "scope"} | path_params or name in handler.resolve_dependencies():
            continue
        kwarg = field.kwarg_definition
        if kwarg is not None and (getattr(kwarg, "header", None) or getattr(kwarg, "cookie", None)):
            continue
        wire = getattr(kwarg, "query", None) or getattr(kwarg, "name", None) or name
        out[wire] = field.annotation
    return out


def _get_routes(app: Any) -> list[tuple[Any, Any]]:
    """(tenant route, GET handler) for every workspace route answering GET."""
    by_path = {route.path: route for route in app.routes if isinstance(route, HTTPRoute)}
    found = []
    for route in tenant_routes(app):
        if "GET" in route.methods and not route.websocket:
            handler = next(h for h in by_path[route.path].route_handlers if "GET" in h.http_methods)
            found.append((route, handler))
    return found


@pytest.fixture
async def own_rows(client):  # noqa: ANN001, ANN201
    """A workspace with one row in every tenant table, and its owner."""
    tenant = await make_tenant(client)
    rows = await client.runtime.db.transaction(populate, tenant.ws, tenant.owner.user_id)
    return tenant, rows


async def test_every_list_route_refuses_a_malformed_cursor(client, own_rows) -> None:  # noqa: ANN001
    tenant, rows = own_rows
    failures, checked = [], 0
    for route, handler in _get_routes(client.app):
        params = [name for name in _query_params(handler) if name in CURSOR_PARAMS]
        if not params or route.path.endswith("/stream"):
            continue
        path, _ = fill(route, tenant.ws, rows)
        annotations = _query_params(handler)
        for param in params:
            for garbage in GARBAGE_CURSORS:
                if "int" in str(annotations[param]) and _INTEGER.fullmatch(garbage):
                    continue
                checked += 1
                response = await client.get(path, params={param: garbage}, headers=tenant.owner.headers)
                if response.status_code not in (400, 422) or "problem+json" not in response.headers.get("content-type", ""):
                    failures.append(f"GET {route.path}?{param}={garbage[:60]} → {response.status_code} {response.text[:120]}")
    assert checked >= 5 * len(GARBAGE_CURSORS), checked
    assert not failures, f"{len(failures)} of {checked}:\n" + "\n".join(failures)


async def test_every_timestamp_query_parameter_needs_a_zone(client, own_rows) -> None:  # noqa: ANN001
    tenant, rows = own_rows
    failures, checked = [], 0
    for route, handler in _get_routes(client.app):
        params = [
            name
            for name, annotation in _query_params(handler).items()
            if name in TIME_PARAMS or "datetime" in str(annotation) or "date" in str(annotation)
        ]
        path, _ = fill(route, tenant.ws, rows)
        for param in params:
            checked += 1
            response = await client.get(path, params={param: NAIVE}, headers=tenant.owner.headers)
            if not 400 <= response.status_code < 500:
                failures.append(f"GET {route.path}?{param}={NAIVE} → {response.status_code} {response.text[:120]}")
    assert checked >= 3, checked
    assert not failures, "\n".join(failures)


def _naive_datetimes(info: msgspec.inspect.Type, path: str, seen: set[int]) -> list[str]:
    """Paths of the datetimes in a body schema: ``"!path"`` for each that accepts a value without a
    zone, ``path`` for each that demands one."""
    if id(info) in seen:
        return []
    seen.add(id(info))
    if isinstance(info, msgspec.inspect.DateTimeType):
        return [path] if info.tz is True else ["!" + path]
    if isinstance(info, msgspec.inspect.Metadata):
        return _naive_datetimes(info.type, path, seen)
    if isinstance(info, msgspec.inspect.UnionType):
        return [p for member in info.types for p in _naive_datetimes(member, path, seen)]
    if isinstance(info, msgspec.inspect.StructType | msgspec.inspect.DataclassType | msgspec.inspect.TypedDictType):
        return [p for field in info.fields for p in _naive_datetimes(field.type, f"{path}.{field.encode_name}", seen)]
    if isinstance(info, msgspec.inspect.ListType | msgspec.inspect.SetType | msgspec.inspect.FrozenSetType | msgspec.inspect.VarTupleType):
        return _naive_datetimes(info.item_type, f"{path}[]", seen)
    if isinstance(info, msgspec.inspect.DictType):
        return _naive_datetimes(info.value_type, f"{path}{{}}", seen)
    return []


def test_every_timestamp_in_a_request_body_needs_a_zone(client) -> None:  # noqa: ANN001
    """Every ``datetime`` any route accepts in its body is declared with ``msgspec.Meta(tz=True)``
    (``AwareDateTime``), so ``"2026-01-01T10:00:00"`` is a 422 naming the field."""
    naive, aware, bodies = [], [], 0
    for route in client.app.routes:
        if not isinstance(route, HTTPRoute):
            continue
        for handler in route.route_handlers:
            field = handler.parsed_fn_signature.parameters.get("data")
            if field is None:
                continue
            annotation = field.annotation
            bodies += 1
            try:
                info = msgspec.inspect.type_info(annotation)
            except (TypeError, ValueError):  # raw bytes, multipart forms
                continue
            for path in _naive_datetimes(info, "$", set()):
                (naive if path.startswith("!") else aware).append(f"{sorted(handler.http_methods)} {route.path}: {path}")
    assert bodies >= 20 and len(aware) >= 2, (bodies, aware)  # the walk does reach the due_at, snoozed_until… fields
    assert not naive, "body timestamps accepted without a zone:\n" + "\n".join(naive)


async def test_a_naive_snooze_or_due_time_is_refused_and_changes_nothing(client, own_rows) -> None:  # noqa: ANN001
    tenant, rows = own_rows
    conversation = f"{tenant.base}/conversations/{rows['conversations']['id']}"
    before = (await client.get(conversation, headers=tenant.owner.headers)).json()
    response = await client.patch(conversation, json={"status": "snoozed", "snoozed_until": NAIVE}, headers=tenant.owner.headers)
    body = assert_problem(response, 422)
    assert "snoozed_until" in json.dumps(body)
    assert (await client.get(conversation, headers=tenant.owner.headers)).json() == before

    notes = f"{tenant.base}/contacts/{rows['contacts']['id']}/notes"
    listed = (await client.get(notes, headers=tenant.owner.headers)).json()["data"]
    response = await client.post(notes, json={"content": "call back", "due_at": NAIVE}, headers=tenant.owner.headers)
    assert "due_at" in json.dumps(assert_problem(response, 422))
    assert (await client.get(notes, headers=tenant.owner.headers)).json()["data"] == listed


# -- /schema -------------------------------------------------------------------------------------

_EXTERNAL = re.compile(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", re.I)


async def test_schema_page_loads_only_our_own_files_under_the_csp(client) -> None:  # noqa: ANN001
    response = await client.get("/schema")
    assert response.status_code == 200
    assert response.headers["content-security-policy"] == CSP
    html = response.text
    assert not _EXTERNAL.search(html), html
    assert "<script>" not in html.replace(" ", ""), "inline scripts do not run under the CSP"
    assets = re.findall(r"""(?:src|href)="([^"]+)""", html)
    assert any(a.endswith(".js") or ".js?" in a for a in assets), assets
    for asset in assets:
        fetched = await client.get(asset)
        assert fetched.status_code == 200, asset
    spec = await client.get("/schema/openapi.json")
    assert spec.status_code == 200 and spec.json()["paths"]


# -- login next ----------------------------------------------------------------------------------

EVIL_NEXT = [
    "/%09/evil.example",
    "/\t/evil.example",
    "/\n/evil.example",
    "//evil.example",
    "/\\evil.example",
    "\\/evil.example",
    "https://evil.example/",
    "http:evil.example",
    "javascript:alert(document.domain)",
    " /\t/evil.example",
    "/%5Cevil.example",
    "",
]


async def test_login_next_only_goes_to_paths_of_this_site(client, tenant) -> None:  # noqa: ANN001
    """Signed out, the form carries the target; signed in, the page redirects to it."""
    login = await client.post("/v1/auth/login", json={"email": tenant.owner.email, "password": "correct-horse-battery"})
    assert login.status_code == 200
    signed_in = {"Cookie": f"kabar_session={login.json()['token']}"}
    for value in EVIL_NEXT:
        query = "/login?next=" + (value if value.startswith("/%") else quote(value, safe=""))
        page = await client.get(query)
        assert page.status_code == 200
        form_target = re.search(r'data-next="([^"]*)"', page.text).group(1)
        assert form_target == "/", (value, form_target)
        redirect = await client.get(query, headers=signed_in, follow_redirects=False)
        assert redirect.status_code == 303 and redirect.headers["location"] == "/", (value, redirect.headers.get("location"))
    good = await client.get("/login?next=" + quote("/w/x/inbox?c=1", safe=""), headers=signed_in, follow_redirects=False)
    assert good.headers["location"] == "/w/x/inbox?c=1"


def test_cursor_helpers_agree_with_the_route_table(client) -> None:  # noqa: ANN001
    """The generated tests above find the list routes: at least the inbox, contacts, notes,
    messages and the event feed take a cursor-like parameter."""
    names = {route.path.rsplit("/", 1)[-1] for route, handler in _get_routes(client.app) if CURSOR_PARAMS & set(_query_params(handler))}
    assert {"contacts", "conversations", "notes", "messages", "events"} <= names, names
