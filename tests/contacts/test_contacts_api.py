"""Contacts CRUD, list filters and pagination, search, validation, tenancy, roles, events."""

from __future__ import annotations

import asyncio

from kabar.db import tables as t
from tests.contacts.helpers import create_contact, events_of, rows
from tests.helpers import assert_problem


async def test_create_get_update_delete(client, tenant):
    created = await create_contact(
        tenant,
        phone="0812-3456-7890",
        name="  Budi Santoso ",
        email="Budi@Contoh.ID",
        tags=["VIP", " australia ", "vip", ""],
        lead_status="hot_lead",
        lead_score=70,
        attributes={"intake": "2026-02", "budget": 350},
    )
    assert created["phone"] == "+6281234567890"
    assert created["phone_raw"] == "0812-3456-7890"
    assert created["name"] == "Budi Santoso"
    assert created["email"] == "budi@contoh.id"
    assert created["tags"] == ["vip", "australia"]
    assert (created["lead_status"], created["lead_score"], created["source"]) == ("hot_lead", 70, "manual")
    assert created["attributes"] == {"intake": "2026-02", "budget": 350}
    url = f"{tenant.base}/contacts/{created['id']}"

    got = await client.get(url, headers=tenant.owner.headers)
    assert got.status_code == 200 and got.json() == created

    patched = await client.patch(
        url,
        json={"name": None, "lead_score": 90, "attributes": {"budget": None, "city": "Bandung"}, "tags": ["S2"]},
        headers=tenant.owner.headers,
    )
    assert patched.status_code == 200, patched.text
    body = patched.json()
    assert body["name"] is None and body["lead_score"] == 90 and body["tags"] == ["s2"]
    assert body["attributes"] == {"intake": "2026-02", "city": "Bandung"}
    assert body["email"] == "budi@contoh.id"  # not sent, not changed

    deleted = await client.delete(url, headers=tenant.owner.headers)
    assert deleted.status_code == 204
    assert_problem(await client.get(url, headers=tenant.owner.headers), 404)

    kinds = [(e.type, e.contact_id) for e in await events_of(client, tenant.ws, "contact.created", "contact.updated", "contact.deleted")]
    assert kinds == [("contact.created", created["id"]), ("contact.updated", created["id"]), ("contact.deleted", created["id"])]
    updated_event = (await events_of(client, tenant.ws, "contact.updated"))[0]
    assert updated_event.data["lead_score"] == 90 and updated_event.data["phone"] == "+6281234567890"


async def test_same_person_in_any_format_conflicts(client, tenant):
    first = await create_contact(tenant, phone="+62 812-1111-2222")
    for phone in ("081211112222", "6281211112222", "+6281211112222", "812 1111 2222"):
        response = await client.post(f"{tenant.base}/contacts", json={"phone": phone}, headers=tenant.owner.headers)
        body = assert_problem(response, 409, "contact-exists")
        assert body["existing_id"] == first["id"]
    # A foreign number stays foreign.
    foreign = await create_contact(tenant, phone="+1 415 555 2671")
    assert foreign["phone"] == "+14155552671"


async def test_field_errors_are_all_reported(client, tenant, other_tenant):
    response = await client.post(
        f"{tenant.base}/contacts",
        json={
            "phone": "12",
            "email": "not-an-email",
            "lead_status": "warmish",
            "lead_score": 101,
            "assignee_id": other_tenant.owner.user_id,  # a user, but not of this workspace
            "tags": ["x" * 51],
        },
        headers=tenant.owner.headers,
    )
    body = assert_problem(response, 422, "validation-error")
    assert {e["field"] for e in body["errors"]} == {"phone", "email", "lead_status", "lead_score", "assignee_id", "tags"}
    assert await rows(client, t.contacts, t.contacts.c.workspace_id == tenant.ws) == []

    for bad in ({"phone": "0812345678901", "lead_score": "high"}, {"phone": "0812345678901", "colour": "red"}, {"name": "x"}):
        assert_problem(await client.post(f"{tenant.base}/contacts", json=bad, headers=tenant.owner.headers), 422)

    contact = await create_contact(tenant, phone="081299990000")
    url = f"{tenant.base}/contacts/{contact['id']}"
    assert_problem(await client.patch(url, json={"lead_score": -1}, headers=tenant.owner.headers), 422)
    assert_problem(await client.patch(url, json={"phone": "abc"}, headers=tenant.owner.headers), 422)
    other = await create_contact(tenant, phone="081299990001")
    assert_problem(await client.patch(url, json={"phone": other["phone"]}, headers=tenant.owner.headers), 409, "contact-exists")


async def test_other_workspace_ids_are_404(client, tenant, other_tenant):
    theirs = await create_contact(other_tenant, phone="081277776666")
    url = f"{tenant.base}/contacts/{theirs['id']}"
    for method, kwargs in (("GET", {}), ("PATCH", {"json": {"name": "x"}}), ("DELETE", {})):
        assert_problem(await client.request(method, url, headers=tenant.owner.headers, **kwargs), 404)
    assert_problem(await client.get(url + "/notes", headers=tenant.owner.headers), 404)
    assert_problem(await client.post(url + "/notes", json={"content": "x"}, headers=tenant.owner.headers), 404)
    # Their workspace itself is not ours either.
    assert_problem(await client.get(f"{other_tenant.base}/contacts", headers=tenant.owner.headers), 404)
    still = await client.get(f"{other_tenant.base}/contacts/{theirs['id']}", headers=other_tenant.owner.headers)
    assert still.status_code == 200 and still.json()["name"] is None


async def test_idempotent_create(client, tenant):
    headers = {**tenant.owner.headers, "Idempotency-Key": "create-budi-1"}
    body = {"phone": "081255554444", "name": "Budi"}
    first = await client.post(f"{tenant.base}/contacts", json=body, headers=headers)
    again = await client.post(f"{tenant.base}/contacts", json=body, headers=headers)
    assert first.status_code == again.status_code == 201
    assert first.json() == again.json()
    assert len(await rows(client, t.contacts, t.contacts.c.workspace_id == tenant.ws)) == 1
    assert len(await events_of(client, tenant.ws, "contact.created")) == 1
    reused = await client.post(f"{tenant.base}/contacts", json={**body, "name": "Other"}, headers=headers)
    assert_problem(reused, 409, "idempotency-key-reused")


async def test_concurrent_creates_of_one_phone_make_one_contact(client, tenant):
    forms = ["081233332222", "+6281233332222", "6281233332222", "0812 3333 2222"]
    responses = await asyncio.gather(
        *(client.post(f"{tenant.base}/contacts", json={"phone": p}, headers=tenant.owner.headers) for p in forms)
    )
    assert sorted(r.status_code for r in responses) == [201, 409, 409, 409]
    assert len(await rows(client, t.contacts, t.contacts.c.workspace_id == tenant.ws)) == 1


async def test_list_pages_newest_first_without_skips_or_repeats(client, tenant):
    made = [await create_contact(tenant, phone=f"0812400000{i:02d}") for i in range(7)]
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        page = (await client.get(f"{tenant.base}/contacts", params=params, headers=tenant.owner.headers)).json()
        seen += [c["id"] for c in page["data"]]
        if len(seen) == 3:
            await create_contact(tenant, phone="081240000099")  # newer rows do not shift the pages
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [c["id"] for c in reversed(made)]
    assert_problem(await client.get(f"{tenant.base}/contacts", params={"limit": 201}, headers=tenant.owner.headers), 422)
    assert_problem(await client.get(f"{tenant.base}/contacts", params={"cursor": "garbage!"}, headers=tenant.owner.headers), 400)


async def test_filters(client, tenant):
    member = await tenant.add_user("member")
    hot = await create_contact(tenant, phone="081250000001", lead_status="hot_lead", tags=["vip", "uk"])
    cold = await create_contact(tenant, phone="081250000002", lead_status="cold_lead", tags=["uk"], assignee_id=member.user_id)
    plain = await create_contact(tenant, phone="081250000003")

    async def ids(**params):
        response = await client.get(f"{tenant.base}/contacts", params=params, headers=tenant.owner.headers)
        assert response.status_code == 200, response.text
        return {c["id"] for c in response.json()["data"]}

    assert await ids(lead_status=["hot_lead", "cold_lead"]) == {hot["id"], cold["id"]}
    assert await ids(lead_status="prospect") == {plain["id"]}
    assert await ids(tag="VIP") == {hot["id"]}
    assert await ids(tag=["vip", "uk"]) == {hot["id"], cold["id"]}
    assert await ids(assignee_id=member.user_id) == {cold["id"]}
    assert await ids(assignee_id="unassigned") == {hot["id"], plain["id"]}
    assert await ids(tag="uk", lead_status="cold_lead") == {cold["id"]}
    assert_problem(await client.get(f"{tenant.base}/contacts", params={"lead_status": "warm"}, headers=tenant.owner.headers), 422)


async def test_search_by_name_phone_and_email(client, tenant):
    budi = await create_contact(tenant, phone="+6281234567890", name="Budi Santoso", email="budi@contoh.id")
    siti = await create_contact(tenant, phone="+6285711112222", name="Siti Rahma")
    tom = await create_contact(tenant, phone="+14155552671", name="Tom O'Brien")

    async def q(text):
        response = await client.get(f"{tenant.base}/contacts", params={"q": text}, headers=tenant.owner.headers)
        assert response.status_code == 200, response.text
        return {c["id"] for c in response.json()["data"]}

    assert await q("3456") == {budi["id"]}  # digits in the middle of the number
    assert await q("0812 3456") == {budi["id"]}  # local form, typed with a space
    assert await q("+62 812-345") == {budi["id"]}
    assert await q("SANTOSO") == {budi["id"]}
    assert await q("budi santoso") == {budi["id"]}
    assert await q("contoh.id") == {budi["id"]}
    assert await q("rahma") == {siti["id"]}
    assert await q("si") == {siti["id"]}  # shorter than a trigram still works
    assert await q("o'brien") == {tom["id"]}
    assert await q('"') == set()
    assert await q("100%") == set()
    assert await q("ra ma") == {siti["id"]}
    # The search follows changes of name and phone.
    await client.patch(f"{tenant.base}/contacts/{siti['id']}", json={"name": "Siti Wulandari"}, headers=tenant.owner.headers)
    assert await q("rahma") == set()
    assert await q("wulan") == {siti["id"]}
    await client.delete(f"{tenant.base}/contacts/{tom['id']}", headers=tenant.owner.headers)
    assert await q("brien") == set()


async def test_member_sees_and_edits_only_own_or_unassigned(client, tenant):
    member = await tenant.add_user("member")
    colleague = await tenant.add_user("member")
    mine = await create_contact(tenant, phone="081260000001", assignee_id=member.user_id)
    free = await create_contact(tenant, phone="081260000002")
    theirs = await create_contact(tenant, phone="081260000003", assignee_id=colleague.user_id)

    listed = (await client.get(f"{tenant.base}/contacts", headers=member.headers)).json()["data"]
    assert {c["id"] for c in listed} == {mine["id"], free["id"]}
    found = (await client.get(f"{tenant.base}/contacts", params={"q": "0812600000"}, headers=member.headers)).json()["data"]
    assert {c["id"] for c in found} == {mine["id"], free["id"]}
    hidden = f"{tenant.base}/contacts/{theirs['id']}"
    assert_problem(await client.get(hidden, headers=member.headers), 404)
    assert_problem(await client.patch(hidden, json={"name": "x"}, headers=member.headers), 404)
    assert_problem(await client.post(hidden + "/notes", json={"content": "x"}, headers=member.headers), 404)
    ok = await client.patch(f"{tenant.base}/contacts/{free['id']}", json={"name": "Dewi"}, headers=member.headers)
    assert ok.status_code == 200
    # Creating an existing (hidden) phone conflicts without revealing the hidden contact's id.
    conflict = assert_problem(await client.post(f"{tenant.base}/contacts", json={"phone": theirs["phone"]}, headers=member.headers), 409)
    assert "existing_id" not in conflict
    # Members do not delete, import, export or merge.
    assert_problem(await client.delete(f"{tenant.base}/contacts/{free['id']}", headers=member.headers), 403)
    assert_problem(await client.get(f"{tenant.base}/contacts/export.csv", headers=member.headers), 403)
    merge = {"keep_id": mine["id"], "merge_id": free["id"]}
    assert_problem(await client.post(f"{tenant.base}/contacts/merge", json=merge, headers=member.headers), 403)
    files = {"file": ("c.csv", b"phone\n081260000009\n", "text/csv")}
    assert_problem(await client.post(f"{tenant.base}/contacts/import", files=files, headers=member.headers), 403)


async def test_role_matrix_for_delete(client, tenant):
    admin = await tenant.add_user("admin")
    key = await tenant.api_key()
    for i, caller in enumerate((tenant.owner, admin, key)):
        contact = await create_contact(tenant, caller=caller, phone=f"08127000000{i}")
        response = await client.delete(f"{tenant.base}/contacts/{contact['id']}", headers=caller.headers)
        assert response.status_code == 204, response.text


async def test_unauthenticated_is_401(client, tenant):
    assert_problem(await client.get(f"{tenant.base}/contacts"), 401)
    assert_problem(await client.get(f"{tenant.base}/contacts/by-phone", params={"phone": "0812"}), 401)
