"""POST /v1/workspaces/{ws}/channel/test: the settings page's "send test message", over real HTTP
to the fake provider — accepted (and recorded in the recipient's conversation), refused by the
provider with its code and title, and refused by Kabar before anything is sent."""

from __future__ import annotations

import logging

import pytest

from kabar.db import tables as t
from tests.channels.support import configure, rows, wait_for
from tests.helpers import assert_problem

pytestmark = pytest.mark.usefixtures("jobs")


async def test_accepted_test_message_is_sent_and_recorded_in_the_conversation(client, workspace, fake):
    channel = await configure(workspace, fake=fake)
    response = await client.post(f"{workspace.base}/channel/test", json={"to": "0812-7777-8888", "text": "Halo, tes koneksi"},
                                 headers=workspace.owner.headers)
    assert response.status_code == 200, response.text
    out = response.json()
    [sent] = fake.state.messages
    assert out["ok"] is True and out["to"] == "+6281277778888" and out["provider_message_id"] == sent["id"]
    assert sent["phone_number_id"] == channel.pnid
    assert (sent["body"]["to"], sent["body"]["type"], sent["body"]["text"]["body"]) == ("+6281277778888", "text", "Halo, tes koneksi")

    # The inbox shows it as the owner's message in that number's (new) conversation, with ticks.
    conversation_id = out["conversation_id"]
    history = f"{workspace.base}/conversations/{conversation_id}/messages"

    async def read_by_customer():
        data = (await client.get(history, headers=workspace.owner.headers)).json()["data"]
        return data if data and data[0]["status"] == "read" else None

    [message] = await wait_for(read_by_customer)
    assert message["id"] == out["message_id"] and message["direction"] == "outbound"
    assert (message["sender_type"], message["sender_id"], message["metadata"]["origin"]) == ("user", workspace.owner.user_id, "channel_test")
    assert message["provider_message_id"] == sent["id"] and message["text"] == "Halo, tes koneksi"
    listed = (await client.get(f"{workspace.base}/conversations", headers=workspace.owner.headers)).json()["data"]
    assert [(c["id"], c["contact"]["phone"], c["last_message_preview"]) for c in listed] == [(conversation_id, "+6281277778888", "Halo, tes koneksi")]
    # The provider's echo of the send is recognised as this message, never stored twice.
    await wait_for(lambda: _statuses_applied(client, workspace.ws))
    assert len(await rows(client, t.messages, workspace.ws)) == 1


async def _statuses_applied(client, ws):
    receipts = await rows(client, t.webhook_receipts, ws)
    return len(receipts) >= 3 and all(r.status == "applied" for r in receipts)


async def test_default_text_when_none_is_given(client, workspace, fake):
    await configure(workspace, fake=fake)
    response = await client.post(f"{workspace.base}/channel/test", json={"to": "+6281277778888"}, headers=workspace.owner.headers)
    assert response.status_code == 200, response.text
    assert fake.state.messages[0]["body"]["text"]["body"] == "Tes dari Kabar ✅"


async def test_bad_api_key_is_the_providers_error_without_the_secret(client, workspace, fake, caplog):
    caplog.set_level(logging.DEBUG)
    channel = await configure(workspace, fake=fake)
    fake.state.api_key = "the-key-kapso-expects"  # the channel's key is now wrong
    response = await client.post(f"{workspace.base}/channel/test", json={"to": "081277778888"}, headers=workspace.owner.headers)
    problem = assert_problem(response, 502, "provider-rejected")
    assert problem["provider_error"]["http_status"] == 401 and problem["provider_error"]["title"] == "Invalid API key"
    assert "API key" in problem["detail"]
    assert channel.api_key not in response.text and channel.api_key not in caplog.text
    assert fake.state.messages == [] and await rows(client, t.messages, workspace.ws) == []


@pytest.mark.parametrize(("code", "hint"), [(131030, "allowed list"), (100, "phone number ID")])
async def test_provider_error_code_and_title_are_shown(client, workspace, fake, code, hint):
    await configure(workspace, fake=fake)
    fake.state.failures.append({"status": 400, "code": code})
    response = await client.post(f"{workspace.base}/channel/test", json={"to": "081277778888"}, headers=workspace.owner.headers)
    problem = assert_problem(response, 502, "provider-rejected")
    assert problem["provider_error"]["code"] == code and problem["provider_error"]["http_status"] == 400
    assert str(code) in problem["detail"] and hint in problem["detail"]
    assert await rows(client, t.messages, workspace.ws) == [] and await rows(client, t.conversations, workspace.ws) == []


async def test_unreachable_provider(client, workspace):
    await configure(workspace)  # points at a closed local port
    response = await client.post(f"{workspace.base}/channel/test", json={"to": "081277778888"}, headers=workspace.owner.headers)
    problem = assert_problem(response, 502, "provider-unreachable")
    assert problem["provider_error"]["code"] == "network"


async def test_refused_before_sending(client, workspace, fake):
    url = f"{workspace.base}/channel/test"
    assert_problem(await client.post(url, json={"to": "081277778888"}, headers=workspace.owner.headers), 409, "channel-not-configured")
    await configure(workspace, fake=fake)
    problem = assert_problem(await client.post(url, json={"to": "12ab"}, headers=workspace.owner.headers), 422)
    assert problem["errors"][0]["field"] == "to"
    assert_problem(await client.post(url, json={"to": "081277778888", "text": "x" * 4097}, headers=workspace.owner.headers), 422)
    member = await workspace.add_user("member")
    assert_problem(await client.post(url, json={"to": "081277778888"}, headers=member.headers), 403)
    api_key = await workspace.api_key()
    assert_problem(await client.post(url, json={"to": "081277778888"}, headers=api_key.headers), 403)
    assert fake.state.requests == []
