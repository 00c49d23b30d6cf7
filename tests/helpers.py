"""Test helpers: tenants, callers with roles, assertions on problem responses."""

from __future__ import annotations

import asyncio
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kabar.auth.service import create_user

PASSWORD = "correct-horse-battery"


@dataclass
class Caller:
    token: str
    user_id: str | None = None
    email: str | None = None

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@dataclass
class Tenant:
    client: Any
    ws: str
    owner: Caller
    callers: dict[str, Caller] = field(default_factory=dict)

    @property
    def base(self) -> str:
        return f"/v1/workspaces/{self.ws}"

    async def add_user(self, role: str = "member") -> Caller:
        """A new user who joined this workspace with ``role``: invited through the members API,
        the link read from the mail, accepted while signed in as that user."""
        caller = await new_user(self.client)
        response = await self.client.post(
            f"{self.base}/members", json={"email": caller.email, "role": "admin" if role == "admin" else "member"}, headers=self.owner.headers
        )
        assert response.status_code == 201, response.text
        token = await mailed_token(self.client, caller.email, "/accept-invite")
        response = await self.client.post("/v1/invitations/accept", json={"token": token}, headers=caller.headers)
        assert response.status_code == 200, response.text
        return caller

    async def api_key(self) -> Caller:
        response = await self.client.post(f"{self.base}/api-keys", json={"name": "test key"}, headers=self.owner.headers)
        assert response.status_code == 201, response.text
        return Caller(token=response.json()["secret"])


async def mailed_token(client: Any, email: str, path: str) -> str:
    """The token of the newest link to ``path`` in the mail to ``email`` (the outbox that
    `kabar mail list` prints; tests/auth read mail delivered over SMTP as well)."""
    from urllib.parse import parse_qs, urlsplit

    from kabar.mail.repository import recent

    rows = await client.runtime.db.read(lambda conn: recent(conn, to=email, limit=20))
    for row in rows:
        for url in re.findall(r"https?://\S+", row.body or ""):
            parts = urlsplit(url)
            if parts.path == path:
                return parse_qs(parts.query)["token"][0]
    raise AssertionError(f"no mail to {email} with a link to {path}")


async def new_user(client: Any, email: str | None = None, password: str = PASSWORD) -> Caller:
    """A user created the way an operator does (the service behind `kabar user create`), logged in over HTTP."""
    email = email or f"user-{secrets.token_hex(5)}@example.test"
    runtime = client.app.state.runtime
    user_id = await runtime.db.transaction(create_user, email=email, password=password, name=email.split("@")[0])
    response = await client.post("/v1/auth/login", json={"email": email, "password": password})
    assert response.status_code == 200, response.text
    return Caller(token=response.json()["token"], user_id=user_id, email=email)


async def make_tenant(client: Any) -> Tenant:
    owner = await new_user(client)
    response = await client.post("/v1/workspaces", json={"name": f"Toko {secrets.token_hex(3)}"}, headers=owner.headers)
    assert response.status_code == 201, response.text
    return Tenant(client=client, ws=response.json()["id"], owner=owner)


def assert_problem(response: Any, status: int, type_suffix: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, f"expected {status}, got {response.status_code}: {response.text}"
    assert response.headers["content-type"].startswith("application/problem+json"), response.headers["content-type"]
    body = response.json()
    assert body["status"] == status and body["type"] and body["title"]
    if type_suffix:
        assert body["type"].endswith(type_suffix), body["type"]
    return body


def queries(response: Any) -> int:
    """SQL statements the request ran, from its Server-Timing header (transaction control left out)."""
    match = re.search(r'desc="(\d+) queries"', response.headers["server-timing"])
    assert match, response.headers["server-timing"]
    return int(match.group(1))


async def wait_for(condition: Callable[[], Any], timeout: float = 20.0, what: str = "condition") -> Any:
    """Poll ``condition`` (sync or async) until it returns something truthy, or fail at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.02)
