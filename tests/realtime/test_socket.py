"""The realtime WebSocket against a real ``kabar serve`` process, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
import time
from datetime import timedelta

import httpx
import jwt
import pytest
import websockets

from kabar.db.types import utcnow
from kabar.realtime import service
from tests.conftest import base_settings
from tests.realtime.conftest import JWT_SECRET
from tests.realtime.support import Sock, patch_workspace, wait_until


async def test_replay_then_live_in_seq_order(site, server, http):
    ws, owner = await site.workspace(http)
    for i in range(5):
        await patch_workspace(http, ws, owner, i)
    sock = await Sock.open(server.url, ws, owner.token, since=2)
    try:
        assert sock.ops("subscribed")[0] == {"op": "subscribed", "since": 2, "last_seq": 6}
        await sock.wait_seq(6)
        await patch_workspace(http, ws, owner, 99)
        await sock.wait_seq(7)
        assert sock.seqs() == [3, 4, 5, 6, 7]
        last = sock.events()[-1]
        assert last["type"] == "workspace.updated" and last["data"]["settings"] == {"i": 99}
        assert last["created_at"].endswith("Z")
    finally:
        await sock.close()


async def test_since_null_starts_live_from_the_current_last_seq(site, server, http):
    ws, owner = await site.workspace(http)
    await patch_workspace(http, ws, owner, 1)
    sock = await Sock.open(server.url, ws, owner.token, since=None)
    try:
        assert sock.ops("subscribed")[0]["since"] == 2
        await patch_workspace(http, ws, owner, 2)
        await sock.wait_seq(3)
        assert sock.seqs() == [3]
    finally:
        await sock.close()


async def test_disconnected_during_1000_events_resumes_with_none_missed_or_repeated(site, server, http):
    ws, owner = await site.workspace(http)
    total = 1000
    done = asyncio.Event()

    async def writer(worker: int) -> None:
        for i in range(total // 4):
            await patch_workspace(http, ws, owner, worker * 1000 + i)

    async def write_all() -> None:
        await asyncio.gather(*(writer(w) for w in range(4)))
        done.set()

    first = await Sock.open(server.url, ws, owner.token, since=1)  # seq 1 is workspace.created
    writing = asyncio.create_task(write_all())
    await first.wait_for(lambda s: len(s.events()) >= 150)
    await first.close()  # the connection drops mid-stream
    seen = first.seqs()
    await wait_until(lambda: len(seen) < total // 2 or done.is_set(), what="writes continue")
    await asyncio.sleep(0)  # let more events be written while disconnected
    second = await Sock.open(server.url, ws, owner.token, since=seen[-1])
    try:
        await writing
        await second.wait_seq(total + 1, timeout=60)
        combined = seen + second.seqs()
        assert combined == list(range(2, total + 2)), "every seq exactly once, in order"
        assert not second.ops("resync")
    finally:
        await second.close()


async def test_resync_when_since_is_older_than_retention(site, server, http):
    ws, owner = await site.workspace(http)
    for i in range(10):
        await patch_workspace(http, ws, owner, i)
    # Retention keeps the newest 4 events of every workspace.
    settings = base_settings(site.database_url, site.tmp, event_retention_count=4)
    await service.cleanup(site.db, settings, utcnow())
    page = (await http.get(f"/v1/workspaces/{ws}/events", params={"since": 2}, headers=owner.headers)).json()
    assert page["resync"] is True and page["oldest_seq"] == 8 and [e["seq"] for e in page["data"]] == [8, 9, 10, 11]

    sock = await Sock.open(server.url, ws, owner.token, since=3)
    try:
        assert sock.ops("resync") == [{"op": "resync", "last_seq": 11}]
        assert sock.ops("subscribed")[0]["since"] == 11  # continues live after the reload point
        await patch_workspace(http, ws, owner, 11)
        await sock.wait_seq(12)
        assert sock.seqs() == [12]
    finally:
        await sock.close()
    # Exactly at the edge (since = oldest - 1) nothing is missing: no resync.
    edge = await Sock.open(server.url, ws, owner.token, since=7)
    try:
        await edge.wait_seq(12)
        assert not edge.ops("resync") and edge.seqs() == [8, 9, 10, 11, 12]
    finally:
        await edge.close()
    # A client ahead of the log (a restored database) must reload too.
    ahead = await Sock.open(server.url, ws, owner.token, since=500)
    try:
        assert ahead.ops("resync")
    finally:
        await ahead.close()


async def test_member_gets_no_events_about_contacts_not_visible_to_them(site, server, http):
    ws, owner = await site.workspace(http)
    member = await site.member(http, ws, owner)
    colleague = await site.member(http, ws, owner)
    admin = await site.member(http, ws, owner, role="admin")
    member_sock = await Sock.open(server.url, ws, member.token, since=None)
    admin_sock = await Sock.open(server.url, ws, admin.token, since=None)
    try:
        mine, _ = await site.contact(ws, member.user_id)
        theirs, _ = await site.contact(ws, colleague.user_id)
        await site.emit(ws, "message.created", {"text": "secret"}, contact_id=theirs)
        await site.emit(ws, "message.created", {"text": "hello"}, contact_id=mine)
        nobody, _ = await site.contact(ws, None)  # the last event the member may see
        await patch_workspace(http, ws, owner, 1)  # a write through the server wakes its feed now
        last = admin_sock  # the admin sees every event; wait for the last one
        await last.wait_for(lambda s: len(s.events()) == 6)

        def saw_nobody(s: Sock) -> bool:
            return any(e["type"] == "contact.created" and e["data"]["id"] == nobody for e in s.events())

        await member_sock.wait_for(saw_nobody)
        about = [e["data"].get("id") or e["data"].get("text") for e in member_sock.events()]
        assert theirs not in about and "secret" not in about
        assert mine in about and nobody in about and "hello" in about
        # Workspace settings are for owners and admins; members get the rest (kabar.events.MEMBER_VIEW).
        await member_sock.wait_for(lambda s: any(e["type"] == "workspace.updated" for e in s.events()))
        assert all("settings" not in e["data"] for e in member_sock.events() if e["type"] == "workspace.updated")
        # Replay applies the same rule.
        replay = await Sock.open(server.url, ws, member.token, since=0)
        try:
            await replay.wait_for(saw_nobody)
            assert [e["seq"] for e in replay.events()] == sorted({e["seq"] for e in replay.events()})
            assert not any(e.get("data", {}).get("id") == theirs or e["data"].get("text") == "secret" for e in replay.events())
        finally:
            await replay.close()
        # Polling too.
        page = (await http.get(f"/v1/workspaces/{ws}/events", params={"since": 0}, headers=member.headers)).json()
        assert "secret" not in str(page["data"]) and theirs not in str(page["data"]) and "hello" in str(page["data"])
    finally:
        await member_sock.close()
        await admin_sock.close()


async def test_slow_consumer_is_resynced_and_closed_without_delaying_a_fast_one(site, start_server, http):
    from tests.conftest import server_env

    small = start_server(server_env(site.database_url, site.tmp, KABAR_REALTIME_QUEUE="40"))
    ws, owner = await site.workspace(http)
    # The slow client reads nothing: its library stops reading after 1 message, TCP fills up.
    slow = await Sock.open(small.url, ws, owner.token, since=None)
    slow._reader.cancel()
    fast = await Sock.open(small.url, ws, owner.token, since=None, max_queue=None)
    try:
        blob = "x" * 20000  # large events fill the slow socket's buffers quickly
        latencies = []
        async with __import__("httpx").AsyncClient(base_url=small.url, timeout=30) as http_small:
            for i in range(300):
                answered = await patch_workspace(http_small, ws, owner, i, blob=blob)
                await fast.wait_seq(i + 2)
                latencies.append(fast.arrival(i + 2) - answered)
        assert fast.seqs() == list(range(2, 302))
        assert max(latencies) < 1.0, f"fast consumer delayed: max {max(latencies):.3f}s"
        # Now the slow one reads: what was buffered, then resync, then the close.
        slow._reader = asyncio.create_task(slow._read())
        await slow.wait_for(lambda s: s.close_code is not None, timeout=30)
        assert slow.ops("resync") and slow.close_code == 4008
        assert len(slow.events()) < 300
        assert slow.seqs() == sorted(set(slow.seqs()))
    finally:
        await fast.close()
        await slow.close()


async def test_authentication_variants(site, server, http):
    ws, owner = await site.workspace(http)
    await patch_workspace(http, ws, owner, 1)

    async def first_message(**kw) -> tuple[dict, int | None]:
        sock = await Sock.open(server.url, ws, **kw)
        try:
            with contextlib.suppress(websockets.ConnectionClosed):  # refused callers may be closed already
                await sock.send({"op": "subscribe", "since": 0})
            await sock.wait_for(lambda s: s.messages or s.close_code)
            await sock.wait_for(lambda s: s.ops("subscribed") or s.close_code)
            return sock.messages[0][1], sock.close_code
        finally:
            await sock.close()

    # Session token in the query (browsers), or as a bearer header.
    assert (await first_message(token=owner.token))[0]["op"] in ("subscribed", "event")
    assert (await first_message(headers=owner.headers))[0]["op"] == "subscribed"
    # Session cookie, same origin only.
    cookie = {"Cookie": f"kabar_session={owner.token}"}
    host = server.url.removeprefix("http://")
    assert (await first_message(headers={**cookie, "Origin": f"http://{host}"}))[0]["op"] == "subscribed"
    message, code = await first_message(headers={**cookie, "Origin": "http://evil.example"})
    assert message["op"] == "error" and message["status"] == 403 and code == 4403
    # API key.
    key = (await http.post(f"/v1/workspaces/{ws}/api-keys", json={"name": "rt"}, headers=owner.headers)).json()["secret"]
    assert (await first_message(token=key))[0]["op"] == "subscribed"
    # JWT from the identity provider (linked to the owner by email).
    token = jwt.encode(
        {"sub": "idp-owner", "email": owner.email, "email_verified": True, "aud": "authenticated", "exp": int(time.time()) + 300},
        JWT_SECRET,
        algorithm="HS256",
    )
    assert (await first_message(token=token))[0]["op"] == "subscribed"
    # Bad credentials, and another workspace's caller.
    message, code = await first_message(token="kst_not-a-session")
    assert message["status"] == 401 and code == 4401
    _, stranger = await site.workspace(http)
    message, code = await first_message(token=stranger.token)
    assert message["status"] == 404 and code == 4404
    message, code = await first_message()
    assert message["status"] == 401 and code == 4401


async def test_ping_pong_and_bad_input(site, server, http):
    ws, owner = await site.workspace(http)
    sock = await Sock.open(server.url, ws, owner.token)
    try:
        await sock.send({"op": "ping"})
        await sock.wait_for(lambda s: s.ops("pong"))
        await sock.conn.send("not json")
        await sock.send({"op": "subscribe", "since": "yesterday"})
        await sock.send({"op": "nope"})
        await sock.wait_for(lambda s: len(s.ops("error")) == 3)
        assert [e["status"] for e in sock.ops("error")] == [400, 422, 400]
        await sock.send({"op": "subscribe", "since": None})
        await sock.wait_for(lambda s: s.ops("subscribed"))
        await sock.send({"op": "subscribe", "since": None})
        await sock.wait_for(lambda s: len(s.ops("error")) == 4)
    finally:
        await sock.close()


async def test_server_heartbeats(site, start_server, http):
    from tests.conftest import server_env

    quick = start_server(server_env(site.database_url, site.tmp, KABAR_REALTIME_PING_SECONDS="0.2"))
    ws, owner = await site.workspace(http)
    sock = await Sock.open(quick.url, ws, owner.token, since=None)
    try:
        await sock.wait_for(lambda s: len(s.ops("ping")) >= 2, timeout=5)
    finally:
        await sock.close()


async def test_typing_between_staff_respects_visibility(site, server, http):
    ws, owner = await site.workspace(http)
    member = await site.member(http, ws, owner)
    colleague = await site.member(http, ws, owner)
    _, conv_mine = await site.contact(ws, member.user_id)
    _, conv_theirs = await site.contact(ws, colleague.user_id)
    owner_sock = await Sock.open(server.url, ws, owner.token, since=None)
    member_sock = await Sock.open(server.url, ws, member.token, since=None)
    colleague_sock = await Sock.open(server.url, ws, colleague.token, since=None)
    try:
        await owner_sock.send({"op": "typing", "conversation_id": conv_mine})
        await member_sock.wait_for(lambda s: s.ops("typing"))
        typing = member_sock.ops("typing")[0]
        assert typing["conversation_id"] == conv_mine and typing["user_id"] == owner.user_id and typing["state"] == "typing"
        await owner_sock.send({"op": "typing", "conversation_id": conv_theirs, "state": "paused"})
        await colleague_sock.wait_for(lambda s: any(t["conversation_id"] == conv_theirs for t in s.ops("typing")))
        # The member may not see the colleague's conversation, nor type into it.
        await member_sock.send({"op": "typing", "conversation_id": conv_theirs})
        await member_sock.wait_for(lambda s: s.ops("error"))
        assert member_sock.ops("error")[0]["status"] == 404
        assert all(t["conversation_id"] == conv_mine for t in member_sock.ops("typing"))
        assert not owner_sock.ops("typing")  # never echoed to the sender
        assert not owner_sock.events()  # typing is not logged
    finally:
        for sock in (owner_sock, member_sock, colleague_sock):
            await sock.close()


@pytest.mark.parametrize("resume", ["last-event-id", "since"])
async def test_sse_replays_then_streams_live(site, server, http, resume):
    ws, owner = await site.workspace(http)
    for i in range(3):
        await patch_workspace(http, ws, owner, i)
    headers = dict(owner.headers)
    params = {}
    if resume == "last-event-id":
        headers["Last-Event-ID"] = "2"
    else:
        params["since"] = 2
    received: list[dict] = []

    async def read() -> None:
        async with http.stream("GET", f"/v1/workspaces/{ws}/events/stream", headers=headers, params=params) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            block: dict = {}
            async for line in response.aiter_lines():
                if not line:
                    if block:
                        received.append(block)
                    block = {}
                    continue
                key, _, value = line.partition(":")
                block[key] = value.strip()

    reader = asyncio.create_task(read())
    try:
        await wait_until(lambda: len([b for b in received if "id" in b]) >= 2, what="replay")
        await patch_workspace(http, ws, owner, 9)
        await wait_until(lambda: len([b for b in received if "id" in b]) >= 3, what="live event")
        assert received[0]["event"] == "subscribed"
        ids = [int(b["id"]) for b in received if "id" in b]
        assert ids == [3, 4, 5]
        import json

        assert json.loads([b for b in received if b.get("id") == "5"][0]["data"])["data"]["settings"] == {"i": 9}
    finally:
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)


async def test_retention_job_runs_in_the_server(site, server, http):
    """The serve process schedules events.cleanup at startup; a run re-schedules itself."""
    from sqlalchemy import select

    from kabar.db import tables as t

    def jobs(conn):
        return conn.execute(select(t.jobs.c.status, t.jobs.c.run_at).where(t.jobs.c.kind == "events.cleanup")).all()

    rows = await site.db.read(jobs)
    assert [r.status for r in rows if r.status in ("queued", "running")], rows
    # The first run is due a minute after start-up; once it has run (the module's server may be
    # older than that), its successor waits an hour.
    assert any(r.run_at <= utcnow() + timedelta(minutes=2) for r in rows), rows
    assert all(r.status in ("queued", "running") or r.status == "done" for r in rows), rows
    if any(r.status == "done" for r in rows):
        assert any(r.status == "queued" and r.run_at > utcnow() + timedelta(minutes=30) for r in rows), rows


async def test_the_same_protocol_under_granian(site, start_server, http):
    """`kabar serve --server granian` (no transport fast path: every send goes through ASGI and,
    since granian's sends complete on its own thread, through the per-socket pump)."""
    from tests.conftest import server_env

    other = start_server(server_env(site.database_url, site.tmp, KABAR_SERVER="granian"))
    ws, owner = await site.workspace(http)
    await patch_workspace(http, ws, owner, 1)
    replay = await Sock.open(other.url, ws, owner.token, since=1)
    live = await Sock.open(other.url, ws, owner.token, since=None)
    try:
        async with httpx.AsyncClient(base_url=other.url, timeout=30) as http_other:  # writes wake its own feed
            for i in range(2, 12):
                await patch_workspace(http_other, ws, owner, i)
        await replay.wait_seq(12)
        await live.wait_seq(12)
        assert replay.seqs() == list(range(2, 13)) and live.seqs() == list(range(3, 13))
        await live.send({"op": "ping"})
        await live.wait_for(lambda s: s.ops("pong"))
    finally:
        await replay.close()
        await live.close()
