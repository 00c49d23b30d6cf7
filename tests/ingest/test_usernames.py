"""WhatsApp usernames: a customer may reach the business without a phone number, known only by a
business-scoped user id (BSUID, ``user_id``) and an ``@username``. No such message is dropped; a
later payload carrying both the phone and the id links them into one contact; an id change is
applied; the API shows, finds and exports the new identities. Payloads: ``fixtures/usernames``
(Meta's documented BSUID shapes, in pywa's fixture style) and Kapso v2 with its
``business_scoped_user_id``/``username`` fields."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from kabar.channels.fake import payloads as p
from kabar.db import tables as t
from tests.channels.support import configure, count, post_kapso, post_meta, rows

FIXTURES = Path(__file__).parent / "fixtures" / "usernames"
USER_ID = "ID.13491208655302741918"
NEW_USER_ID = "ID.99990000111122223333"
PHONE = "+6281233334444"


def meta_case(case: str, pnid: str) -> dict[str, Any]:
    doc = copy.deepcopy(json.loads((FIXTURES / "meta.json").read_text())[case])
    for entry in doc["entry"]:
        for change in entry["changes"]:
            change["value"]["metadata"]["phone_number_id"] = pnid
    return doc


async def post_case(client: Any, channel: Any, case: str) -> None:
    response = await post_meta(client, channel, meta_case(case, channel.pnid))
    assert response.status_code == 200 and response.json() == {"status": "ok"}, response.text


async def contacts(client: Any, ws: str) -> list[Any]:
    return await rows(client, t.contacts, ws)


async def api_contact(tenant: Any, contact_id: str) -> dict[str, Any]:
    response = await tenant.client.get(f"{tenant.base}/contacts/{contact_id}", headers=tenant.owner.headers)
    assert response.status_code == 200, response.text
    return response.json()


async def test_meta_message_with_only_a_user_id_is_kept(client, workspace):
    """Before: ``Ignored("no usable phone number")``: no contact, no message."""
    channel = await configure(workspace, "meta")
    await post_case(client, channel, "user_id_only")
    await post_case(client, channel, "user_id_without_from")  # no ``from`` at all, no ``wa_id``
    [contact] = await contacts(client, workspace.ws)
    assert (contact.phone_e164, contact.whatsapp_user_id, contact.username) == (None, USER_ID, "realsheena")
    assert sorted(m.text for m in await rows(client, t.messages, workspace.ws)) == ["Ada warna lain?", "Halo?"]
    out = await api_contact(workspace, contact.id)
    assert (out["phone"], out["phone_raw"], out["whatsapp_user_id"], out["username"]) == (None, None, USER_ID, "realsheena")
    listed = await client.get(f"{workspace.base}/conversations", headers=workspace.owner.headers)
    [row] = listed.json()["data"]
    assert (row["contact"]["phone"], row["contact"]["whatsapp_user_id"], row["contact"]["username"]) == (None, USER_ID, "realsheena")
    created = [e.data for e in await rows(client, t.events, workspace.ws) if e.type == "contact.created"]
    assert [(c["whatsapp_user_id"], c["username"]) for c in created] == [(USER_ID, "realsheena")]


async def test_a_later_payload_with_phone_and_user_id_links_them(client, workspace):
    """The customer wrote from their phone before (a phone contact), then as @realsheena without
    the number (an id-only contact); a payload with both merges the id-only contact into the
    phone contact, every message kept in one conversation. Before: the id-only message was dropped."""
    channel = await configure(workspace, "meta")
    before = p.meta_envelope(channel.pnid, {"contacts": [{"profile": {"name": "Sheena"}, "wa_id": PHONE[1:]}],
                                            "messages": [{"from": PHONE[1:], "id": "wamid.PHONE-1", "timestamp": "1749416000", "type": "text", "text": {"body": "Dari nomor"}}]})
    assert (await post_meta(client, channel, before)).status_code == 200
    await post_case(client, channel, "user_id_only")
    assert await count(client, t.contacts, workspace.ws) == 2
    phone_contact = (await rows(client, t.contacts, workspace.ws, t.contacts.c.phone_e164 == PHONE))[0]

    await post_case(client, channel, "phone_and_user_id")
    [contact] = await contacts(client, workspace.ws)
    assert contact.id == phone_contact.id
    assert (contact.phone_e164, contact.whatsapp_user_id, contact.username) == (PHONE, USER_ID, "realsheena")
    [conversation] = await rows(client, t.conversations, workspace.ws)
    messages = await rows(client, t.messages, workspace.ws)
    assert sorted(m.text for m in messages) == sorted(["Dari nomor", "Ada warna lain?", "Ini nomor saya"])
    assert {(m.contact_id, m.conversation_id) for m in messages} == {(contact.id, conversation.id)}
    assert conversation.unread_count == 3
    types = [e.type for e in await rows(client, t.events, workspace.ws)]
    assert "contact.merged" in types and "contact.deleted" in types
    # A reply now goes to the phone (it wins over the id): both identities point at one contact.
    found = await client.get(f"{workspace.base}/contacts", params={"q": "@realsheena"}, headers=workspace.owner.headers)
    assert [c["id"] for c in found.json()["data"]] == [contact.id]


async def test_an_id_only_contact_gains_the_phone_from_a_later_payload(client, workspace):
    channel = await configure(workspace, "meta")
    await post_case(client, channel, "user_id_only")
    await post_case(client, channel, "phone_and_user_id")
    [contact] = await contacts(client, workspace.ws)
    assert (contact.phone_e164, contact.phone_raw, contact.whatsapp_user_id) == (PHONE, PHONE[1:], USER_ID)
    assert await count(client, t.conversations, workspace.ws) == 1
    updated = [e.data for e in await rows(client, t.events, workspace.ws) if e.type == "contact.updated"]
    assert updated and updated[-1]["phone"] == PHONE


async def test_user_changed_user_id_is_applied(client, workspace):
    """Before: the system message was dropped (no phone) and the id never changed, so the next
    message under the new id made a second contact."""
    channel = await configure(workspace, "meta")
    await post_case(client, channel, "user_id_only")
    await post_case(client, channel, "user_changed_user_id")
    [contact] = await contacts(client, workspace.ws)
    assert contact.whatsapp_user_id == NEW_USER_ID
    assert contact.attributes["previous_user_ids"] == [USER_ID]
    await post_case(client, channel, "new_user_id_message")
    assert [c.id for c in await contacts(client, workspace.ws)] == [contact.id]
    assert [m.type for m in await rows(client, t.messages, workspace.ws)].count("system") == 1
    assert await count(client, t.conversations, workspace.ws) == 1


async def test_id_change_after_a_message_under_the_new_id_merges(client, workspace):
    """The new id's first message arrived before the system event (webhooks are unordered): the
    two contacts are one person and end up as one."""
    channel = await configure(workspace, "meta")
    await post_case(client, channel, "user_id_only")
    await post_case(client, channel, "new_user_id_message")
    assert await count(client, t.contacts, workspace.ws) == 2
    await post_case(client, channel, "user_changed_user_id")
    [contact] = await contacts(client, workspace.ws)
    assert contact.whatsapp_user_id == NEW_USER_ID
    assert sorted(m.text or "" for m in await rows(client, t.messages, workspace.ws) if m.type == "text") == ["Ada warna lain?", "Masih saya"]


async def test_kapso_message_without_phone_and_identity_change(client, workspace):
    """Kapso v2: ``conversation.business_scoped_user_id``/``username``, no ``phone_number`` and no
    ``message.from``; then ``whatsapp.contact.identity_changed``. Before: the message was dropped."""
    channel = await configure(workspace, "kapso")
    doc = p.kapso_received(pnid=channel.pnid, phone=None, user_id=USER_ID, username="@Budi.S", text="Halo dari username", name="Budi")
    assert "phone_number" not in doc["conversation"] and "from" not in doc["message"]
    response = await post_kapso(client, channel, doc)
    assert response.status_code == 200 and response.json() == {"status": "ok"}
    [contact] = await contacts(client, workspace.ws)
    assert (contact.phone_e164, contact.whatsapp_user_id, contact.username, contact.profile_name) == (None, USER_ID, "budi.s", "Budi")
    # Later the same customer with their phone as well: linked, not a second contact.
    both = p.kapso_received(pnid=channel.pnid, phone=PHONE, user_id=USER_ID, username="budi.s", text="Ini nomor saya")
    assert (await post_kapso(client, channel, both)).status_code == 200
    [contact] = await contacts(client, workspace.ws)
    assert (contact.phone_e164, contact.whatsapp_user_id) == (PHONE, USER_ID)
    change = {"phone_number_id": channel.pnid, "contact": {"business_scoped_user_id": NEW_USER_ID, "phone_number": PHONE},
              "previous": {"business_scoped_user_id": USER_ID}}
    assert (await post_kapso(client, channel, change, "whatsapp.contact.identity_changed")).status_code == 200
    [contact] = await contacts(client, workspace.ws)
    assert contact.whatsapp_user_id == NEW_USER_ID
    assert [r.status for r in await rows(client, t.webhook_receipts, workspace.ws)] == ["applied"] * 3


async def test_username_moves_to_its_new_owner(client, workspace):
    """WhatsApp usernames change hands over time; unique per workspace, the newest holder has it."""
    channel = await configure(workspace, "kapso")
    for user_id, text in ((USER_ID, "pertama"), (NEW_USER_ID, "kedua")):
        doc = p.kapso_received(pnid=channel.pnid, phone=None, user_id=user_id, username="tokobaju", text=text)
        assert (await post_kapso(client, channel, doc)).status_code == 200
    found = {c.whatsapp_user_id: c.username for c in await contacts(client, workspace.ws)}
    assert found == {USER_ID: None, NEW_USER_ID: "tokobaju"}
    assert [r.status for r in await rows(client, t.webhook_receipts, workspace.ws)] == ["applied"] * 2


# -- the contacts API -------------------------------------------------------------------------


async def test_contacts_api_with_whatsapp_user_id(client, workspace):
    base, headers = workspace.base, workspace.owner.headers
    created = await client.post(f"{base}/contacts", json={"whatsapp_user_id": USER_ID, "username": "@Sheena", "name": "Sheena"}, headers=headers)
    assert created.status_code == 201, created.text
    body = created.json()
    assert (body["phone"], body["whatsapp_user_id"], body["username"]) == (None, USER_ID, "sheena")
    # Neither a phone nor an id: 422, nothing stored.
    neither = await client.post(f"{base}/contacts", json={"name": "Nobody"}, headers=headers)
    assert neither.status_code == 422 and neither.headers["content-type"].startswith("application/problem+json")
    # The id and the username are unique in the workspace.
    for clash in ({"whatsapp_user_id": USER_ID}, {"phone": PHONE, "username": "sheena"}):
        response = await client.post(f"{base}/contacts", json=clash, headers=headers)
        assert response.status_code == 409, response.text
    bad = await client.post(f"{base}/contacts", json={"whatsapp_user_id": "not an id!"}, headers=headers)
    assert bad.status_code == 422
    assert await count(client, t.contacts, workspace.ws) == 1
    # The phone can be added, and removed again while the id stays; never both gone.
    patched = await client.patch(f"{base}/contacts/{body['id']}", json={"phone": "0812-3333-4444"}, headers=headers)
    assert patched.status_code == 200 and patched.json()["phone"] == PHONE
    cleared = await client.patch(f"{base}/contacts/{body['id']}", json={"phone": None}, headers=headers)
    assert cleared.status_code == 200 and cleared.json()["phone"] is None
    orphan = await client.patch(f"{base}/contacts/{body['id']}", json={"whatsapp_user_id": None}, headers=headers)
    assert orphan.status_code == 422
    # Search by @username, or by the username alone.
    for q in ("@sheena", "sheen"):
        found = await client.get(f"{base}/contacts", params={"q": q}, headers=headers)
        assert [c["id"] for c in found.json()["data"]] == [body["id"]], q
    # The by-phone lookup still answers by phone only.
    by_phone = await client.get(f"{base}/contacts/by-phone", params={"phone": PHONE}, headers=headers)
    assert by_phone.status_code == 200 and by_phone.json() == {"found": False}
    # CSV export carries the new columns.
    exported = await client.get(f"{base}/contacts/export.csv", headers=headers)
    header, row = exported.text.lstrip("\ufeff").splitlines()[:2]
    columns = header.split(",")
    assert {"whatsapp_user_id", "username"} <= set(columns)
    values = dict(zip(columns, row.split(","), strict=False))
    assert (values["phone"], values["whatsapp_user_id"], values["username"]) == ("", USER_ID, "sheena")


async def test_a_delivered_status_teaches_the_contact_its_user_id(client, workspace):
    """Meta's sent/delivered/read statuses carry ``contacts[]`` with the recipient's user id and
    username: the phone contact learns them, so the customer's next message without the phone
    lands on the same contact. Before: the status changed nothing and that message was dropped."""
    from sqlalchemy import insert

    from kabar.db.types import utcnow
    from kabar.ids import new_id

    channel = await configure(workspace, "meta")
    first = p.meta_envelope(channel.pnid, {"contacts": [{"profile": {"name": "Sheena"}, "wa_id": PHONE[1:]}],
                                           "messages": [{"from": PHONE[1:], "id": "wamid.PHONE-9", "timestamp": "1749416000", "type": "text", "text": {"body": "Halo"}}]})
    assert (await post_meta(client, channel, first)).status_code == 200
    [conversation] = await rows(client, t.conversations, workspace.ws)
    now = utcnow()
    ours = {"id": new_id(), "workspace_id": workspace.ws, "conversation_id": conversation.id, "contact_id": conversation.contact_id,
            "direction": "outbound", "sender_type": "user", "type": "text", "text": "Halo juga", "status": "sent",
            "provider_message_id": "wamid.OURS-9", "reactions": [], "metadata": {}, "created_at": now, "updated_at": now}
    await client.runtime.db.transaction(lambda uow: uow.conn.execute(insert(t.messages).values(**ours)))
    delivered = p.meta_envelope(channel.pnid, {
        "contacts": [{"profile": {"name": "Sheena", "username": "@realsheena"}, "wa_id": PHONE[1:], "user_id": USER_ID}],
        "statuses": [{"id": "wamid.OURS-9", "status": "delivered", "timestamp": "1749416100", "recipient_id": PHONE[1:]}]})
    assert (await post_meta(client, channel, delivered)).status_code == 200
    [contact] = await contacts(client, workspace.ws)
    assert (contact.phone_e164, contact.whatsapp_user_id, contact.username) == (PHONE, USER_ID, "realsheena")
    await post_case(client, channel, "user_id_only")
    assert [c.id for c in await contacts(client, workspace.ws)] == [contact.id]
    assert await count(client, t.conversations, workspace.ws) == 1
    assert (await rows(client, t.messages, workspace.ws, t.messages.c.provider_message_id == "wamid.OURS-9"))[0].status == "delivered"


async def test_marketing_preference_of_an_id_only_customer(client, workspace):
    """``user_preferences`` for a username user names only their ``user_id`` (``wa_id`` empty).
    Before: skipped for want of a phone."""
    channel = await configure(workspace, "meta")
    await post_case(client, channel, "user_id_only")
    pref = p.meta_envelope(channel.pnid, {
        "contacts": [{"profile": {"name": "Sheena", "username": "@realsheena"}, "wa_id": "", "user_id": USER_ID}],
        "user_preferences": [{"wa_id": "", "user_id": USER_ID, "detail": "User requested to stop marketing messages",
                              "category": "marketing_messages", "value": "stop", "timestamp": 1749416700}]}, field="user_preferences")
    assert (await post_meta(client, channel, pref)).status_code == 200
    [contact] = await contacts(client, workspace.ws)
    assert contact.attributes["whatsapp_marketing_messages"] == "stop"
