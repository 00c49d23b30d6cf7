"""Resolved API keys and sessions are cached (kabar.auth.cache): revocation and role changes made
through Kabar still take effect on the very next request; changes made outside this process are
seen within ``KABAR_AUTH_CACHE_SECONDS``."""

from __future__ import annotations

import asyncio
from dataclasses import replace

from sqlalchemy import update

from kabar.db import tables as t
from kabar.db.types import utcnow
from tests.conftest import app_client
from tests.contacts.helpers import create_contact
from tests.contacts.test_by_phone import context_statements
from tests.helpers import assert_problem, queries


async def _by_phone(client, tenant, caller, phone="081255550001"):
    return await client.get(f"{tenant.base}/contacts/by-phone", params={"phone": phone}, headers=caller.headers)


async def _revoke_keys_elsewhere(client, tenant) -> None:
    """Revoke the workspace's keys straight in the database, as another process would (its
    commit does not reach this process's caches)."""

    def _revoke(uow):  # noqa: ANN001, ANN202
        uow.conn.execute(update(t.api_keys).where(t.api_keys.c.workspace_id == tenant.ws).values(revoked_at=utcnow()))

    await client.runtime.db.transaction(_revoke)


async def test_a_revoked_api_key_stops_working_at_once(client, tenant):
    await create_contact(tenant, phone="081255550001")
    key = await tenant.api_key()
    assert (await _by_phone(client, tenant, key)).status_code == 200
    cached = await _by_phone(client, tenant, key)
    assert cached.json()["found"] is True
    assert queries(cached) == context_statements(client)  # the key came from the cache
    [listed] = (await client.get(f"{tenant.base}/api-keys", headers=tenant.owner.headers)).json()["data"]
    assert (await client.delete(f"{tenant.base}/api-keys/{listed['id']}", headers=tenant.owner.headers)).status_code == 204
    assert_problem(await _by_phone(client, tenant, key), 401)


async def test_role_change_and_removal_apply_to_the_next_request(client, tenant):
    colleague = await tenant.add_user("member")
    await create_contact(tenant, phone="081255550001", assignee_id=colleague.user_id)
    admin = await tenant.add_user("admin")
    assert (await _by_phone(client, tenant, admin)).json()["found"] is True
    assert (await _by_phone(client, tenant, admin)).json()["found"] is True
    # Demoted to member: someone else's contact is no longer visible.
    demote = await client.patch(f"{tenant.base}/members/{admin.user_id}", json={"role": "member"}, headers=tenant.owner.headers)
    assert demote.status_code == 200, demote.text
    assert (await _by_phone(client, tenant, admin)).json() == {"found": False}
    # Removed: the workspace does not exist for them any more.
    assert (await client.delete(f"{tenant.base}/members/{admin.user_id}", headers=tenant.owner.headers)).status_code == 204
    assert_problem(await _by_phone(client, tenant, admin), 404)


async def test_a_change_made_elsewhere_is_seen_within_the_ttl(client, tenant, settings):
    """Another process (a CLI command, another worker) revokes a key straight in the database:
    this process, which cached the key, refuses it once the TTL has passed."""
    await create_contact(tenant, phone="081255550001")
    key = await tenant.api_key()
    async with app_client(replace(settings, auth_cache_seconds=0.5)) as this_process:
        assert (await _by_phone(this_process, tenant, key)).status_code == 200
        await _revoke_keys_elsewhere(client, tenant)
        revoked_at = asyncio.get_running_loop().time()
        while (response := await _by_phone(this_process, tenant, key)).status_code == 200:
            assert asyncio.get_running_loop().time() - revoked_at < 5, "the cached key outlived its TTL"
            await asyncio.sleep(0.05)
        assert_problem(response, 401)


async def test_without_the_cache_a_change_made_elsewhere_applies_at_once(client, tenant, settings):
    await create_contact(tenant, phone="081255550001")
    key = await tenant.api_key()
    async with app_client(replace(settings, auth_cache_seconds=0)) as this_process:
        first = await _by_phone(this_process, tenant, key)
        assert first.status_code == 200
        assert queries(await _by_phone(this_process, tenant, key)) == 1 + context_statements(client)  # the key is read every time
        await _revoke_keys_elsewhere(client, tenant)
        assert_problem(await _by_phone(this_process, tenant, key), 401)
