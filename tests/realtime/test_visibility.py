"""What a member's live feeds carry (WebSocket, SSE, polling) against a real ``kabar serve``, on
SQLite and PostgreSQL: the event audience registry (kabar.events.AUDIENCE) and the one visibility
rule (kabar.auth.visibility). The generated matrix over every event type is in
tests/security/test_isolation.py."""

from __future__ import annotations

import asyncio
import json
import secrets
from typing import Any

from sqlalchemy import update

from kabar.db import tables as t
from kabar.db.types import utcnow
from tests.channels.support import configure
from tests.helpers import Tenant
from tests.realtime.support import Sock, wait_until

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


class SseReader:
    """An ``events/stream`` client that records every event block."""

    def __init__(self, http: Any, ws: str, headers: dict[str, str]):
        self.blocks: list[dict[str, str]] = []
        self._task = asyncio.create_task(self._read(http, f"/v1/workspaces/{ws}/events/stream", headers))

    async def _read(self, http: Any, path: str, headers: dict[str, str]) -> None:
        async with http.stream("GET", path, headers=headers) as response:
            assert response.status_code == 200, response.status_code
            block: dict[str, str] = {}
            async for line in response.aiter_lines():
                if not line:
                    if block:
                        self.blocks.append(block)
                    block = {}
                    continue
                key, _, value = line.partition(":")
                block[key] = value.strip()

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(b["data"]) for b in self.blocks if "id" in b]

    async def close(self) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)


async def _open_window(site: Any, conversation_id: str) -> None:
    """The customer wrote an hour ago (a free-form reply may follow)."""
    await site.db.transaction(
        lambda uow: uow.conn.execute(update(t.conversations).where(t.conversations.c.id == conversation_id).values(last_inbound_at=utcnow()))
    )


async def _marker_contact(http: Any, ws: str, owner: Any) -> str:
    """An unassigned contact (every member may see it): its contact.created closes a batch."""
    phone = "+62817" + str(secrets.randbelow(10**7)).zfill(7)
    response = await http.post(f"/v1/workspaces/{ws}/contacts", json={"phone": phone, "name": "Penanda"}, headers=owner.headers)
    assert response.status_code == 201, response.text
    return response.json()["id"]


def _about(events: list[dict[str, Any]], contact_id: str) -> bool:
    return any(e["type"] == "contact.created" and e["data"].get("id") == contact_id for e in events)


async def test_a_members_feeds_carry_no_invitations_settings_keys_channel_or_others_files(site, server, http):
    """Before: a member's WebSocket, SSE and polling feeds carried invitation.created (with the
    invitee's email), workspace.updated (settings), channel.updated, api_key.created and
    upload.created for every upload of the workspace."""
    ws, owner = await site.workspace(http)
    member = await site.member(http, ws, owner)
    colleague = await site.member(http, ws, owner)
    start = (await http.get(f"/v1/workspaces/{ws}/events", headers=owner.headers)).json()["last_seq"]
    member_sock = await Sock.open(server.url, ws, member.token, since=None)
    owner_sock = await Sock.open(server.url, ws, owner.token, since=None)
    sse = SseReader(http, ws, member.headers)
    try:
        await wait_until(lambda: sse.blocks, what="SSE subscribed")
        tag = secrets.token_hex(4)
        invitee = f"invitee-{tag}@example.test"
        response = await http.post(f"/v1/workspaces/{ws}/invitations", json={"email": invitee, "role": "member"}, headers=owner.headers)
        assert response.status_code == 201, response.text
        channel = await configure(Tenant(client=http, ws=ws, owner=owner))
        setting = f"rahasia-{tag}"
        response = await http.patch(f"/v1/workspaces/{ws}", json={"settings": {"catatan": setting}}, headers=owner.headers)
        assert response.status_code == 200, response.text
        key_name = f"kunci-{tag}"
        response = await http.post(f"/v1/workspaces/{ws}/api-keys", json={"name": key_name}, headers=owner.headers)
        assert response.status_code == 201, response.text
        theirs, conversation = await site.contact(ws, colleague.user_id)
        await _open_window(site, conversation)
        response = await http.post(f"/v1/workspaces/{ws}/uploads", files={"file": ("foto.png", PNG, "image/png")}, headers=owner.headers)
        assert response.status_code == 201, response.text
        upload_id = response.json()["upload_id"]
        response = await http.post(
            f"/v1/workspaces/{ws}/conversations/{conversation}/messages",
            json={"type": "image", "media": {"upload_id": upload_id}},
            headers=owner.headers,
        )
        assert response.status_code == 202, response.text
        marker = await _marker_contact(http, ws, owner)
        for feed in (member_sock, owner_sock):
            await feed.wait_for(lambda s: _about(s.events(), marker))
        await wait_until(lambda: _about(sse.events(), marker), what="the marker on SSE")
        polled = (await http.get(f"/v1/workspaces/{ws}/events", params={"since": start, "limit": 1000}, headers=member.headers)).json()

        secrets_ = {"invitee email": invitee, "workspace setting": setting, "channel": channel.pnid, "API key": key_name,
                    "upload id": upload_id, "colleague's contact": theirs}
        private_types = {"invitation.created", "channel.updated", "api_key.created", "upload.created"}
        feeds = {"WebSocket": member_sock.events(), "SSE": sse.events(), "polling": polled["data"]}
        leaks = [f"{name}: {what}" for name, events in feeds.items() for what, value in secrets_.items() if value in json.dumps(events)]
        leaks += [f"{name}: {e['type']}" for name, events in feeds.items() for e in events if e["type"] in private_types]
        assert not leaks, leaks
        assert all(_about(events, marker) for events in feeds.values())
        # The workspace's name and owner do reach members, without the settings.
        renamed = [e["data"] for events in feeds.values() for e in events if e["type"] == "workspace.updated"]
        assert len(renamed) == 3 and all(set(data) == {"id", "name", "slug", "owner_id", "timezone", "created_at"} for data in renamed)
        # The check bites: the owner's feed carries every one of them.
        owner_text = json.dumps(owner_sock.events())
        assert [what for what, value in secrets_.items() if value not in owner_text and what != "invitee email"] == []
        assert private_types <= {e["type"] for e in owner_sock.events()}
    finally:
        await sse.close()
        await member_sock.close()
        await owner_sock.close()


async def test_a_member_whose_conversation_is_reassigned_away_is_told_and_then_sees_nothing_of_it(site, server, http):
    """Before: the reassignment event went only to the new assignee (the contact's current one),
    so the previous assignee's open inbox kept showing the conversation."""
    ws, owner = await site.workspace(http)
    member = await site.member(http, ws, owner)
    colleague = await site.member(http, ws, owner)
    contact_id, conversation_id = await site.contact(ws, member.user_id)
    member_sock = await Sock.open(server.url, ws, member.token, since=None)
    try:
        response = await http.patch(
            f"/v1/workspaces/{ws}/conversations/{conversation_id}", json={"assignee_id": colleague.user_id}, headers=owner.headers
        )
        assert response.status_code == 200, response.text

        def told(sock: Sock) -> bool:
            return any(
                e["type"] == "conversation.updated" and e["data"]["id"] == conversation_id and e["data"]["assignee_id"] == colleague.user_id
                for e in sock.events()
            )

        await member_sock.wait_for(told)
        # From now on nothing of it reaches the member, live or replayed.
        await site.emit(ws, "message.created", {"conversation_id": conversation_id, "text": "untuk rekan"}, contact_id=contact_id)
        marker = await _marker_contact(http, ws, owner)
        await member_sock.wait_for(lambda s: _about(s.events(), marker))
        assert "untuk rekan" not in json.dumps(member_sock.events())
        replay = await Sock.open(server.url, ws, member.token, since=0)
        try:
            await replay.wait_for(lambda s: _about(s.events(), marker))
            assert "untuk rekan" not in json.dumps(replay.events())
        finally:
            await replay.close()
    finally:
        await member_sock.close()
