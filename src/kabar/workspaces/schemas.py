"""Request and response shapes for workspaces, members, invitations and API keys."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import msgspec

Name = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
Slug = Annotated[str, msgspec.Meta(min_length=2, max_length=100, pattern=r"^[a-z0-9](?:[a-z0-9-]*[a-z0-9])?$")]
Email = Annotated[str, msgspec.Meta(min_length=3, max_length=320, pattern=r"^[^@\s]+@[^@\s]+$")]


class WorkspaceCreate(msgspec.Struct, forbid_unknown_fields=True):
    name: Name
    slug: Slug | None = None


class WorkspaceUpdate(msgspec.Struct, forbid_unknown_fields=True):
    name: Name | None = None
    slug: Slug | None = None
    settings: dict | None = None


class Workspace(msgspec.Struct):
    id: str
    name: str
    slug: str
    owner_id: str
    timezone: str
    settings: dict
    created_at: datetime
    role: str | None = None


class MemberUpdate(msgspec.Struct, forbid_unknown_fields=True):
    role: Literal["owner", "admin", "member"]


class Member(msgspec.Struct):
    user_id: str
    email: str
    name: str
    role: str
    created_at: datetime


class InvitationCreate(msgspec.Struct, forbid_unknown_fields=True):
    email: Email
    role: Literal["admin", "member"] = "member"
    name: Annotated[str, msgspec.Meta(max_length=200)] | None = None


class Invitation(msgspec.Struct, omit_defaults=True):
    """The link (its token) is mailed to the invited address. Only on a development server
    without a mail server (where the outbox holds it for anyone running ``kabar mail list``) is it
    also returned once to the inviter, as ``token`` and ``url``: even then an account it creates
    stays unverified, and an identity-provider sign-in never links to it (kabar.auth.idp)."""

    id: str
    email: str
    role: str
    status: str
    expires_at: datetime
    created_at: datetime
    token: str | None = None
    url: str | None = None


class InvitationAccept(msgspec.Struct, forbid_unknown_fields=True):
    token: Annotated[str, msgspec.Meta(min_length=10, max_length=200)]
    password: Annotated[str, msgspec.Meta(max_length=1024)] | None = None
    name: Annotated[str, msgspec.Meta(max_length=200)] | None = None


class ApiKeyCreate(msgspec.Struct, forbid_unknown_fields=True):
    name: Name


class ApiKey(msgspec.Struct, omit_defaults=True):  # ``secret`` appears only when created
    id: str
    name: str
    hint: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None
    secret: str | None = None  # only in the response that creates it
