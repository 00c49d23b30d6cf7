"""Who is calling, and as what, inside one workspace."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from sqlalchemy import ColumnElement, Table, or_, select
from sqlalchemy.sql import Select

from kabar.auth.permissions import Role, allowed
from kabar.errors import forbidden


@dataclass(frozen=True, slots=True)
class Principal:
    kind: Literal["session", "jwt", "api_key"]
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
    def sees_everything(self) -> bool:
        return self.role is not Role.MEMBER

    def select(self, table: Table, *columns) -> Select:  # noqa: ANN002
        """The workspace-scoped base statement of every repository query on ``table``."""
        stmt = select(*columns) if columns else select(table)
        return stmt.where(table.c.workspace_id == self.workspace_id)

    def visible(self, assignee_column) -> ColumnElement[bool] | None:  # noqa: ANN001
        """Members see what is assigned to them or to nobody; others see everything."""
        if self.sees_everything:
            return None
        return or_(assignee_column == self.user_id, assignee_column.is_(None))

    def select_visible(self, table: Table, assignee_column, *columns) -> Select:  # noqa: ANN001, ANN002
        stmt = self.select(table, *columns)
        clause = self.visible(assignee_column)
        return stmt if clause is None else stmt.where(clause)
