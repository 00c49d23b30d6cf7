"""Problem details (RFC 9457): the only error shape Kabar's HTTP API returns.

Services raise ``Problem`` (or a helper below); ``kabar.app`` renders it as
``application/problem+json``. ``type`` is a stable URI clients may branch on.
"""

from __future__ import annotations

from typing import Any

PROBLEM_BASE = "https://kabar.dev/problems/"


class Problem(Exception):
    def __init__(
        self,
        status: int,
        slug: str,
        title: str,
        detail: str | None = None,
        *,
        errors: list[dict[str, str]] | None = None,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ):
        super().__init__(detail or title)
        self.status = status
        self.slug = slug
        self.title = title
        self.detail = detail or title
        self.errors = errors
        self.headers = headers or {}
        self.extra = extra or {}

    @property
    def type(self) -> str:
        return PROBLEM_BASE + self.slug

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"type": self.type, "title": self.title, "status": self.status, "detail": self.detail}
        if self.errors is not None:
            body["errors"] = self.errors
        body.update(self.extra)
        return body


def bad_request(detail: str) -> Problem:
    return Problem(400, "bad-request", "Malformed request", detail)


def unauthorized(detail: str = "Missing or invalid credentials") -> Problem:
    return Problem(401, "unauthorized", "Unauthorized", detail, headers={"WWW-Authenticate": "Bearer"})


def forbidden(detail: str = "You are not allowed to do this") -> Problem:
    return Problem(403, "forbidden", "Forbidden", detail)


def not_found(what: str = "Resource") -> Problem:
    return Problem(404, "not-found", "Not found", f"{what} not found")


def conflict(detail: str, slug: str = "conflict", **extra: Any) -> Problem:
    return Problem(409, slug, "Conflict", detail, extra=extra)


def invalid(field: str, message: str) -> Problem:
    """422 for one invalid field; use ``invalid_fields`` for several."""
    return invalid_fields([{"field": field, "message": message}])


def invalid_fields(errors: list[dict[str, str]]) -> Problem:
    detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
    return Problem(422, "validation-error", "Invalid field values", detail, errors=errors)


def too_large(limit: int) -> Problem:
    return Problem(413, "payload-too-large", "Payload too large", f"The body exceeds {limit} bytes")


def unavailable(detail: str = "A dependency is unavailable; nothing was written") -> Problem:
    return Problem(503, "service-unavailable", "Service unavailable", detail, headers={"Retry-After": "1"})
