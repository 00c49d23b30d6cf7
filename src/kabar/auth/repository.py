"""SQL for users, sessions, identities and credentials. No business rules here."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, bindparam, delete, insert, select, update

from kabar.db import tables as t
from kabar.ids import new_id


def user_by_email(conn: Connection, email: str) -> Any:
    return conn.execute(select(t.users).where(t.users.c.email == email.lower())).first()


def user_by_id(conn: Connection, user_id: str) -> Any:
    return conn.execute(select(t.users).where(t.users.c.id == user_id)).first()


def insert_user(conn: Connection, *, email: str, name: str, password_hash: str | None, now: datetime, verified: bool) -> str:
    user_id = new_id()
    conn.execute(
        insert(t.users).values(
            id=user_id,
            email=email.lower(),
            name=name,
            password_hash=password_hash,
            is_active=True,
            password_changed_at=now if password_hash else None,
            email_verified_at=now if verified else None,
            created_at=now,
            updated_at=now,
        )
    )
    return user_id


def set_password(conn: Connection, user_id: str, password_hash: str, now: datetime) -> None:
    conn.execute(
        update(t.users).where(t.users.c.id == user_id).values(password_hash=password_hash, password_changed_at=now, updated_at=now)
    )


def mark_email_verified(conn: Connection, user_id: str, now: datetime) -> None:
    conn.execute(update(t.users).where(t.users.c.id == user_id).values(email_verified_at=now, updated_at=now))


def revoke_sessions(conn: Connection, user_id: str, now: datetime, *, keep_session_id: str | None = None) -> None:
    conn.execute(
        update(t.sessions)
        .where(t.sessions.c.user_id == user_id, t.sessions.c.revoked_at.is_(None), t.sessions.c.id != (keep_session_id or ""))
        .values(revoked_at=now)
    )


# -- single-use account tokens (password reset, email verification) ---------------------------


def insert_account_token(
    conn: Connection, *, user_id: str, purpose: str, email: str, secret_hash: str, now: datetime, expires_at: datetime
) -> str:
    token_id = new_id()
    conn.execute(
        insert(t.account_tokens).values(
            id=token_id, user_id=user_id, purpose=purpose, email=email, secret_hash=secret_hash, expires_at=expires_at, created_at=now
        )
    )
    return token_id


def account_token(conn: Connection, token_id: str, purpose: str) -> Any:
    return conn.execute(
        select(t.account_tokens).where(t.account_tokens.c.id == token_id, t.account_tokens.c.purpose == purpose)
    ).first()


def use_account_token(conn: Connection, token_id: str, now: datetime) -> bool:
    """Mark the token used; False when another request used it first (single use under races)."""
    result = conn.execute(
        update(t.account_tokens).where(t.account_tokens.c.id == token_id, t.account_tokens.c.used_at.is_(None)).values(used_at=now)
    )
    return bool(result.rowcount)


def void_account_tokens(conn: Connection, user_id: str, purpose: str, now: datetime) -> None:
    """Every unused token of ``purpose`` of the user stops working (a newer one, or it is done)."""
    conn.execute(
        update(t.account_tokens)
        .where(t.account_tokens.c.user_id == user_id, t.account_tokens.c.purpose == purpose, t.account_tokens.c.used_at.is_(None))
        .values(used_at=now)
    )


def insert_session(conn: Connection, *, user_id: str, token_hash: str, user_agent: str | None, now: datetime, expires_at: datetime) -> str:
    session_id = new_id()
    conn.execute(
        insert(t.sessions).values(
            id=session_id,
            user_id=user_id,
            token_hash=token_hash,
            user_agent=(user_agent or "")[:300] or None,
            created_at=now,
            expires_at=expires_at,
        )
    )
    return session_id


def revoke_session(conn: Connection, session_id: str, now: datetime) -> None:
    conn.execute(update(t.sessions).where(t.sessions.c.id == session_id).values(revoked_at=now))


# Per-request lookups are built once and bound per call (building a select costs more than running it).
_SESSION_LIVE = and_(
    t.sessions.c.token_hash == bindparam("token_hash"),
    t.sessions.c.expires_at > bindparam("now", type_=t.sessions.c.expires_at.type),
    t.sessions.c.revoked_at.is_(None),
)
_SESSION_COLUMNS = (t.sessions.c.id.label("session_id"), t.sessions.c.user_id, t.sessions.c.expires_at, t.users.c.is_active)
_SESSION_JOIN = t.sessions.join(t.users, t.users.c.id == t.sessions.c.user_id)
_SESSION = select(*_SESSION_COLUMNS).select_from(_SESSION_JOIN).where(_SESSION_LIVE)
_SESSION_WITH_ROLE = (
    select(*_SESSION_COLUMNS, t.members.c.role)
    .select_from(
        _SESSION_JOIN.outerjoin(
            t.members, and_(t.members.c.user_id == t.sessions.c.user_id, t.members.c.workspace_id == bindparam("ws"))
        )
    )
    .where(_SESSION_LIVE)
)
_API_KEY_BY_ID = select(t.api_keys).where(t.api_keys.c.id == bindparam("key_id"))


def session_with_role(conn: Connection, token_hash: str, workspace_id: str | None, now: datetime) -> Any:
    """One indexed query: the live session, its user, and (if asked) the user's role in a workspace."""
    if workspace_id is None:
        return conn.execute(_SESSION, {"token_hash": token_hash, "now": now}).first()
    return conn.execute(_SESSION_WITH_ROLE, {"token_hash": token_hash, "now": now, "ws": workspace_id}).first()


def member_role(conn: Connection, workspace_id: str, user_id: str) -> str | None:
    return conn.execute(
        select(t.members.c.role).where(t.members.c.workspace_id == workspace_id, t.members.c.user_id == user_id)
    ).scalar()


def api_key_by_id(conn: Connection, key_id: str) -> Any:
    return conn.execute(_API_KEY_BY_ID, {"key_id": key_id}).first()


def touch_api_key(conn: Connection, key_id: str, now: datetime) -> None:
    conn.execute(update(t.api_keys).where(t.api_keys.c.id == key_id).values(last_used_at=now))


def identity_user(conn: Connection, issuer: str, subject: str) -> Any:
    return conn.execute(
        select(t.users)
        .select_from(t.user_identities.join(t.users, t.users.c.id == t.user_identities.c.user_id))
        .where(t.user_identities.c.issuer == issuer, t.user_identities.c.subject == subject)
    ).first()


def link_identity(conn: Connection, *, user_id: str, issuer: str, subject: str, now: datetime) -> None:
    conn.execute(
        insert(t.user_identities).values(id=new_id(), user_id=user_id, issuer=issuer, subject=subject, created_at=now)
    )


def identities_of(conn: Connection, user_id: str) -> list[Any]:
    return conn.execute(
        select(t.user_identities).where(t.user_identities.c.user_id == user_id).order_by(t.user_identities.c.created_at)
    ).all()


def unlink_identities(conn: Connection, user_id: str) -> None:
    conn.execute(delete(t.user_identities).where(t.user_identities.c.user_id == user_id))
