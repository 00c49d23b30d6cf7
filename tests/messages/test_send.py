"""Sending: 202 pending + job in the same unit of work, idempotency, the 24-hour window,
content validation, reply context, roles and tenancy."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from kabar.db import tables as t
from kabar.db.types import utcnow

from tests.conversations.seed import seed_conversation, set_conversation
from tests.conversations.test_changes import events_of, jobs_of
from tests.helpers import assert_problem


def _url(tenant, conversation_id):
    return f"{tenant.base}/conversations/{conversation_id}/messages"


async def _messages(client, ws, conversation_id):
    def read(conn):  # noqa: ANN001, ANN202
        return conn.execute(
            select(t.messages).where(t.messages.c.workspace_id == ws, t.messages.c.conversation_id == conversation_id, t.messages.c.direction == "outbound", t.messages.c.sender_type != "contact")
        ).all()

    return await client.runtime.db.read(read)


async def test_send_text_is_pending_with_job_and_events(client, tenant):
    seeded = await seed_conversation(client, tenant.ws, messages=0)
    response = await client.post(_url(tenant, seeded.conversation_id), json={"type": "text", "text": "  Halo kak, ada yang bisa dibantu?  "}, headers=tenant.owner.headers)
    assert response.status_code == 202, response.text
    message = response.json()
    assert message["status"] == "pending" and message["direction"] == "outbound"
    assert (message["sender_type"], message["sender_id"]) == ("user", tenant.owner.user_id)
    assert (message["type"], message["text"], message["media"]) == ("text", "Halo kak, ada yang bisa dibantu?", None)
    assert message["provider_message_id"] is None and message["reply_to_id"] is None and message["reactions"] == []
    assert message["error"] is None and message["created_at"].endswith("Z")
    jobs = await jobs_of(client, tenant.ws, "message.send")
    assert len(jobs) == 1
    assert jobs[0].payload == {"message_id": message["id"]} and jobs[0].serial_key == f"send:{seeded.conversation_id}"
    created = await events_of(client, tenant.ws, "message.created")
    assert len(created) == 1 and created[0].data == message and created[0].contact_id == seeded.contact_id
    updated = await events_of(client, tenant.ws, "conversation.updated")
    assert len(updated) == 1
    conversation = updated[0].data
    assert conversation["last_message_preview"] == "Halo kak, ada yang bisa dibantu?"
    assert conversation["last_message_at"] == message["created_at"]
    listed = (await client.get(f"{tenant.base}/conversations", headers=tenant.owner.headers)).json()["data"][0]
    assert listed["last_message_preview"] == conversation["last_message_preview"]
    # The thread shows it first (its status may have moved on: the send job runs in the background).
    history = (await client.get(_url(tenant, seeded.conversation_id), headers=tenant.owner.headers)).json()
    assert history["data"][0]["id"] == message["id"] and history["data"][0]["text"] == message["text"]


async def test_idempotency_key_returns_the_same_message_and_one_job(client, tenant):
    seeded = await seed_conversation(client, tenant.ws, messages=0)
    headers = {**tenant.owner.headers, "Idempotency-Key": "send-123"}
    body = {"type": "text", "text": "Sekali saja"}
    first = await client.post(_url(tenant, seeded.conversation_id), json=body, headers=headers)
    second = await client.post(_url(tenant, seeded.conversation_id), json=body, headers=headers)
    assert first.status_code == second.status_code == 202
    assert first.json() == second.json()
    assert len(await _messages(client, tenant.ws, seeded.conversation_id)) == 1
    assert len(await jobs_of(client, tenant.ws, "message.send")) == 1
    assert len(await events_of(client, tenant.ws, "message.created")) == 1
    # The same key with another body is a conflict; without a key, a second message is sent.
    assert_problem(await client.post(_url(tenant, seeded.conversation_id), json={"type": "text", "text": "Lain"}, headers=headers), 409)
    assert (await client.post(_url(tenant, seeded.conversation_id), json=body, headers=tenant.owner.headers)).status_code == 202
    assert len(await jobs_of(client, tenant.ws, "message.send")) == 2
    # A key that failed validation did not store anything: fixing the body with it works.
    bad = await client.post(_url(tenant, seeded.conversation_id), json={"type": "text"}, headers={**tenant.owner.headers, "Idempotency-Key": "k2"})
    assert_problem(bad, 422)
    good = await client.post(_url(tenant, seeded.conversation_id), json={"type": "text", "text": "ok"}, headers={**tenant.owner.headers, "Idempotency-Key": "k2"})
    assert good.status_code == 202


async def test_customer_service_window(client, tenant):
    never = await seed_conversation(client, tenant.ws, inbound_age=None, messages=0)
    stale = await seed_conversation(client, tenant.ws, inbound_age=timedelta(hours=24, minutes=1))
    fresh = await seed_conversation(client, tenant.ws, inbound_age=timedelta(hours=23, minutes=59))
    text = {"type": "text", "text": "Halo"}
    for seeded in (never, stale):
        response = await client.post(_url(tenant, seeded.conversation_id), json=text, headers=tenant.owner.headers)
        body = assert_problem(response, 422, "outside-customer-service-window")
        assert body["errors"]
        media = {"type": "image", "media": {"url": "https://cdn.example.test/brosur.jpg"}}
        assert_problem(await client.post(_url(tenant, seeded.conversation_id), json=media, headers=tenant.owner.headers), 422, "outside-customer-service-window")
        template = {"type": "template", "template": {"name": "follow_up", "language": "id", "components": [{"type": "body", "parameters": [{"type": "text", "text": "Budi"}]}]}}
        response = await client.post(_url(tenant, seeded.conversation_id), json=template, headers=tenant.owner.headers)
        assert response.status_code == 202, response.text
        assert response.json()["metadata"]["template"]["name"] == "follow_up"
    assert (await client.post(_url(tenant, fresh.conversation_id), json=text, headers=tenant.owner.headers)).status_code == 202
    # Refusals wrote nothing: two templates, one text.
    assert len(await jobs_of(client, tenant.ws, "message.send")) == 3
    # The window follows the last inbound message: a new one reopens it.
    await set_conversation(client, tenant.ws, stale.conversation_id, last_inbound_at=utcnow() - timedelta(minutes=1))
    assert (await client.post(_url(tenant, stale.conversation_id), json=text, headers=tenant.owner.headers)).status_code == 202


async def test_validation_errors_name_the_fields(client, tenant, other_tenant):
    seeded = await seed_conversation(client, tenant.ws)
    theirs = await seed_conversation(client, other_tenant.ws)
    url = _url(tenant, seeded.conversation_id)

    async def fields(body):
        response = await client.post(url, json=body, headers=tenant.owner.headers)
        return {e["field"] for e in assert_problem(response, 422, "validation-error")["errors"]}

    assert await fields({"type": "text"}) == {"text"}
    assert await fields({"type": "text", "text": "   "}) == {"text"}
    assert await fields({"type": "text", "text": "x" * 4097}) == {"text"}
    assert await fields({"type": "sticker", "text": "hi"}) == {"type"}
    assert await fields({"type": "image"}) == {"media"}
    assert await fields({"type": "image", "text": "caption?", "media": {"url": "https://x.test/a.png"}}) == {"text"}
    assert await fields({"type": "image", "media": {"url": "https://x.test/a.png", "upload_id": "u"}}) == {"media"}
    assert await fields({"type": "image", "media": {}}) == {"media"}
    assert await fields({"type": "video", "media": {"url": "ftp://x.test/a.mp4"}}) == {"media.url"}
    assert await fields({"type": "audio", "media": {"url": "https://x.test/a.ogg", "caption": "no"}}) == {"media.caption"}
    assert await fields({"type": "document", "media": {"upload_id": "01a2aaaa-0000-7000-8000-000000000000"}}) == {"media.upload_id"}
    assert await fields({"type": "template"}) == {"template"}
    assert await fields({"type": "template", "template": {"name": "Bad Name", "language": "id"}}) == {"template.name"}
    assert await fields({"type": "text", "text": "hi", "template": {"name": "a", "language": "id"}}) == {"template"}
    assert await fields({"type": "text", "text": "hi", "reply_to_id": theirs.message_ids[0]}) == {"reply_to_id"}
    assert await fields({"type": "text", "text": "hi", "colour": "red"}) == {"colour"}
    assert len(await jobs_of(client, tenant.ws, "message.send")) == 0
    # Unknown or foreign conversation: 404.
    assert_problem(await client.post(_url(tenant, theirs.conversation_id), json={"type": "text", "text": "hi"}, headers=tenant.owner.headers), 404)
    assert_problem(await client.post(_url(tenant, "nope"), json={"type": "text", "text": "hi"}, headers=tenant.owner.headers), 404)


async def test_reply_context_and_media_by_url(client, tenant):
    seeded = await seed_conversation(client, tenant.ws, messages=2)
    original = seeded.message_ids[-1]
    response = await client.post(_url(tenant, seeded.conversation_id), json={"type": "text", "text": "Betul kak", "reply_to_id": original}, headers=tenant.owner.headers)
    assert response.status_code == 202 and response.json()["reply_to_id"] == original
    response = await client.post(
        _url(tenant, seeded.conversation_id),
        json={"type": "document", "media": {"url": "https://cdn.example.test/files/brosur.pdf", "caption": "Brosur 2026"}},
        headers=tenant.owner.headers,
    )
    assert response.status_code == 202, response.text
    media = response.json()["media"]
    assert media == {"url": "https://cdn.example.test/files/brosur.pdf", "mime_type": "application/pdf", "filename": "brosur.pdf", "caption": "Brosur 2026"}
    conversation = (await client.get(f"{tenant.base}/conversations/{seeded.conversation_id}", headers=tenant.owner.headers)).json()
    assert conversation["last_message_preview"] == "Brosur 2026"


async def test_roles_and_member_visibility(client, tenant):
    member = await tenant.add_user("member")
    other = await tenant.add_user("member")
    admin = await tenant.add_user("admin")
    key = await tenant.api_key()
    own = await seed_conversation(client, tenant.ws, assignee_id=member.user_id)
    hidden = await seed_conversation(client, tenant.ws, assignee_id=other.user_id)
    for caller in (tenant.owner, admin, member, key):
        response = await client.post(_url(tenant, own.conversation_id), json={"type": "text", "text": "hi"}, headers=caller.headers)
        assert response.status_code == 202, response.text
        assert response.json()["sender_id"] == caller.user_id  # None for the API key
        assert (await client.get(_url(tenant, own.conversation_id), headers=caller.headers)).status_code == 200
    keyed = (await client.get(_url(tenant, own.conversation_id), headers=key.headers)).json()["data"][0]
    assert keyed["sender_type"] == "user" and keyed["metadata"]["api_key_id"]
    assert_problem(await client.post(_url(tenant, hidden.conversation_id), json={"type": "text", "text": "hi"}, headers=member.headers), 404)
    assert_problem(await client.get(_url(tenant, hidden.conversation_id), headers=member.headers), 404)
    assert_problem(await client.post(_url(tenant, own.conversation_id), json={"type": "text", "text": "hi"}), 401)


async def test_bot_replies_through_the_service(client, tenant):
    """ARI's path: the same core function, sender_type bot, in the caller's unit of work."""
    from kabar.messages.service import create_outbound_message

    seeded = await seed_conversation(client, tenant.ws, messages=1)
    out = await client.runtime.db.transaction(
        lambda uow: create_outbound_message(
            uow, workspace_id=tenant.ws, conversation_id=seeded.conversation_id, sender_type="bot", sender_id=None,
            type="text", text="Halo! Saya ARI.", reply_to_id=seeded.message_ids[0],
        )
    )
    assert (out.sender_type, out.status, out.reply_to_id) == ("bot", "pending", seeded.message_ids[0])
    assert len(await jobs_of(client, tenant.ws, "message.send")) == 1
    # Plain dicts are validated like API input.
    from kabar.errors import Problem

    try:
        await client.runtime.db.transaction(
            lambda uow: create_outbound_message(
                uow, workspace_id=tenant.ws, conversation_id=seeded.conversation_id, sender_type="bot", sender_id=None,
                type="image", media={"link": "x"},
            )
        )
    except Problem as problem:
        assert problem.status == 422
    else:
        raise AssertionError("a bad media dict was accepted")
