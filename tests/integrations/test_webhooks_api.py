"""Outgoing webhooks, managed over HTTP: CRUD, roles, validation, the address policy, tenancy."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from kabar import egress
from kabar.integrations import delivery
from tests.conftest import app_client
from tests.helpers import assert_problem, make_tenant

PUBLIC_URL = "http://93.184.215.14/hook"  # a public address literal: nothing resolves or connects


async def create(tenant: Any, **body: Any) -> dict[str, Any]:
    body = {"url": PUBLIC_URL, "events": ["contact.created"], **body}
    response = await tenant.client.post(f"{tenant.base}/webhooks", json=body, headers=tenant.owner.headers)
    assert response.status_code == 201, response.text
    return response.json()


async def test_crud_and_secret_shown_once(client, tenant):
    created = await create(tenant, events=["contact.created", "note.*"], description="n8n flow", active=False)
    assert created["secret"].startswith("whsec_") and len(created["secret"]) > 40
    assert created["events"] == ["contact.created", "note.*"]
    assert created["status"] == "paused" and created["active"] is False
    assert created["failing_since"] is None and created["disabled_at"] is None

    url = f"{tenant.base}/webhooks/{created['id']}"
    got = (await client.get(url, headers=tenant.owner.headers)).json()
    assert got["secret"] is None and got["description"] == "n8n flow"
    listed = (await client.get(f"{tenant.base}/webhooks", headers=tenant.owner.headers)).json()
    assert [w["id"] for w in listed["data"]] == [created["id"]]
    assert all(w["secret"] is None for w in listed["data"])

    patched = await client.patch(url, json={"events": ["*"], "active": True, "description": ""}, headers=tenant.owner.headers)
    assert patched.status_code == 200, patched.text
    assert patched.json()["events"] == ["*"] and patched.json()["status"] == "active"
    assert patched.json()["description"] is None and patched.json()["secret"] is None

    rotated = (await client.post(f"{url}/rotate-secret", headers=tenant.owner.headers)).json()
    assert rotated["secret"].startswith("whsec_") and rotated["secret"] != created["secret"]

    assert (await client.delete(url, headers=tenant.owner.headers)).status_code == 204
    assert_problem(await client.get(url, headers=tenant.owner.headers), 404)
    assert_problem(await client.delete(url, headers=tenant.owner.headers), 404)


async def test_secret_is_stored_encrypted(client, tenant):
    created = await create(tenant)
    from sqlalchemy import select

    from kabar.db import tables as t

    stored = await client.runtime.db.read(
        lambda conn: conn.execute(select(t.webhook_endpoints.c.secret).where(t.webhook_endpoints.c.id == created["id"])).scalar_one()
    )
    assert created["secret"].encode() not in bytes(stored)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"events": ["contact.created", "contact.exploded"]}, "events"),
        ({"events": ["nosuchfamily.*"]}, "events"),
        ({"events": []}, "events"),
        ({"url": "ftp://example.com/hook"}, "url"),
        ({"url": "http:///no-host"}, "url"),
        ({"url": "not a url"}, "url"),
    ],
)
async def test_invalid_input_is_422_and_writes_nothing(client, tenant, body, field):
    response = await client.post(
        f"{tenant.base}/webhooks", json={"url": PUBLIC_URL, "events": ["*"], **body}, headers=tenant.owner.headers
    )
    problem = assert_problem(response, 422)
    assert any(e["field"] == field for e in problem["errors"]), problem
    assert (await client.get(f"{tenant.base}/webhooks", headers=tenant.owner.headers)).json()["data"] == []


async def test_patch_validates_too(client, tenant):
    created = await create(tenant)
    url = f"{tenant.base}/webhooks/{created['id']}"
    assert_problem(await client.patch(url, json={"events": ["bogus.type"]}, headers=tenant.owner.headers), 422)
    assert_problem(await client.patch(url, json={"url": "gopher://x"}, headers=tenant.owner.headers), 422)
    assert (await client.get(url, headers=tenant.owner.headers)).json()["events"] == ["contact.created"]


async def test_only_owners_and_admins_manage_webhooks(client, tenant):
    member = await tenant.add_user("member")
    admin = await tenant.add_user("admin")
    key = await tenant.api_key()
    created = await create(tenant)
    url = f"{tenant.base}/webhooks/{created['id']}"
    body = {"url": PUBLIC_URL, "events": ["*"]}
    for caller in (member, key):
        assert_problem(await client.get(f"{tenant.base}/webhooks", headers=caller.headers), 403)
        assert_problem(await client.post(f"{tenant.base}/webhooks", json=body, headers=caller.headers), 403)
        assert_problem(await client.get(url, headers=caller.headers), 403)
        assert_problem(await client.patch(url, json={"active": False}, headers=caller.headers), 403)
        assert_problem(await client.delete(url, headers=caller.headers), 403)
        assert_problem(await client.get(f"{url}/deliveries", headers=caller.headers), 403)
        assert_problem(await client.post(f"{url}/test", headers=caller.headers), 403)
        assert_problem(await client.post(f"{url}/rotate-secret", headers=caller.headers), 403)
    response = await client.post(f"{tenant.base}/webhooks", json=body, headers=admin.headers)
    assert response.status_code == 201, response.text
    assert (await client.get(url, headers=admin.headers)).status_code == 200


async def test_another_workspaces_webhook_is_404(client, tenant, other_tenant):
    theirs = await create(other_tenant)
    url = f"{tenant.base}/webhooks/{theirs['id']}"
    headers = tenant.owner.headers
    assert_problem(await client.get(url, headers=headers), 404)
    assert_problem(await client.patch(url, json={"active": False}, headers=headers), 404)
    assert_problem(await client.delete(url, headers=headers), 404)
    assert_problem(await client.get(f"{url}/deliveries", headers=headers), 404)
    assert_problem(await client.post(f"{url}/test", headers=headers), 404)
    assert_problem(await client.post(f"{url}/deliveries/x/redeliver", headers=headers), 404)
    assert (await client.get(f"{other_tenant.base}/webhooks/{theirs['id']}", headers=other_tenant.owner.headers)).status_code == 200


# -- the address policy -------------------------------------------------------------------------


@pytest.fixture(scope="module")
async def strict_client(settings):
    """The app with the default policy (KABAR_WEBHOOKS_ALLOW_PRIVATE unset), on the same database."""
    strict = replace(settings, webhooks_allow_private=False)
    async with app_client(strict) as test_client:
        yield test_client


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/hook",
        "http://localhost/hook",
        "https://api.localhost/hook",
        "http://10.1.2.3/hook",
        "http://192.168.1.10/hook",
        "http://172.16.0.1/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]/hook",
        "http://[fe80::1]/hook",
        "http://[::ffff:127.0.0.1]/hook",
        "http://100.64.0.1/hook",
        "http://224.0.0.1/hook",
        "http://0.0.0.0/hook",
    ],
)
async def test_private_address_refused_by_default(strict_client, url):
    tenant = await make_tenant(strict_client)
    response = await strict_client.post(f"{tenant.base}/webhooks", json={"url": url, "events": ["*"]}, headers=tenant.owner.headers)
    problem = assert_problem(response, 422)
    assert problem["errors"][0]["field"] == "url"


async def test_hostname_resolving_to_private_is_refused(strict_client, monkeypatch):
    async def fake_resolve(host: str, port: int) -> list[str]:
        return {"intranet.example.test": ["93.184.215.14", "10.0.0.7"], "hooks.example.test": ["93.184.215.14"]}[host]

    monkeypatch.setattr(egress, "resolve", fake_resolve)
    tenant = await make_tenant(strict_client)
    base, headers = f"{tenant.base}/webhooks", tenant.owner.headers
    refused = await strict_client.post(base, json={"url": "https://intranet.example.test/h", "events": ["*"]}, headers=headers)
    assert "10.0.0.7" in assert_problem(refused, 422)["detail"]
    ok = await strict_client.post(base, json={"url": "https://hooks.example.test/h", "events": ["*"]}, headers=headers)
    assert ok.status_code == 201, ok.text
    changed = await strict_client.patch(f"{base}/{ok.json()['id']}", json={"url": "https://intranet.example.test/x"}, headers=headers)
    assert_problem(changed, 422)


async def test_public_address_accepted_by_default(strict_client):
    tenant = await make_tenant(strict_client)
    response = await strict_client.post(f"{tenant.base}/webhooks", json={"url": PUBLIC_URL, "events": ["*"]}, headers=tenant.owner.headers)
    assert response.status_code == 201, response.text


async def test_dns_rebinding_is_refused_at_delivery(receiver, monkeypatch):
    """The name resolved to a public address when saved; at delivery it says 127.0.0.1: no POST."""

    async def rebound(host: str, port: int) -> list[str]:
        return ["127.0.0.1"]

    monkeypatch.setattr(egress, "resolve", rebound)
    port = receiver.url.split(":")[2].split("/")[0]
    async with egress.client(allow_private=False) as http:
        attempt = await delivery.post(
            http,
            f"http://hooks.example.test:{port}/hook",
            secret="whsec_x",
            event_type="contact.created",
            delivery_id="d1",
            body=b"{}",
            timeout=5,
        )
    assert not attempt.ok and attempt.status_code is None and "refused" in attempt.error
    assert receiver.snapshot() == []


@pytest.mark.parametrize(
    ("address", "allowed"),
    [
        ("93.184.215.14", True),
        ("2606:2800:220:1:248:1893:25c8:1946", True),
        ("127.0.0.1", False),
        ("10.0.0.1", False),
        ("169.254.1.1", False),
        ("100.64.0.1", False),
        ("224.0.0.251", False),
        ("::1", False),
        ("fd00::1", False),
        ("::ffff:10.0.0.1", False),
        ("fe80::1%eth0", False),
        ("240.0.0.1", False),
    ],
)
def test_address_policy(address, allowed):
    assert egress.address_allowed(address) is allowed
