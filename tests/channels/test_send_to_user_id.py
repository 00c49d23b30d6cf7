"""Replies to a customer known only by WhatsApp business-scoped user id (they use a username and
hide their number) go out addressed by that id: ``recipient`` instead of ``to``, as Meta and
Kapso document it. End to end: Kabar's send job → the fake provider → status webhooks back."""

from __future__ import annotations

import pytest

from kabar.channels.fake import payloads as p
from kabar.db import tables as t
from tests.channels.support import configure, post_kapso, rows, wait_for
from tests.channels.test_send import send, until_status

USER_ID = "ID.55501234567890123456"
pytestmark = pytest.mark.usefixtures("jobs")


async def test_reply_to_an_id_only_customer_is_addressed_by_the_id(client, workspace, fake):
    """Before: the customer's message was dropped (no phone), so there was nothing to reply to;
    and a send always used ``to`` = the contact's phone."""
    channel = await configure(workspace, fake=fake)
    doc = p.kapso_received(pnid=channel.pnid, phone=None, user_id=USER_ID, username="pembeli.setia", text="Ada ukuran 42?")
    assert (await post_kapso(client, channel, doc)).status_code == 200
    [conversation] = await rows(client, t.conversations, workspace.ws)
    message_id = await send(client, workspace, conversation.id, {"type": "text", "text": "Ada kak"})
    final = await until_status(client, workspace, conversation.id, message_id, "read")
    [sent] = fake.state.messages
    assert (sent["to"], sent["recipient"]) == ("", USER_ID)
    assert "to" not in sent["body"] and sent["body"]["recipient"] == USER_ID
    assert final["provider_message_id"] == sent["id"]
    # A reaction to the customer's message goes the same way.
    inbound = next(m for m in await rows(client, t.messages, workspace.ws) if m.direction == "inbound")
    reacted = await client.post(f"{workspace.base}/conversations/{conversation.id}/messages/{inbound.id}/reactions",
                                json={"emoji": "👍"}, headers=workspace.owner.headers)
    assert reacted.status_code == 202, reacted.text
    reaction = await wait_for(lambda: _reaction(fake))
    assert reaction["body"]["recipient"] == USER_ID and "to" not in reaction["body"]


async def _reaction(fake):  # noqa: ANN001, ANN202
    return next((m for m in fake.state.messages if m["body"].get("type") == "reaction"), None)


async def test_a_contact_with_a_phone_is_still_sent_to_the_phone(client, workspace, fake):
    channel = await configure(workspace, fake=fake)
    doc = p.kapso_received(pnid=channel.pnid, phone="+6281255556666", user_id=USER_ID, text="Halo")
    assert (await post_kapso(client, channel, doc)).status_code == 200
    [conversation] = await rows(client, t.conversations, workspace.ws)
    await send(client, workspace, conversation.id, {"type": "text", "text": "Halo juga"})
    sent = await wait_for(lambda: _first(fake))
    assert sent["body"]["to"] == "+6281255556666" and "recipient" not in sent["body"]


async def _first(fake):  # noqa: ANN001, ANN202
    return fake.state.messages[0] if fake.state.messages else None
