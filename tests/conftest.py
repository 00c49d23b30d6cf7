"""Test fixtures shared by every suite.

Storage tests run on both backends: the ``backend`` fixture is parametrized with ``sqlite`` and
``postgres``. PostgreSQL is the local server at 127.0.0.1:5432 (``KABAR_TEST_PG_URL`` to change);
each test run creates fresh databases and drops them at the end. PostgreSQL is required: a run
without it fails (it never skips), in CI and locally alike.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import replace
from http.cookiejar import DefaultCookiePolicy
from pathlib import Path
from typing import Any

import httpx
import pytest

from kabar.config import Settings, load_settings
from kabar.db.migrate import upgrade

from tests.helpers import Tenant, make_tenant
from tests.sqltrace import tenant_sql

PG_ADMIN_URL = os.environ.get("KABAR_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
RUN_ID = secrets.token_hex(3)
BACKENDS = ["sqlite", "postgres"]


def _pg_admin(sql: str) -> None:
    import asyncpg

    async def run() -> None:
        conn = await asyncpg.connect(PG_ADMIN_URL, timeout=5)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(run())


def _pg_url(dbname: str) -> str:
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    return base.replace("postgresql://", "postgresql+asyncpg://", 1) + "/" + dbname


_created_pg: list[str] = []


def create_database(backend: str, tmp_dir: Path, name: str, *, migrate: bool = True) -> str:
    """A fresh database for ``backend`` (migrated unless ``migrate=False``); returns its URL."""
    if backend == "sqlite":
        url = f"sqlite:///{tmp_dir / (name + '.db')}"
    else:
        dbname = f"kabar_test_{RUN_ID}_{name}"
        try:
            _pg_admin(f'DROP DATABASE IF EXISTS "{dbname}"')
            _pg_admin(f'CREATE DATABASE "{dbname}"')
        except Exception as exc:  # noqa: BLE001
            pytest.fail(f"PostgreSQL is required for the test suite and is not reachable at {PG_ADMIN_URL}: {exc}")
        _created_pg.append(dbname)
        url = _pg_url(dbname)
    if migrate:
        upgrade(url)
    return url


# -- tenant SQL: every statement Kabar runs over a tenant table names its workspace ------------
# (tests/sqltrace/tenant_sql.py). Violations are collected from this process and from every
# server or CLI process the tests start (they append to the file named in KABAR_SQL_TRACE); the
# run fails at the end, listing each statement with the code that ran it and the first test.
_sql_violations: dict[tuple[str, str], dict[str, str]] = {}
_sql_trace = {"test": "(session setup)", "file": None, "read": 0}


def _record_sql_violation(violation: dict[str, str]) -> None:
    _sql_violations.setdefault((violation["sql"], violation["caller"]), {**violation, "test": _sql_trace["test"]})


def _collect_process_violations() -> None:
    path = _sql_trace["file"]
    if path is None or not path.exists():
        return
    with open(path, encoding="utf-8") as lines:
        lines.seek(_sql_trace["read"])
        for line in lines.readlines():
            if line.endswith("\n"):
                _record_sql_violation(json.loads(line))
        _sql_trace["read"] = lines.tell()


@pytest.fixture(scope="session", autouse=True)
def tenant_sql_tracer(tmp_path_factory: pytest.TempPathFactory) -> None:
    tenant_sql.install(_record_sql_violation)
    _sql_trace["file"] = tmp_path_factory.mktemp("sqltrace") / "violations.jsonl"
    os.environ["KABAR_SQL_TRACE"] = str(_sql_trace["file"])
    here = str(Path(tenant_sql.__file__).parent)
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [here, os.environ.get("PYTHONPATH")]))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item, nextitem):  # noqa: ANN001, ARG001
    _sql_trace["test"] = item.nodeid
    try:
        return (yield)
    finally:
        _collect_process_violations()


def pytest_terminal_summary(terminalreporter, exitstatus, config):  # noqa: ANN001, ARG001
    if _sql_violations:
        terminalreporter.section("tenant SQL without workspace_id (tests/sqltrace/tenant_sql.py)", red=True)
        for violation in _sql_violations.values():
            terminalreporter.write_line(f"{violation['caller']}  [{violation['tables']}]  in {violation['test']}")
            terminalreporter.write_line(f"    {violation['sql']}")
        terminalreporter.write_line(
            f"{len(_sql_violations)} statement(s) without workspace_id: the run fails (scope them, or add a reason to ALLOWED)", red=True
        )


def pytest_sessionfinish(session, exitstatus):  # noqa: ANN001
    _collect_process_violations()
    if _sql_violations and exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    for dbname in _created_pg:
        try:
            _pg_admin(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
        except Exception:  # noqa: BLE001 - best effort cleanup
            pass


# Suites log the same users in and send from one address far faster than people do; the rate
# limits themselves are tested in tests/security/test_rate_limits.py with real values.
TEST_RATE_LIMITS = {
    "KABAR_RATE_LIMIT_LOGIN": "100000/minute",
    "KABAR_RATE_LIMIT_LOGIN_ADDRESS": "100000/minute",
    "KABAR_RATE_LIMIT_SEND": "100000/second",
    "KABAR_RATE_LIMIT_WEBHOOK_UNROUTED": "100000/minute",
}


def base_settings(database_url: str, tmp_dir: Path, **overrides: object) -> Settings:
    settings = load_settings(
        {
            "KABAR_DATABASE_URL": database_url,
            "KABAR_DATA_DIR": str(tmp_dir / "data"),
            "KABAR_JWT_SECRET": "test-jwt-secret-long-enough-even-for-hs512-which-wants-64-bytes-0123",  # noqa: S105
            "KABAR_JWT_AUDIENCE": "authenticated",
            "KABAR_JOB_BACKOFF_BASE": "0.05",
            "KABAR_JOB_POLL_INTERVAL": "0.05",
            "KABAR_WEBHOOKS_ALLOW_PRIVATE": "1",
            **TEST_RATE_LIMITS,
        }
    )
    return replace(settings, **overrides)  # type: ignore[arg-type]


@pytest.fixture(scope="session", params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(scope="session")
def database_url(backend: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    return create_database(backend, tmp_path_factory.mktemp(f"db-{backend}"), "shared")


@pytest.fixture(scope="session")
def settings(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return base_settings(database_url, tmp_path_factory.mktemp("data"))


class _NoCookies(DefaultCookiePolicy):
    def set_ok(self, cookie, request) -> bool:  # noqa: ANN001
        return False


class AppClient(httpx.AsyncClient):
    """An HTTP client bound to an in-process app; ``runtime`` reaches its services for setup."""

    def __init__(self, app: Any):
        super().__init__(transport=httpx.ASGITransport(app=app), base_url="http://testserver.local", timeout=30)
        # The client is shared by every test: keep no cookies, or one test's login cookie would
        # silently authenticate the next test's "anonymous" requests. Send cookies explicitly.
        self.cookies.jar.set_policy(_NoCookies())
        self.app = app

    @property
    def runtime(self) -> Any:
        return self.app.state.runtime


@pytest.fixture(scope="session")
async def client(settings: Settings) -> AsyncIterator[AppClient]:
    """The app in-process over ASGI (lifespan included, same event loop) on the session's database."""
    from kabar.app import create_app, start_runtime, stop_runtime

    app = create_app(settings)
    # The app's own start/stop functions, called directly: Litestar's lifespan runs in an anyio
    # task group that cannot span a session fixture's setup and teardown.
    await start_runtime(app, settings)
    try:
        async with AppClient(app) as test_client:
            yield test_client
    finally:
        await stop_runtime(app)


@pytest.fixture
async def tenant(client: AppClient) -> Tenant:
    """A fresh workspace with its owner logged in (tenancy keeps tests apart on a shared DB)."""
    return await make_tenant(client)


@pytest.fixture
async def other_tenant(client: AppClient) -> Tenant:
    return await make_tenant(client)


@asynccontextmanager
async def app_client(settings: Settings, *, run_jobs: bool = False) -> AsyncIterator[AppClient]:
    """Another in-process app with its own settings (a job runner only if asked), stopped on exit."""
    from kabar.app import create_app, start_runtime, stop_runtime

    app = create_app(settings)
    await start_runtime(app, settings, run_jobs=run_jobs)
    try:
        async with AppClient(app) as test_client:
            yield test_client
    finally:
        await stop_runtime(app)


@pytest.fixture(scope="module")
async def jobs(client: AppClient) -> AsyncIterator[Any]:
    """A job runner for the session's app (on PostgreSQL ``kabar serve`` leaves jobs to ``kabar worker``)."""
    from kabar.jobs.worker import JobRunner

    runtime = client.runtime
    if runtime.jobs is not None:
        yield runtime.jobs
        return
    runner = JobRunner(runtime)
    runtime.jobs = runner
    await runner.start()
    yield runner
    await runner.stop()
    runtime.jobs = None


# -- real processes ---------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServerProcess:
    """``kabar serve`` in a subprocess, stopped by its PID."""

    def __init__(self, env: dict[str, str], port: int, log_path: Path):
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = log_path
        self._log = open(log_path, "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "kabar", "serve", "--host", "127.0.0.1", "--port", str(port)],
            env={**os.environ, **env},
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"kabar serve exited with {self.proc.returncode}: {self.log_path.read_text()[-2000:]}")
            try:
                if httpx.get(self.url + "/readyz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"kabar serve not ready after {timeout}s: {self.log_path.read_text()[-2000:]}")

    def stop(self, sig: int = 15) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self._log.close()


def server_env(database_url: str, tmp_dir: Path, **extra: str) -> dict[str, str]:
    return {
        "KABAR_DATABASE_URL": database_url,
        "KABAR_DATA_DIR": str(tmp_dir / "data"),
        "KABAR_JOB_BACKOFF_BASE": "0.05",
        "KABAR_JOB_POLL_INTERVAL": "0.05",
        "KABAR_WEBHOOKS_ALLOW_PRIVATE": "1",
        "KABAR_LOG_LEVEL": "WARNING",
        **TEST_RATE_LIMITS,
        **extra,
    }


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[callable]:
    """Start ``kabar serve`` processes; all are stopped after the test."""
    servers: list[ServerProcess] = []

    def start(env: dict[str, str], port: int | None = None) -> ServerProcess:
        port = port or free_port()
        server = ServerProcess(env, port, tmp_path / f"server-{port}-{len(servers)}.log")
        servers.append(server)
        server.wait_ready()
        return server

    yield start
    for server in servers:
        server.stop()
