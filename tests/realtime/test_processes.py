"""Several ``kabar serve`` processes on one PostgreSQL database and a (private) Redis: events
written through any process reach subscribers on every process, exactly once and in order, also
while Redis is down and after it comes back.

The safety-poll period is set to 60 s here, so a prompt delivery across processes can only come
from the Redis wake-up (or, while Redis is down, from the 0.3 s fallback polling)."""

from __future__ import annotations

import asyncio
import secrets

import httpx
import pytest

from tests.conftest import create_database, server_env
from tests.realtime.support import Site, Sock, patch_workspace, percentile, wait_until


@pytest.fixture
async def cluster(tmp_path, start_server, private_redis):
    url = await asyncio.to_thread(create_database, "postgres", tmp_path, f"rtp_{secrets.token_hex(3)}")
    env = server_env(
        url,
        tmp_path,
        KABAR_REDIS_URL=private_redis.url,
        KABAR_REALTIME_SAFETY_POLL_SECONDS="60",
        KABAR_REALTIME_POLL_SECONDS="0.3",
    )
    a, b = await asyncio.gather(asyncio.to_thread(start_server, env), asyncio.to_thread(start_server, env))
    site = Site(url, tmp_path)
    async with httpx.AsyncClient(base_url=a.url, timeout=30) as http_a, httpx.AsyncClient(base_url=b.url, timeout=30) as http_b:
        yield site, a, b, http_a, http_b, private_redis
    await site.db.dispose()


async def test_a_write_through_b_reaches_a_subscriber_on_a(cluster):
    site, a, b, http_a, http_b, _ = cluster
    ws, owner = await site.workspace(http_b)
    admin = await site.member(http_b, ws, owner, role="admin")
    on_a = await Sock.open(a.url, ws, owner.token, since=None)
    on_b = await Sock.open(b.url, ws, admin.token, since=None)
    try:
        start = on_a.ops("subscribed")[0]["since"]
        latencies = []
        for i in range(30):
            answered = await patch_workspace(http_b, ws, owner, i)
            await on_a.wait_seq(start + i + 1, timeout=5)
            latencies.append(on_a.arrival(start + i + 1) - answered)
        assert on_a.seqs() == list(range(start + 1, start + 31))
        assert percentile(latencies, 95) < 0.5, latencies
        # Ephemeral typing crosses processes too (staff on A → staff on B).
        _, conversation_id = await site.contact(ws, None)
        await on_a.send({"op": "typing", "conversation_id": conversation_id})
        await on_b.wait_for(lambda s: s.ops("typing"), timeout=5)
        assert on_b.ops("typing")[0]["user_id"] == owner.user_id
    finally:
        await on_a.close()
        await on_b.close()


async def test_concurrent_writers_on_two_processes_give_every_seq_exactly_once_in_order(cluster):
    site, a, b, http_a, http_b, _ = cluster
    ws, owner = await site.workspace(http_a)
    watchers = [await Sock.open(a.url, ws, owner.token, since=0), await Sock.open(b.url, ws, owner.token, since=0)]
    writers, per_writer = 12, 40

    async def writer(n: int) -> None:
        http = http_a if n % 2 else http_b
        for i in range(per_writer):
            await patch_workspace(http, ws, owner, n * 1000 + i)

    try:
        await asyncio.gather(*(writer(n) for n in range(writers)))
        last = 1 + writers * per_writer  # seq 1 is workspace.created
        for watcher in watchers:
            await watcher.wait_seq(last, timeout=30)
            assert watcher.seqs() == list(range(1, last + 1))
    finally:
        for watcher in watchers:
            await watcher.close()


async def test_redis_stopped_and_restarted_mid_stream_loses_nothing(cluster):
    site, a, b, http_a, http_b, redis = cluster
    ws, owner = await site.workspace(http_b)
    on_a = await Sock.open(a.url, ws, owner.token, since=1)
    on_b = await Sock.open(b.url, ws, owner.token, since=1)
    written = 0

    async def write(n: int) -> None:
        nonlocal written
        for _ in range(n):
            written += 1
            await patch_workspace(http_b if written % 3 else http_a, ws, owner, written)

    try:
        await write(50)
        await on_a.wait_seq(1 + written, timeout=5)

        redis.stop()
        await wait_until_ready(http_a, False)
        await write(100)  # writes succeed with Redis down
        await on_a.wait_seq(1 + written, timeout=10)  # subscribers fall back to polling the log

        redis.start()
        await wait_until_ready(http_a, True)
        await wait_until_ready(http_b, True)
        await write(50)
        for sock in (on_a, on_b):
            await sock.wait_seq(1 + written, timeout=10)
            assert sock.seqs() == list(range(2, 2 + written)), "every seq exactly once, in order"
        # Wake-ups through Redis again: prompt delivery with the 60 s safety poll.
        await asyncio.sleep(2)  # past the post-reconnect fast-poll window
        answered = await patch_workspace(http_b, ws, owner, 999)
        await on_a.wait_seq(2 + written, timeout=5)
        assert on_a.arrival(2 + written) - answered < 0.5
    finally:
        await on_a.close()
        await on_b.close()


async def wait_until_ready(http: httpx.AsyncClient, ready: bool) -> None:
    state: dict = {}

    async def check() -> bool:
        response = await http.get("/readyz")
        state.update(response.json())
        # Redis down is reported in /readyz but keeps the process ready (see kabar.app.readyz).
        return response.status_code == 200 and (response.json()["checks"].get("redis") == "ok") == ready

    deadline = asyncio.get_running_loop().time() + 15
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, f"readyz never became ready={ready}: {state}"
        await asyncio.sleep(0.05)
    assert ("redis" in state["checks"]) and ((state["checks"]["redis"] == "ok") == ready), state
