"""Auth jobs: the password-reset mail (looked up off the request, see ``request_password_reset``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from kabar.auth import service
from kabar.jobs.registry import Job, handler

if TYPE_CHECKING:
    from kabar.runtime import Runtime


@handler(service.PASSWORD_RESET_JOB)
async def password_reset_mail(runtime: Runtime, job: Job) -> None:
    await runtime.db.transaction(service.mail_password_reset, str(job.payload["email"]))
