"""ARI inside a real `kabar serve` process (SQLite: jobs in-process): the trigger is registered
in every server process, and a signed webhook gets a bot reply through the send path."""

from __future__ import annotations

import os
import subprocess
import sys

import httpx

from kabar.channels.fake import payloads as p
from tests.channels.support import wait_for
from tests.conftest import create_database, server_env
from tests.helpers import PASSWORD


async def test_a_real_server_answers_a_signed_webhook(tmp_path, start_server, server):
    env = server_env(create_database("sqlite", tmp_path, "ari_process"), tmp_path)
    subprocess.run(
        [sys.executable, "-m", "kabar", "user", "create", "--email", "ari@example.test", "--password", PASSWORD],
        env={**os.environ, **env}, check=True, capture_output=True,
    )
    kabar = start_server(env)
    async with httpx.AsyncClient(base_url=kabar.url, timeout=10) as http:
        login = await http.post("/v1/auth/login", json={"email": "ari@example.test", "password": PASSWORD})
        assert login.status_code == 200, login.text
        token = login.json()["token"]
        auth = {"Authorization": f"Bearer {token}"}
        ws = (await http.post("/v1/workspaces", json={"name": "Agen Studi"}, headers=auth)).json()["id"]
        channel = {"provider": "kapso", "phone_number_id": "pn-ari-e2e", "api_key": "k", "webhook_secret": "whsec-e2e", "api_base_url": server.url}
        assert (await http.put(f"/v1/workspaces/{ws}/channel", json=channel, headers=auth)).status_code == 200
        assert (await http.put(f"/v1/workspaces/{ws}/ari/config", json={"enabled": True, "reply_delay_ms": 0}, headers=auth)).status_code == 200

        raw = p.encode(p.kapso_received(pnid="pn-ari-e2e", phone="+6281299990000", text="Halo, mau kuliah di Inggris", name="Tono"))
        response = await http.post("/webhooks/kapso", content=raw, headers=p.kapso_headers(raw, "whsec-e2e", "whatsapp.message.received"))
        assert response.status_code == 200, response.text

        async def bot_reply():
            conversations = (await http.get(f"/v1/workspaces/{ws}/conversations", headers=auth)).json()["data"]
            if not conversations:
                return None
            messages = (await http.get(f"/v1/workspaces/{ws}/conversations/{conversations[0]['id']}/messages", headers=auth)).json()["data"]
            return [m for m in messages if m["sender_type"] == "bot" and m["status"] == "sent"]

        (reply,) = await wait_for(bot_reply)
        assert "United Kingdom" in reply["text"] and reply["direction"] == "outbound"
    assert any(s.get("text", {}).get("body") == reply["text"] for s in server.fake.sends)  # delivered to the provider
