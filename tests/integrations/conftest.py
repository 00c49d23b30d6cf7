"""Fixtures for the outgoing-webhook tests: a receiver, waiting for a condition, emitting events."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.integrations.receiver import Receiver


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver().start()
    yield server
    server.stop()


async def wait_for(condition: Callable[[], Any], timeout: float = 20.0, what: str = "condition") -> Any:
    """Poll ``condition`` (sync or async) until it returns something truthy, or fail at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.02)


async def emit(runtime: Any, workspace_id: str, *types: str, contact_id: str | None = None) -> None:
    """Append events to a workspace's log the way every service does (one unit of work)."""

    def write(uow: Any) -> None:
        for n, type_ in enumerate(types):
            uow.emit(workspace_id, type_, {"n": n, "type": type_, "text": "Halo, apa kabar? 🙂"}, contact_id=contact_id)

    await runtime.db.transaction(write)
