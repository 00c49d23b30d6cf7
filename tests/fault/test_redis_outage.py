"""Redis stopped and started again while webhooks keep arriving (two ``kabar serve`` processes on
PostgreSQL, a private ``redis-server``).

Redis only carries wake-ups and shared rate-limit counters; the event log in the database is the
truth. So with Redis down: every webhook is still answered 200 at the first attempt, logins still
work, ``/readyz`` reports Redis without taking the process out of rotation, and a subscriber on the
other process still receives every event (by polling the log). When Redis is back, delivery is
prompt again (wake-ups, not the 60 s safety poll) and nothing was missed or repeated.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from typing import Any

import httpx

from tests.conftest import create_database, server_env
from tests.fault.support import Sender, inbound_plan, kapso_channel
from tests.helpers import PASSWORD
from tests.realtime.support import Site, Sock


async def message_seqs(sock: Sock) -> list[int]:
    return [e["seq"] for e in sock.events() if e["type"] == "message.created"]


async def wait_ready_state(http: httpx.AsyncClient, redis_ok: bool) -> dict[str, Any]:
    deadline = time.monotonic() + 20
    while True:
        response = await http.get("/readyz")
        body = response.json()
        # Redis is reported, never a reason to be unready (writes and realtime work without it).
        assert response.status_code == 200, body
        if (body["checks"].get("redis") == "ok") == redis_ok:
            return body
        assert time.monotonic() < deadline, body
        await asyncio.sleep(0.05)


async def test_redis_down_and_back_writes_unaffected_realtime_recovers(tmp_path, start_server, private_redis) -> None:
    url = await asyncio.to_thread(create_database, "postgres", tmp_path, f"fault_redis_{secrets.token_hex(2)}")
    env = server_env(url, tmp_path, KABAR_REDIS_URL=private_redis.url, KABAR_REALTIME_SAFETY_POLL_SECONDS="60",
                     KABAR_REALTIME_POLL_SECONDS="0.3")
    a, b = await asyncio.gather(asyncio.to_thread(start_server, env), asyncio.to_thread(start_server, env))
    site = Site(url, tmp_path)
    async with httpx.AsyncClient(base_url=a.url, timeout=10) as http_a:
        ws, owner = await site.workspace(http_a)
        pnid, secret = await kapso_channel(http_a, ws, owner.headers)
        plan = inbound_plan(pnid, secret, deliveries=300, customers=10, seed=3)
        before, during, after = plan.deliveries[:100], plan.deliveries[100:250], plan.deliveries[250:]
        sock = await Sock.open(a.url, ws, owner.token, since=0)
        try:
            sender = Sender(b.url)
            await sender.run(type(plan)(before, plan.messages))
            await sock.wait_for(lambda s: len([e for e in s.events() if e["type"] == "message.created"]) >= _count(before))

            private_redis.stop()
            await wait_ready_state(http_a, redis_ok=False)
            await sender.run(type(plan)(during, plan.messages))
            assert login_ok(await http_a.post("/v1/auth/login", json={"email": owner.email, "password": PASSWORD}))
            await sock.wait_for(lambda s: len([e for e in s.events() if e["type"] == "message.created"]) >= _count(before + during), timeout=20)

            private_redis.start()
            await wait_ready_state(http_a, redis_ok=True)
            async with httpx.AsyncClient(base_url=b.url, timeout=10) as http_b:
                await wait_ready_state(http_b, redis_ok=True)
            await asyncio.sleep(2)  # past the fast-poll window that follows a reconnect
            started = time.perf_counter()
            await sender.run(type(plan)(after, plan.messages))
            await sock.wait_for(lambda s: len([e for e in s.events() if e["type"] == "message.created"]) >= _count(plan.deliveries), timeout=10)
            recovery = time.perf_counter() - started
        finally:
            await sock.close()
            await site.db.dispose()

    seqs = [e["seq"] for e in sock.events()]
    created = [e for e in sock.events() if e["type"] == "message.created"]
    print(f"\nFAULT Redis down/up: {len(plan.deliveries)} deliveries, outcomes {dict(sender.outcomes)}; "
          f"{len(created)} message.created events on the other process; last 50 delivered in {recovery:.2f}s after recovery")
    assert sender.outcomes == {"200": len(plan.deliveries)}, "every webhook answered 200 at the first attempt"
    assert seqs == sorted(set(seqs)) and seqs == list(range(seqs[0], seqs[0] + len(seqs))), "no event missed or repeated"
    assert {e["data"]["provider_message_id"] for e in created} == set(plan.messages)
    assert recovery < 5, "after Redis returns, events arrive by wake-up, not by the 60 s safety poll"


def _count(deliveries: list[Any]) -> int:
    return sum(len(d.wamids) for d in deliveries)


def login_ok(response: httpx.Response) -> bool:
    return response.status_code == 200 and bool(response.json().get("token"))

