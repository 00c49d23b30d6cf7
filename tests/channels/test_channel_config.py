"""GET|PUT /v1/workspaces/{ws}/channel: owner/admin only, secrets write-only and encrypted at rest."""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

import pytest

from kabar.channels import service
from kabar.db import tables as t
from tests.channels.support import rows
from tests.helpers import assert_problem

SECRETS = {"api_key": "kapso-key-SECRET-1", "webhook_secret": "whsec-SECRET-2", "app_secret": "app-SECRET-3", "verify_token": "vt-SECRET-4"}


def body(pnid: str, **extra: Any) -> dict[str, Any]:
    return {"provider": "kapso", "phone_number_id": pnid, "display_phone_number": "+62 21 5088 0000",
            "api_base_url": "http://127.0.0.1:9/meta/whatsapp/v24.0", **SECRETS, **extra}


async def test_put_then_get_shows_only_whether_secrets_are_set(client, tenant, caplog):
    caplog.set_level(logging.DEBUG)
    pnid = "pn-cfg-" + tenant.ws[-10:]
    response = await client.put(f"{tenant.base}/channel", json=body(pnid), headers=tenant.owner.headers)
    assert response.status_code == 200, response.text
    read = await client.get(f"{tenant.base}/channel", headers=tenant.owner.headers)
    assert read.status_code == 200
    out = read.json()
    assert out["provider"] == "kapso" and out["phone_number_id"] == pnid and out["webhook_path"] == "/webhooks/kapso"
    assert (out["has_api_key"], out["has_webhook_secret"], out["has_app_secret"], out["has_verify_token"]) == (True, True, True, True)
    for secret in SECRETS.values():
        assert secret not in response.text and secret not in read.text
        assert secret not in caplog.text  # never logged
    [row] = await rows(client, t.channels, tenant.ws)
    for secret in SECRETS.values():
        assert secret.encode() not in bytes(row.secrets)  # encrypted at rest
    events = [e.data for e in await rows(client, t.events, tenant.ws) if e.type == "channel.updated"]
    assert events and all(secret not in str(events) for secret in SECRETS.values())


async def test_secrets_are_kept_when_omitted_and_cleared_with_empty_string(client, tenant):
    pnid = "pn-keep-" + tenant.ws[-10:]
    assert (await client.put(f"{tenant.base}/channel", json=body(pnid), headers=tenant.owner.headers)).status_code == 200
    partial = {"provider": "kapso", "phone_number_id": pnid, "display_phone_number": "+62 811"}
    response = await client.put(f"{tenant.base}/channel", json=partial, headers=tenant.owner.headers)
    assert response.status_code == 200 and response.json()["has_api_key"] and response.json()["display_phone_number"] == "+62 811"
    config = await client.runtime.db.read(service.load, client.runtime.cipher, tenant.ws)
    assert config.secrets.get("webhook_secret") == SECRETS["webhook_secret"]
    assert "SECRET" not in repr(config)
    cleared = await client.put(f"{tenant.base}/channel", json={**partial, "app_secret": ""}, headers=tenant.owner.headers)
    assert cleared.status_code == 200 and cleared.json()["has_app_secret"] is False
    missing = await client.put(f"{tenant.base}/channel", json={**partial, "webhook_secret": ""}, headers=tenant.owner.headers)
    problem = assert_problem(missing, 422)
    assert [e["field"] for e in problem["errors"]] == ["webhook_secret"]


@pytest.mark.parametrize(
    ("provider", "fields"),
    [("kapso", ["api_key", "webhook_secret"]), ("meta", ["api_key", "app_secret", "verify_token"]), ("fake", ["webhook_secret", "api_base_url"])],
)
async def test_required_secrets_per_provider(client, tenant, provider, fields):
    response = await client.put(f"{tenant.base}/channel", json={"provider": provider, "phone_number_id": "pn-req-" + tenant.ws[-8:]}, headers=tenant.owner.headers)
    problem = assert_problem(response, 422)
    assert [e["field"] for e in problem["errors"]] == fields


async def test_bad_input_is_422_and_changes_nothing(client, tenant):
    for bad in ({"provider": "whatsapp"}, {"api_base_url": "ftp://x"}, {"phone_number_id": "has space"}, {"surprise": 1}):
        response = await client.put(f"{tenant.base}/channel", json={**body("pn-bad-" + tenant.ws[-8:]), **bad}, headers=tenant.owner.headers)
        assert response.status_code in (400, 422), response.text
    assert_problem(await client.get(f"{tenant.base}/channel", headers=tenant.owner.headers), 404)


async def test_phone_number_id_belongs_to_one_workspace(client, tenant, other_tenant):
    pnid = "pn-taken-" + tenant.ws[-10:]
    assert (await client.put(f"{tenant.base}/channel", json=body(pnid), headers=tenant.owner.headers)).status_code == 200
    taken = await client.put(f"{other_tenant.base}/channel", json=body(pnid), headers=other_tenant.owner.headers)
    assert_problem(taken, 409, "phone-number-id-taken")
    assert_problem(await client.get(f"{other_tenant.base}/channel", headers=other_tenant.owner.headers), 404)


async def test_only_owner_and_admin(client, tenant, other_tenant):
    pnid = "pn-roles-" + tenant.ws[-10:]
    admin = await tenant.add_user("admin")
    member = await tenant.add_user("member")
    key = await tenant.api_key()
    assert (await client.put(f"{tenant.base}/channel", json=body(pnid), headers=admin.headers)).status_code == 200
    assert (await client.get(f"{tenant.base}/channel", headers=admin.headers)).status_code == 200
    for caller in (member, key):
        assert_problem(await client.get(f"{tenant.base}/channel", headers=caller.headers), 403)
        assert_problem(await client.put(f"{tenant.base}/channel", json=body(pnid), headers=caller.headers), 403)
    # Another workspace's owner does not even learn it exists.
    assert_problem(await client.get(f"{tenant.base}/channel", headers=other_tenant.owner.headers), 404)
    assert_problem(await client.get(f"{tenant.base}/channel"), 401)


async def test_base_url_must_be_public_https_unless_private_addresses_are_allowed(settings):
    strict = replace(settings, webhooks_allow_private=False, demo=False)
    assert await service.check_base_url("https://93.184.215.14/meta/whatsapp/v24.0/", strict) == "https://93.184.215.14/meta/whatsapp/v24.0"
    for url in ("http://93.184.215.14/x", "https://127.0.0.1/x", "https://10.0.0.5/x", "https://localhost:8000/x", "https://[::1]/x"):
        with pytest.raises(Exception) as raised:
            await service.check_base_url(url, strict)
        assert getattr(raised.value, "status", None) == 422, url
    assert await service.check_base_url("http://127.0.0.1:8090/x", replace(settings, webhooks_allow_private=True)) == "http://127.0.0.1:8090/x"
