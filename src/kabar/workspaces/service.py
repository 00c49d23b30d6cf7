"""Workspaces, members, invitations and API keys: the rules. One unit of work per call."""

from __future__ import annotations

import re
import secrets
from datetime import timedelta
from typing import Any

import msgspec
from sqlalchemy import Connection

from kabar.assignment import service as assignment
from kabar.auth import repository as auth_repo
from kabar.auth import service as auth_service
from kabar.auth.cache import credentials_changed
from kabar.auth.scope import Principal, Scope, system_scope
from kabar.db.uow import UnitOfWork
from kabar.errors import Problem, conflict, forbidden, invalid, not_found
from kabar.ids import new_id, new_token, token_hash
from kabar.workspaces import repository as repo
from kabar.workspaces import schemas as s

INVITATION_TTL = timedelta(days=7)


def _slugify(name: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:60]
    return slug if len(slug) >= 2 else "ws"


def workspace_out(row: Any, role: str | None = None) -> s.Workspace:
    return s.Workspace(
        id=row.id,
        name=row.name,
        slug=row.slug,
        owner_id=row.owner_id,
        timezone=row.timezone,
        settings=row.settings or {},
        created_at=row.created_at,
        role=role,
    )


def create_workspace(uow: UnitOfWork, *, owner_id: str, name: str, slug: str | None = None) -> s.Workspace:
    name = name.strip()
    if not name:
        raise invalid("name", "must not be empty")
    if slug:
        if repo.slug_taken(uow.conn, slug):
            raise conflict(f"The slug {slug!r} is taken", slug="slug-taken")
    else:
        base = _slugify(name)
        slug = base
        while repo.slug_taken(uow.conn, slug):
            slug = f"{base}-{secrets.token_hex(2)}"
    workspace_id = new_id()
    repo.insert_workspace(
        uow.conn, id=workspace_id, name=name, slug=slug, owner_id=owner_id, settings={}, created_at=uow.now, updated_at=uow.now
    )
    repo.insert_member(uow.conn, workspace_id=workspace_id, user_id=owner_id, role="owner", settings={}, created_at=uow.now)
    row = repo.workspace_by_id(uow.conn, workspace_id)
    out = workspace_out(row, "owner")
    uow.emit(workspace_id, "workspace.created", _public(out))
    return out


def _public(ws: s.Workspace) -> dict[str, Any]:
    from msgspec import to_builtins

    return to_builtins(ws)


def get_workspace(conn: Connection, scope: Scope) -> s.Workspace:
    row = repo.workspace_by_id(conn, scope.workspace_id)
    if row is None:
        raise not_found("Workspace")
    return workspace_out(row, str(scope.role))


def update_workspace(uow: UnitOfWork, scope: Scope, patch: s.WorkspaceUpdate) -> s.Workspace:
    scope.require("workspace.update")
    values: dict[str, Any] = {}
    if patch.name is not None:
        values["name"] = patch.name.strip()
    if patch.slug is not None:
        if repo.slug_taken(uow.conn, patch.slug, except_id=scope.workspace_id):
            raise conflict(f"The slug {patch.slug!r} is taken", slug="slug-taken")
        values["slug"] = patch.slug
    if patch.settings is not None:
        values["settings"] = patch.settings
    if values:
        values["updated_at"] = uow.now
        repo.update_workspace(uow.conn, scope, **values)
    out = get_workspace(uow.conn, scope)
    uow.emit(scope.workspace_id, "workspace.updated", _public(out))
    return out


def delete_workspace(uow: UnitOfWork, scope: Scope) -> None:
    scope.require("workspace.delete")
    repo.delete_workspace(uow.conn, scope)
    credentials_changed(uow)  # its members and keys are gone with it


def workspaces_of_user(conn: Connection, user_id: str) -> list[s.Workspace]:
    return [workspace_out(row, row.role) for row in repo.workspaces_of_user(conn, user_id)]


# -- members ----------------------------------------------------------------------------------


def _member_out(row: Any) -> s.Member:
    return s.Member(user_id=row.user_id, email=row.email, name=row.name, role=row.role, created_at=row.created_at)


def list_members(conn: Connection, scope: Scope) -> list[s.Member]:
    scope.require("members.read")
    return [_member_out(r) for r in repo.member_rows(conn, scope)]


def update_member(uow: UnitOfWork, scope: Scope, user_id: str, data: s.MemberUpdate) -> s.Member:
    scope.require("members.manage")
    current = auth_repo.member_role(uow.conn, scope.workspace_id, user_id)
    if current is None:
        raise not_found("Member")
    if data.role == "owner" or current == "owner":
        # Only the owner hands over ownership; the old owner becomes an admin.
        scope.require("members.transfer_ownership")
        if data.role != "owner":
            raise conflict("The owner's role changes only by making someone else owner", slug="owner-required")
        old_owners = [r.user_id for r in repo.member_rows(uow.conn, scope) if r.role == "owner"]
        repo.demote_owners(uow.conn, scope)
        repo.update_workspace(uow.conn, scope, owner_id=user_id, updated_at=uow.now)
        # Open pages show the old owner as admin and the workspace's new owner_id.
        for old_owner in old_owners:
            uow.emit(scope.workspace_id, "member.updated", {"user_id": old_owner, "role": "admin"})
        uow.emit(scope.workspace_id, "workspace.updated", _public(get_workspace(uow.conn, scope)))
    repo.set_member_role(uow.conn, scope, user_id, data.role)
    uow.emit(scope.workspace_id, "member.updated", {"user_id": user_id, "role": data.role})
    credentials_changed(uow)
    return _member_out(repo.member_rows(uow.conn, scope, user_id)[0])


def remove_member(uow: UnitOfWork, scope: Scope, user_id: str) -> None:
    if user_id != scope.user_id:  # anyone may leave; removing others needs the permission
        scope.require("members.manage")
    current = auth_repo.member_role(uow.conn, scope.workspace_id, user_id)
    if current is None:
        raise not_found("Member")
    if current == "owner":
        scope.require("members.transfer_ownership")  # an admin may not touch the owner at all
        raise conflict("The owner cannot be removed; transfer ownership first", slug="owner-required")
    repo.delete_member(uow.conn, scope, user_id)
    # Their customers go back to the shared queue (contacts and conversations, with their events).
    assignment.unassign_member(uow, scope, user_id)
    uow.emit(scope.workspace_id, "member.removed", {"user_id": user_id})
    credentials_changed(uow)


# -- invitations ------------------------------------------------------------------------------


def _invitation_out(row: Any) -> s.Invitation:
    status = row.status
    if status == "pending" and row.expires_at is not None:
        from kabar.db.types import utcnow

        if row.expires_at < utcnow():
            status = "expired"
    return s.Invitation(id=row.id, email=row.email, role=row.role, status=status, expires_at=row.expires_at, created_at=row.created_at)


def create_invitation(uow: UnitOfWork, scope: Scope, data: s.InvitationCreate) -> s.Invitation:
    """Invite someone by email: the link goes to that mailbox only, never to the inviter, so
    only the person who reads it can accept (and the answer is the same whether or not the
    address has a Kabar account)."""
    scope.require("invitations.manage")
    email = data.email.strip().lower()
    existing = auth_repo.user_by_email(uow.conn, email)
    if existing and auth_repo.member_role(uow.conn, scope.workspace_id, existing.id):
        raise conflict("That person is already a member", slug="already-member")
    invitation_id = new_id()
    secret = new_token(nbytes=32)
    repo.insert_invitation(
        uow.conn,
        id=invitation_id,
        workspace_id=scope.workspace_id,
        email=email,
        name=data.name,
        role=data.role,
        secret_hash=token_hash(secret),
        status="pending",
        invited_by=scope.user_id,
        expires_at=uow.now + INVITATION_TTL,
        created_at=uow.now,
    )
    token = f"{invitation_id}.{secret}"
    url = _mail_invitation(uow, scope, email, data.role, token)
    out = _invitation_out(repo.invitation(uow.conn, scope, invitation_id))
    # The invitation as the list shows it: the event reaches owners and admins only (kabar.events.AUDIENCE).
    uow.emit(scope.workspace_id, "invitation.created", _public(out))
    settings = uow.db.settings
    if not settings.smtp_url and settings.env != "production":
        return msgspec.structs.replace(out, token=token, url=url)
    return out


def _mail_invitation(uow: UnitOfWork, scope: Scope, email: str, role: str, token: str) -> str:
    from kabar.mail.service import link, queue_mail

    workspace = repo.workspace_name(uow.conn, scope.workspace_id)
    inviter = auth_repo.user_by_id(uow.conn, scope.user_id) if scope.user_id else None
    who = f"{inviter.name} ({inviter.email})" if inviter else "A workspace admin"
    url = link(uow.db.settings, "/accept-invite", token=token)
    queue_mail(
        uow,
        to=email,
        subject=f"You are invited to {workspace} on Kabar",
        kind="invitation",
        body=(
            f"{who} invited you to join the workspace {workspace} on Kabar as {role}.\n\n"
            f"Accept the invitation here:\n\n{url}\n\n"
            f"The link works once and expires in {INVITATION_TTL.days} days. If you already have a Kabar "
            "account with this address, you will be asked to sign in to it. If you did not expect this, ignore this mail.\n"
        ),
    )
    return url


def list_invitations(conn: Connection, scope: Scope) -> list[s.Invitation]:
    scope.require("invitations.manage")
    return [_invitation_out(r) for r in repo.list_invitations(conn, scope)]


def accept_invitation(
    uow: UnitOfWork, settings: Any, data: s.InvitationAccept, caller_id: str | None, user_agent: str | None
) -> dict[str, Any]:
    """Join the workspace.

    - No account for the invited address: creates it with the password given (unverified until
      the link mailed now is used) and signs it in.
    - An account exists: only that account, signed in, may accept (no password in the body);
      it only gains the membership. Nobody gets a credential to an account they do not hold.
    """
    row = _invitation_by_token(uow.conn, data.token)
    if row is None:
        raise not_found("Invitation")
    if row.status != "pending" or row.expires_at < uow.now:
        raise Problem(410, "invitation-expired", "Invitation no longer valid", f"This invitation is {row.status if row.status != 'pending' else 'expired'}")
    invited = system_scope(row.workspace_id)  # the token names the workspace
    user = auth_repo.user_by_email(uow.conn, row.email)
    result: dict[str, Any] = {"workspace_id": row.workspace_id, "role": row.role}
    if user is None:
        if not data.password:
            raise invalid("password", "is required to create your account")
        auth_service.validate_password(data.password)
        _claim(uow, invited, row)
        user_id = auth_service.create_user(uow, email=row.email, password=data.password, name=data.name or row.name or "", verified=False)
        user = auth_repo.user_by_id(uow.conn, user_id)
        auth_service.send_verification_mail(uow, user)
        result["token"] = auth_service.login(uow, settings, email=user.email, password=data.password, user_agent=user_agent)["token"]
    elif caller_id != user.id:
        raise Problem(
            403,
            "sign-in-required",
            "Sign in to accept",
            f"This invitation is for {row.email}, which has a Kabar account. Sign in as {row.email} "
            "(reset its password by email if you do not know it), then accept the invitation again.",
            extra={"email": row.email, "account_exists": True},
        )
    elif data.password:
        raise Problem(
            409, "password-not-accepted", "No password here",
            "You are signed in to this account: accept without a password (change passwords on your account page).",
        )
    else:
        _claim(uow, invited, row)
    if not auth_repo.member_role(uow.conn, row.workspace_id, user.id):
        repo.insert_member(uow.conn, workspace_id=row.workspace_id, user_id=user.id, role=row.role, settings={}, created_at=uow.now)
    _invitation_changed(uow, invited, row.id)
    joined = Scope(workspace_id=row.workspace_id, role=row.role, principal=Principal(kind="session", user_id=user.id))
    # The member as the members list shows it (every staff member reads that list).
    uow.emit(row.workspace_id, "member.added", _public(_member_out(repo.member_rows(uow.conn, joined, user.id)[0])))
    result["user"] = auth_service.user_json(user)
    return result


def _claim(uow: UnitOfWork, scope: Scope, row: Any) -> None:
    """Mark the invitation accepted before anything is created: of two concurrent accepts, the
    second waits on this row and then finds it no longer pending (410), instead of a duplicate."""
    if not repo.claim_invitation(uow.conn, scope, row.id, uow.now):
        raise Problem(410, "invitation-expired", "Invitation no longer valid", "This invitation was accepted already")


def _invitation_by_token(conn: Connection, token: str) -> Any:
    """The invitation a ``<id>.<secret>`` token names (the emailed link is what names the
    workspace), or None. The secret is random, so matching its hash in SQL leaks nothing."""
    invitation_id, _, secret = token.partition(".")
    if not secret:
        return None
    return repo.invitation_by_secret(conn, invitation_id, token_hash(secret))


def invitation_preview(conn: Connection, token: str) -> dict[str, Any] | None:
    """For the accept page (the holder of the token reads the invited mailbox): the workspace,
    the address, and whether it has an account already. None for a wrong or used token."""
    row = _invitation_by_token(conn, token)
    if row is None:
        return None
    from kabar.db.types import utcnow

    workspace = repo.workspace_name(conn, row.workspace_id)
    return {
        "email": row.email,
        "workspace_name": workspace,
        "role": row.role,
        "valid": row.status == "pending" and row.expires_at >= utcnow(),
        "account_exists": auth_repo.user_by_email(conn, row.email) is not None,
    }


def revoke_invitation(uow: UnitOfWork, scope: Scope, invitation_id: str) -> None:
    scope.require("invitations.manage")
    if not repo.cancel_invitation(uow.conn, scope, invitation_id):
        raise not_found("Invitation")
    _invitation_changed(uow, scope, invitation_id)


def _invitation_changed(uow: UnitOfWork, scope: Scope, invitation_id: str) -> None:
    """Accepted or revoked: open settings pages show its new status."""
    row = repo.invitation(uow.conn, scope, invitation_id)
    uow.emit(scope.workspace_id, "invitation.updated", _public(_invitation_out(row)))


# -- API keys ---------------------------------------------------------------------------------


def _api_key_out(row: Any, secret: str | None = None) -> s.ApiKey:
    return s.ApiKey(id=row.id, name=row.name, hint=row.hint, created_at=row.created_at, last_used_at=row.last_used_at, revoked_at=row.revoked_at, secret=secret)


def list_api_keys(conn: Connection, scope: Scope) -> list[s.ApiKey]:
    scope.require("api_keys.manage")
    return [_api_key_out(r) for r in repo.list_api_keys(conn, scope)]


def create_api_key(uow: UnitOfWork, scope: Scope, data: s.ApiKeyCreate) -> s.ApiKey:
    scope.require("api_keys.manage")
    key_id = new_id()
    secret = auth_service.make_api_key_secret(key_id)
    repo.insert_api_key(
        uow.conn,
        id=key_id,
        workspace_id=scope.workspace_id,
        name=data.name.strip(),
        secret_hash=token_hash(secret),
        hint=secret[-4:],
        created_by=scope.user_id,
        created_at=uow.now,
    )
    row = repo.api_key(uow.conn, scope, key_id)
    uow.emit(scope.workspace_id, "api_key.created", _public(_api_key_out(row)))  # never the secret
    return _api_key_out(row, secret=secret)


def revoke_api_key(uow: UnitOfWork, scope: Scope, key_id: str) -> None:
    scope.require("api_keys.manage")
    if not repo.revoke_api_key(uow.conn, scope, key_id, uow.now):
        raise not_found("API key")
    row = repo.api_key(uow.conn, scope, key_id)
    uow.emit(scope.workspace_id, "api_key.revoked", _public(_api_key_out(row)))
    credentials_changed(uow)


def require_user(scope: Scope) -> str:
    if scope.user_id is None:
        raise forbidden("This needs a user, not an API key")
    return scope.user_id


