"""Outgoing webhooks through failures: an endpoint that fails too long, and Kabar restarting mid-retry."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from kabar.db import tables as t
from tests.conftest import AppClient, app_client, base_settings, create_database, server_env
from tests.helpers import PASSWORD, make_tenant
from tests.integrations.conftest import emit, wait_for


@pytest.fixture
def own_database(backend: str, tmp_path: Path) -> str:
    return create_database(backend, tmp_path, f"webhooks_{tmp_path.name[-12:].replace('-', '_')}")


@pytest.fixture
async def quick_disable_client(own_database: str, tmp_path: Path) -> AsyncIterator[AppClient]:
    """The app on its own database, disabling an endpoint after 3 failed attempts in a row."""
    settings = base_settings(own_database, tmp_path, webhooks_disable_after=0.0, webhooks_disable_min_attempts=3)
    async with app_client(settings, run_jobs=True) as test_client:
        yield test_client


async def test_endpoint_failing_too_long_is_disabled_then_resumes(quick_disable_client, receiver):
    client = quick_disable_client
    tenant = await make_tenant(client)
    receiver.status = 500
    created = await client.post(
        f"{tenant.base}/webhooks", json={"url": receiver.url, "events": ["contact.created"]}, headers=tenant.owner.headers
    )
    hook = created.json()
    url = f"{tenant.base}/webhooks/{hook['id']}"
    await emit(client.runtime, tenant.ws, "contact.created", "contact.created")

    async def disabled() -> dict[str, Any] | None:
        body = (await client.get(url, headers=tenant.owner.headers)).json()
        return body if body["status"] == "disabled" else None

    webhook = await wait_for(disabled, what="the endpoint to be disabled")
    assert webhook["active"] is False and webhook["disabled_at"] and webhook["failing_since"]
    assert "HTTP 500" in webhook["disabled_reason"] and "3 attempts" in webhook["disabled_reason"]
    assert len(receiver.refused()) == 3 and len({r.delivery_id for r in receiver.refused()}) == 1
    (head,) = (await client.get(f"{url}/deliveries", params={"status": "failed"}, headers=tenant.owner.headers)).json()["data"]
    assert head["attempts"] == 3 and head["last_status_code"] == 500

    told = await client.runtime.db.read(
        lambda conn: conn.execute(
            select(t.events.c.data).where(t.events.c.workspace_id == tenant.ws, t.events.c.type == "webhook.disabled")
        ).all()
    )
    assert [row.data["id"] for row in told] == [hook["id"]], "the workspace is told, through its event log"

    receiver.status = 200
    resumed = await client.patch(url, json={"active": True}, headers=tenant.owner.headers)
    assert resumed.status_code == 200 and resumed.json()["status"] == "active"
    assert resumed.json()["disabled_at"] is None and resumed.json()["disabled_reason"] is None
    got = await wait_for(lambda: len(receiver.accepted()) >= 2 and receiver.accepted(), what="the missed events")
    assert [r.json["data"]["n"] for r in got] == [0, 1]
    assert got[0].delivery_id == head["id"] and all(r.signature_ok(hook["secret"]) for r in got)


def _kabar(env: dict[str, str], *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "kabar", *args], env={**os.environ, **env}, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1]


async def test_restart_mid_retry_loses_nothing(own_database, tmp_path, start_server, receiver):
    """Real `kabar serve` processes on one database: stopped while a delivery is failing, started again."""
    env = server_env(own_database, tmp_path, KABAR_RUN_JOBS_IN_PROCESS="1", KABAR_JOB_BACKOFF_CAP="0.3")
    email = "owner@restart.example.test"
    _kabar(env, "user", "create", "--email", email, "--password", PASSWORD)
    receiver.status = 500

    first = start_server(env)
    async with httpx.AsyncClient(base_url=first.url, timeout=10) as http:
        token = (await http.post("/v1/auth/login", json={"email": email, "password": PASSWORD})).json()["token"]
        headers = {"Authorization": f"Bearer {token}"}
        ws = (await http.post("/v1/workspaces", json={"name": "Toko Restart"}, headers=headers)).json()["id"]
        hook = (await http.post(f"/v1/workspaces/{ws}/webhooks", json={"url": receiver.url, "events": ["workspace.updated"]}, headers=headers)).json()
        for n in range(5):
            response = await http.patch(f"/v1/workspaces/{ws}", json={"name": f"Toko {n}"}, headers=headers)
            assert response.status_code == 200
        await wait_for(lambda: len(receiver.refused()) >= 3, what="the first delivery failing and being retried")
    first.stop()
    assert receiver.accepted() == []

    receiver.status = 200
    second = start_server(env)
    async with httpx.AsyncClient(base_url=second.url, timeout=10) as http:
        response = await http.patch(f"/v1/workspaces/{ws}", json={"name": "Toko 5"}, headers=headers)
        assert response.status_code == 200
        got = await wait_for(lambda: len(receiver.accepted()) >= 6 and receiver.accepted(), timeout=30, what="all 6 events")

        async def recorded() -> bool:
            listed = (await http.get(f"/v1/workspaces/{ws}/webhooks/{hook['id']}/deliveries", headers=headers)).json()["data"]
            return sorted(d["status"] for d in listed) == ["delivered"] * 6

        await wait_for(recorded, what="6 deliveries recorded as delivered")
    assert [r.json["data"]["name"] for r in got] == [f"Toko {n}" for n in range(6)]
    assert len({r.delivery_id for r in got}) == 6, "no delivery id accepted twice"
    assert {r.delivery_id for r in receiver.refused()} == {got[0].delivery_id}
    assert all(r.signature_ok(hook["secret"]) for r in got)
