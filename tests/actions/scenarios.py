"""One scenario (or more) per state-changing route, plus the webhook- and job-driven actions.

Before ``yield``: preparation (not checked). After: the action, through the public API. A route
left out on purpose goes in ``NOT_INBOX_STATE`` with the reason.
"""

from __future__ import annotations

import secrets
from datetime import timedelta
from collections.abc import Awaitable, Callable
from typing import Any

from kabar.channels.fake import payloads as p
from kabar.db import tables as t
from kabar.db.types import utcnow
from kabar.ids import new_id
from tests.actions.harness import World, action
from tests.channels.support import NOWHERE, configure, post_kapso, post_meta, wait_for
from tests.helpers import mailed_token, new_user

# State-changing routes with nothing a page holds (checked by the route test to exist):
NOT_INBOX_STATE = {
    # Typing is ephemeral by design (a WebSocket message, never in the log, nothing to refetch).
    "POST /v1/workspaces/{ws}/conversations/{conversation_id}/typing",
    # Deleting the workspace: every page of it is gone (they get 404 and leave).
    "DELETE /v1/workspaces/{ws}",
}


def _phone() -> str:
    return "+6281" + str(secrets.randbelow(10**9)).zfill(9)


# -- actions that are one request on the standard world ------------------------------------

ONE_REQUEST: list[tuple[str, str, Callable[[World], Awaitable[Any]]]] = [
    ("PATCH /", "rename_workspace", lambda w: w.call("PATCH", "", json={"name": "Toko Baru"})),
    ("PATCH /members/{user_id}", "promote_member", lambda w: w.call("PATCH", f"/members/{w.m2.user_id}", json={"role": "admin"})),
    # Member two becomes owner; the old owner becomes an admin.
    ("PATCH /members/{user_id}", "transfer_ownership", lambda w: w.call("PATCH", f"/members/{w.m2.user_id}", json={"role": "owner"})),
    ("DELETE /members/{user_id}", "member_leaves", lambda w: w.call("DELETE", f"/members/{w.m2.user_id}", who=w.m2)),
    # Member one's customer (Ani) goes back to the shared queue: every open inbox must show it.
    ("DELETE /members/{user_id}", "remove_member", lambda w: w.call("DELETE", f"/members/{w.m1.user_id}")),
    ("POST /invitations", "invite", lambda w: w.call("POST", "/invitations", json={"email": f"new-{secrets.token_hex(4)}@example.test", "role": "member"})),
    ("POST /api-keys", "create_api_key", lambda w: w.call("POST", "/api-keys", json={"name": "Zapier"})),
    ("POST /contacts", "create_contact", lambda w: w.call("POST", "/contacts", json={"phone": _phone(), "name": "Eka", "assignee_id": w.m1.user_id})),
    ("PATCH /contacts/{contact_id}", "rename_contact", lambda w: w.call("PATCH", f"/contacts/{w.a.contact_id}", json={"name": "Ani Lestari", "tags": ["vip"], "lead_status": "hot_lead"})),
    # From member one to member two: one loses it, the other gains it, with its conversation.
    ("PATCH /contacts/{contact_id}", "reassign_contact", lambda w: w.call("PATCH", f"/contacts/{w.a.contact_id}", json={"assignee_id": w.m2.user_id})),
    ("DELETE /contacts/{contact_id}", "delete_contact", lambda w: w.call("DELETE", f"/contacts/{w.b.contact_id}")),
    ("POST /contacts/merge", "merge_contacts", lambda w: w.call("POST", "/contacts/merge", json={"keep_id": w.b.contact_id, "merge_id": w.a.contact_id})),
    ("POST /contacts/{contact_id}/notes", "add_note", lambda w: w.call("POST", f"/contacts/{w.a.contact_id}/notes", json={"content": "Minta katalog", "due_at": (utcnow() + timedelta(days=1)).isoformat()})),
    ("PATCH /contacts/{contact_id}/notes/{note_id}", "edit_note", lambda w: w.call("PATCH", f"/contacts/{w.a.contact_id}/notes/{w.note_id}", json={"content": "Suka warna hijau"})),
    ("DELETE /contacts/{contact_id}/notes/{note_id}", "delete_note", lambda w: w.call("DELETE", f"/contacts/{w.a.contact_id}/notes/{w.note_id}")),
    ("PATCH /conversations/{conversation_id}", "close_conversation", lambda w: w.call("PATCH", f"/conversations/{w.b.conversation_id}", json={"status": "closed"})),
    # Unassigned Budi to member two: member one stops seeing it.
    ("PATCH /conversations/{conversation_id}", "assign_conversation", lambda w: w.call("PATCH", f"/conversations/{w.b.conversation_id}", json={"assignee_id": w.m2.user_id})),
    # Dewi (member two's) back to the queue: member one starts seeing it.
    ("PATCH /conversations/{conversation_id}", "unassign_conversation", lambda w: w.call("PATCH", f"/conversations/{w.d.conversation_id}", json={"assignee_id": None})),
    ("PATCH /conversations/{conversation_id}", "pause_ari", lambda w: w.call("PATCH", f"/conversations/{w.a.conversation_id}", who=w.m1, json={"ai_paused": True})),
    ("POST /conversations/{conversation_id}/read", "mark_read", lambda w: w.call("POST", f"/conversations/{w.a.conversation_id}/read", who=w.m1)),
    ("POST /conversations/{conversation_id}/messages", "send_message", lambda w: w.call("POST", f"/conversations/{w.a.conversation_id}/messages", who=w.m1, json={"type": "text", "text": "Baik kak"})),
    ("POST /conversations/{conversation_id}/messages/{message_id}/reactions", "react", lambda w: w.call("POST", f"/conversations/{w.b.conversation_id}/messages/{w.b.message_ids[0]}/reactions", json={"emoji": "👍"})),
    ("POST /uploads", "upload", lambda w: w.call("POST", "/uploads", files={"file": ("foto.png", b"\x89PNG\r\n\x1a\n" + b"0" * 64, "image/png")})),
    ("POST /webhooks", "create_webhook", lambda w: w.call("POST", "/webhooks", json=_hook())),
    ("PUT /ari/config", "ari_config", lambda w: w.call("PUT", "/ari/config", json={"enabled": True, "bot_name": "Ari"})),
    ("PUT /ari/scoring", "ari_scoring", lambda w: w.call("PUT", "/ari/scoring", json={"hot_threshold": 80, "warm_threshold": 40})),
]


def _one_request(route: str, name: str, act: Callable[[World], Awaitable[Any]]) -> None:
    async def run(w: World) -> Any:
        yield
        await act(w)

    action(route, name)(run)


for _route, _name, _act in ONE_REQUEST:
    _one_request(_route, _name, _act)


# -- workspace, members, invitations, API keys ----------------------------------------------


@action("POST /members")
async def add_member(w: World) -> Any:
    """Adding a member sends them an invitation."""
    w.scratch["person"] = await new_user(w.client)
    yield
    await w.call("POST", "/members", json={"email": w.scratch["person"].email, "role": "member"})


@action("POST /v1/invitations/accept")
async def accept_invitation(w: World) -> Any:
    person = await new_user(w.client)
    await w.call("POST", "/members", json={"email": person.email, "role": "member"})
    token = await mailed_token(w.client, person.email, "/accept-invite")
    yield
    response = await w.client.post("/v1/invitations/accept", json={"token": token}, headers=person.headers)
    assert response.status_code == 200, response.text


@action("DELETE /invitations/{invitation_id}")
async def revoke_invitation(w: World) -> Any:
    w.scratch["invitation"] = await w.call("POST", "/invitations", json={"email": f"new-{secrets.token_hex(4)}@example.test"})
    yield
    await w.call("DELETE", f"/invitations/{w.scratch['invitation']['id']}")


@action("DELETE /api-keys/{key_id}")
async def revoke_api_key(w: World) -> Any:
    w.scratch["key"] = await w.call("POST", "/api-keys", json={"name": "Zapier"})
    yield
    await w.call("DELETE", f"/api-keys/{w.scratch['key']['id']}")


# -- contacts and notes ---------------------------------------------------------------------


@action("POST /contacts/import")
async def import_contacts(w: World) -> Any:
    """A new contact for member two, and Budi (unassigned) handed to member one by the file."""
    phone_b = (await w.call("GET", f"/contacts/{w.b.contact_id}"))["phone"]
    w.scratch["csv"] = f"phone,name,assignee_email\n{_phone()},Fajar,{w.m2.email}\n{phone_b},Budi,{w.m1.email}\n".encode()
    yield
    await w.call("POST", "/contacts/import", files={"file": ("contacts.csv", w.scratch["csv"], "text/csv")})


# -- conversations and messages -------------------------------------------------------------


@action("PATCH /conversations/{conversation_id}", "snooze_wakes", needs_jobs=True)
async def snooze_wakes(w: World) -> Any:
    """The wake job reopens a snoozed conversation when the snooze runs out."""
    until = utcnow() + timedelta(seconds=2)
    await w.call("PATCH", f"/conversations/{w.b.conversation_id}", json={"status": "snoozed", "snoozed_until": until.isoformat()})
    yield

    async def woke() -> bool:
        return (await w.call("GET", f"/conversations/{w.b.conversation_id}"))["status"] == "open"

    await wait_for(woke, timeout=30)


# -- channel and outgoing webhooks ----------------------------------------------------------


@action("PUT /channel")
async def configure_channel(w: World) -> Any:
    yield
    await configure(w.tenant)


@action("POST /channel/test")
async def test_channel(w: World) -> Any:
    """The connection check sends a real text (to a fake provider on 127.0.0.1) and files it in the
    recipient's conversation."""
    from kabar.channels.fake.server import FakeProvider

    fake = FakeProvider(webhook_url=None, secret="set-by-test")
    await fake.start()
    try:
        await configure(w.tenant, fake=fake)
        yield
        await w.call("POST", "/channel/test", json={"to": w.b.phone, "text": "Tes koneksi"})
    finally:
        await fake.stop()


def _hook() -> dict[str, Any]:
    return {"url": "http://127.0.0.1:9/hook", "events": ["message.*"], "description": "CRM"}


@action("PATCH /webhooks/{webhook_id}")
async def pause_webhook(w: World) -> Any:
    w.scratch["hook"] = await w.call("POST", "/webhooks", json=_hook())
    yield
    await w.call("PATCH", f"/webhooks/{w.scratch['hook']['id']}", json={"active": False, "description": "paused"})


@action("DELETE /webhooks/{webhook_id}")
async def delete_webhook(w: World) -> Any:
    w.scratch["hook"] = await w.call("POST", "/webhooks", json=_hook())
    yield
    await w.call("DELETE", f"/webhooks/{w.scratch['hook']['id']}")


@action("POST /webhooks/{webhook_id}/rotate-secret")
async def rotate_webhook_secret(w: World) -> Any:
    w.scratch["hook"] = await w.call("POST", "/webhooks", json=_hook())
    yield
    await w.call("POST", f"/webhooks/{w.scratch['hook']['id']}/rotate-secret")


@action("POST /webhooks/{webhook_id}/test")
async def test_webhook(w: World) -> Any:
    w.scratch["hook"] = await w.call("POST", "/webhooks", json=_hook())
    yield
    await w.call("POST", f"/webhooks/{w.scratch['hook']['id']}/test")


@action("POST /webhooks/{webhook_id}/deliveries/{delivery_id}/redeliver", needs_jobs=True)
async def redeliver(w: World) -> Any:
    hook = await w.call("POST", "/webhooks", json={**_hook(), "events": ["note.*"]})
    await w.call("POST", f"/contacts/{w.a.contact_id}/notes", json={"content": "Kirim ke CRM"})

    async def delivered() -> Any:
        return (await w.call("GET", f"/webhooks/{hook['id']}/deliveries"))["data"]

    first = (await wait_for(delivered, timeout=30))[0]

    async def failing() -> bool:  # that first failure's bookkeeping is done before the snapshot
        return (await w.call("GET", f"/webhooks/{hook['id']}"))["status"] == "failing"

    await wait_for(failing, timeout=30)
    w.scratch["url"] = f"/webhooks/{hook['id']}/deliveries/{first['id']}/redeliver"
    yield
    await w.call("POST", w.scratch["url"])


@action("POST /contacts/{contact_id}/notes", "webhook_starts_failing", needs_jobs=True)
async def webhook_starts_failing(w: World) -> Any:
    """The delivery job finds the receiver down: the settings page shows the endpoint failing."""
    hook = await w.call("POST", "/webhooks", json={**_hook(), "events": ["note.*"]})
    yield
    await w.call("POST", f"/contacts/{w.a.contact_id}/notes", json={"content": "Kirim ke CRM"})

    async def failing() -> bool:
        return (await w.call("GET", f"/webhooks/{hook['id']}"))["status"] == "failing"

    await wait_for(failing, timeout=30)


# -- ARI settings ---------------------------------------------------------------------------


ARI_ITEMS = {
    "flow-stages": ({"name": "Sapa", "goal": "Kenalan"}, {"goal": "Kenalan dulu"}),
    "knowledge": ({"title": "Harga", "content": "Mulai 100 ribu"}, {"content": "Mulai 120 ribu"}),
    "slots": ({"day_of_week": 1, "start_time": "09:00", "end_time": "12:00"}, {"end_time": "13:00"}),
}


def _ari_item_scenarios(kind: str) -> None:
    create, change = ARI_ITEMS[kind]
    name = kind.replace("-", "_")

    async def created(w: World) -> Any:
        yield
        await w.call("POST", f"/ari/{kind}", json=create)

    async def patched(w: World) -> Any:
        w.scratch["item"] = await w.call("POST", f"/ari/{kind}", json=create)
        yield
        await w.call("PATCH", f"/ari/{kind}/{w.scratch['item']['id']}", json=change)

    async def deleted(w: World) -> Any:
        w.scratch["item"] = await w.call("POST", f"/ari/{kind}", json=create)
        yield
        await w.call("DELETE", f"/ari/{kind}/{w.scratch['item']['id']}")

    action(f"POST /ari/{kind}", f"create_{name}")(created)
    action(f"PATCH /ari/{kind}/{{item_id}}", f"update_{name}")(patched)
    action(f"DELETE /ari/{kind}/{{item_id}}", f"delete_{name}")(deleted)


for _kind in ARI_ITEMS:
    _ari_item_scenarios(_kind)


@action("PATCH /ari/appointments/{item_id}")
async def cancel_appointment(w: World) -> Any:
    appointment_id, at = new_id(), utcnow() + timedelta(days=1)

    def book(uow: Any) -> None:
        uow.conn.execute(
            t.ari_appointments.insert().values(
                id=appointment_id, workspace_id=w.tenant.ws, conversation_id=w.a.conversation_id, contact_id=w.a.contact_id,
                scheduled_at=at, duration_minutes=60, status="scheduled", booking_key=appointment_id, created_at=uow.now, updated_at=uow.now,
            )
        )

    await w.client.runtime.db.transaction(book)
    yield
    await w.call("PATCH", f"/ari/appointments/{appointment_id}", json={"status": "cancelled"})


# -- provider webhooks (the customer's side) ------------------------------------------------


@action("POST /webhooks/kapso", "inbound_new_customer")
async def inbound_new_customer(w: World) -> Any:
    channel = await configure(w.tenant)
    yield
    doc = p.kapso_received(pnid=channel.pnid, phone=_phone(), text="Halo, masih ada?", name="Gita")
    assert (await post_kapso(w.client, channel, doc)).status_code == 200


@action("POST /webhooks/kapso", "inbound_known_customer")
async def inbound_known_customer(w: World) -> Any:
    channel = await configure(w.tenant)
    w.scratch["doc"] = p.kapso_received(pnid=channel.pnid, phone=w.a.phone, text="Jadi pesan 2 ya", name="Ani")
    yield
    assert (await post_kapso(w.client, channel, w.scratch["doc"])).status_code == 200


@action("POST /webhooks/kapso", "outbound_status")
async def outbound_status(w: World) -> Any:
    """The provider reports a sent message delivered."""
    channel = await configure(w.tenant)
    wamid = p.new_wamid()

    def sent(uow: Any) -> None:
        uow.conn.execute(
            t.messages.update()
            .where(t.messages.c.workspace_id == w.tenant.ws, t.messages.c.id == w.b.message_ids[0])
            .values(direction="outbound", sender_type="user", status="sent", provider_message_id=wamid)
        )

    await w.client.runtime.db.transaction(sent)
    status = p.meta_status(wamid, "delivered", w.b.phone)
    w.scratch["doc"] = p.kapso_outbound(pnid=channel.pnid, phone=w.b.phone, wamid=wamid, statuses=[status])
    yield
    assert (await post_kapso(w.client, channel, w.scratch["doc"], event="whatsapp.message.delivered")).status_code == 200


@action("POST /webhooks/kapso", "customer_reaction")
async def customer_reaction(w: World) -> Any:
    channel = await configure(w.tenant)
    wamid = p.new_wamid()

    def tag(uow: Any) -> None:
        uow.conn.execute(
            t.messages.update().where(t.messages.c.workspace_id == w.tenant.ws, t.messages.c.id == w.b.message_ids[0]).values(provider_message_id=wamid)
        )

    await w.client.runtime.db.transaction(tag)
    reaction = {"type": "reaction", "reaction": {"message_id": wamid, "emoji": "❤️"}}
    w.scratch["doc"] = p.kapso_received(pnid=channel.pnid, phone=w.b.phone, message=reaction)
    yield
    assert (await post_kapso(w.client, channel, w.scratch["doc"])).status_code == 200


@action("POST /webhooks/meta", "meta_inbound")
async def meta_inbound(w: World) -> Any:
    channel = await configure(w.tenant, "meta")
    value = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "6221500000", "phone_number_id": channel.pnid},
        "contacts": [{"profile": {"name": "Ani"}, "wa_id": w.a.phone.lstrip("+")}],
        "messages": [{"from": w.a.phone.lstrip("+"), "id": p.new_wamid(), "timestamp": str(int(utcnow().timestamp())), "type": "text", "text": {"body": "Halo"}}],
    }
    w.scratch["doc"] = p.meta_envelope(channel.pnid, value)
    w.scratch["channel"] = channel
    yield
    assert (await post_meta(w.client, channel, w.scratch["doc"])).status_code == 200


# -- job-driven -----------------------------------------------------------------------------


@action("POST /conversations/{conversation_id}/messages", "send_until_failed", needs_jobs=True)
async def send_until_failed(w: World) -> Any:
    """The send job runs against a provider that is not there: the message ends ``failed``."""
    await configure(w.tenant, api_base_url=NOWHERE)
    yield
    sent = await w.call("POST", f"/conversations/{w.a.conversation_id}/messages", json={"type": "text", "text": "Halo"})

    async def settled() -> bool:
        page = await w.call("GET", f"/conversations/{w.a.conversation_id}/messages")
        return next(m for m in page["data"] if m["id"] == sent["id"])["status"] != "pending"

    await wait_for(settled, timeout=60)


@action("POST /webhooks/kapso", "ari_reply", needs_jobs=True)
async def ari_reply(w: World) -> Any:
    """A customer writes with ARI on (rules mode): the reply job answers as the bot."""
    channel = await configure(w.tenant)
    await w.call("PUT", "/ari/config", json={"enabled": True})
    w.scratch["doc"] = p.kapso_received(pnid=channel.pnid, phone=w.b.phone, text="Halo kak, mau tanya", name="Budi")
    yield
    assert (await post_kapso(w.client, channel, w.scratch["doc"])).status_code == 200

    async def replied() -> bool:
        page = await w.call("GET", f"/conversations/{w.b.conversation_id}/messages")
        return any(m["sender_type"] == "bot" for m in page["data"])

    await wait_for(replied, timeout=60)
