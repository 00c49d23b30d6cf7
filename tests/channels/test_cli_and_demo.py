"""The commands a person runs: ``kabar fake-provider``, ``kabar simulate``, and the demo
(``kabar seed --demo`` + ``kabar serve`` with KABAR_DEMO=1): simulated customers' messages
arrive, and a reply goes sent → delivered → read."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.channels.support import wait_for
from tests.conftest import create_database, free_port, server_env
from tests.ingest.test_lossless import setup_workspace


def kabar(env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "kabar", *args], env={**os.environ, **env}, capture_output=True, text=True, timeout=timeout)


async def test_simulate_posts_signed_customer_messages(backend: str, tmp_path: Path, start_server: Any) -> None:
    db_url = await asyncio.to_thread(create_database, backend, tmp_path, "simulate")
    env = server_env(db_url, tmp_path)
    server = start_server(env)
    ws, pnid, secret = await setup_workspace(server.url, {**os.environ, **env})
    done = await asyncio.to_thread(kabar, env, "simulate", "--url", server.url, "--phone-number-id", pnid, "--secret", secret,
                                   "--customers", "4", "--rate", "20", "--duration", "1", "--seed", "7")
    assert done.returncode == 0, done.stderr + done.stdout
    # The secret can also come from the database (the channel's own).
    again = await asyncio.to_thread(kabar, env, "simulate", "--url", server.url, "--phone-number-id", pnid,
                                    "--customers", "2", "--rate", "10", "--duration", "0.5", "--seed", "8")
    assert again.returncode == 0, again.stderr + again.stdout
    from kabar.db import tables as t
    from kabar.db.engine import Database
    from sqlalchemy import func, select

    from tests.conftest import base_settings

    db = Database(base_settings(db_url, tmp_path))
    try:
        messages = await db.read(lambda c: c.execute(select(func.count()).select_from(t.messages).where(t.messages.c.workspace_id == ws)).scalar())
        contacts = await db.read(lambda c: c.execute(select(func.count()).select_from(t.contacts).where(t.contacts.c.workspace_id == ws)).scalar())
    finally:
        await db.dispose()
    assert messages >= 20 and 1 <= contacts <= 6


async def test_fake_provider_command(tmp_path: Path) -> None:
    port = free_port()
    log = open(tmp_path / "fake.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen([sys.executable, "-m", "kabar", "fake-provider", "--port", str(port), "--secret", "s3cret", "--api-key", "k1",
                             "--webhook-url", "http://127.0.0.1:9/webhooks/kapso", "--no-statuses"], stdout=log, stderr=subprocess.STDOUT)
    try:
        base = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(base_url=base, timeout=5) as http:

            async def up() -> bool:
                try:
                    return (await http.get("/_fake/messages")).status_code == 200
                except httpx.TransportError:
                    return False

            await wait_for(up, timeout=30)
            body = {"messaging_product": "whatsapp", "to": "+6281200000001", "type": "text", "text": {"body": "halo"}}
            assert (await http.post("/meta/whatsapp/v24.0/pn1/messages", json=body)).status_code == 401  # wrong key
            sent = await http.post("/meta/whatsapp/v24.0/pn1/messages", json=body, headers={"X-API-Key": "k1"})
            assert sent.status_code == 200 and sent.json()["messages"][0]["id"].startswith("wamid.")
            await http.post("/_fake/failures", json={"failures": [{"status": 400, "code": 131047}]})
            refused = await http.post("/meta/whatsapp/v24.0/pn1/messages", json=body, headers={"X-API-Key": "k1"})
            assert refused.status_code == 400 and refused.json()["error"]["code"] == 131047
            recorded = (await http.get("/_fake/messages")).json()
            assert len(recorded["messages"]) == 1 and len(recorded["requests"]) == 3
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=15)
        log.close()


@pytest.mark.slow
async def test_demo_shows_customers_and_replies_reach_read(backend: str, tmp_path: Path, start_server: Any) -> None:
    db_url = await asyncio.to_thread(create_database, backend, tmp_path, "demo")
    env = server_env(db_url, tmp_path, KABAR_DEMO="1", KABAR_RUN_JOBS_IN_PROCESS="1", KABAR_DEMO_PASSWORD="demo-pass-123")
    seeded = await asyncio.to_thread(kabar, env, "seed", "--demo", "--contacts", "20")
    assert seeded.returncode == 0, seeded.stderr
    server = start_server(env)
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        token = (await http.post("/v1/auth/login", json={"email": "owner@demo.kabar.id", "password": "demo-pass-123"})).json()["token"]
        auth = {"Authorization": f"Bearer {token}"}
        ws = (await http.get("/v1/me", headers=auth)).json()["workspaces"][0]["id"]
        channel = (await http.get(f"/v1/workspaces/{ws}/channel", headers=auth)).json()
        assert channel["provider"] == "fake" and channel["api_base_url"].startswith("http://127.0.0.1:")
        started = time.time()

        async def fresh_inbound() -> dict[str, Any] | None:
            page = (await http.get(f"/v1/workspaces/{ws}/conversations", params={"limit": 5}, headers=auth)).json()["data"]
            for conversation in page:
                messages = (await http.get(f"/v1/workspaces/{ws}/conversations/{conversation['id']}/messages", params={"limit": 3}, headers=auth)).json()["data"]
                if any(m["direction"] == "inbound" and _ts(m["created_at"]) >= started - 5 for m in messages):
                    return conversation
            return None

        conversation = await wait_for(fresh_inbound, timeout=60, interval=0.5)
        reply = await http.post(f"/v1/workspaces/{ws}/conversations/{conversation['id']}/messages",
                                json={"type": "text", "text": "Halo kak, ada yang bisa kami bantu? 😊"}, headers=auth)
        assert reply.status_code == 202, reply.text
        message_id = reply.json()["id"]

        async def read() -> bool:
            messages = (await http.get(f"/v1/workspaces/{ws}/conversations/{conversation['id']}/messages", params={"limit": 20}, headers=auth)).json()["data"]
            return any(m["id"] == message_id and m["status"] == "read" for m in messages)

        await wait_for(read, timeout=60, interval=0.5)


def _ts(value: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
