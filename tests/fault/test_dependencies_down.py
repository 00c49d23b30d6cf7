"""Outside services failing, against real processes: ``kabar serve`` (SQLite, jobs in-process) and
``kabar fake-provider`` with failure injection; an LLM endpoint that is down.

- The provider answers 500, 429 (Retry-After), then times out: the send is retried with backoff and
  ends ``failed`` with the provider's code and title once the attempts are used up; a send that
  meets 500 and 429 and then succeeds reaches the provider exactly once.
- The workspace's LLM is unreachable: ARI sends the fixed fallback reply through the provider and
  hands the conversation to a human (``handoff``, reason ``llm_error``, AI paused).
"""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from kabar.ari import rules
from tests.conftest import create_database, free_port, server_env
from tests.fault.support import Sender, inbound_plan, kapso_channel
from tests.realtime.support import Site


class FakeProviderProcess:
    """``kabar fake-provider`` in a subprocess, stopped by PID."""

    def __init__(self, tmp: Path, webhook_url: str, secret: str, env: dict[str, str]):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = open(tmp / f"fake-provider-{self.port}.log", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "kabar", "fake-provider", "--port", str(self.port), "--webhook-url", webhook_url,
             "--secret", secret, "--no-statuses"],
            env={**os.environ, **env}, stdout=self.log, stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while True:
            assert self.proc.poll() is None, "kabar fake-provider exited"
            try:
                if httpx.get(self.url + "/_fake/messages", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "kabar fake-provider did not start"
            time.sleep(0.05)

    @property
    def api_base_url(self) -> str:
        return self.url + "/meta/whatsapp/v24.0"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self.log.close()


class Shop:
    """A workspace on a real server with a Kapso channel, an owner and one customer who wrote in."""

    def __init__(self, http: httpx.AsyncClient, ws: str, owner: Any, pnid: str, secret: str):
        self.http, self.ws, self.owner, self.pnid, self.secret = http, ws, owner, pnid, secret
        self.conversation_id = ""

    async def customer_writes(self, url: str, text: str = "Halo kak") -> None:
        plan = inbound_plan(self.pnid, self.secret, deliveries=1, customers=1, seed=secrets.randbelow(1000))
        sender = Sender(url)
        await sender.run(plan)
        listed = (await self.http.get(f"/v1/workspaces/{self.ws}/conversations", headers=self.owner.headers)).json()["data"]
        self.conversation_id = listed[0]["id"]

    async def send(self, text: str) -> str:
        response = await self.http.post(f"/v1/workspaces/{self.ws}/conversations/{self.conversation_id}/messages",
                                        json={"type": "text", "text": text}, headers=self.owner.headers)
        assert response.status_code == 202, response.text
        return response.json()["id"]

    async def messages(self) -> list[dict[str, Any]]:
        response = await self.http.get(f"/v1/workspaces/{self.ws}/conversations/{self.conversation_id}/messages", headers=self.owner.headers)
        assert response.status_code == 200, response.text
        return response.json()["data"]

    async def wait_message(self, message_id: str, statuses: set[str], timeout: float = 60) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            found = [m for m in await self.messages() if m["id"] == message_id]
            if found and found[0]["status"] in statuses:
                return found[0]
            assert time.monotonic() < deadline, f"message {message_id} not {statuses}: {found}"
            await asyncio.sleep(0.1)


@pytest.fixture
async def shop(tmp_path: Path, start_server: Any) -> AsyncIterator[tuple[Shop, Any, FakeProviderProcess]]:
    url = await asyncio.to_thread(create_database, "sqlite", tmp_path, "fault_deps")
    env = server_env(url, tmp_path, KABAR_JOB_MAX_ATTEMPTS="4", KABAR_PROVIDER_TIMEOUT="1", KABAR_SEND_CONFIRM_SECONDS="1")
    server = await asyncio.to_thread(start_server, env)
    site = Site(url, tmp_path)
    secret = "whsec-" + secrets.token_hex(8)
    fake = await asyncio.to_thread(FakeProviderProcess, tmp_path, server.url + "/webhooks/kapso", secret, env)
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=15) as http:
            ws, owner = await site.workspace(http)
            pnid, secret = await kapso_channel(http, ws, owner.headers, api_base_url=fake.api_base_url)
            yield Shop(http, ws, owner, pnid, secret), server, fake
    finally:
        fake.stop()
        await site.db.dispose()


async def inject(fake: FakeProviderProcess, *failures: dict[str, Any]) -> None:
    async with httpx.AsyncClient(base_url=fake.url) as http:
        assert (await http.post("/_fake/failures", json={"failures": list(failures)})).status_code == 200


async def provider_log(fake: FakeProviderProcess) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=fake.url) as http:
        return (await http.get("/_fake/messages")).json()


async def test_provider_500_429_timeouts_are_retried_then_failed_with_a_reason(shop) -> None:
    shop, server, fake = shop
    await shop.customer_writes(server.url)

    # Four attempts (KABAR_JOB_MAX_ATTEMPTS=4): 500, 429 with Retry-After, a timeout, 500 again.
    await inject(fake, {"status": 500}, {"status": 429, "retry_after": 1}, {"timeout": 3}, {"status": 500})
    doomed = await shop.send("Pesanan kakak sudah kami proses")
    failed = await shop.wait_message(doomed, {"failed", "sent"})
    assert failed["status"] == "failed" and failed["provider_message_id"] is None, failed
    assert failed["error"]["code"] and failed["error"]["title"], failed["error"]
    log = await provider_log(fake)
    outcomes = [r["outcome"] for r in log["requests"] if r["body"].get("text", {}).get("body") == "Pesanan kakak sudah kami proses"]
    assert len(outcomes) == 4, outcomes
    gaps = [b["at"] - a["at"] for a, b in zip(log["requests"], log["requests"][1:], strict=False)]
    assert gaps[1] >= 0.9, "the 429's Retry-After (1 s) was not honoured"

    # 500, then 429, then accepted: sent once, exactly one message at the provider.
    await inject(fake, {"status": 500}, {"status": 429, "retry_after": 1})
    lucky = await shop.send("Terima kasih sudah order")
    sent = await shop.wait_message(lucky, {"failed", "sent"})
    assert sent["status"] == "sent" and sent["provider_message_id"], sent
    log = await provider_log(fake)
    accepted = [m for m in log["messages"] if m["body"].get("text", {}).get("body") == "Terima kasih sudah order"]
    assert [m["id"] for m in accepted] == [sent["provider_message_id"]]
    print(f"\nFAULT provider: failed after {len(outcomes)} attempts with {failed['error']}; the other sent once after 500 and 429")


async def test_llm_down_ari_sends_the_fallback_and_hands_off(shop) -> None:
    shop, server, fake = shop
    dead_llm = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    config = {"enabled": True, "reply_delay_ms": 0,
              "llm": {"model": "grok-3-mini", "base_url": dead_llm, "api_key": "sk-dead-" + secrets.token_hex(6), "timeout_seconds": 1, "max_retries": 1}}
    response = await shop.http.put(f"/v1/workspaces/{shop.ws}/ari/config", json=config, headers=shop.owner.headers)
    assert response.status_code == 200, response.text

    await shop.customer_writes(server.url, "Halo, mau tanya kuliah di luar negeri")
    deadline = time.monotonic() + 60
    while True:
        bot = [m for m in await shop.messages() if m["sender_type"] == "bot"]
        if bot and bot[0]["status"] == "sent":
            break
        assert time.monotonic() < deadline, f"no bot reply sent: {bot}"
        await asyncio.sleep(0.1)
    assert [m["text"] for m in bot] == [rules.FALLBACK]
    log = await provider_log(fake)
    assert [m["body"]["text"]["body"] for m in log["messages"]] == [rules.FALLBACK]

    ari = (await shop.http.get(f"/v1/workspaces/{shop.ws}/conversations/{shop.conversation_id}/ari", headers=shop.owner.headers)).json()
    assert (ari["state"], ari["handoff_reason"]) == ("handoff", "llm_error"), ari
    conversation = (await shop.http.get(f"/v1/workspaces/{shop.ws}/conversations/{shop.conversation_id}", headers=shop.owner.headers)).json()
    assert conversation["ai_paused"] is True, conversation

