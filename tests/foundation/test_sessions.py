"""Login, logout, /v1/me; session tokens as bearer and as an HttpOnly cookie with CSRF protection."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select, update

from kabar.db import tables as t
from kabar.db.types import utcnow
from kabar.ids import token_hash
from tests.helpers import PASSWORD, assert_problem, new_user


def _cookie_header(response) -> dict[str, str]:  # noqa: ANN001
    """The Set-Cookie attributes by cookie name (lower-cased attribute names)."""
    out: dict[str, str] = {}
    for raw in response.headers.get_list("set-cookie"):
        name = raw.split("=", 1)[0]
        out[name] = raw.lower()
    return out


async def login(client, email: str, password: str = PASSWORD):  # noqa: ANN001, ANN201
    response = await client.post("/v1/auth/login", json={"email": email, "password": password})
    assert response.status_code == 200, response.text
    return response


async def test_login_returns_token_user_and_cookies(client):
    caller = await new_user(client)
    response = await login(client, caller.email.upper())  # emails are case-insensitive
    body = response.json()
    assert body["token"].startswith("kst_")
    assert body["user"] == {"id": caller.user_id, "email": caller.email, "name": caller.email.split("@")[0], "email_verified": True}
    cookies = _cookie_header(response)
    session_cookie = cookies["kabar_session"]
    assert "httponly" in session_cookie and "samesite=lax" in session_cookie and "path=/" in session_cookie
    assert "httponly" not in cookies["kabar_csrf"]  # page JavaScript reads it to echo it back
    assert response.cookies["kabar_csrf"] == body["csrf_token"]

    # The session is stored hashed, never as the token itself.
    def _row(conn):  # noqa: ANN001, ANN202
        return conn.execute(select(t.sessions).where(t.sessions.c.user_id == caller.user_id)).all()

    rows = await client.runtime.db.read(_row)
    assert body["token"] not in {r.token_hash for r in rows}
    assert token_hash(body["token"]) in {r.token_hash for r in rows}


async def test_wrong_credentials_are_401_and_same_message(client):
    caller = await new_user(client)
    wrong_password = await client.post("/v1/auth/login", json={"email": caller.email, "password": "not-the-password"})
    unknown_email = await client.post("/v1/auth/login", json={"email": "nobody-here@example.test", "password": PASSWORD})
    assert assert_problem(wrong_password, 401)["detail"] == assert_problem(unknown_email, 401)["detail"]


async def test_bearer_session_me_and_logout_revokes(client, tenant):
    response = await client.get("/v1/me", headers=tenant.owner.headers)
    assert response.status_code == 200
    assert response.json()["user"]["id"] == tenant.owner.user_id
    assert response.json()["workspaces"][0]["role"] == "owner"

    response = await client.post("/v1/auth/logout", headers=tenant.owner.headers)
    assert response.status_code == 204
    assert_problem(await client.get("/v1/me", headers=tenant.owner.headers), 401)
    assert_problem(await client.get(tenant.base, headers=tenant.owner.headers), 401)
    # Signing in again gives a new, working session.
    again = await login(client, tenant.owner.email)
    assert again.json()["token"] != tenant.owner.token
    assert (await client.get("/v1/me", headers={"Authorization": f"Bearer {again.json()['token']}"})).status_code == 200


async def test_session_cookie_and_csrf(client, tenant):
    response = await login(client, tenant.owner.email)
    token, csrf = response.json()["token"], response.json()["csrf_token"]
    cookie = {"Cookie": f"kabar_session={token}"}

    # Reads with the cookie need no CSRF token.
    me = await client.get("/v1/me", headers=cookie)
    assert me.status_code == 200 and me.json()["csrf_token"] == csrf
    assert (await client.get(tenant.base, headers=cookie)).status_code == 200

    # Cookie-authenticated writes without (or with a wrong) X-CSRF-Token are refused and change nothing.
    for headers in (cookie, {**cookie, "X-CSRF-Token": "0" * 64}, {**cookie, "X-CSRF-Token": ""}):
        assert_problem(await client.patch(tenant.base, json={"name": "Hijacked"}, headers=headers), 403)
        assert_problem(await client.post("/v1/workspaces", json={"name": "Hijacked"}, headers=headers), 403)
    assert (await client.get(tenant.base, headers=tenant.owner.headers)).json()["name"] != "Hijacked"

    # Another session's CSRF token does not fit this session.
    other = await login(client, tenant.owner.email)
    bad = {**cookie, "X-CSRF-Token": other.json()["csrf_token"]}
    assert_problem(await client.patch(tenant.base, json={"name": "Hijacked"}, headers=bad), 403)

    ok = {**cookie, "X-CSRF-Token": csrf}
    response = await client.patch(tenant.base, json={"name": "Renamed by cookie"}, headers=ok)
    assert response.status_code == 200, response.text
    assert response.json()["name"] == "Renamed by cookie"
    response = await client.post("/v1/workspaces", json={"name": "Made by cookie"}, headers=ok)
    assert response.status_code == 201, response.text

    # Logout through the cookie needs CSRF too, then clears the cookies and revokes the session.
    assert_problem(await client.post("/v1/auth/logout", headers=cookie), 403)
    response = await client.post("/v1/auth/logout", headers=ok)
    assert response.status_code == 204
    cleared = _cookie_header(response)
    assert 'kabar_session=""' in cleared["kabar_session"] or "max-age=0" in cleared["kabar_session"] or "expires=" in cleared["kabar_session"]
    assert_problem(await client.get("/v1/me", headers=cookie), 401)
    # A bearer token is not subject to CSRF (no ambient credential).
    assert (await client.patch(tenant.base, json={"name": "By bearer"}, headers=tenant.owner.headers)).status_code == 200


async def test_expired_session_is_401(client):
    caller = await new_user(client)

    def _expire(uow):  # noqa: ANN001, ANN202
        uow.conn.execute(
            update(t.sessions).where(t.sessions.c.token_hash == token_hash(caller.token)).values(expires_at=utcnow() - timedelta(seconds=1))
        )

    await client.runtime.db.transaction(_expire)
    assert_problem(await client.get("/v1/me", headers=caller.headers), 401)


async def test_disabled_user_cannot_login_or_use_sessions(client):
    caller = await new_user(client)

    def _disable(uow):  # noqa: ANN001, ANN202
        uow.conn.execute(update(t.users).where(t.users.c.id == caller.user_id).values(is_active=False))

    await client.runtime.db.transaction(_disable)
    assert_problem(await client.get("/v1/me", headers=caller.headers), 401)
    assert_problem(await client.post("/v1/auth/login", json={"email": caller.email, "password": PASSWORD}), 401)


async def test_change_password_signs_out_other_sessions(client):
    caller = await new_user(client)
    other_device = {"Authorization": f"Bearer {(await login(client, caller.email)).json()['token']}"}
    response = await client.post(
        "/v1/auth/password", json={"current_password": "wrong-one", "new_password": "new-password-123"}, headers=caller.headers
    )
    assert_problem(response, 422)
    response = await client.post(
        "/v1/auth/password", json={"current_password": PASSWORD, "new_password": "short"}, headers=caller.headers
    )
    assert assert_problem(response, 422)["errors"][0]["field"] == "new_password"
    response = await client.post(
        "/v1/auth/password", json={"current_password": PASSWORD, "new_password": "new-password-123"}, headers=caller.headers
    )
    assert response.status_code == 204
    assert (await client.get("/v1/me", headers=caller.headers)).status_code == 200  # this session stays
    assert_problem(await client.get("/v1/me", headers=other_device), 401)
    assert_problem(await client.post("/v1/auth/login", json={"email": caller.email, "password": PASSWORD}), 401)
    await login(client, caller.email, "new-password-123")
