"""What the outgoing-webhook nudge adds to every event-writing transaction (a workspace without webhooks).

Run: ``.venv/bin/python -m tests.integrations.bench_nudge sqlite`` or with a PostgreSQL URL
(``postgresql+asyncpg://postgres@127.0.0.1:5432/<an empty database>``). Prints µs per call for:
the statement built per call, the prebuilt statement, and the per-process memo (what runs).
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from sqlalchemy import select

from kabar.auth.scope import system_scope
from kabar.auth.service import create_user
from kabar.db import tables as t
from kabar.db.migrate import upgrade
from kabar.db.uow import PendingEvent
from kabar.integrations import dispatch
from kabar.integrations import repository as repo
from kabar.runtime import Runtime
from kabar.workspaces.service import create_workspace
from tests.conftest import base_settings

E = t.webhook_endpoints


async def main(url: str, calls: int = 3000) -> None:
    runtime = Runtime.build(base_settings(url, Path(tempfile.mkdtemp())))
    user_id = await runtime.db.transaction(create_user, email=f"bench{time.time()}@example.test", password="correct-horse-battery", name="b")
    ws = (await runtime.db.transaction(lambda uow: create_workspace(uow, owner_id=user_id, name="bench"))).id

    def measure(uow: Any, mode: str) -> float:
        uow.events.append(PendingEvent(ws, "contact.updated", {}))
        started = time.perf_counter()
        for _ in range(calls):
            if mode == "built per call":
                uow.conn.execute(select(E.c.id, E.c.events).where(E.c.workspace_id == ws, E.c.active.is_(True)).order_by(E.c.id)).all()
            elif mode == "prebuilt":
                repo.active_endpoints(uow.conn, system_scope(ws))
            else:
                dispatch.nudge(uow)
        uow.events.clear()
        return (time.perf_counter() - started) / calls * 1e6

    for _ in range(2):
        for mode in ("built per call", "prebuilt", "memo (nudge)"):
            print(f"{mode:16s} {await runtime.db.transaction(measure, mode):8.1f} µs per call")
    await runtime.db.dispose()


if __name__ == "__main__":
    target = sys.argv[1] if len(sys.argv) > 1 else "sqlite"
    if target == "sqlite":
        target = f"sqlite:///{Path(tempfile.mkdtemp()) / 'bench.db'}"
    upgrade(target)
    asyncio.run(main(target))
