"""Fixtures for the outgoing-webhook tests: a receiver, waiting for a condition, emitting events."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.helpers import wait_for  # noqa: F401 - the integration tests import it from here
from tests.integrations.receiver import Receiver


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver().start()
    yield server
    server.stop()


async def emit(runtime: Any, workspace_id: str, *types: str, contact_id: str | None = None) -> None:
    """Append events to a workspace's log the way every service does (one unit of work)."""

    def write(uow: Any) -> None:
        for n, type_ in enumerate(types):
            uow.emit(workspace_id, type_, {"n": n, "type": type_, "text": "Halo, apa kabar? 🙂"}, contact_id=contact_id)

    await runtime.db.transaction(write)
