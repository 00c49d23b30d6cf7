"""Who is calling, and as what, inside one workspace."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import ColumnElement, Table, select
from sqlalchemy.sql import Select

from kabar.auth import visibility
from kabar.auth.permissions import Role, allowed
from kabar.auth.visibility import Viewer
from kabar.errors import forbidden


@dataclass(frozen=True, slots=True)
class Principal:
    kind: Literal["session", "jwt", "api_key", "system"]
    user_id: str | None = None  # None for API keys
    session_id: str | None = None
    api_key_id: str | None = None
    api_key_workspace_id: str | None = None
    via_cookie: bool = False


@dataclass(frozen=True, slots=True)
class Scope:
    """The caller acting in one workspace. Every tenant query is built from it."""

    workspace_id: str
    role: Role
    principal: Principal

    @property
    def user_id(self) -> str | None:
        return self.principal.user_id

    @property
    def actor(self) -> str:
        """A stable name for the caller (idempotency scopes, audit)."""
        return self.principal.user_id or f"api_key:{self.principal.api_key_id}"

    def can(self, permission: str) -> bool:
        return allowed(self.role, permission)

    def require(self, permission: str) -> None:
        if not allowed(self.role, permission):
            raise forbidden(f"Your role ({self.role}) does not allow {permission}")

    @property
    def viewer(self) -> Viewer:
        """What this caller may see, for ``kabar.auth.visibility`` (the one visibility rule)."""
        return Viewer.of(self)

    @property
    def sees_everything(self) -> bool:
        return self.viewer.sees_all

    def select(self, table: Table, *columns) -> Select:  # noqa: ANN002
        """The workspace-scoped base statement of every repository query on ``table``."""
        stmt = select(*columns) if columns else select(table)
        return stmt.where(table.c.workspace_id == self.workspace_id)

    def visible(self, owner) -> ColumnElement[bool] | None:  # noqa: ANN001
        """The visibility rule's SQL condition on ``owner`` (a table with an assignee, or its
        ``assignee_id`` column); None when the caller sees everything."""
        return visibility.clause(self.viewer, owner.table if isinstance(owner, ColumnElement) else owner)

    def may_see(self, row: Any) -> bool:
        """The same rule in Python, for a contact or conversation row read without it."""
        return visibility.may_see(self.viewer, row)

    def select_visible(self, table: Table, owner, *columns) -> Select:  # noqa: ANN001, ANN002
        """``select`` on ``table`` restricted by the visibility rule on ``owner`` (the table that
        carries the customer's assignee, or its ``assignee_id`` column: ``table`` itself, or one
        the statement joins)."""
        stmt = self.select(table, *columns)
        clause = self.visible(owner)
        return stmt if clause is None else stmt.where(clause)


SYSTEM = Principal("system")


def system_scope(workspace_id: str) -> Scope:
    """Kabar itself acting in one workspace (webhook ingest, jobs, ARI, realtime feeds): no person,
    sees everything, holds no manager's permissions. Repositories take it like any caller's Scope."""
    return Scope(workspace_id, Role.API, SYSTEM)
