"""HTTP basics: problem+json for every error class, body limits, security headers, ops endpoints."""

from __future__ import annotations

import subprocess
import sys

from tests.helpers import assert_problem

SECURITY_HEADERS = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "strict-origin-when-cross-origin",
}


def assert_security_headers(response) -> None:  # noqa: ANN001
    for name, value in SECURITY_HEADERS.items():
        assert response.headers.get(name) == value, (name, response.headers)
    assert response.headers.get("x-request-id")


async def test_malformed_json_is_400(client):
    response = await client.post("/v1/auth/login", content=b'{"email": ', headers={"content-type": "application/json"})
    body = assert_problem(response, 400, "/bad-request")
    assert body["title"] == "Malformed request"  # stable per type; the parser's words go in detail
    assert body["detail"]


async def test_missing_body_is_400(client):
    response = await client.post("/v1/auth/login", content=b"", headers={"content-type": "application/json"})
    body = assert_problem(response, 400, "/bad-request")
    assert "body" in body["detail"].lower()


async def test_invalid_fields_are_422_with_errors(client, tenant):
    response = await client.post("/v1/workspaces", json={"name": "", "slug": "Not A Slug"}, headers=tenant.owner.headers)
    body = assert_problem(response, 422, "/validation-error")
    assert body["errors"], body
    assert all(set(e) == {"field", "message"} for e in body["errors"]), body
    assert {e["field"] for e in body["errors"]} <= {"name", "slug"}

    response = await client.post("/v1/auth/login", json={"email": 5, "password": "x"})
    body = assert_problem(response, 422, "/validation-error")
    assert body["errors"] == [{"field": "email", "message": "Expected `str`, got `int`"}]

    response = await client.post("/v1/auth/login", json={"email": "a@b.id", "password": "x", "extra": 1})
    assert assert_problem(response, 422)["errors"][0]["field"] == "extra"


async def test_oversize_body_is_413(client):
    limit = client.runtime.settings.max_body_bytes
    big = b'{"email": "' + b"a" * (limit + 10) + b'", "password": "x"}'
    response = await client.post("/v1/auth/login", content=big, headers={"content-type": "application/json"})
    assert_problem(response, 413, "/payload-too-large")

    async def chunks():  # no Content-Length: the limit holds for streamed bodies too
        for _ in range(limit // 65536 + 2):
            yield b"a" * 65536

    response = await client.post("/v1/auth/login", content=chunks(), headers={"content-type": "application/json"})
    assert_problem(response, 413, "/payload-too-large")


async def test_wrong_content_type_is_415(client, tenant):
    response = await client.post("/v1/auth/login", content=b"email=a&password=b", headers={"content-type": "text/plain"})
    assert_problem(response, 415, "/unsupported-media-type")
    response = await client.patch(
        f"{tenant.base}", content=b"<name>x</name>", headers={**tenant.owner.headers, "content-type": "application/xml"}
    )
    assert_problem(response, 415)
    # Media types are case-insensitive (RFC 9110).
    response = await client.post(
        "/v1/auth/login", content=b'{"email": "nobody@x.id", "password": "whatever1"}', headers={"content-type": "Application/JSON"}
    )
    assert_problem(response, 401)


async def test_unauthenticated_is_401_with_challenge(client):
    for headers in ({}, {"Authorization": "Basic dXNlcjpwYXNz"}, {"Authorization": "Bearer nonsense"}, {"Authorization": "Bearer "}):
        response = await client.get("/v1/me", headers=headers)
        assert_problem(response, 401, "/unauthorized")
        assert response.headers["www-authenticate"].startswith("Bearer"), headers


async def test_not_found_and_method_not_allowed_are_problems(client):
    assert_problem(await client.get("/v1/nothing-here"), 404, "/not-found")
    assert_problem(await client.delete("/v1/auth/login"), 405)


async def test_security_headers_on_success_and_error(client, tenant):
    assert_security_headers(await client.get("/healthz"))
    assert_security_headers(await client.get("/v1/me", headers=tenant.owner.headers))
    assert_security_headers(await client.get("/v1/me"))
    assert_security_headers(await client.post("/v1/auth/login", content=b"x", headers={"content-type": "text/plain"}))
    response = await client.get("/healthz", headers={"x-request-id": "trace-123"})
    assert response.headers["x-request-id"] == "trace-123"


async def test_health_ready_metrics_schema(client, tenant):
    response = await client.get("/healthz")
    assert response.status_code == 200 and response.json()["status"] == "ok"

    response = await client.get("/readyz")
    assert response.status_code == 200, response.text
    assert response.json()["checks"]["migrations"] == "ok"
    assert response.json()["checks"]["database"] == "ok"

    await client.get("/v1/me", headers=tenant.owner.headers)
    await client.get(tenant.base, headers=tenant.owner.headers)
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    text = response.text
    assert "# TYPE kabar_http_requests_total counter" in text
    assert "# TYPE kabar_http_request_seconds histogram" in text
    # Labelled by route template, never by raw path (ids would explode the series count).
    assert 'route="/v1/me"' in text and 'route="/v1/workspaces/{ws}"' in text
    assert tenant.ws not in text
    assert "# TYPE kabar_jobs gauge" in text

    response = await client.get("/schema/openapi.json")
    assert response.status_code == 200
    paths = response.json()["paths"]
    assert "/v1/auth/login" in paths and "/v1/workspaces/{ws}/members" in paths


def test_production_refuses_default_secrets(tmp_path):
    """`kabar serve` in production with development secrets exits non-zero and says why."""
    base = {
        "PATH": "/usr/bin:/bin",
        "KABAR_ENV": "production",
        "KABAR_DATABASE_URL": f"sqlite:///{tmp_path / 'prod.db'}",
        "KABAR_DATA_DIR": str(tmp_path),
    }
    cases = [
        ({}, "KABAR_SECRET_KEY"),
        ({"KABAR_ENV": "prod"}, "KABAR_ENV"),
        ({"KABAR_SECRET_KEY": "short"}, "KABAR_SECRET_KEY"),
        ({"KABAR_SECRET_KEY": "s" * 48}, "KABAR_ENCRYPTION_KEY"),
        (
            {"KABAR_SECRET_KEY": "s" * 48, "KABAR_ENCRYPTION_KEY": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", "KABAR_JWT_SECRET": "tiny"},
            "KABAR_JWT_SECRET",
        ),
    ]
    for extra, needle in cases:
        result = subprocess.run(
            [sys.executable, "-m", "kabar", "serve", "--port", "1"],
            env={**base, **extra},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode != 0, (extra, result.stdout, result.stderr)
        assert needle in result.stderr, (extra, result.stderr)
        assert "Traceback" not in result.stderr, result.stderr
    assert not (tmp_path / "prod.db").exists()  # refused before touching the database


def test_configuration_errors_are_clear():
    import pytest

    from kabar.config import ConfigError, load_settings

    for env, needle in (
        ({"KABAR_ENV": "prod"}, "KABAR_ENV"),  # a typo must not mean "development secrets are fine"
        ({"KABAR_JOB_BACKOFF_BASE": "two"}, "KABAR_JOB_BACKOFF_BASE"),
        ({"KABAR_PORT": "80a"}, "KABAR_PORT"),
        ({"KABAR_SQLITE_SYNCHRONOUS": "sometimes"}, "KABAR_SQLITE_SYNCHRONOUS"),
        ({"KABAR_MAX_UPLOAD_BYTES": str(64 * 1024 * 1024)}, "KABAR_MAX_UPLOAD_BYTES"),  # more than the route takes
        ({"KABAR_MAX_UPLOAD_BYTES": "0"}, "KABAR_MAX_UPLOAD_BYTES"),
    ):
        with pytest.raises(ConfigError, match=needle):
            load_settings(env)
    with pytest.raises(ConfigError, match="KABAR_ENCRYPTION_KEY"):
        load_settings({"KABAR_ENCRYPTION_KEY": "too-short"}).check()
    settings = load_settings({"KABAR_DATABASE_URL": "postgres://u:p@db/kabar"})
    assert settings.database_url == "postgresql+asyncpg://u:p@db/kabar" and not settings.is_sqlite
    assert load_settings({}).is_sqlite and load_settings({}).jobs_in_process


async def test_values_the_database_cannot_store_are_422_and_store_nothing(client, tenant, backend):
    """PostgreSQL refuses NUL characters in text: that is bad input (422, nothing written), not a 500.
    SQLite stores them, and they come back exactly as sent."""
    base = f"/v1/workspaces/{tenant.ws}/contacts"
    response = await client.post(base, json={"phone": "+6281200000991", "name": "Budi\u0000"}, headers=tenant.owner.headers)
    if backend == "postgres":
        body = assert_problem(response, 422, "/validation-error")
        assert "cannot be stored" in body["errors"][0]["message"]
        listed = await client.get(base, params={"q": "6281200000991"}, headers=tenant.owner.headers)
        assert listed.status_code == 200 and listed.json()["data"] == []
    else:
        assert response.status_code == 201, response.text
        assert response.json()["name"] == "Budi\u0000"


async def test_nul_in_query_parameters_is_400_on_every_backend(client, tenant):
    response = await client.get(f"/v1/workspaces/{tenant.ws}/contacts/export.csv?tag=%00", headers=tenant.owner.headers)
    assert "NUL" in assert_problem(response, 400, "/bad-request")["detail"]
    response = await client.get(f"/v1/workspaces/{tenant.ws}/contacts/export.csv?tag=%2500", headers=tenant.owner.headers)
    assert response.status_code == 200, response.text  # an escaped percent sign is not a NUL
