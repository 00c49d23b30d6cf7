"""HTTP for workspace statistics."""

from __future__ import annotations

from datetime import date

from litestar import Request, get
from litestar.di import NamedDependency, Provide
from litestar.params import FromQuery

from kabar.auth.scope import Scope
from kabar.http import provide_scope, runtime_of
from kabar.stats import service
from kabar.stats.schemas import StatsOut


@get("/v1/workspaces/{ws:str}/stats", tags=["stats"], dependencies={"ctx": Provide(provide_scope)})
async def stats(request: Request, ctx: NamedDependency[Scope], date: FromQuery[date | None] = None) -> StatsOut:
    """Contacts created today / this week / this month on the workspace's calendar (WIB by
    default; ``date`` picks another day), by lead status and tag, and conversation counts."""
    return await runtime_of(request).db.read(service.workspace_stats, ctx, date)


ROUTES = [stats]
