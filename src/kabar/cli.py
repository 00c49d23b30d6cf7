"""The ``kabar`` command line (Typer). Commands stay thin: they call the same services as HTTP."""

from __future__ import annotations

import asyncio
import base64
import os
import secrets
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import typer
from rich.console import Console

from kabar.config import ConfigError, Settings, load_settings
from kabar.plugins import import_if_present

T = TypeVar("T")
app = typer.Typer(help="Kabar: WhatsApp CRM and team inbox.", no_args_is_help=True, add_completion=False)
user_app = typer.Typer(help="Manage users.", no_args_is_help=True)
workspace_app = typer.Typer(help="Manage workspaces.", no_args_is_help=True)
jobs_app = typer.Typer(help="Inspect and retry background jobs.", no_args_is_help=True)
app.add_typer(user_app, name="user")
app.add_typer(workspace_app, name="workspace")
app.add_typer(jobs_app, name="jobs")
console = Console(stderr=True)


def settings_or_exit() -> Settings:
    try:
        settings = load_settings()
        settings.check()
    except ConfigError as exc:
        console.print(f"[red]Configuration error:[/red] {exc}")
        raise typer.Exit(2) from exc
    return settings


def run_with_runtime(fn: Callable[[Any], Awaitable[T]]) -> T:
    """Build a Runtime, run ``fn(runtime)``, dispose it."""
    from kabar.runtime import Runtime

    settings = settings_or_exit()

    async def main() -> T:
        runtime = Runtime.build(settings)
        try:
            return await fn(runtime)
        finally:
            await runtime.db.dispose()

    return asyncio.run(main())


async def until_stopped() -> None:
    """Return on SIGINT or SIGTERM: long-running commands then shut down cleanly."""
    import signal

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


def fail(message: str, code: int = 1) -> None:
    console.print(f"[red]{message}[/red]")
    raise typer.Exit(code)


@app.command()
def migrate() -> None:
    """Apply database migrations to KABAR_DATABASE_URL."""
    from kabar.db.migrate import upgrade

    settings = settings_or_exit()
    upgrade(settings.database_url)
    console.print("[green]Database is at the latest migration.[/green]")


@app.command()
def serve(
    host: str = typer.Option(None, help="Bind address (default KABAR_HOST or 127.0.0.1)."),
    port: int = typer.Option(None, help="Port (default KABAR_PORT or 8000)."),
    workers: int = typer.Option(1, help="Server processes (PostgreSQL only; SQLite runs one)."),
    migrate_first: bool = typer.Option(True, "--migrate/--no-migrate", help="Apply migrations before serving."),
    server: str = typer.Option(None, help="HTTP server: uvicorn or granian (default KABAR_SERVER, else uvicorn)."),
) -> None:
    """Run the HTTP server (and, on SQLite, the job worker in the same process)."""
    settings = settings_or_exit()
    if settings.is_sqlite and workers > 1:
        fail("SQLite runs a single server process; use PostgreSQL (KABAR_DATABASE_URL) for --workers > 1.")
    if migrate_first:
        from kabar.db.migrate import upgrade

        upgrade(settings.database_url)
    bind_host = host or settings.host
    bind_port = port or settings.port
    choice = (server or os.environ.get("KABAR_SERVER") or "uvicorn").lower()
    if choice not in ("uvicorn", "granian"):
        fail(f"Unknown server {choice!r}: use uvicorn or granian.")
    # Server processes read their settings from the environment: let them know where they listen
    # (the demo's in-process fake provider posts its webhooks back to this address).
    os.environ["KABAR_HOST"], os.environ["KABAR_PORT"] = bind_host, str(bind_port)
    console.print(f"Kabar listening on http://{bind_host}:{bind_port}  (database: {_redact(settings.database_url)}, {choice})")
    if choice == "granian":
        _serve_granian(bind_host, bind_port, workers)
    else:
        _serve_uvicorn(bind_host, bind_port, workers)


# Why uvicorn is the default (server pinned to CPU 0, clients to CPU 1, SCHED_FIFO; commands in
# tests/realtime/measure.py): granian keeps about 155 KiB per open WebSocket in its Rust WebSocket
# layer, with no setting to shrink it (bare ASGI app, tests/realtime/fanout_floor.py: 10,000 idle
# sockets would need 1.5 GiB), against 18 KiB for uvicorn + wsproto; and uvicorn's transport lets
# the realtime feed write one frame buffer per socket with no task per socket
# (kabar.realtime.transport): a webhook reaches the last of 1,000 sockets in about 12 ms.
# Granian answers plain HTTP faster (wrk on CPU 1: Kabar's /healthz 12.4k req/s with asyncio,
# 15.2k with uvloop, against 10.6k for uvicorn + httptools + uvloop; by-phone with a session token
# about 3.0k against 2.6k, where a profile puts 13% of the CPU in uvicorn, 34% in SQLAlchemy and
# 26% in Litestar), so it stays available where sockets are few: `kabar serve --server granian`
# or KABAR_SERVER=granian.
def _serve_uvicorn(host: str, port: int, workers: int) -> None:
    import importlib.util

    import uvicorn

    def have(module: str) -> bool:
        return importlib.util.find_spec(module) is not None

    uvicorn.run(
        "kabar.realtime.transport:create_served_app",  # kabar.app:create_app + the WebSocket fast path
        factory=True,
        host=host,
        port=port,
        workers=workers if workers > 1 else None,
        loop="uvloop" if have("uvloop") else "asyncio",
        http="httptools" if have("httptools") else "h11",
        ws="wsproto" if have("wsproto") else "websockets-sansio",
        # permessage-deflate would compress every event once per socket (CPU and a zlib state each).
        ws_per_message_deflate=False,
        lifespan="on",
        proxy_headers=False,  # as with granian: no X-Forwarded-* rewriting (and no middleware per request)
        access_log=False,
        log_level="warning",
        server_header=False,
    )


def _serve_granian(host: str, port: int, workers: int) -> None:
    from granian import Granian
    from granian.constants import Interfaces

    Granian(
        "kabar.app:create_app",
        factory=True,
        interface=Interfaces.ASGI,
        address=host,
        port=port,
        workers=workers,
        websockets=True,
        log_access=False,
    ).serve()


@app.command()
def worker(concurrency: int = typer.Option(None, help="Jobs run at once by this process.")) -> None:
    """Run background jobs (for PostgreSQL deployments; SQLite runs them inside `kabar serve`)."""
    from kabar.jobs.worker import JobRunner
    from kabar.observability.logging import configure_logging

    settings = settings_or_exit()
    configure_logging(settings.log_level)

    async def main(runtime: Any) -> None:
        runner = JobRunner(runtime, concurrency=concurrency)
        runtime.jobs = runner
        await runtime.hub.start()
        await runner.start()
        console.print(f"Kabar worker {runner.worker_id} running; Ctrl-C stops it.")
        await until_stopped()
        await runner.stop()
        await runtime.hub.stop()

    run_with_runtime(main)


@user_app.command("create")
def user_create(
    email: str = typer.Option(..., help="Login email."),
    password: str = typer.Option(..., help="Password (8+ characters)."),
    name: str = typer.Option("", help="Display name."),
) -> None:
    """Create a user; prints the new user's id as the last line."""
    from kabar.auth.service import create_user
    from kabar.errors import Problem

    async def main(runtime: Any) -> str:
        return await runtime.db.transaction(create_user, email=email, password=password, name=name)

    try:
        user_id = run_with_runtime(main)
    except Problem as exc:
        fail(exc.detail)
    print(user_id)


@workspace_app.command("create")
def workspace_create(
    name: str = typer.Option(..., help="Workspace name."),
    owner: str = typer.Option(..., help="Owner's email (an existing user)."),
    slug: str = typer.Option(None, help="URL slug (default: from the name)."),
) -> None:
    """Create a workspace owned by an existing user; prints its id as the last line."""
    from kabar.auth.repository import user_by_email
    from kabar.errors import Problem
    from kabar.workspaces.service import create_workspace

    def _create(uow: Any) -> str:
        user = user_by_email(uow.conn, owner)
        if user is None:
            raise Problem(404, "not-found", "Not found", f"No user with email {owner}; run `kabar user create` first")
        return create_workspace(uow, owner_id=user.id, name=name, slug=slug).id

    try:
        workspace_id = run_with_runtime(lambda rt: rt.db.transaction(_create))
    except Problem as exc:
        fail(exc.detail)
    print(workspace_id)


@app.command()
def seed(
    demo: bool = typer.Option(False, "--demo", help="Create the demo workspace and login with sample data."),
    contacts: int = typer.Option(300, help="Number of demo contacts (each with a conversation)."),
) -> None:
    """Create demo data: a workspace, an owner login (printed), contacts, conversations, messages."""
    if not demo:
        fail("Nothing to do: pass --demo.")
    from kabar.demo import seed_demo

    result = run_with_runtime(lambda rt: seed_demo(rt, contacts=contacts))
    console.print(
        f"[bold green]Demo ready.[/bold green] Workspace [bold]{result['workspace_name']}[/bold] "
        f"({result['contacts']} contacts)."
    )
    print(f"Login: email={result['email']} password={result['password']}")


@app.command()
def keygen() -> None:
    """Print fresh values for KABAR_SECRET_KEY and KABAR_ENCRYPTION_KEY."""
    print(f"KABAR_SECRET_KEY={secrets.token_urlsafe(48)}")
    print(f"KABAR_ENCRYPTION_KEY={base64.urlsafe_b64encode(os.urandom(32)).decode()}")


@jobs_app.command("list")
def jobs_list(
    status: str = typer.Option(None, help="queued, running, done or dead."),
    limit: int = typer.Option(50),
) -> None:
    """List jobs, newest first."""
    from rich.table import Table
    from sqlalchemy import select

    from kabar.db import tables as t

    def _rows(conn: Any) -> list[Any]:
        stmt = select(t.jobs).order_by(t.jobs.c.created_at.desc()).limit(limit)
        if status:
            stmt = stmt.where(t.jobs.c.status == status)
        return conn.execute(stmt).all()

    rows = run_with_runtime(lambda rt: rt.db.read(_rows))
    table = Table("id", "kind", "status", "attempts", "run_at", "last_error")
    for row in rows:
        table.add_row(row.id, row.kind, row.status, f"{row.attempts}/{row.max_attempts}", str(row.run_at), (row.last_error or "")[:60])
    Console().print(table)


@jobs_app.command("retry")
def jobs_retry(job_id: str) -> None:
    """Put a dead-lettered job back in the queue."""
    from kabar.jobs.repository import requeue

    ok = run_with_runtime(lambda rt: rt.db.transaction(lambda uow: requeue(uow.conn, job_id, uow.now)))
    if not ok:
        fail(f"No dead job {job_id}")
    console.print(f"Job {job_id} queued again.")


def _redact(url: str) -> str:
    """Hide a password in a database URL before printing it."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001
        return "<database>"


# Domains add their own sub-commands here (fake-provider, simulate, bench, webhooks, contacts...).
for _module in ("kabar.channels.cli", "kabar.ingest.cli", "kabar.contacts.cli", "kabar.bench.cli", "kabar.ops.cli", "kabar.ari.cli", "kabar.mail.cli"):
    import_if_present(_module)

