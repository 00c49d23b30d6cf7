"""Workspaces, members, invitations and API keys: the role table, end to end over HTTP."""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta

from sqlalchemy import select, update

from kabar.db import tables as t
from kabar.db.types import utcnow
from kabar.ids import token_hash
from tests.helpers import PASSWORD, Caller, assert_problem, mailed_token, make_tenant, new_user, wait_for


async def members_of(tenant) -> dict[str, str]:  # noqa: ANN001
    response = await tenant.client.get(f"{tenant.base}/members", headers=tenant.owner.headers)
    assert response.status_code == 200, response.text
    return {m["user_id"]: m["role"] for m in response.json()["data"]}


# -- workspaces -------------------------------------------------------------------------------


async def test_create_read_update_workspace(client, tenant):
    response = await client.post("/v1/workspaces", json={"name": "Toko Maju Jaya"}, headers=tenant.owner.headers)
    assert response.status_code == 201, response.text
    ws = response.json()
    assert ws["slug"].startswith("toko-maju-jaya") and ws["role"] == "owner" and ws["owner_id"] == tenant.owner.user_id
    # Slugs are unique: the same name gets another slug; an explicit taken slug is a 409.
    again = await client.post("/v1/workspaces", json={"name": "Toko Maju Jaya"}, headers=tenant.owner.headers)
    assert again.status_code == 201 and again.json()["slug"] != ws["slug"]
    assert_problem(await client.post("/v1/workspaces", json={"name": "X", "slug": ws["slug"]}, headers=tenant.owner.headers), 409)
    assert_problem(
        await client.patch(f"/v1/workspaces/{again.json()['id']}", json={"slug": ws["slug"]}, headers=tenant.owner.headers), 409
    )

    response = await client.patch(tenant.base, json={"name": "Renamed", "settings": {"greeting": "Halo"}}, headers=tenant.owner.headers)
    assert response.status_code == 200 and response.json()["name"] == "Renamed"
    assert response.json()["settings"] == {"greeting": "Halo"}
    response = await client.get("/v1/me", headers=tenant.owner.headers)
    assert {w["id"] for w in response.json()["workspaces"]} == {tenant.ws, ws["id"], again.json()["id"]}


async def test_writes_append_events(client, tenant):
    await client.patch(tenant.base, json={"name": "Evented"}, headers=tenant.owner.headers)

    def _events(conn):  # noqa: ANN001, ANN202
        return conn.execute(select(t.events).where(t.events.c.workspace_id == tenant.ws).order_by(t.events.c.seq)).all()

    rows = await client.runtime.db.read(_events)
    assert [r.type for r in rows] == ["workspace.created", "workspace.updated"]
    assert [r.seq for r in rows] == [1, 2]
    assert rows[1].data["name"] == "Evented"


# -- the role table ---------------------------------------------------------------------------


async def test_member_cannot_manage_people_keys_or_workspace(client, tenant):
    member = await tenant.add_user("member")
    admin = await tenant.add_user("admin")
    key = await create_key(tenant)
    invitation = (await client.post(f"{tenant.base}/invitations", json={"email": "inv@example.test"}, headers=tenant.owner.headers)).json()
    h = member.headers
    # Members read the workspace and its people…
    assert (await client.get(tenant.base, headers=h)).json()["role"] == "member"
    assert (await client.get(f"{tenant.base}/members", headers=h)).status_code == 200
    # …and manage nothing.
    denied = [
        client.patch(tenant.base, json={"name": "Mine now"}, headers=h),
        client.delete(tenant.base, headers=h),
        client.post(f"{tenant.base}/members", json={"email": (await new_user(client)).email}, headers=h),
        client.patch(f"{tenant.base}/members/{admin.user_id}", json={"role": "member"}, headers=h),
        client.patch(f"{tenant.base}/members/{member.user_id}", json={"role": "admin"}, headers=h),
        client.delete(f"{tenant.base}/members/{admin.user_id}", headers=h),
        client.get(f"{tenant.base}/invitations", headers=h),
        client.post(f"{tenant.base}/invitations", json={"email": "x@example.test"}, headers=h),
        client.delete(f"{tenant.base}/invitations/{invitation['id']}", headers=h),
        client.get(f"{tenant.base}/api-keys", headers=h),
        client.post(f"{tenant.base}/api-keys", json={"name": "mine"}, headers=h),
        client.delete(f"{tenant.base}/api-keys/{key['id']}", headers=h),
    ]
    for request in denied:
        assert_problem(await request, 403, "/forbidden")
    assert (await members_of(tenant))[admin.user_id] == "admin"
    assert (await client.get(tenant.base, headers=tenant.owner.headers)).json()["name"] != "Mine now"
    # Anyone may leave.
    assert (await client.delete(f"{tenant.base}/members/{member.user_id}", headers=h)).status_code == 204
    assert_problem(await client.get(tenant.base, headers=h), 404)


async def test_admin_manages_people_and_keys_but_not_the_workspace_or_its_owner(client, tenant):
    admin = await tenant.add_user("admin")
    h = admin.headers
    other = await new_user(client)
    response = await client.post(f"{tenant.base}/members", json={"email": other.email, "role": "member"}, headers=h)
    assert response.status_code == 201, response.text
    token = await mailed_token(client, other.email, "/accept-invite")
    assert (await client.post("/v1/invitations/accept", json={"token": token}, headers=other.headers)).status_code == 200
    assert (await client.patch(f"{tenant.base}/members/{other.user_id}", json={"role": "admin"}, headers=h)).status_code == 200
    assert (await client.post(f"{tenant.base}/invitations", json={"email": "new@example.test"}, headers=h)).status_code == 201
    key = await client.post(f"{tenant.base}/api-keys", json={"name": "zapier"}, headers=h)
    assert key.status_code == 201
    assert (await client.delete(f"{tenant.base}/api-keys/{key.json()['id']}", headers=h)).status_code == 204
    assert (await client.patch(tenant.base, json={"name": "Admin renamed"}, headers=h)).status_code == 200

    assert_problem(await client.delete(tenant.base, headers=h), 403)
    # Ownership changes hands only by the owner.
    assert_problem(await client.patch(f"{tenant.base}/members/{admin.user_id}", json={"role": "owner"}, headers=h), 403)
    assert_problem(await client.patch(f"{tenant.base}/members/{other.user_id}", json={"role": "owner"}, headers=h), 403)
    assert_problem(await client.patch(f"{tenant.base}/members/{tenant.owner.user_id}", json={"role": "member"}, headers=h), 403)
    assert_problem(await client.delete(f"{tenant.base}/members/{tenant.owner.user_id}", headers=h), 403)
    roles = await members_of(tenant)
    assert roles[tenant.owner.user_id] == "owner" and roles[admin.user_id] == "admin"


async def test_owner_transfers_ownership_and_deletes_workspace(client, tenant):
    admin = await tenant.add_user("admin")
    owner = tenant.owner.headers
    # The owner cannot leave, be removed or demote themselves while owner.
    assert_problem(await client.delete(f"{tenant.base}/members/{tenant.owner.user_id}", headers=owner), 409)
    assert_problem(await client.patch(f"{tenant.base}/members/{tenant.owner.user_id}", json={"role": "admin"}, headers=owner), 409)

    response = await client.patch(f"{tenant.base}/members/{admin.user_id}", json={"role": "owner"}, headers=owner)
    assert response.status_code == 200 and response.json()["role"] == "owner"
    roles = await members_of(tenant)
    assert roles == {tenant.owner.user_id: "admin", admin.user_id: "owner"}
    assert (await client.get(tenant.base, headers=admin.headers)).json()["owner_id"] == admin.user_id
    # The former owner is an admin now: no more deleting.
    assert_problem(await client.delete(tenant.base, headers=owner), 403)

    assert (await client.delete(tenant.base, headers=admin.headers)).status_code == 204
    assert_problem(await client.get(tenant.base, headers=admin.headers), 404)
    assert tenant.ws not in {w["id"] for w in (await client.get("/v1/me", headers=admin.headers)).json()["workspaces"]}


async def test_member_validation(client, tenant):
    h = tenant.owner.headers
    assert_problem(await client.post(f"{tenant.base}/members", json={}, headers=h), 422)
    assert_problem(await client.post(f"{tenant.base}/members", json={"user_id": tenant.owner.user_id}, headers=h), 422)
    assert_problem(await client.post(f"{tenant.base}/members", json={"email": tenant.owner.email}, headers=h), 409)
    assert_problem(await client.post(f"{tenant.base}/members", json={"email": "a@b.id", "role": "owner"}, headers=h), 422)
    assert_problem(await client.patch(f"{tenant.base}/members/no-such-user", json={"role": "admin"}, headers=h), 404)
    assert_problem(await client.delete(f"{tenant.base}/members/no-such-user", headers=h), 404)


# -- API keys ---------------------------------------------------------------------------------


async def create_key(tenant, name: str = "integration") -> dict:  # noqa: ANN001
    response = await tenant.client.post(f"{tenant.base}/api-keys", json={"name": name}, headers=tenant.owner.headers)
    assert response.status_code == 201, response.text
    return response.json()


async def test_api_key_shown_once_stored_hashed_and_revocable(client, tenant):
    key = await create_key(tenant)
    secret = key["secret"]
    assert secret.startswith("kbr_") and len(secret) > 40 and key["hint"] == secret[-4:]

    listed = (await client.get(f"{tenant.base}/api-keys", headers=tenant.owner.headers)).json()["data"]
    assert [k["id"] for k in listed] == [key["id"]]
    assert "secret" not in listed[0] and secret not in str(listed)

    def _row(conn):  # noqa: ANN001, ANN202
        return conn.execute(select(t.api_keys).where(t.api_keys.c.id == key["id"])).one()

    row = await client.runtime.db.read(_row)
    assert row.secret_hash == token_hash(secret) and secret not in [str(v) for v in row]

    api = Caller(token=secret)
    response = await client.get(tenant.base, headers=api.headers)
    assert response.status_code == 200 and response.json()["role"] == "api"
    me = (await client.get("/v1/me", headers=api.headers)).json()
    assert me["user"] is None and [w["id"] for w in me["workspaces"]] == [tenant.ws]

    # A key is an integration, not a person: it manages no people, keys or settings.
    assert_problem(await client.get(f"{tenant.base}/api-keys", headers=api.headers), 403)
    assert_problem(await client.post(f"{tenant.base}/api-keys", json={"name": "x"}, headers=api.headers), 403)
    assert_problem(await client.post(f"{tenant.base}/members", json={"email": tenant.owner.email}, headers=api.headers), 403)
    assert_problem(await client.post(f"{tenant.base}/invitations", json={"email": "x@example.test"}, headers=api.headers), 403)
    assert_problem(await client.patch(tenant.base, json={"name": "x"}, headers=api.headers), 403)
    assert_problem(await client.post("/v1/workspaces", json={"name": "x"}, headers=api.headers), 403)
    assert_problem(await client.post("/v1/auth/password", json={"current_password": "x", "new_password": "y" * 9}, headers=api.headers), 403)

    # Tampered or unknown keys are 401.
    for bad in (secret[:-1] + ("A" if secret[-1] != "A" else "B"), "kbr_" + "0" * 32 + "_x", "kbr_nonsense", "kbr_"):
        assert_problem(await client.get(tenant.base, headers=Caller(token=bad).headers), 401)

    assert (await client.delete(f"{tenant.base}/api-keys/{key['id']}", headers=tenant.owner.headers)).status_code == 204
    assert_problem(await client.get(tenant.base, headers=api.headers), 401)
    assert_problem(await client.get("/v1/me", headers=api.headers), 401)
    assert_problem(await client.delete(f"{tenant.base}/api-keys/{key['id']}", headers=tenant.owner.headers), 404)
    listed = (await client.get(f"{tenant.base}/api-keys", headers=tenant.owner.headers)).json()["data"]
    assert listed[0]["revoked_at"] is not None


async def test_api_key_last_used_at_follows_its_use(client, tenant):
    key = await create_key(tenant, "toko-online")

    async def listed() -> dict:
        response = await client.get(f"{tenant.base}/api-keys", headers=tenant.owner.headers)
        return next(k for k in response.json()["data"] if k["id"] == key["id"])

    assert (await listed())["last_used_at"] is None  # created, never used
    before = utcnow()
    assert (await client.get(f"{tenant.base}/contacts", headers=Caller(token=key["secret"]).headers)).status_code == 200

    async def used() -> str | None:
        return (await listed())["last_used_at"]

    stamp = await wait_for(used, what="last_used_at to be recorded")
    assert datetime.fromisoformat(stamp.replace("Z", "+00:00")) >= before - timedelta(seconds=1)
    assert_problem(await client.get(tenant.base, headers=Caller(token=key["secret"][:-1] + "x").headers), 401)


# -- invitations ------------------------------------------------------------------------------


async def invite(tenant, email: str, role: str = "member") -> dict:  # noqa: ANN001
    response = await tenant.client.post(f"{tenant.base}/invitations", json={"email": email, "role": role}, headers=tenant.owner.headers)
    assert response.status_code == 201, response.text
    return response.json()


async def test_invitation_accept_creates_user_with_session(client, tenant):
    email = f"New.Person-{secrets.token_hex(3)}@Example.test"
    invitation = await invite(tenant, email, "admin")
    # The link goes to the invited mailbox (this development server, with no SMTP, also shows it
    # once to the inviter); it is never listed.
    assert invitation["status"] == "pending" and invitation["email"] == email.lower()
    listed = (await client.get(f"{tenant.base}/invitations", headers=tenant.owner.headers)).json()["data"]
    assert [i["id"] for i in listed] == [invitation["id"]] and "token" not in listed[0]
    assert invitation["token"] == await mailed_token(client, email, "/accept-invite")

    # A too-short password is refused and nothing happens (the invitation stays usable).
    response = await client.post("/v1/invitations/accept", json={"token": invitation["token"], "password": "short", "name": "Ani"})
    assert_problem(response, 422)
    response = await client.post("/v1/invitations/accept", json={"token": invitation["token"], "name": "Ani"})
    assert_problem(response, 422)

    response = await client.post("/v1/invitations/accept", json={"token": invitation["token"], "password": PASSWORD, "name": "Ani"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["workspace_id"] == tenant.ws and body["role"] == "admin" and body["user"]["name"] == "Ani"
    assert body["user"]["email_verified"] is False  # until the link mailed now is used
    session = Caller(token=body["token"])
    me = (await client.get("/v1/me", headers=session.headers)).json()
    assert me["user"]["email"] == email.lower() and me["workspaces"] == [
        {"id": tenant.ws, "name": me["workspaces"][0]["name"], "slug": me["workspaces"][0]["slug"], "role": "admin"}
    ]
    assert (await client.post("/v1/auth/login", json={"email": email, "password": PASSWORD})).status_code == 200

    # Used once only.
    again = await client.post("/v1/invitations/accept", json={"token": invitation["token"], "password": PASSWORD})
    assert_problem(again, 410)
    listed = (await client.get(f"{tenant.base}/invitations", headers=tenant.owner.headers)).json()["data"]
    assert listed[0]["status"] == "accepted"


async def test_invitation_for_existing_user_joins_them(client, tenant):
    existing = await new_user(client)
    await invite(tenant, existing.email)
    token = await mailed_token(client, existing.email, "/accept-invite")
    response = await client.post("/v1/invitations/accept", json={"token": token}, headers=existing.headers)
    assert response.status_code == 200, response.text
    assert "token" not in response.json()  # no new credential: they are signed in already
    assert (await members_of(tenant))[existing.user_id] == "member"
    # Their password did not change.
    assert (await client.post("/v1/auth/login", json={"email": existing.email, "password": PASSWORD})).status_code == 200
    # Inviting a member again is a conflict.
    response = await client.post(f"{tenant.base}/invitations", json={"email": existing.email}, headers=tenant.owner.headers)
    assert_problem(response, 409)


async def test_invitation_invalid_expired_cancelled(client, tenant):
    email = f"late-{secrets.token_hex(3)}@example.test"
    invitation = await invite(tenant, email)
    invitation["token"] = await mailed_token(client, email, "/accept-invite")
    inv_id, _, secret = invitation["token"].partition(".")
    for token in (f"{inv_id}.{'x' * len(secret)}", f"{inv_id}", "x" * 40, f"nope.{secret}"):
        response = await client.post("/v1/invitations/accept", json={"token": token, "password": PASSWORD})
        assert_problem(response, 404)

    def _expire(uow):  # noqa: ANN001, ANN202
        uow.conn.execute(update(t.invitations).where(t.invitations.c.id == inv_id).values(expires_at=utcnow() - timedelta(minutes=1)))

    await client.runtime.db.transaction(_expire)
    response = await client.post("/v1/invitations/accept", json={"token": invitation["token"], "password": PASSWORD})
    assert_problem(response, 410, "/invitation-expired")
    listed = (await client.get(f"{tenant.base}/invitations", headers=tenant.owner.headers)).json()["data"]
    assert listed[0]["status"] == "expired"

    email = f"cancel-{secrets.token_hex(3)}@example.test"
    cancelled = await invite(tenant, email)
    cancelled["token"] = await mailed_token(client, email, "/accept-invite")
    assert (await client.delete(f"{tenant.base}/invitations/{cancelled['id']}", headers=tenant.owner.headers)).status_code == 204
    response = await client.post("/v1/invitations/accept", json={"token": cancelled["token"], "password": PASSWORD})
    assert_problem(response, 410)
    assert_problem(await client.delete(f"{tenant.base}/invitations/{cancelled['id']}", headers=tenant.owner.headers), 404)


async def test_invitation_token_of_another_workspace_is_not_revocable_here(client, tenant):
    other = await make_tenant(client)
    invitation = await invite(other, f"x-{secrets.token_hex(3)}@example.test")
    assert_problem(await client.delete(f"{tenant.base}/invitations/{invitation['id']}", headers=tenant.owner.headers), 404)
