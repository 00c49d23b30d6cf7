from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from tests.ari.support import FakeServer


@pytest.fixture
def server() -> Iterator[FakeServer]:
    """The fake OpenAI-compatible + WhatsApp-send server, on 127.0.0.1, stopped after the test."""
    srv = FakeServer()
    yield srv
    srv.stop()


@pytest.fixture
async def jobs(client: Any) -> AsyncIterator[Any]:
    """A running job runner: SQLite has one in-process already; on PostgreSQL start one."""
    if client.runtime.jobs is not None:
        yield client.runtime.jobs
        return
    from kabar.jobs.worker import JobRunner

    runner = JobRunner(client.runtime)
    await runner.start()
    try:
        yield runner
    finally:
        await runner.stop()
