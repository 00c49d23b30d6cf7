"""Job kinds and their handlers.

A handler is ``async def handler(runtime, job) -> None``. It raises ``RetryLater`` to be run again
after a given delay (a provider's Retry-After), ``PermanentFailure`` to go straight to the dead
letter, and any other exception to be retried with exponential backoff.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kabar.runtime import Runtime


@dataclass(frozen=True, slots=True)
class Job:
    id: str
    kind: str
    payload: dict[str, Any]
    workspace_id: str | None
    serial_key: str | None
    attempts: int  # including the current one
    max_attempts: int
    run_at: datetime | None = None  # when this attempt was due (lateness = now - run_at)


class RetryLater(Exception):
    def __init__(self, seconds: float, reason: str = "retry requested"):
        super().__init__(reason)
        self.seconds = seconds


class PermanentFailure(Exception):
    """Retrying cannot help (bad input, a permanent provider error)."""


Handler = Callable[["Runtime", Job], Awaitable[None]]
HANDLERS: dict[str, Handler] = {}

# Modules whose import registers handlers (each domain's tasks.py).
TASK_MODULES: list[str] = [
    "kabar.jobs.builtin",
    "kabar.conversations.tasks",
    "kabar.messages.tasks",
    "kabar.channels.tasks",
    "kabar.ingest.tasks",
    "kabar.realtime.tasks",
    "kabar.ari.tasks",
    "kabar.integrations.tasks",
    "kabar.auth.tasks",
    "kabar.mail.tasks",
]


def handler(kind: str) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        HANDLERS[kind] = fn
        return fn

    return register


def load_all() -> dict[str, Handler]:
    from kabar.plugins import import_if_present

    for module in TASK_MODULES:
        import_if_present(module)
    return HANDLERS
