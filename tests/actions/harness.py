"""``verify_action`` in the spirit of Zulip's (``zerver/tests/test_events.py``): snapshot what each
viewer's page holds, run one action, apply the events it emitted to the snapshot as the web client
would, read everything fresh and compare. Any difference is a page left stale by that action.

Scenarios (scenarios.py) are async generators: the code before ``yield`` prepares (it is not
checked), the code after it is the action. Each is registered against the route it exercises, so
``test_every_route_has_a_scenario`` fails for a new state-changing endpoint without one.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from tests.actions.model import Model, diff, read_model, reload_hinted
from tests.conversations.seed import Seeded, seed_conversation
from tests.helpers import Caller, Tenant

WRITE_METHODS = ("POST", "PATCH", "PUT", "DELETE")
# State-changing routes outside the workspace API that change what a workspace's pages show.
OUTSIDE_ROUTES = ("/webhooks/kapso", "/webhooks/meta", "/v1/invitations/accept")
_TYPED = re.compile(r"{(\w+):\w+}")


@dataclass
class Scenario:
    name: str
    route: str  # "METHOD /v1/workspaces/{ws}/…" as in the route table, without type markers
    run: Callable[[World], AsyncIterator[None]]
    needs_jobs: bool = False


SCENARIOS: dict[str, Scenario] = {}


def action(route: str, name: str | None = None, *, needs_jobs: bool = False) -> Callable[[Any], Any]:
    """Register a scenario for ``route`` ("METHOD /path" relative to the workspace, or absolute for
    webhooks); ``name`` tells apart several scenarios of one route."""
    method, path = route.split(" ", 1)
    full = f"{method} {path if path in OUTSIDE_ROUTES else '/v1/workspaces/{ws}' + path.rstrip('/')}"

    def register(fn: Any) -> Any:
        key = name or fn.__name__
        assert key not in SCENARIOS, f"two scenarios named {key}"
        SCENARIOS[key] = Scenario(key, full, fn, needs_jobs)
        return fn

    return register


def app_routes(app: Any) -> set[str]:
    """Every state-changing route of the app's route table, as "METHOD /path" without ``:type``."""
    found = set()
    for route in app.routes:
        for method in getattr(route, "methods", ()):
            if method in WRITE_METHODS:
                found.add(method + " " + _TYPED.sub(r"{\1}", route.path))
    return found


@dataclass
class World:
    """One workspace as a small team uses it: an owner, two members, four customers (assigned to
    member one, unassigned, assigned to the owner, assigned to member two) each with a
    conversation and messages, and a note on the first."""

    tenant: Tenant
    m1: Caller
    m2: Caller
    a: Seeded
    b: Seeded
    c: Seeded
    d: Seeded
    note_id: str
    scratch: dict[str, Any] = field(default_factory=dict)

    @property
    def client(self) -> Any:
        return self.tenant.client

    @property
    def owner(self) -> Caller:
        return self.tenant.owner

    async def call(self, method: str, path: str, *, who: Caller | None = None, expect: int | tuple[int, ...] = (200, 201, 202, 204), **kw: Any) -> Any:
        """A request to the workspace API (``path`` relative to it) that must succeed; its JSON or None."""
        url = self.tenant.base + path
        response = await self.client.request(method, url, headers=(who or self.owner).headers, **kw)
        allowed = (expect,) if isinstance(expect, int) else expect
        assert response.status_code in allowed, f"{method} {url}: {response.status_code} {response.text}"
        return response.json() if response.content and response.headers.get("content-type", "").startswith("application/json") else None


async def make_world(tenant: Tenant) -> World:
    client = tenant.client
    m1, m2 = await tenant.add_user("member"), await tenant.add_user("member")

    def phone() -> str:
        return "+6281" + str(secrets.randbelow(10**9)).zfill(9)

    a = await seed_conversation(client, tenant.ws, name="Ani", phone=phone(), assignee_id=m1.user_id, messages=2, unread=1)
    b = await seed_conversation(client, tenant.ws, name="Budi", phone=phone(), messages=1)
    c = await seed_conversation(client, tenant.ws, name="Citra", phone=phone(), assignee_id=tenant.owner.user_id, messages=1)
    d = await seed_conversation(client, tenant.ws, name="Dewi", phone=phone(), assignee_id=m2.user_id, messages=1)
    response = await client.post(f"{tenant.base}/contacts/{a.contact_id}/notes", json={"content": "Suka warna biru"}, headers=tenant.owner.headers)
    assert response.status_code == 201, response.text
    return World(tenant, m1, m2, a, b, c, d, response.json()["id"])


async def _last_seq(world: World) -> int:
    return (await world.call("GET", "/events", params={"limit": 1}))["last_seq"]


async def _events(world: World, who: Caller, since: int) -> tuple[list[dict[str, Any]], int]:
    events: list[dict[str, Any]] = []
    while True:
        page = await world.call("GET", "/events", who=who, params={"since": since, "limit": 1000})
        assert not page["resync"]
        events.extend(page["data"])
        since = page["next_since"]
        if not page["has_more"]:
            return events, since


async def _still_member(world: World, who: Caller) -> bool:
    return (await world.client.get(world.tenant.base, headers=who.headers)).status_code == 200


async def verify_action(world: World, scenario: Scenario) -> dict[str, list[str]]:
    """Run ``scenario`` and check every viewer's page; returns the event types each viewer got."""
    steps = scenario.run(world)
    await anext(steps)  # preparation
    viewers = {"owner": (world.owner, None), "member one": (world.m1, world.m1.user_id), "member two": (world.m2, world.m2.user_id)}
    since = await _last_seq(world)
    # As Zulip: the position in the log first, then the state; events already reflected in the
    # state are applied again, which a client's handlers must tolerate anyway.
    models = {name: await read_model(world.client, world.tenant.base, who.headers, viewer_id) for name, (who, viewer_id) in viewers.items()}
    try:
        await anext(steps)
    except StopAsyncIteration:
        pass
    else:
        raise AssertionError(f"scenario {scenario.name} yields more than once")
    seen: dict[str, list[str]] = {}
    failures: list[str] = []
    for name, (who, viewer_id) in viewers.items():
        if not await _still_member(world, who):
            continue  # a page whose reader lost access reloads (to the sign-in or workspace list)
        model, cursor, kinds = models[name], since, []
        for _ in range(50):
            events, cursor = await _events(world, who, cursor)
            for event in events:
                model.apply(event)
                kinds.append(event["type"])
            await reload_hinted(world.client, world.tenant.base, who.headers, model)
            fresh = await read_model(world.client, world.tenant.base, who.headers, viewer_id)
            # Jobs may still be writing: compare only a state no event was written after.
            if await _last_seq(world) == cursor:
                break
        else:
            raise AssertionError("the event log never stood still long enough to compare")
        seen[name] = kinds
        if model.reload:
            continue
        failures.extend(f"{name}: {problem}" for problem in diff(model, fresh))
    assert not failures, f"{scenario.name} ({scenario.route}) leaves pages stale; events {seen}:\n  " + "\n  ".join(failures)
    return seen


__all__ = ["SCENARIOS", "Model", "Scenario", "World", "action", "app_routes", "make_world", "verify_action"]
