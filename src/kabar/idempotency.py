"""``Idempotency-Key`` for writes that create things: a retry returns the first result, writes nothing.

The key row is inserted *first* in the unit of work. A concurrent request with the same key then
waits on the primary key (PostgreSQL) or the write lock (SQLite) until the first commits, fails
with a duplicate key, and is answered from the stored response on its retry.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

from sqlalchemy import delete, insert, select, tuple_, update
from sqlalchemy.exc import IntegrityError

from kabar.auth.scope import Scope
from kabar.db import tables as t
from kabar.db.engine import Database
from kabar.db.uow import UnitOfWork
from kabar.errors import conflict, invalid
from kabar.events import payload

MAX_KEY_LENGTH = 200


def fingerprint(body: bytes | str | None) -> str:
    data = body.encode() if isinstance(body, str) else (body or b"")
    return hashlib.sha256(data).hexdigest()


async def run_idempotent(
    db: Database,
    ctx: Scope,
    *,
    key: str | None,
    route: str,
    request_hash: str,
    status_code: int,
    fn: Callable[..., Any],
    args: tuple[Any, ...] = (),
) -> tuple[int, Any]:
    """Run ``fn(uow, *args)`` once per (workspace, caller, route, key); returns (status, body)."""
    if key is None:
        return status_code, await db.transaction(fn, *args)
    if not key or len(key) > MAX_KEY_LENGTH:
        raise invalid("Idempotency-Key", f"must be 1 to {MAX_KEY_LENGTH} characters")
    scope_name = f"{route}|{ctx.actor}"[:200]

    def _once(uow: UnitOfWork) -> tuple[int, Any]:
        stored = uow.conn.execute(
            select(t.idempotency_keys).where(
                t.idempotency_keys.c.workspace_id == ctx.workspace_id,
                t.idempotency_keys.c.scope == scope_name,
                t.idempotency_keys.c.key == key,
            )
        ).first()
        if stored is not None:
            if stored.request_hash != request_hash:
                raise conflict("This Idempotency-Key was used with a different request", slug="idempotency-key-reused")
            return stored.status_code, stored.response
        uow.conn.execute(
            insert(t.idempotency_keys).values(
                workspace_id=ctx.workspace_id, scope=scope_name, key=key, request_hash=request_hash,
                status_code=status_code, response={}, created_at=uow.now,
            )
        )
        body = payload(fn(uow, *args))
        uow.conn.execute(
            update(t.idempotency_keys)
            .where(
                t.idempotency_keys.c.workspace_id == ctx.workspace_id,
                t.idempotency_keys.c.scope == scope_name,
                t.idempotency_keys.c.key == key,
            )
            .values(response=body)
        )
        return status_code, body

    try:
        return await db.transaction(_once)
    except IntegrityError:
        # A concurrent twin committed first; its stored response is now visible.
        return await db.transaction(_once)


def delete_expired_keys(conn: Any, *, before: Any, batch: int) -> int:
    """Forget up to ``batch`` keys stored before ``before`` (housekeeping; see kabar.jobs.builtin)."""
    K = t.idempotency_keys
    old = select(K.c.workspace_id, K.c.scope, K.c.key).where(K.c.created_at < before).limit(batch)
    stmt = delete(K).where(tuple_(K.c.workspace_id, K.c.scope, K.c.key).in_(old))
    return conn.execute(stmt).rowcount or 0
