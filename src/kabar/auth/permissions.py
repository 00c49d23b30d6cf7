"""Who may do what: the one role table every endpoint checks against.

Roles: ``owner``, ``admin``, ``member`` are people; ``api`` is a workspace API key (an
integration acting for the workspace: it works the inbox and contacts but manages no people,
keys or settings).
"""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    OWNER = "owner"
    ADMIN = "admin"
    MEMBER = "member"
    API = "api"


_ALL = frozenset(Role)
_PEOPLE = frozenset({Role.OWNER, Role.ADMIN, Role.MEMBER})
_MANAGERS = frozenset({Role.OWNER, Role.ADMIN})

PERMISSIONS: dict[str, frozenset[Role]] = {
    "workspace.read": _ALL,
    "workspace.update": _MANAGERS,
    "workspace.delete": frozenset({Role.OWNER}),
    "members.read": _PEOPLE,
    "members.manage": _MANAGERS,
    "members.transfer_ownership": frozenset({Role.OWNER}),
    "invitations.manage": _MANAGERS,
    "api_keys.manage": _MANAGERS,
    "channel.read": _MANAGERS,
    "channel.manage": _MANAGERS,
    "contacts.read": _ALL,
    "contacts.write": _ALL,
    "contacts.delete": frozenset({Role.OWNER, Role.ADMIN, Role.API}),
    "contacts.import": frozenset({Role.OWNER, Role.ADMIN, Role.API}),
    "contacts.export": _MANAGERS,
    "contacts.merge": frozenset({Role.OWNER, Role.ADMIN, Role.API}),
    "notes.manage": _MANAGERS,  # edit or delete anyone's note (authors always may their own)
    "conversations.read": _ALL,
    "conversations.write": _ALL,
    "messages.send": _ALL,
    "stats.read": _ALL,
    "events.read": _ALL,
    "ari.read": _ALL,
    "ari.manage": _MANAGERS,
    "webhooks.manage": _MANAGERS,
}


def allowed(role: Role | str, permission: str) -> bool:
    return Role(role) in PERMISSIONS[permission]
