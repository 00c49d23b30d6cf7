"""The command line, as an operator runs it: real `python -m kabar` processes on both backends."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.conftest import create_database, server_env


def kabar(env: dict[str, str], *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "kabar", *args], env={**os.environ, **env}, capture_output=True, text=True, timeout=180
    )
    if check:
        assert result.returncode == 0, f"kabar {' '.join(args)} exited {result.returncode}: {result.stdout}{result.stderr}"
    return result


def last_line(result: subprocess.CompletedProcess[str]) -> str:
    return result.stdout.strip().splitlines()[-1]


@pytest.fixture
def cli_env(backend: str, tmp_path: Path) -> dict[str, str]:
    url = create_database(backend, tmp_path, "cli", migrate=False)
    return server_env(url, tmp_path)


def test_migrate_user_and_workspace_create(cli_env):
    result = kabar(cli_env, "migrate")
    assert "latest migration" in result.stderr

    result = kabar(cli_env, "user", "create", "--email", "Owner@Toko.id", "--password", "rahasia-sekali", "--name", "Bu Owner")
    user_id = last_line(result)
    assert re.fullmatch(r"[0-9a-f-]{36}", user_id), result.stdout

    duplicate = kabar(cli_env, "user", "create", "--email", "owner@toko.id", "--password", "rahasia-sekali", check=False)
    assert duplicate.returncode != 0 and "already exists" in duplicate.stderr
    short = kabar(cli_env, "user", "create", "--email", "x@toko.id", "--password", "short", check=False)
    assert short.returncode != 0 and "8 characters" in short.stderr

    result = kabar(cli_env, "workspace", "create", "--name", "Toko Sejahtera", "--owner", "owner@toko.id", "--slug", "sejahtera")
    workspace_id = last_line(result)
    assert re.fullmatch(r"[0-9a-f-]{36}", workspace_id) and workspace_id != user_id
    missing = kabar(cli_env, "workspace", "create", "--name", "X", "--owner", "ghost@toko.id", check=False)
    assert missing.returncode != 0 and "kabar user create" in missing.stderr
    taken = kabar(cli_env, "workspace", "create", "--name", "Y", "--owner", "owner@toko.id", "--slug", "sejahtera", check=False)
    assert taken.returncode != 0 and "taken" in taken.stderr

    # What the CLI made is what the API sees.
    import asyncio

    from kabar.config import load_settings
    from kabar.runtime import Runtime
    from kabar.workspaces.service import workspaces_of_user

    async def check() -> list:
        runtime = Runtime.build(load_settings(cli_env))
        try:
            return await runtime.db.read(workspaces_of_user, user_id)
        finally:
            await runtime.db.dispose()

    [workspace] = asyncio.run(check())
    assert (workspace.id, workspace.slug, workspace.role, workspace.owner_id) == (workspace_id, "sejahtera", "owner", user_id)


def test_seed_demo_login_works_against_a_real_server(cli_env, start_server):
    kabar(cli_env, "migrate")
    result = kabar(cli_env, "seed", "--demo", "--contacts", "40")
    match = re.search(r"Login: email=(\S+) password=(\S+)", result.stdout)
    assert match, result.stdout + result.stderr
    email, password = match.groups()
    again = kabar(cli_env, "seed", "--demo", "--contacts", "40")  # idempotent: same login, no second workspace
    assert f"email={email} password={password}" in again.stdout

    server = start_server(cli_env)
    login = httpx.post(f"{server.url}/v1/auth/login", json={"email": email, "password": password}, timeout=10)
    assert login.status_code == 200, login.text
    token = login.json()["token"]
    me = httpx.get(f"{server.url}/v1/me", headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert me.status_code == 200, me.text
    [workspace] = me.json()["workspaces"]
    assert workspace["role"] == "owner" and workspace["slug"] == "demo"
    members = httpx.get(f"{server.url}/v1/workspaces/{workspace['id']}/members", headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert members.status_code == 200 and len(members.json()["data"]) >= 2
    assert httpx.get(f"{server.url}/readyz", timeout=10).status_code == 200


def test_jobs_list_and_retry(cli_env):
    import asyncio

    from sqlalchemy import update

    from kabar.config import load_settings
    from kabar.db import tables as t
    from kabar.runtime import Runtime
    from tests.foundation.jobs_support import enqueue

    kabar(cli_env, "migrate")

    async def dead_job() -> str:
        runtime = Runtime.build(load_settings(cli_env))
        try:
            [job_id] = await enqueue(runtime, ("system.probe", {}, {}))
            dead = update(t.jobs).where(t.jobs.c.id == job_id).values(status="dead", attempts=8, last_error="boom")
            await runtime.db.transaction(lambda uow: uow.conn.execute(dead))
            return job_id
        finally:
            await runtime.db.dispose()

    job_id = asyncio.run(dead_job())
    listing = kabar({**cli_env, "COLUMNS": "250"}, "jobs", "list", "--status", "dead")
    assert job_id in listing.stdout and "boom" in listing.stdout
    kabar(cli_env, "jobs", "retry", job_id)
    listing = kabar({**cli_env, "COLUMNS": "250"}, "jobs", "list", "--status", "queued")
    assert job_id in listing.stdout
    again = kabar(cli_env, "jobs", "retry", job_id, check=False)  # no longer dead
    assert again.returncode != 0
