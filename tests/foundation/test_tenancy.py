"""Cross-tenant isolation, generated from the app's route table.

Workspace B gets one row in every tenant table. Then every caller of workspace A (session bearer
token, session cookie with CSRF, IdP JWT, API key) calls every method of every route that takes a
``{ws}`` path parameter:

1. with B's workspace id (and B's ids for the other parameters): 404, exactly as for a workspace
   that does not exist;
2. with A's workspace id but B's ids for the other parameters: never a 2xx, never a 5xx.

Routes added later by any domain are covered without touching this file. A new path parameter is
matched to its table by the path segment before it (``/contacts/{x}`` → ``contacts``).
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import date, datetime, time as dtime
from typing import Any

import jwt
import pytest
from litestar.routes import HTTPRoute, WebSocketRoute
from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    DateTime,
    Float,
    Integer,
    LargeBinary,
    Numeric,
    SmallInteger,
    String,
    Table,
    Text,
    Time,
    insert,
    select,
)

from kabar.db import tables as t
from kabar.events import AUDIENCE, Audience, known_types
from kabar.db.types import UTCDateTime, utcnow
from kabar.ids import new_id
from tests.helpers import Caller, Tenant, make_tenant

PARAM = re.compile(r"\{(\w+)(?::(\w+))?\}")
# Path segments whose table name is not the segment itself.
SEGMENT_TABLES = {"webhooks": "webhook_endpoints", "notes": "contact_notes", "channel": "channels"}
# Methods Litestar answers itself (CORS preflight, HEAD of static files): no handler, no data.
SKIP_METHODS = {"OPTIONS", "HEAD"}


# -- one row in every tenant table of workspace B ----------------------------------------------


def _in_list(table: Table, column: str) -> list[str]:
    """Allowed values from a ``column IN ('a', 'b')`` check constraint, if there is one."""
    for constraint in table.constraints:
        if isinstance(constraint, CheckConstraint):
            text = str(constraint.sqltext)
            match = re.search(rf"\b{column}\s+IN\s*\(([^)]*)\)", text, re.IGNORECASE)
            if match:
                return re.findall(r"'([^']*)'", match.group(1))
    return []


def _value(table: Table, column: Any, rows: dict[str, dict[str, Any]], workspace_id: str, user_id: str) -> Any:
    if column.name == "workspace_id":
        return workspace_id
    for fk in column.foreign_keys:
        target = fk.column.table.name
        if target == "users":
            return user_id
        if target == "workspaces":
            return workspace_id
        if target in rows:
            return rows[target][fk.column.name]
        return None
    if column.primary_key and isinstance(column.type, String):
        return new_id()
    if column.nullable or column.server_default is not None:
        return None
    allowed = _in_list(table, column.name)
    if allowed:
        return allowed[0]
    kind = column.type
    if isinstance(kind, UTCDateTime | DateTime):
        return utcnow()
    if isinstance(kind, Boolean):
        return False
    if isinstance(kind, Integer | BigInteger | SmallInteger | Numeric):
        return 1
    if isinstance(kind, Float):
        return 1.0
    if isinstance(kind, JSON):
        return {}
    if isinstance(kind, LargeBinary):
        return b"x"
    if isinstance(kind, Date):
        return date.today()
    if isinstance(kind, Time):
        return dtime(9, 0)
    if isinstance(kind, String | Text):
        text = ("+62811" + str(uuid.uuid4().int)[:9]) if "phone" in column.name else new_id()
        return text[: kind.length] if getattr(kind, "length", None) else text
    return None


def populate(uow: Any, workspace_id: str, user_id: str) -> dict[str, dict[str, Any]]:
    """Insert one row per tenant table (in foreign-key order); returns the rows by table name.

    A table whose constraints this generic filler cannot satisfy is skipped (its savepoint rolls
    back); the routes on it are still called, with ids that exist nowhere.
    """
    rows: dict[str, dict[str, Any]] = {}
    for table in t.metadata.sorted_tables:
        if "workspace_id" not in table.c or table.name in ("members", "idempotency_keys"):
            continue
        existing = uow.conn.execute(select(table).where(table.c.workspace_id == workspace_id).limit(1)).first()
        if existing is not None:
            rows[table.name] = dict(existing._mapping)
            continue
        row = {c.name: _value(table, c, rows, workspace_id, user_id) for c in table.c}
        row = {k: v for k, v in row.items() if v is not None}
        savepoint = uow.conn.begin_nested()
        try:
            uow.conn.execute(insert(table).values(**row))
            savepoint.commit()
        except Exception:  # noqa: BLE001 - see docstring
            savepoint.rollback()
            continue
        rows[table.name] = row
    return rows


# -- callers and requests ------------------------------------------------------------------------


@dataclass
class Route:
    path: str  # Litestar template, e.g. /v1/workspaces/{ws:str}/contacts/{contact_id:str}
    methods: list[str]
    websocket: bool = False

    def params(self) -> list[tuple[str, str, str | None]]:
        """(name, type, segment before it) for each path parameter."""
        out = []
        segments = self.path.split("/")
        for i, segment in enumerate(segments):
            match = PARAM.fullmatch(segment)
            if match:
                before = segments[i - 1] if i > 0 and not PARAM.fullmatch(segments[i - 1]) else None
                out.append((match.group(1), match.group(2) or "str", before))
        return out


def tenant_routes(app: Any) -> list[Route]:
    routes = []
    for route in app.routes:
        if not PARAM.search(route.path) or "ws" not in [p[0] for p in Route(route.path, []).params()]:
            continue
        if isinstance(route, WebSocketRoute):
            routes.append(Route(route.path, ["WEBSOCKET"], websocket=True))
        elif isinstance(route, HTTPRoute):
            routes.append(Route(route.path, sorted(set(route.methods) - SKIP_METHODS)))
    return routes


def resolve_param(name: str, kind: str, before: str | None, rows: dict[str, dict[str, Any]]) -> tuple[Any, bool]:
    """B's id for a path parameter, and whether it names a real row of B."""
    if before:
        segment = before.replace("-", "_")
        candidates = [SEGMENT_TABLES.get(before)] + [n for n in rows if n == segment or n.endswith("_" + segment)]
        for table_name in candidates:
            if table_name in rows:
                row = rows[table_name]
                column = name if name in row and name != "workspace_id" else "id"
                if column in row:
                    return row[column], True
    if kind == "int":
        return 1, False
    if kind == "uuid":
        return str(uuid.uuid4()), False
    return new_id(), False


def fill(route: Route, ws: str, rows: dict[str, dict[str, Any]]) -> tuple[str, bool]:
    """The concrete path with workspace ``ws`` and B's ids elsewhere; and whether any id is B's."""
    path, any_real = route.path, False
    for name, kind, before in route.params():
        value, real = (ws, False) if name == "ws" else resolve_param(name, kind, before, rows)
        any_real = any_real or real
        path = re.sub(r"\{" + name + r"(?::\w+)?\}", str(value), path, count=1)
    return path, any_real


async def call(client: Any, method: str, path: str, headers: dict[str, str]) -> int:
    kwargs: dict[str, Any] = {"headers": headers}
    if method in ("POST", "PUT", "PATCH"):
        kwargs["json"] = {}
    response = await asyncio.wait_for(client.request(method, path, **kwargs), timeout=20)
    return response.status_code


def _websocket_scope(path: str, headers: dict[str, str]) -> dict[str, Any]:
    return {
        "type": "websocket",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "scheme": "ws",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"testserver.local")] + [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "client": ("127.0.0.1", 40000),
        "server": ("testserver.local", 80),
        "subprotocols": [],
        "state": {},
        "extensions": {"websocket.http.response": {}},
    }


@asynccontextmanager
async def subscribed_socket(app: Any, path: str, headers: dict[str, str]) -> AsyncIterator[asyncio.Queue[dict[str, Any]]]:
    """A WebSocket on the raw ASGI app that has sent ``subscribe`` from seq 0; yields the queue of
    the server's ASGI messages, and disconnects at the end."""
    incoming: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    outgoing: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    await incoming.put({"type": "websocket.connect"})
    await incoming.put({"type": "websocket.receive", "text": json.dumps({"op": "subscribe", "since": 0})})
    task = asyncio.create_task(app(_websocket_scope(path, headers), incoming.get, outgoing.put))
    try:
        yield outgoing
    finally:
        await incoming.put({"type": "websocket.disconnect", "code": 1000})
        try:
            await asyncio.wait_for(task, timeout=5)
        except (TimeoutError, Exception):  # noqa: BLE001 - the app's own handling of a vanished peer
            task.cancel()


async def websocket_outcome(app: Any, path: str, headers: dict[str, str]) -> tuple[str, Any]:
    """Open a WebSocket on the raw ASGI app. Returns ("denied", status|close code) when the server
    refused (before accepting, or by an error frame and a close), or ("open", first data frame)."""
    async with subscribed_socket(app, path, headers) as outgoing:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            message = await asyncio.wait_for(outgoing.get(), timeout=deadline - time.monotonic())
            kind = message["type"]
            if kind == "websocket.http.response.start":
                return ("denied", message["status"])
            if kind == "websocket.close":
                return ("denied", message.get("code"))
            if kind == "websocket.send":
                data = json.loads(message.get("text") or message.get("bytes") or "{}")
                if data.get("op") != "error":
                    return ("open", data)
        return ("open", None)


async def callers_of(client: Any, tenant: Tenant) -> dict[str, dict[str, str]]:
    """Every kind of credential, all belonging to workspace A's owner or workspace A."""
    response = await client.post("/v1/auth/login", json={"email": tenant.owner.email, "password": "correct-horse-battery"})
    assert response.status_code == 200, response.text
    session = response.json()
    api_key = await tenant.api_key()
    now = int(time.time())
    settings = client.runtime.settings
    idp_token = jwt.encode(
        {
            "sub": str(uuid.uuid4()),
            "email": tenant.owner.email,
            "email_verified": True,  # an IdP sign-in is linked to the account by a verified email only
            "aud": settings.jwt_audience,
            "iat": now,
            "exp": now + 600,
        },
        settings.jwt_secret,
        algorithm="HS256",
    )
    return {
        "session bearer": tenant.owner.headers,
        "session cookie": {"Cookie": f"kabar_session={session['token']}", "X-CSRF-Token": session["csrf_token"]},
        "idp jwt": Caller(token=idp_token).headers,
        "api key": api_key.headers,
    }


@pytest.fixture
async def two_tenants(client: Any) -> tuple[Tenant, Tenant, dict[str, dict[str, Any]]]:
    a, b = await make_tenant(client), await make_tenant(client)
    await b.add_user("member")
    await b.api_key()
    invite = await client.post(f"{b.base}/invitations", json={"email": f"{new_id()}@example.test"}, headers=b.owner.headers)
    assert invite.status_code == 201, invite.text
    rows = await client.runtime.db.transaction(populate, b.ws, b.owner.user_id)

    def _members(conn: Any) -> dict[str, Any]:
        row = conn.execute(select(t.members).where(t.members.c.workspace_id == b.ws, t.members.c.role == "member")).first()
        return dict(row._mapping)

    rows["members"] = await client.runtime.db.read(_members)
    return a, b, rows


def test_populate_reaches_the_core_tables():
    """The generic filler must at least cover what the foundation and the inbox are made of."""
    names = {table.name for table in t.metadata.sorted_tables if "workspace_id" in table.c}
    assert {"contacts", "conversations", "messages", "api_keys", "invitations", "events"} <= names


async def test_every_workspace_route_hides_other_workspaces(client, two_tenants):
    a, b, rows = two_tenants
    assert {"contacts", "conversations", "messages", "api_keys", "invitations"} <= set(rows), sorted(rows)
    routes = tenant_routes(client.app)
    assert len(routes) >= 8, [r.path for r in routes]
    callers = await callers_of(client, a)
    failures: list[str] = []
    checked = 0

    for route in routes:
        path_b, _ = fill(route, b.ws, rows)
        path_a, names_b_rows = fill(route, a.ws, rows)
        is_api = route.path.startswith("/v1/")
        for caller_name, headers in callers.items():
            for method in route.methods:
                checked += 1
                if route.websocket:
                    state, detail = await websocket_outcome(client.app, path_b, headers)
                    if state != "denied" or detail not in (404, 4404, 1008):
                        failures.append(f"{caller_name} WEBSOCKET {path_b}: {state} {detail}")
                    continue
                status = await call(client, method, path_b, headers)
                if (is_api and status != 404) or not (300 <= status < 500):
                    failures.append(f"{caller_name} {method} {route.path} with B's workspace: {status}")
                if names_b_rows:
                    status = await call(client, method, path_a, headers)
                    if not (300 <= status < 500):
                        failures.append(f"{caller_name} {method} {route.path} with A's workspace and B's ids: {status}")

    assert not failures, f"{len(failures)} of {checked} cross-tenant calls leaked or failed:\n" + "\n".join(failures)

    # And B's data is untouched by all of it.
    def _still_there(conn: Any) -> list[str]:
        missing = []
        for name, row in rows.items():
            table = t.metadata.tables[name]
            key = "id" if "id" in table.c else "user_id"
            if key in row and conn.execute(select(table).where(table.c[key] == row[key])).first() is None:
                missing.append(name)
        return missing

    assert await client.runtime.db.read(_still_there) == []
    assert (await client.get(b.base, headers=b.owner.headers)).status_code == 200


async def test_ids_of_another_workspace_inside_your_own_are_404(client, two_tenants):
    """The foundation's own id routes, spelled out (the matrix above only forbids 2xx/5xx)."""
    a, b, rows = two_tenants
    h = a.owner.headers
    invitations = (await client.get(f"{b.base}/invitations", headers=b.owner.headers)).json()["data"]
    checks = [
        ("PATCH", f"{a.base}/members/{b.owner.user_id}", {"role": "member"}),
        ("DELETE", f"{a.base}/members/{b.owner.user_id}", None),
        ("DELETE", f"{a.base}/api-keys/{rows['api_keys']['id']}", None),
        ("DELETE", f"{a.base}/invitations/{rows['invitations']['id']}", None),
    ]
    for method, path, body in checks:
        response = await client.request(method, path, headers=h, json=body) if body else await client.request(method, path, headers=h)
        assert response.status_code == 404, (method, path, response.text)
    # B's key still works, B's invitations are as they were (the member's accepted, the other pending).
    listed = (await client.get(f"{b.base}/api-keys", headers=b.owner.headers)).json()["data"]
    assert all(k["revoked_at"] is None for k in listed)
    listed = (await client.get(f"{b.base}/invitations", headers=b.owner.headers)).json()["data"]
    assert listed == invitations and "pending" in {i["status"] for i in listed}


async def test_no_workspace_table_is_read_without_scope_in_me(client, two_tenants):
    """``/v1/me`` of A's owner lists A only; B's API key lists B only."""
    a, b, _ = two_tenants
    me = (await client.get("/v1/me", headers=a.owner.headers)).json()
    assert [w["id"] for w in me["workspaces"]] == [a.ws]
    key_b = await b.api_key()
    me = (await client.get("/v1/me", headers=key_b.headers)).json()
    assert [w["id"] for w in me["workspaces"]] == [b.ws]


# -- the event feed ------------------------------------------------------------------------------


async def websocket_replay(app: Any, path: str, headers: dict[str, str], done: Any) -> list[dict[str, Any]]:
    """Subscribe from seq 0 on the raw ASGI app; every frame until ``done(frames)`` (or a refusal)."""
    frames: list[dict[str, Any]] = []
    async with subscribed_socket(app, path, headers) as outgoing:
        while True:
            message = await asyncio.wait_for(outgoing.get(), timeout=10)
            if message["type"] in ("websocket.close", "websocket.http.response.start"):
                return frames
            if message["type"] != "websocket.send":
                continue
            frames.append(json.loads(message.get("text") or message.get("bytes") or "{}"))
            if frames[-1].get("op") == "error" or done(frames):
                return frames


async def test_no_event_of_another_workspace_reaches_any_feed(client, two_tenants):
    """Both logs get one event of every type Kabar writes (``kabar.events.known_types()``, so a new
    type is covered without editing this test), marked with their workspace. Every credential of A
    reads A's feed (polling and WebSocket) from the start: none of B's, and A's own that every
    reader may see. B's owner sees all of B's."""
    a, b, rows = two_tenants
    marker, own_marker = f"b-only-{uuid.uuid4().hex}", f"a-{uuid.uuid4().hex}"
    types = sorted(known_types())
    contact_id = rows["contacts"]["id"]
    a_contact = await client.post(f"{a.base}/contacts", json={"name": "A", "phone": "+628111000222"}, headers=a.owner.headers)
    assert a_contact.status_code == 201, a_contact.text

    def _emit(uow: Any) -> None:
        for ws, mark, owner, contact in ((b.ws, marker, b.owner, contact_id), (a.ws, own_marker, a.owner, a_contact.json()["id"])):
            for kind in types:
                data = {"id": new_id(), "marker": mark, "created_by": owner.user_id, "contact_id": contact}
                uow.emit(ws, kind, data, contact_id=contact if AUDIENCE.get(kind) is Audience.CONTACT else None)

    await client.runtime.db.transaction(_emit)
    for_everyone = {kind for kind in types if AUDIENCE.get(kind) is Audience.EVERYONE}

    def own_types(events: list[dict[str, Any]]) -> set[str]:
        """A's marked events (emitted after B's) among ``events``: the end of the replay."""
        return {e["type"] for e in events if isinstance(e.get("data"), dict) and e["data"].get("marker") == own_marker}

    async def feed(ws: str, headers: dict[str, str]) -> list[dict[str, Any]]:
        events, since = [], 0
        while True:
            response = await client.get(f"/v1/workspaces/{ws}/events", params={"since": since, "limit": 1000}, headers=headers)
            assert response.status_code == 200, response.text
            page = response.json()
            events += page["data"]
            if not page["has_more"]:
                return events
            since = page["next_since"]

    seen_by_b = {e["type"] for e in await feed(b.ws, b.owner.headers) if e["data"].get("marker") == marker}
    assert seen_by_b == set(types), set(types) - seen_by_b

    leaks = []
    for caller_name, headers in (await callers_of(client, a)).items():
        polled = await feed(a.ws, headers)
        frames = await websocket_replay(
            client.app, f"/v1/workspaces/{a.ws}/realtime", headers, lambda got: for_everyone <= own_types(got)
        )
        for how, received in (("polling", polled), ("socket", [f for f in frames if f.get("op") == "event"])):
            own = own_types(received)
            assert for_everyone <= own, f"{caller_name} {how}: A's own events missing: {for_everyone - own}"
            leaks += [f"{caller_name} {how}: {e['type']}" for e in received if marker in json.dumps(e)]
    assert not leaks, leaks
