"""The ASGI application: wiring only (routes, errors, lifespan). Behaviour lives in the domains."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

from litestar import Litestar, Request, Response, get
from litestar.openapi import OpenAPIConfig

from kabar import __version__
from kabar.config import Settings, load_settings
from kabar.db.migrate import current_revision_sync, head_revision
from kabar.http import EXCEPTION_HANDLERS, runtime_of, workspace_hook
from kabar.jobs.builtin import HOUSEKEEPING
from kabar.jobs.periodic import start_periodic
from kabar.observability import metrics
from kabar.observability.logging import configure_logging
from kabar.observability.middleware import KabarMiddleware
from kabar.plugins import import_if_present
from kabar.runtime import Runtime
from kabar.web.docs import SelfHostedSwagger

log = logging.getLogger("kabar")

# Each domain's endpoints module exposes ROUTES; add new domains here.
ROUTE_MODULES = [
    "kabar.auth.endpoints",
    "kabar.workspaces.endpoints",
    "kabar.contacts.endpoints",
    "kabar.conversations.endpoints",
    "kabar.messages.endpoints",
    "kabar.stats.endpoints",
    "kabar.channels.endpoints",
    "kabar.ingest.endpoints",
    "kabar.realtime.endpoints",
    "kabar.ari.endpoints",
    "kabar.integrations.endpoints",
    "kabar.web.endpoints",
]


def _domain_routes() -> list[Any]:
    routes: list[Any] = []
    for name in ROUTE_MODULES:
        module = import_if_present(name)
        if module is not None:
            routes.extend(module.ROUTES)
    return routes


@get("/healthz", include_in_schema=True, tags=["operations"])
async def healthz() -> dict[str, str]:
    return {"status": "ok", "version": __version__}


@get("/readyz", tags=["operations"])
async def readyz(request: Request) -> Response[dict[str, Any]]:
    runtime = runtime_of(request)
    checks: dict[str, str] = {}
    ok = True
    try:
        revision = await runtime.db.read(current_revision_sync)
        head = head_revision()
        checks["database"] = "ok"
        checks["migrations"] = "ok" if revision == head else f"at {revision}, expected {head}"
        ok = revision == head
    except Exception as exc:  # noqa: BLE001 - readiness reports, it does not raise
        checks["database"] = f"unavailable: {type(exc).__name__}"
        ok = False
    # Redis is reported but does not make the process unready: it only carries realtime wake-ups
    # and shared rate-limit counters, and without it writes succeed, subscribers poll the event
    # log and limits fall back to per-process counts. Taking every process out of the load
    # balancer because Redis blinked would turn a degraded service into an outage.
    redis_state = await runtime.hub.health()
    status = "ok" if ok else "unavailable"
    if redis_state is not None:
        checks["redis"] = redis_state
        if ok and redis_state != "ok":
            status = "degraded"
    return Response({"status": status, "checks": checks}, status_code=200 if ok else 503)


@get("/metrics", tags=["operations"], media_type="text/plain; version=0.0.4")
async def metrics_endpoint(request: Request) -> bytes:
    runtime = runtime_of(request)
    try:
        from kabar.jobs.repository import counts

        for status, n in (await runtime.db.read(counts)).items():
            metrics.JOBS_BACKLOG.labels(status).set(n)
    except Exception:  # noqa: BLE001 - metrics must render even when the database is down
        pass
    metrics.REALTIME_SOCKETS.set(runtime.hub.subscriber_count)
    return metrics.render()


def create_app(settings: Settings | None = None, *, run_jobs: bool | None = None) -> Litestar:
    settings = settings or load_settings()
    settings.check()
    if not logging.getLogger().handlers:
        # A server process (nobody configured logging yet): JSON lines at KABAR_LOG_LEVEL.
        # Embedders and test runners that set up logging themselves keep theirs.
        configure_logging(settings.log_level)

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        await start_runtime(app, settings, run_jobs=run_jobs)
        try:
            yield
        finally:
            await stop_runtime(app)

    return Litestar(
        route_handlers=[healthz, readyz, metrics_endpoint, *_domain_routes()],
        lifespan=[lifespan],
        exception_handlers=EXCEPTION_HANDLERS,
        before_request=workspace_hook,
        middleware=[KabarMiddleware],
        request_max_body_size=settings.max_body_bytes,
        openapi_config=OpenAPIConfig(
            title="Kabar API",
            version=__version__,
            path="/schema",
            render_plugins=[SelfHostedSwagger()],  # no CDN: our own copy, under the CSP
        ),
        debug=False,
        logging_config=None,
    )


async def start_runtime(app: Litestar, settings: Settings, *, run_jobs: bool | None = None) -> Runtime:
    """Build the process's services and start the background parts (hub, jobs, domain hooks)."""
    runtime = Runtime.build(settings)
    app.state.runtime = runtime
    await runtime.hub.start()
    if run_jobs if run_jobs is not None else settings.jobs_in_process:
        from kabar.jobs.worker import JobRunner

        runtime.jobs = JobRunner(runtime)
        await runtime.jobs.start()
    await start_periodic(runtime, HOUSEKEEPING, timedelta(minutes=1))
    for hook in STARTUP_HOOKS:
        await hook(runtime)
    return runtime


async def stop_runtime(app: Litestar) -> None:
    runtime: Runtime = app.state.runtime
    for hook in SHUTDOWN_HOOKS:
        await hook(runtime)
    if runtime.jobs:
        await runtime.jobs.stop()
    await runtime.auth.key_usage.drain()
    await runtime.hub.stop()
    await runtime.db.dispose()


# Domains that need to run something when the process starts or stops (e.g. the demo's fake
# provider and simulator) append async callables taking the Runtime.
STARTUP_HOOKS: list[Any] = []
SHUTDOWN_HOOKS: list[Any] = []

