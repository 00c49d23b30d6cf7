"""Fixtures for the channel tests: the in-process app on a real port (so the fake provider can post
webhooks to it over HTTP) and a fake provider per test (the job runner is ``jobs`` in tests/conftest.py)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
import uvicorn

from kabar.channels.fake.server import FakeProvider, _QuietServer
from tests.channels.fixtures import owner_tenant, workspace  # noqa: F401


@pytest.fixture(scope="module")
async def kabar_url(client: Any) -> AsyncIterator[str]:
    """The session's in-process app, also served over real HTTP on 127.0.0.1 (same runtime)."""
    server = _QuietServer(uvicorn.Config(client.app, host="127.0.0.1", port=0, log_level="warning", lifespan="off"))
    task = asyncio.get_running_loop().create_task(server.serve())
    while not server.started:
        assert not task.done(), "could not serve the app"
        await asyncio.sleep(0.01)
    host, port = server.servers[0].sockets[0].getsockname()[:2]
    yield f"http://{host}:{port}"
    server.should_exit = True
    await asyncio.wait_for(task, timeout=10)


@pytest.fixture
async def fake(kabar_url: str) -> AsyncIterator[FakeProvider]:
    provider = FakeProvider(webhook_url=kabar_url + "/webhooks/kapso", secret="set-by-test")
    await provider.start()
    yield provider
    await provider.stop()
