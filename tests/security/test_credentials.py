"""Credential edge cases the foundation and ingest suites leave open (JWT forgeries, bad signatures
and CSRF are in tests/foundation/test_idp_jwt.py, test_sessions.py and tests/ingest/test_signatures.py).
Every one is a 401 problem with a Bearer challenge, never a 500 and never access."""

from __future__ import annotations

import base64

import jwt

from tests.helpers import assert_problem


async def test_odd_authorization_headers_are_401(client, tenant):
    token = tenant.owner.token
    cases = {
        "basic scheme": f"Basic {base64.b64encode(b'owner:password').decode()}",
        "no token": "Bearer ",
        "token twice": f"Bearer {token} {token}",
        "truncated": f"Bearer {token[:-4]}",
        "one character changed": f"Bearer {token[:-1]}{'A' if token[-1] != 'A' else 'B'}",
        "10 KB token": "Bearer kst_" + "a" * 10_000,
        "API-key prefix, made up": "Bearer kbr_" + "b" * 40,
        "non-ASCII": "Bearer kst_ñandú",
        "a JWT-looking thing": "Bearer " + "e30." * 2 + "x",
    }
    for name, header in cases.items():
        response = await client.get(tenant.base, headers={"Authorization": header.encode("utf-8")})
        assert_problem(response, 401)
        assert response.headers["www-authenticate"].startswith("Bearer"), name


async def test_tokens_in_the_query_string_only_work_for_websockets(client, tenant):
    """``?token=`` exists because browsers cannot set headers on a WebSocket upgrade; on plain
    HTTP it would leak sessions into logs and referrers, so it is not accepted there."""
    assert_problem(await client.get(tenant.base, params={"token": tenant.owner.token}), 401)
    assert_problem(await client.get(f"{tenant.base}/events", params={"token": tenant.owner.token}), 401)


async def test_revoked_api_key_and_signed_out_session_are_401(client, tenant):
    key = await tenant.api_key()
    assert (await client.get(tenant.base, headers=key.headers)).status_code == 200
    listed = (await client.get(f"{tenant.base}/api-keys", headers=tenant.owner.headers)).json()["data"]
    for item in listed:
        assert (await client.delete(f"{tenant.base}/api-keys/{item['id']}", headers=tenant.owner.headers)).status_code in (200, 204)
    assert_problem(await client.get(tenant.base, headers=key.headers), 401)

    login = await client.post("/v1/auth/login", json={"email": tenant.owner.email, "password": "correct-horse-battery"})
    session = {"Authorization": f"Bearer {login.json()['token']}"}
    assert (await client.post("/v1/auth/logout", headers=session)).status_code == 204
    assert_problem(await client.get(tenant.base, headers=session), 401)


async def test_a_valid_idp_jwt_for_someone_else_does_not_open_this_workspace(client, tenant):
    """A correctly signed token proves who the bearer is, not that they belong here."""
    import time
    import uuid

    settings = client.runtime.settings
    now = int(time.time())
    stranger = jwt.encode(
        {"sub": str(uuid.uuid4()), "email": f"{uuid.uuid4().hex[:8]}@example.test", "aud": settings.jwt_audience, "iat": now, "exp": now + 300},
        settings.jwt_secret, algorithm="HS256",
    )
    response = await client.get(tenant.base, headers={"Authorization": f"Bearer {stranger}"})
    assert_problem(response, 404)
