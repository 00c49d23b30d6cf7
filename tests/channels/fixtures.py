"""Fixtures shared by tests/channels and tests/ingest: one owner per module and a fresh workspace
per test (a workspace has one channel; users are slow to create on purpose — argon2)."""

from __future__ import annotations

import secrets
from typing import Any

import pytest

from tests.helpers import Tenant, make_tenant


@pytest.fixture(scope="module")
async def owner_tenant(client: Any) -> Tenant:
    return await make_tenant(client)


@pytest.fixture
async def workspace(client: Any, owner_tenant: Tenant) -> Tenant:
    response = await client.post("/v1/workspaces", json={"name": f"Toko {secrets.token_hex(3)}"}, headers=owner_tenant.owner.headers)
    assert response.status_code == 201, response.text
    return Tenant(client=client, ws=response.json()["id"], owner=owner_tenant.owner)
