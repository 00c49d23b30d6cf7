"""The one visibility rule: what a caller may see of the workspace's customers.

Rule (API.md "Roles"): owners, admins and API keys see every contact and conversation; a
``member`` sees those assigned to them or to nobody. Everything hanging off a customer (its
conversation, messages, notes and tasks, ARI state, appointments, uploads sent in its
conversation, its events) is visible exactly when the customer is.

This module is the only place that states the rule, in the three forms the code needs:

- ``clause(viewer, table)``: the SQL condition on a table that carries an owner (``contacts``,
  ``conversations``: ``assignee_id``; the inbox count buckets: ``assignee_key``), None when the
  viewer sees everything. Tables without an owner (messages, notes, uploads…) join the
  conversation or contact they belong to and apply the clause to it.
- ``may_see(viewer, row)``: the same decision in Python, for a row read without the clause.
- ``audience(row)`` / ``Viewer.sees(audience)``: the decision split in two for the realtime feeds,
  which read each event once for every subscriber: the event's audience is computed once, each
  subscriber's check is a set lookup (``kabar.realtime``).

Teams (members also see unassigned conversations of their teams) change only this module: a
``team_ids`` on ``Viewer`` (and ``"team:<id>"`` keys in audiences), an ``or`` in ``clause`` and
``may_see`` on the table's ``team_id``, and ``owner_columns`` selecting it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import ColumnElement, and_, or_

from kabar.auth.permissions import Role

if TYPE_CHECKING:
    from kabar.auth.scope import Scope

MANAGER_ROLES = frozenset({Role.OWNER, Role.ADMIN})

# An event's audience: None = every reader of the workspace's feed; MANAGERS_ONLY = owners and
# admins; otherwise the member user ids that may see it (viewers who see every customer always
# do). A tuple of strings, so it travels through Redis as JSON (ephemeral typing messages).
Audience = tuple[str, ...] | None
EVERYONE: Audience = None
MANAGERS_ONLY: tuple[str, ...] = ("@managers",)  # never a user id
NO_MEMBER: tuple[str, ...] = ()  # only viewers who see every customer


@dataclass(frozen=True, slots=True)
class Viewer:
    """Who is looking: ``sees_all`` (owner, admin, API key) or a member's share; ``manages``
    (owner, admin) also sees the workspace's settings, people, keys and integrations."""

    sees_all: bool
    user_id: str | None
    manages: bool = False

    @classmethod
    def of(cls, scope: Scope) -> Viewer:
        return cls(sees_all=scope.role is not Role.MEMBER, user_id=scope.user_id, manages=scope.role in MANAGER_ROLES)

    def sees(self, audience: Audience) -> bool:
        """May this viewer receive an event (or ephemeral message) with ``audience``?"""
        if audience is None or self.manages:
            return True
        if audience == MANAGERS_ONLY:
            return False
        return self.sees_all or self.user_id in audience


def clause(viewer: Viewer, table: Any) -> ColumnElement[bool] | None:
    """The SQL condition for rows of ``table`` the viewer may see; None when it sees them all."""
    if viewer.sees_all:
        return None
    return member_clause(table, viewer.user_id)


def member_clause(table: Any, user_id: Any) -> ColumnElement[bool]:
    """A member's condition on ``table``; ``user_id`` may be a bind parameter (prepared statements)."""
    if "assignee_key" in table.c:  # inbox count buckets: the assignee's id, "" for nobody
        return table.c.assignee_key.in_((user_id, ""))
    return or_(table.c.assignee_id == user_id, table.c.assignee_id.is_(None))


def attached_clause(viewer: Viewer, owner: Any, attached: Any, author: Any) -> ColumnElement[bool] | None:
    """Rows that belong to a customer once ``attached`` is set (an upload sent in a conversation:
    the rule on ``owner``, the joined conversation) and, until then, to their ``author`` alone."""
    if viewer.sees_all:
        return None
    return or_(
        and_(attached.is_not(None), member_clause(owner, viewer.user_id)),
        and_(attached.is_(None), author == viewer.user_id),
    )


def owner_columns(table: Any) -> tuple[Any, ...]:
    """The columns of ``table`` that ``may_see`` and ``audience`` read (select them with the row)."""
    return (table.c.assignee_id,)


def may_see(viewer: Viewer, row: Any) -> bool:
    """Python form of ``clause``: ``row`` has the ``owner_columns`` (a contact, a conversation)."""
    return viewer.sees_all or row.assignee_id is None or row.assignee_id == viewer.user_id


def audience(row: Any) -> Audience:
    """Who may see an event about the customer ``row`` (its ``owner_columns``)."""
    return EVERYONE if row.assignee_id is None else (row.assignee_id,)


@dataclass(frozen=True, slots=True)
class Owner:
    """The owner columns of a customer when they come from somewhere else than a row."""

    assignee_id: str | None
