"""The business's reactions, end to end over real HTTP: the API → the ``message.react`` job → the
fake provider gets a WhatsApp ``reaction`` body → the reaction on the message goes ``sent`` (or
``failed`` with the provider's error)."""

from __future__ import annotations

import pytest

from kabar.db import tables as t
from tests.channels.support import configure, rows, wait_for
from tests.channels.test_send import PHONE, start_conversation

pytestmark = pytest.mark.usefixtures("jobs")


async def _react(client, ws, conversation_id, message_id, emoji):
    url = f"{ws.base}/conversations/{conversation_id}/messages/{message_id}/reactions"
    response = await client.post(url, json={"emoji": emoji}, headers=ws.owner.headers)
    assert response.status_code == 202, response.text
    return response.json()


async def _business_reaction(client, ws, message_id):
    [row] = await rows(client, t.messages, ws.ws, t.messages.c.id == message_id)
    return next((r for r in row.reactions if r["by"] == "business"), None)


async def test_reaction_reaches_whatsapp_and_is_marked_sent_then_removed(client, workspace, fake):
    channel = await configure(workspace, fake=fake)
    conversation_id, wamid = await start_conversation(client, workspace, channel)
    [inbound] = await rows(client, t.messages, workspace.ws, t.messages.c.provider_message_id == wamid)
    await _react(client, workspace, conversation_id, inbound.id, "🙏")

    async def sent():
        mine = await _business_reaction(client, workspace, inbound.id)
        return mine if mine and mine.get("status") == "sent" else None

    mine = await wait_for(sent)
    [request] = fake.state.messages
    assert request["body"]["type"] == "reaction" and request["body"]["to"] == PHONE
    assert request["body"]["reaction"] == {"message_id": wamid, "emoji": "🙏"}
    assert mine["provider_message_id"] == request["id"] and mine["emoji"] == "🙏"
    updates = [e.data for e in await rows(client, t.events, workspace.ws) if e.type == "message.updated" and e.data["id"] == inbound.id]
    assert [r["status"] for u in updates for r in u["reactions"] if r["by"] == "business"][:2] == ["pending", "sent"]

    # Removing sends an empty emoji.
    await _react(client, workspace, conversation_id, inbound.id, "")
    await wait_for(lambda: _count(fake, 2))
    assert fake.state.messages[1]["body"]["reaction"] == {"message_id": wamid, "emoji": ""}
    assert await _business_reaction(client, workspace, inbound.id) is None


async def _count(fake, n):
    return len(fake.state.messages) >= n


async def test_provider_refusal_marks_the_reaction_failed(client, workspace, fake):
    channel = await configure(workspace, fake=fake)
    conversation_id, wamid = await start_conversation(client, workspace, channel)
    [inbound] = await rows(client, t.messages, workspace.ws, t.messages.c.provider_message_id == wamid)
    fake.state.failures.append({"status": 400, "code": 131009, "title": "Parameter value is not valid"})
    await _react(client, workspace, conversation_id, inbound.id, "👍")

    async def failed():
        mine = await _business_reaction(client, workspace, inbound.id)
        return mine if mine and mine.get("status") == "failed" else None

    mine = await wait_for(failed)
    assert mine["error"]["code"] == 131009 and mine["error"]["title"] == "Parameter value is not valid"
    # Trying again with the same emoji sends it again (and this time it goes through).
    await _react(client, workspace, conversation_id, inbound.id, "👍")
    await wait_for(lambda: _sent_status(client, workspace, inbound.id))


async def _sent_status(client, ws, message_id):
    mine = await _business_reaction(client, ws, message_id)
    return mine is not None and mine.get("status") == "sent"
