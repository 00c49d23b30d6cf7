"""Accounts cannot be taken over or pre-claimed (issue 13, item 1), on both backends.

Each attack of the issue is replayed through the public API and refused; the links that mail
carries are read from the outbox (`kabar mail list`) or, for the SMTP tests, from mail delivered
to a real SMTP server (aiosmtpd) on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import email
import os
import secrets
import subprocess
import sys
import time
import uuid
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jwt
import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import select, update

from kabar.auth.service import create_user
from kabar.db import tables as t
from kabar.db.types import utcnow
from tests.conftest import app_client, base_settings, create_database, free_port, server_env
from tests.helpers import PASSWORD, Caller, assert_problem, mailed_token, new_user, wait_for

NEW_PASSWORD = "another-long-passphrase"


def idp_token(client: Any, email_addr: str, *, sub: str | None = None, verified: bool | None = True) -> str:
    now = int(time.time())
    claims: dict[str, Any] = {"sub": sub or str(uuid.uuid4()), "aud": "authenticated", "iat": now, "exp": now + 600, "email": email_addr}
    if verified is not None:
        claims["email_verified"] = verified
    return jwt.encode(claims, client.runtime.settings.jwt_secret, algorithm="HS256")


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def fresh_email(prefix: str = "person") -> str:
    return f"{prefix}-{secrets.token_hex(5)}@example.test"


async def invite(tenant: Any, email_addr: str, role: str = "member", path: str = "invitations") -> dict[str, Any]:
    response = await tenant.client.post(f"{tenant.base}/{path}", json={"email": email_addr, "role": role}, headers=tenant.owner.headers)
    assert response.status_code == 201, response.text
    return response.json()


async def login(client: Any, email_addr: str, password: str) -> Any:
    return await client.post("/v1/auth/login", json={"email": email_addr, "password": password})


async def member_ids(tenant: Any) -> set[str]:
    response = await tenant.client.get(f"{tenant.base}/members", headers=tenant.owner.headers)
    assert response.status_code == 200, response.text
    return {m["user_id"] for m in response.json()["data"]}


async def reset_job_done(client: Any, email_addr: str) -> bool:
    def _jobs(conn: Any) -> list[Any]:
        return conn.execute(select(t.jobs.c.payload, t.jobs.c.status).where(t.jobs.c.kind == "auth.password_reset")).all()

    return any(r.payload.get("email") == email_addr and r.status == "done" for r in await client.runtime.db.read(_jobs))


# -- the attacks of the issue -----------------------------------------------------------------


async def test_owner_cannot_set_the_password_of_an_existing_idp_account(client, tenant):
    """Before: the owner got the invitation token, accepted it with a password of their choosing
    and could then log in as the IdP-only account."""
    victim_email = fresh_email("idp-only")
    victim_jwt = idp_token(client, victim_email)
    me = await client.get("/v1/me", headers=bearer(victim_jwt))
    assert me.status_code == 200, me.text
    victim_id = me.json()["user"]["id"]

    await invite(tenant, victim_email)
    # The link goes to the victim's mailbox (a development server without SMTP also shows it to
    # the inviter; with a mail server it does not: test_password_reset_mail_over_smtp).
    token = await mailed_token(client, victim_email, "/accept-invite")

    # Even holding the link (say it leaked), nobody sets a password or gets a session with it.
    attempt = await client.post("/v1/invitations/accept", json={"token": token, "password": "owner-chosen-password"})
    body = assert_problem(attempt, 403, "/sign-in-required")
    assert victim_email in body["detail"] and "Sign in" in body["detail"]
    as_owner = await client.post("/v1/invitations/accept", json={"token": token}, headers=tenant.owner.headers)
    assert_problem(as_owner, 403, "/sign-in-required")
    assert_problem(await login(client, victim_email, "owner-chosen-password"), 401)
    assert victim_id not in await member_ids(tenant)

    # The account's holder, signed in, accepts with one call and no password.
    assert_problem(await client.post("/v1/invitations/accept", json={"token": token, "password": PASSWORD}, headers=bearer(victim_jwt)), 409)
    accepted = await client.post("/v1/invitations/accept", json={"token": token}, headers=bearer(victim_jwt))
    assert accepted.status_code == 200, accepted.text
    assert "token" not in accepted.json() and accepted.json()["user"]["id"] == victim_id
    assert victim_id in await member_ids(tenant)
    assert_problem(await login(client, victim_email, "owner-chosen-password"), 401)


async def test_preclaimed_account_is_not_linked_to_the_real_persons_idp_sign_in(client, tenant, jobs):
    """Before: an owner accepted an invitation for a new address with their own password, and
    kept access after the real person signed in through the IdP (linked by email)."""
    email_addr = fresh_email("preclaimed")
    await invite(tenant, email_addr)
    token = await mailed_token(client, email_addr, "/accept-invite")  # as if the link had leaked to the owner
    claimed = await client.post("/v1/invitations/accept", json={"token": token, "password": "attacker-password"})
    assert claimed.status_code == 200, claimed.text
    assert claimed.json()["user"]["email_verified"] is False
    attacker = Caller(token=claimed.json()["token"])

    # The real person signs in through the IdP, which vouches for the address: not linked.
    real_jwt = idp_token(client, email_addr, verified=True)
    refused = await client.get("/v1/me", headers=bearer(real_jwt))
    body = assert_problem(refused, 403, "/identity-not-linked")
    assert "/account" in body["detail"] and "/forgot-password" in body["detail"]
    assert (await client.get("/v1/me", headers=attacker.headers)).status_code == 200

    # They take the account over by proving the mailbox: every credential of the pre-claimer goes.
    assert (await client.post("/v1/auth/password-reset", json={"email": email_addr})).status_code == 202
    reset = await wait_for(lambda: _maybe_token(client, email_addr, "/reset-password"), what="the reset mail")
    assert (await client.post("/v1/auth/password-reset/confirm", json={"token": reset, "password": NEW_PASSWORD})).status_code == 204
    assert_problem(await client.get("/v1/me", headers=attacker.headers), 401)
    assert_problem(await login(client, email_addr, "attacker-password"), 401)
    linked = await client.get("/v1/me", headers=bearer(real_jwt))
    assert linked.status_code == 200, linked.text
    assert linked.json()["user"]["id"] == claimed.json()["user"]["id"] and linked.json()["user"]["email_verified"] is True


async def _maybe_token(client: Any, email_addr: str, path: str) -> str | None:
    try:
        return await mailed_token(client, email_addr, path)
    except AssertionError:
        return None


async def test_idp_sign_in_with_unverified_address_takes_no_account_and_unlinks_on_takeover(client, jobs):
    """An IdP that does not vouch for the address neither links to an existing account nor keeps
    the account it created once the address's owner takes it over."""
    existing = await new_user(client)  # made by an operator: verified
    unverified_claim = await client.get("/v1/me", headers=bearer(idp_token(client, existing.email, verified=None)))
    assert_problem(unverified_claim, 403, "/identity-not-linked")
    assert_problem(await client.get("/v1/me", headers=bearer(idp_token(client, existing.email, verified=False))), 403)
    assert (await client.get("/v1/me", headers=bearer(idp_token(client, existing.email)))).json()["user"]["id"] == existing.user_id

    # An IdP subject claiming a new address unverified gets an unverified account…
    squatted = fresh_email("squat")
    squatter_sub = str(uuid.uuid4())
    made = await client.get("/v1/me", headers=bearer(idp_token(client, squatted, sub=squatter_sub, verified=False)))
    assert made.status_code == 200 and made.json()["user"]["email_verified"] is False
    # …which the address's owner takes over by reset: the squatter's sign-in is no longer linked.
    assert (await client.post("/v1/auth/password-reset", json={"email": squatted})).status_code == 202
    reset = await wait_for(lambda: _maybe_token(client, squatted, "/reset-password"), what="the reset mail")
    assert (await client.post("/v1/auth/password-reset/confirm", json={"token": reset, "password": NEW_PASSWORD})).status_code == 204
    again = await client.get("/v1/me", headers=bearer(idp_token(client, squatted, sub=squatter_sub, verified=False)))
    assert_problem(again, 403, "/identity-not-linked")
    assert (await login(client, squatted, NEW_PASSWORD)).status_code == 200


async def test_signed_in_user_links_an_identity_from_the_account_page(client):
    user = await new_user(client)
    other_address_jwt = idp_token(client, fresh_email("google"))
    linked = await client.post("/v1/me/identities", json={"token": other_address_jwt}, headers=user.headers)
    assert linked.status_code == 201, linked.text
    assert (await client.get("/v1/me", headers=bearer(other_address_jwt))).json()["user"]["id"] == user.user_id
    listed = (await client.get("/v1/me/identities", headers=user.headers)).json()["data"]
    assert [i["subject"] for i in listed] == [linked.json()["subject"]]

    # Another account cannot take that sign-in; a junk token is a 422; an unverified account must verify first.
    someone = await new_user(client)
    assert_problem(await client.post("/v1/me/identities", json={"token": other_address_jwt}, headers=someone.headers), 409, "/identity-taken")
    assert_problem(await client.post("/v1/me/identities", json={"token": "abc.def.ghi"}, headers=someone.headers), 422)
    unverified = bearer(idp_token(client, fresh_email("unverified"), verified=False))
    assert (await client.get("/v1/me", headers=unverified)).json()["user"]["email_verified"] is False
    another = idp_token(client, fresh_email("another"))
    assert_problem(await client.post("/v1/me/identities", json={"token": another}, headers=unverified), 409, "/email-unverified")


async def test_invitation_for_an_existing_account_needs_that_accounts_session(client, tenant):
    holder = await new_user(client)
    stranger = await new_user(client)
    await invite(tenant, holder.email, "admin")
    token = await mailed_token(client, holder.email, "/accept-invite")
    assert_problem(await client.post("/v1/invitations/accept", json={"token": token}), 403, "/sign-in-required")
    assert_problem(await client.post("/v1/invitations/accept", json={"token": token}, headers=stranger.headers), 403)
    assert_problem(await client.post("/v1/invitations/accept", json={"token": token}, headers=Caller("kst_not-a-session").headers), 401)
    assert {holder.user_id, stranger.user_id}.isdisjoint(await member_ids(tenant))
    response = await client.post("/v1/invitations/accept", json={"token": token}, headers=holder.headers)
    assert response.status_code == 200 and response.json()["role"] == "admin"
    assert holder.user_id in await member_ids(tenant) and stranger.user_id not in await member_ids(tenant)
    assert_problem(await client.post("/v1/invitations/accept", json={"token": token}, headers=holder.headers), 410)


# -- the members API reveals nothing about accounts ---------------------------------------------


async def test_members_api_does_not_reveal_accounts_or_invitees(client, tenant):
    colleague = await tenant.add_user("member")
    existing = await new_user(client)
    unknown = fresh_email("nobody")
    shapes = []
    for path in ("invitations", "members"):
        for address in (existing.email, unknown):
            response = await client.post(f"{tenant.base}/{path}", json={"email": address}, headers=tenant.owner.headers)
            assert response.status_code == 201, response.text
            body = response.json()
            shapes.append((sorted(body), body["status"], body["role"]))
    assert len(set(map(repr, shapes))) == 1, shapes  # the same answer, account or not
    # Invitees are not members until they join: no name, no email in the member list.
    for caller in (tenant.owner, colleague):
        listed = (await client.get(f"{tenant.base}/members", headers=caller.headers)).json()["data"]
        assert {m["user_id"] for m in listed} == {tenant.owner.user_id, colleague.user_id}
        assert all(set(m) >= {"user_id", "name", "email", "role"} for m in listed)
        assert existing.email not in str(listed) and existing.user_id not in str(listed)
    # Nor does a member's event feed carry the invited addresses.
    feed = await client.get(f"{tenant.base}/events", params={"since": 0}, headers=colleague.headers)
    assert feed.status_code == 200, feed.text
    assert existing.email not in feed.text and unknown not in feed.text


# -- email verification ---------------------------------------------------------------------


async def test_verify_email_by_link_in_the_accounts_own_session(client, tenant):
    email_addr = fresh_email("verify")
    await invite(tenant, email_addr)
    accepted = await client.post(
        "/v1/invitations/accept", json={"token": await mailed_token(client, email_addr, "/accept-invite"), "password": PASSWORD, "name": "Vera"}
    )
    assert accepted.status_code == 200, accepted.text
    vera = Caller(token=accepted.json()["token"])
    link = await mailed_token(client, email_addr, "/verify-email")
    other = await new_user(client)

    assert_problem(await client.post("/v1/auth/verify-email", json={"token": link}), 401)
    assert_problem(await client.post("/v1/auth/verify-email", json={"token": link}, headers=other.headers), 403)
    assert_problem(await client.post("/v1/auth/verify-email", json={"token": link[:-2] + "xx"}, headers=vera.headers), 404)
    # A resend voids the earlier link.
    assert (await client.post("/v1/auth/verify-email/resend", headers=vera.headers)).status_code == 202
    newer = await mailed_token(client, email_addr, "/verify-email")
    assert newer != link
    assert_problem(await client.post("/v1/auth/verify-email", json={"token": link}, headers=vera.headers), 410)
    assert (await client.post("/v1/auth/verify-email", json={"token": newer}, headers=vera.headers)).status_code == 204
    assert (await client.get("/v1/me", headers=vera.headers)).json()["user"]["email_verified"] is True
    assert_problem(await client.post("/v1/auth/verify-email", json={"token": newer}, headers=vera.headers), 410)
    assert_problem(await client.post("/v1/auth/verify-email/resend", headers=vera.headers), 409, "/already-verified")


# -- password reset ---------------------------------------------------------------------------


async def test_password_reset_from_the_outbox_single_use_and_expiring(client, jobs):
    user = await new_user(client)
    second_session = (await login(client, user.email, PASSWORD)).json()["token"]
    unknown = fresh_email("unknown")
    answers = set()
    for address in (user.email, unknown):
        response = await client.post("/v1/auth/password-reset", json={"email": address})
        assert response.status_code == 202
        answers.add(response.content)
    assert len(answers) == 1  # the same answer whether or not the address has an account
    token = await wait_for(lambda: _maybe_token(client, user.email, "/reset-password"), what="the reset mail")
    await wait_for(lambda: reset_job_done(client, unknown), what="the unknown address's job")
    assert await _maybe_token(client, unknown, "/reset-password") is None  # nobody is mailed

    assert_problem(await client.post("/v1/auth/password-reset/confirm", json={"token": token, "password": "short"}), 422)
    assert (await client.post("/v1/auth/password-reset/confirm", json={"token": token, "password": NEW_PASSWORD})).status_code == 204
    for session in (user.token, second_session):  # every session of the account is signed out
        assert_problem(await client.get("/v1/me", headers=Caller(session).headers), 401)
    assert_problem(await login(client, user.email, PASSWORD), 401)
    assert (await login(client, user.email, NEW_PASSWORD)).status_code == 200
    assert_problem(await client.post("/v1/auth/password-reset/confirm", json={"token": token, "password": "yet-another-one"}), 410)

    # Expired links do nothing.
    assert (await client.post("/v1/auth/password-reset", json={"email": user.email})).status_code == 202
    late = await wait_for(lambda: _fresh_token(client, user.email, token), what="a second reset mail")

    def _expire(uow: Any) -> None:
        uow.conn.execute(update(t.account_tokens).where(t.account_tokens.c.id == late.split(".")[0]).values(expires_at=utcnow() - timedelta(seconds=1)))

    await client.runtime.db.transaction(_expire)
    assert_problem(await client.post("/v1/auth/password-reset/confirm", json={"token": late, "password": "yet-another-one"}), 410, "/link-expired")
    assert (await login(client, user.email, NEW_PASSWORD)).status_code == 200


async def _fresh_token(client: Any, email_addr: str, old: str) -> str | None:
    token = await _maybe_token(client, email_addr, "/reset-password")
    return token if token and token != old else None


class SmtpInbox:
    """aiosmtpd handler: keeps delivered mail; answers 451 (try later) to the first ``refuse`` mails."""

    def __init__(self, refuse: int = 0):
        self.messages: list[email.message.Message] = []
        self.refuse = refuse
        self.attempts = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd's naming
        self.attempts += 1
        if self.attempts <= self.refuse:
            return "451 4.3.0 try again later"
        self.messages.append(email.message_from_bytes(envelope.content))
        return "250 OK"

    def link(self, to: str, path: str) -> str | None:
        for message in self.messages:
            if message["To"] == to:
                for word in message.get_payload(decode=True).decode().split():
                    parts = urlsplit(word)
                    if parts.path == path:
                        return parse_qs(parts.query)["token"][0]
        return None


@pytest.fixture
def smtp_server():
    inbox = SmtpInbox(refuse=1)
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        yield inbox, f"smtp://127.0.0.1:{controller.port}"
    finally:
        controller.stop()


@pytest.fixture
def mail_db(backend: str, tmp_path: Path) -> str:
    """A database of its own: the shared app's job runner (no SMTP) must not take these jobs."""
    return create_database(backend, tmp_path, "mail")


async def test_password_reset_mail_over_smtp(mail_db, tmp_path, smtp_server):
    """A real SMTP server on 127.0.0.1: the first delivery is refused with 451 and retried; the
    link read from the delivered mail resets the password once."""
    inbox, smtp_url = smtp_server
    url = mail_db
    settings = replace(base_settings(url, tmp_path), smtp_url=smtp_url, mail_from="Kabar <noreply@kabar.test>", public_url="https://kabar.example")
    async with app_client(settings, run_jobs=True) as client:
        user = await new_user(client)
        assert (await client.post("/v1/auth/password-reset", json={"email": user.email.upper()})).status_code == 202
        assert (await client.post("/v1/auth/password-reset", json={"email": "nobody@example.test"})).status_code == 202
        token = await wait_for(lambda: inbox.link(user.email, "/reset-password"), what="the delivered reset mail")
        assert inbox.attempts == 2 and len(inbox.messages) == 1  # retried after the 451; nothing for the unknown address
        message = inbox.messages[0]
        assert message["From"] == "Kabar <noreply@kabar.test>" and "https://kabar.example/reset-password?token=" in message.get_payload(decode=True).decode()

        response = await client.post("/v1/auth/password-reset/confirm", json={"token": token, "password": NEW_PASSWORD})
        assert response.status_code == 204, response.text
        assert (await login(client, user.email, NEW_PASSWORD)).status_code == 200
        assert_problem(await client.post("/v1/auth/password-reset/confirm", json={"token": token, "password": "x" * 12}), 410)

        # Delivered mail keeps no link at rest (the job records the delivery right after it).
        async def delivered() -> list[Any]:
            rows = await client.runtime.db.read(lambda conn: conn.execute(select(t.mail_outbox)).all())
            return rows if rows and all(r.status == "sent" for r in rows) else []

        rows = await wait_for(delivered, what="the mail recorded as sent")
        assert [(r.status, r.body) for r in rows] == [("sent", None)]

        # With a mail server, an invitation's link goes to the invitee's mailbox only.
        user = await new_user(client)  # the reset signed the first one out everywhere
        response = await client.post("/v1/workspaces", json={"name": "Toko Surat"}, headers=user.headers)
        assert response.status_code == 201, response.text
        invited = fresh_email("invitee")
        response = await client.post(f"/v1/workspaces/{response.json()['id']}/invitations", json={"email": invited, "role": "member"}, headers=user.headers)
        assert response.status_code == 201, response.text
        assert "token" not in response.json() and "url" not in response.json()
        assert await wait_for(lambda: inbox.link(invited, "/accept-invite"), what="the delivered invitation")


# -- the outbox on the command line ---------------------------------------------------------


async def test_kabar_mail_list_prints_the_outbox(client, tenant, database_url, tmp_path):
    email_addr = fresh_email("cli")
    await invite(tenant, email_addr)
    token = await mailed_token(client, email_addr, "/accept-invite")
    env = {**os.environ, **server_env(database_url, tmp_path)}
    result = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "kabar", "mail", "list", "--to", email_addr], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert f"To: {email_addr}" in result.stdout and f"/accept-invite?token={token}" in result.stdout
    assert "You are invited to" in result.stdout


def test_operator_made_users_count_as_verified(tmp_path: Path, backend):
    """`kabar user create` (the service behind it) vouches for the address."""
    url = create_database(backend, tmp_path, "operator")

    async def run() -> Any:
        async with app_client(base_settings(url, tmp_path)) as client:
            user_id = await client.runtime.db.transaction(create_user, email="Op@Example.test", password=PASSWORD, name="Op")
            return await client.runtime.db.read(lambda conn: conn.execute(select(t.users).where(t.users.c.id == user_id)).one())

    row = asyncio.run(run())
    assert row.email == "op@example.test" and row.email_verified_at is not None


async def test_concurrent_accepts_of_one_invitation_make_one_account(client, tenant):
    email_addr = fresh_email("twice")
    await invite(tenant, email_addr)
    token = await mailed_token(client, email_addr, "/accept-invite")
    body = {"token": token, "password": PASSWORD}
    responses = await asyncio.gather(*(client.post("/v1/invitations/accept", json=body) for _ in range(4)))
    assert sorted(r.status_code for r in responses) == [200, 410, 410, 410], [r.text for r in responses]

    def _users(conn: Any) -> int:
        return len(conn.execute(select(t.users.c.id).where(t.users.c.email == email_addr)).all())

    assert await client.runtime.db.read(_users) == 1


async def test_without_a_mail_server_the_inviter_also_gets_the_link(client, tenant):
    # A development server keeps mail in the outbox; the inviter may copy the link from the answer.
    invited = fresh_email("dev-invitee")
    invitation = await invite(tenant, invited)
    assert "/accept-invite?token=" in invitation["url"] and invitation["token"] in invitation["url"]
    assert invitation["token"] == await mailed_token(client, invited, "/accept-invite")
    listed = (await client.get(f"{tenant.base}/invitations", headers=tenant.owner.headers)).json()["data"]
    assert all("token" not in row for row in listed)  # shown once, never listed
