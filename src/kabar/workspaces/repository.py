"""SQL for workspaces, members, invitations and API keys. Statements over a workspace's rows start
from the caller's Scope; no business rules here."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Table, delete, insert, select, update

from kabar.auth.scope import Scope
from kabar.db import tables as t



def _changed_any(conn: Connection, stmt: Any) -> bool:
    return bool(conn.execute(stmt).rowcount)


def _by_id(conn: Connection, scope: Scope, table: Table, row_id: str) -> Any:
    return conn.execute(scope.select(table).where(table.c.id == row_id)).one()


def _newest_first(conn: Connection, scope: Scope, table: Table) -> list[Any]:
    return conn.execute(scope.select(table).order_by(table.c.created_at.desc())).all()


# -- workspaces -------------------------------------------------------------------------------


def slug_taken(conn: Connection, slug: str, except_id: str | None = None) -> bool:
    stmt = select(t.workspaces.c.id).where(t.workspaces.c.slug == slug)
    if except_id:
        stmt = stmt.where(t.workspaces.c.id != except_id)
    return conn.execute(stmt).first() is not None


def insert_workspace(conn: Connection, **row: Any) -> None:
    conn.execute(insert(t.workspaces).values(**row))


def workspace_by_id(conn: Connection, workspace_id: str) -> Any:
    return conn.execute(select(t.workspaces).where(t.workspaces.c.id == workspace_id)).first()


def workspace_name(conn: Connection, workspace_id: str) -> str | None:
    return conn.execute(select(t.workspaces.c.name).where(t.workspaces.c.id == workspace_id)).scalar()


def update_workspace(conn: Connection, scope: Scope, **values: Any) -> None:
    conn.execute(update(t.workspaces).where(t.workspaces.c.id == scope.workspace_id).values(**values))


def delete_workspace(conn: Connection, scope: Scope) -> None:
    # Tables without a foreign key to workspaces (receipts, jobs) are cleared explicitly.
    conn.execute(delete(t.webhook_receipts).where(t.webhook_receipts.c.workspace_id == scope.workspace_id))
    conn.execute(delete(t.jobs).where(t.jobs.c.workspace_id == scope.workspace_id))
    conn.execute(delete(t.workspaces).where(t.workspaces.c.id == scope.workspace_id))


def workspaces_of_user(conn: Connection, user_id: str) -> list[Any]:
    return conn.execute(
        select(t.workspaces, t.members.c.role)
        .select_from(t.members.join(t.workspaces, t.workspaces.c.id == t.members.c.workspace_id))
        .where(t.members.c.user_id == user_id)
        .order_by(t.workspaces.c.created_at)
    ).all()


# -- members ----------------------------------------------------------------------------------


def insert_member(conn: Connection, **row: Any) -> None:
    conn.execute(insert(t.members).values(**row))


def member_rows(conn: Connection, scope: Scope, user_id: str | None = None) -> list[Any]:
    stmt = (
        scope.select(t.members, t.members.c.user_id, t.members.c.role, t.members.c.created_at, t.users.c.email, t.users.c.name)
        .join_from(t.members, t.users, t.users.c.id == t.members.c.user_id)
        .order_by(t.members.c.created_at)
    )
    if user_id is not None:
        stmt = stmt.where(t.members.c.user_id == user_id)
    return conn.execute(stmt).all()


def demote_owners(conn: Connection, scope: Scope) -> None:
    conn.execute(
        update(t.members).where(t.members.c.workspace_id == scope.workspace_id, t.members.c.role == "owner").values(role="admin")
    )


def set_member_role(conn: Connection, scope: Scope, user_id: str, role: str) -> None:
    conn.execute(
        update(t.members).where(t.members.c.workspace_id == scope.workspace_id, t.members.c.user_id == user_id).values(role=role)
    )


def delete_member(conn: Connection, scope: Scope, user_id: str) -> None:
    conn.execute(delete(t.members).where(t.members.c.workspace_id == scope.workspace_id, t.members.c.user_id == user_id))


# -- invitations ------------------------------------------------------------------------------


def insert_invitation(conn: Connection, **row: Any) -> None:
    conn.execute(insert(t.invitations).values(**row))


def invitation(conn: Connection, scope: Scope, invitation_id: str) -> Any:
    return _by_id(conn, scope, t.invitations, invitation_id)


def list_invitations(conn: Connection, scope: Scope) -> list[Any]:
    return _newest_first(conn, scope, t.invitations)


def invitation_by_secret(conn: Connection, invitation_id: str, secret_hash: str) -> Any:
    return conn.execute(
        select(t.invitations).where(t.invitations.c.id == invitation_id, t.invitations.c.secret_hash == secret_hash)
    ).first()


def _leave_pending(conn: Connection, scope: Scope, invitation_id: str, **values: Any) -> bool:
    """Moves a pending invitation on; False if there was no such pending invitation."""
    return _changed_any(
        conn,
        update(t.invitations)
        .where(t.invitations.c.workspace_id == scope.workspace_id, t.invitations.c.id == invitation_id, t.invitations.c.status == "pending")
        .values(**values),
    )


def claim_invitation(conn: Connection, scope: Scope, invitation_id: str, now: datetime) -> bool:
    return _leave_pending(conn, scope, invitation_id, status="accepted", accepted_at=now)


def cancel_invitation(conn: Connection, scope: Scope, invitation_id: str) -> bool:
    return _leave_pending(conn, scope, invitation_id, status="cancelled")


# -- API keys ---------------------------------------------------------------------------------


def insert_api_key(conn: Connection, **row: Any) -> None:
    conn.execute(insert(t.api_keys).values(**row))


def api_key(conn: Connection, scope: Scope, key_id: str) -> Any:
    return _by_id(conn, scope, t.api_keys, key_id)


def list_api_keys(conn: Connection, scope: Scope) -> list[Any]:
    return _newest_first(conn, scope, t.api_keys)


def revoke_api_key(conn: Connection, scope: Scope, key_id: str, now: datetime) -> bool:
    """Sets revoked_at; False if there was no such unrevoked key."""
    return _changed_any(
        conn,
        update(t.api_keys)
        .where(t.api_keys.c.workspace_id == scope.workspace_id, t.api_keys.c.id == key_id, t.api_keys.c.revoked_at.is_(None))
        .values(revoked_at=now)
    )
