"""Login and send rate limits hold across two ``kabar serve`` processes sharing a (private) Redis.

Requests alternate between the processes, so per-process counting would allow about twice the
limit; a 429 at exactly limit + 1 shows the count is shared. Refusals carry ``Retry-After`` and
change nothing (no session, no message).
"""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

import httpx
from sqlalchemy import func, select

from kabar.auth.service import create_user
from kabar.channels.fake import payloads as p
from kabar.db import tables as t
from tests.conftest import create_database, server_env
from tests.fault.support import kapso_channel
from tests.helpers import PASSWORD, assert_problem
from tests.realtime.support import Site

LOGIN_PER_EMAIL = 5
LOGIN_PER_ADDRESS = 8
SENDS_PER_WORKSPACE = 6


def assert_limited(response: httpx.Response) -> None:
    assert_problem(response, 429, "rate-limited")
    retry_after = int(response.headers["retry-after"])
    assert 1 <= retry_after <= 60, retry_after


async def test_login_and_send_limits_are_shared_by_two_processes(tmp_path, start_server, private_redis) -> None:
    url = await asyncio.to_thread(create_database, "postgres", tmp_path, f"limits_{secrets.token_hex(2)}")
    env = server_env(
        url, tmp_path, KABAR_REDIS_URL=private_redis.url,
        KABAR_RATE_LIMIT_LOGIN=f"{LOGIN_PER_EMAIL}/minute",
        KABAR_RATE_LIMIT_LOGIN_ADDRESS=f"{LOGIN_PER_ADDRESS}/minute",
        KABAR_RATE_LIMIT_SEND=f"{SENDS_PER_WORKSPACE}/minute",
    )
    a, b = await asyncio.gather(asyncio.to_thread(start_server, env), asyncio.to_thread(start_server, env))
    site = Site(url, tmp_path)
    try:
        async with httpx.AsyncClient(timeout=15) as http:
            pick = [a.url, b.url]

            def at(n: int, path: str) -> str:
                return pick[n % 2] + path

            async with httpx.AsyncClient(base_url=a.url, timeout=15) as http_a:
                ws, owner = await site.workspace(http_a)  # one login from this address
                pnid, secret = await kapso_channel(http_a, ws, owner.headers)
            first, second = f"a-{secrets.token_hex(4)}@example.test", f"b-{secrets.token_hex(4)}@example.test"
            for email in (first, second):
                await site.db.transaction(create_user, email=email, password=PASSWORD, name="x")

            # Per email: five wrong passwords (alternating processes), then even the right one is refused.
            for n in range(LOGIN_PER_EMAIL):
                response = await http.post(at(n, "/v1/auth/login"), json={"email": first, "password": "wrong-password-1"})
                assert response.status_code == 401, response.text
            refused = await http.post(at(LOGIN_PER_EMAIL, "/v1/auth/login"), json={"email": first.upper(), "password": PASSWORD})
            assert_limited(refused)
            assert "token" not in refused.json() and "set-cookie" not in refused.headers

            # Per address: 1 + 5 attempts so far; the other account gets the remaining two, then 429.
            for n in range(LOGIN_PER_ADDRESS - 1 - LOGIN_PER_EMAIL):
                response = await http.post(at(n, "/v1/auth/login"), json={"email": second, "password": PASSWORD})
                assert response.status_code == 200, response.text
            assert_limited(await http.post(at(1, "/v1/auth/login"), json={"email": second, "password": PASSWORD}))

            # Sends per workspace.
            raw = p.encode(p.kapso_received(pnid=pnid, phone="+6281234567001", text="Halo"))
            assert (await http.post(a.url + "/webhooks/kapso", content=raw, headers=p.kapso_headers(raw, secret, "whatsapp.message.received"))).status_code == 200
            conversations = (await http.get(f"{a.url}/v1/workspaces/{ws}/conversations", headers=owner.headers)).json()["data"]
            path = f"/v1/workspaces/{ws}/conversations/{conversations[0]['id']}/messages"
            for n in range(SENDS_PER_WORKSPACE):
                response = await http.post(at(n, path), json={"type": "text", "text": f"Balasan {n}"}, headers=owner.headers)
                assert response.status_code == 202, response.text
            assert_limited(await http.post(at(SENDS_PER_WORKSPACE, path), json={"type": "text", "text": "satu lagi"}, headers=owner.headers))

        def outbound(conn: Any) -> int:
            m = t.messages
            return conn.execute(select(func.count()).select_from(m).where(m.c.workspace_id == ws, m.c.direction == "outbound")).scalar_one()

        assert await site.db.read(outbound) == SENDS_PER_WORKSPACE, "a refused send must not create a message"
    finally:
        await site.db.dispose()


async def test_redis_down_falls_back_to_per_process_limits(tmp_path, start_server, private_redis) -> None:
    """Without Redis nobody is locked out: each process still limits on its own."""
    url = await asyncio.to_thread(create_database, "sqlite", tmp_path, "limits_fallback")
    env = server_env(url, tmp_path, KABAR_REDIS_URL=private_redis.url, KABAR_RATE_LIMIT_LOGIN="3/minute")
    server = await asyncio.to_thread(start_server, env)
    private_redis.stop()
    site = Site(url, tmp_path)
    try:
        email = f"c-{secrets.token_hex(4)}@example.test"
        await site.db.transaction(create_user, email=email, password=PASSWORD, name="x")
        async with httpx.AsyncClient(base_url=server.url, timeout=15) as http:
            for _ in range(3):
                assert (await http.post("/v1/auth/login", json={"email": email, "password": PASSWORD})).status_code == 200
            assert_limited(await http.post("/v1/auth/login", json={"email": email, "password": PASSWORD}))
    finally:
        await site.db.dispose()
