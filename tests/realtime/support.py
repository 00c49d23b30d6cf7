"""Helpers for realtime tests against real ``kabar serve`` processes: a site (server + database),
staff users, WebSocket clients that record what they receive, and direct database writes."""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import websockets
from sqlalchemy import insert

from kabar.auth.service import create_user
from kabar.db import tables as t
from kabar.db.engine import Database
from kabar.ids import new_id

from tests.conftest import base_settings
from tests.helpers import PASSWORD, Caller

Staff = Caller  # a logged-in person: token, user_id, email, headers


@dataclass
class Site:
    """A database and the test process's own connection to it (for setup writes)."""

    database_url: str
    tmp: Path
    db: Database = field(init=False)

    def __post_init__(self) -> None:
        self.db = Database(base_settings(self.database_url, self.tmp))

    async def staff(self, http: httpx.AsyncClient) -> Staff:
        email = f"rt-{secrets.token_hex(5)}@example.test"
        user_id = await self.db.transaction(create_user, email=email, password=PASSWORD, name="rt")
        response = await http.post("/v1/auth/login", json={"email": email, "password": PASSWORD})
        assert response.status_code == 200, response.text
        return Caller(response.json()["token"], user_id, email)

    async def workspace(self, http: httpx.AsyncClient) -> tuple[str, Staff]:
        owner = await self.staff(http)
        response = await http.post("/v1/workspaces", json={"name": f"RT {secrets.token_hex(3)}"}, headers=owner.headers)
        assert response.status_code == 201, response.text
        return response.json()["id"], owner

    async def member(self, http: httpx.AsyncClient, ws: str, owner: Staff, role: str = "member") -> Staff:
        person = await self.staff(http)
        response = await http.post(f"/v1/workspaces/{ws}/members", json={"email": person.email, "role": role}, headers=owner.headers)
        assert response.status_code == 201, response.text
        # Adding is inviting: the invitee accepts the mailed link, signed in as themselves.
        from kabar.mail.repository import recent

        body = (await self.db.read(lambda conn: recent(conn, to=person.email, limit=1)))[0].body
        token = body.split("/accept-invite?token=", 1)[1].split()[0]
        response = await http.post("/v1/invitations/accept", json={"token": token}, headers=person.headers)
        assert response.status_code == 200, response.text
        return person

    async def contact(self, ws: str, assignee_id: str | None) -> tuple[str, str]:
        """A contact (with its conversation), inserted directly; emits contact.created for it."""
        contact_id, conversation_id = new_id(), new_id()

        def write(uow: Any) -> None:
            phone = "+6281" + str(secrets.randbelow(10**9)).zfill(9)
            uow.conn.execute(
                insert(t.contacts).values(
                    id=contact_id, workspace_id=ws, phone_e164=phone, phone_raw=phone, assignee_id=assignee_id,
                    created_at=uow.now, updated_at=uow.now,
                )
            )
            uow.conn.execute(
                insert(t.conversations).values(
                    id=conversation_id, workspace_id=ws, contact_id=contact_id, assignee_id=assignee_id,
                    last_message_at=uow.now, created_at=uow.now, updated_at=uow.now,
                )
            )
            uow.emit(ws, "contact.created", {"id": contact_id, "assignee_id": assignee_id}, contact_id=contact_id)

        await self.db.transaction(write)
        return contact_id, conversation_id

    async def emit(self, ws: str, type_: str, data: dict[str, Any], contact_id: str | None = None) -> None:
        await self.db.transaction(lambda uow: uow.emit(ws, type_, data, contact_id=contact_id))


async def patch_workspace(http: httpx.AsyncClient, ws: str, owner: Staff, i: int, **settings: Any) -> float:
    """A real write through the API (emits workspace.updated); returns when its 200 arrived."""
    response = await http.patch(f"/v1/workspaces/{ws}", json={"settings": {"i": i, **settings}}, headers=owner.headers)
    assert response.status_code == 200, response.text
    return time.perf_counter()


def ws_url(base_url: str, ws: str, token: str | None = None) -> str:
    url = base_url.replace("http://", "ws://") + f"/v1/workspaces/{ws}/realtime"
    return url + (f"?token={token}" if token else "")


class Sock:
    """A WebSocket client that records every message with its arrival time."""

    def __init__(self, conn: Any):
        self.conn = conn
        self.messages: list[tuple[float, dict[str, Any]]] = []
        self.arrivals: dict[int, float] = {}  # seq -> arrival time
        self.close_code: int | None = None
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def open(
        cls, base_url: str, ws: str, token: str | None = None, *, since: Any = "none", headers: dict[str, str] | None = None, **kw: Any
    ) -> Sock:
        conn = await websockets.connect(ws_url(base_url, ws, token), additional_headers=headers, open_timeout=10, **kw)
        sock = cls(conn)
        if since != "none":
            await sock.send({"op": "subscribe", "since": since})
            await sock.wait_for(lambda s: s.ops("subscribed") or s.close_code is not None)
        return sock

    async def _read(self) -> None:
        try:
            async for raw in self.conn:
                at, message = time.perf_counter(), json.loads(raw)
                self.messages.append((at, message))
                if message.get("op") == "event":
                    self.arrivals.setdefault(message["seq"], at)
        except websockets.ConnectionClosed:
            pass
        self.close_code = self.conn.close_code

    async def send(self, message: dict[str, Any]) -> None:
        await self.conn.send(json.dumps(message))

    def ops(self, op: str) -> list[dict[str, Any]]:
        return [m for _, m in self.messages if m.get("op") == op]

    def events(self) -> list[dict[str, Any]]:
        return self.ops("event")

    def seqs(self) -> list[int]:
        return [m["seq"] for m in self.events()]

    def arrival(self, seq: int) -> float | None:
        return self.arrivals.get(seq)

    async def wait_for(self, predicate: Callable[[Sock], Any], timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while not predicate(self):
            if time.monotonic() > deadline:
                raise AssertionError(f"condition not met in {timeout}s; last messages: {[m for _, m in self.messages[-5:]]}")
            await asyncio.sleep(0.005)

    async def wait_seq(self, seq: int, timeout: float = 15.0) -> None:
        await self.wait_for(lambda s: s.events() and s.events()[-1]["seq"] >= seq, timeout)

    async def close(self) -> None:
        await self.conn.close()
        await asyncio.gather(self._reader, return_exceptions=True)


async def wait_until(predicate: Callable[[], Any], timeout: float = 15.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not met in {timeout}s")
        await asyncio.sleep(0.01)


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))]
