"""The ``mail.send`` job: deliver one outbox mail over SMTP."""

from __future__ import annotations

from typing import TYPE_CHECKING

import aiosmtplib

from kabar.jobs.registry import Job, PermanentFailure, handler
from kabar.mail import repository as repo
from kabar.mail.sender import deliver
from kabar.mail.service import SEND

if TYPE_CHECKING:
    from kabar.runtime import Runtime


@handler(SEND)
async def send(runtime: Runtime, job: Job) -> None:
    mail_id = str(job.payload["mail_id"])
    mail = await runtime.db.read(repo.mail_by_id, mail_id)
    if mail is None or mail.status != "queued" or not runtime.settings.smtp_url:
        return  # sent already (a retried job), or nothing to send it with
    try:
        await deliver(runtime.settings, to=mail.to_addr, subject=mail.subject, body=mail.body or "")
    except aiosmtplib.SMTPResponseException as exc:
        # 5xx: the server refuses this mail for good (unknown recipient, policy); 4xx: try again.
        final = exc.code >= 500 or job.attempts >= job.max_attempts
        await runtime.db.transaction(lambda uow: repo.mark_error(uow.conn, mail_id, f"{exc.code} {exc.message}", final=final))
        if exc.code >= 500:
            raise PermanentFailure(f"SMTP {exc.code}") from exc
        raise
    except Exception as exc:
        final = job.attempts >= job.max_attempts
        await runtime.db.transaction(lambda uow: repo.mark_error(uow.conn, mail_id, f"{type(exc).__name__}: {exc}", final=final))
        raise
    await runtime.db.transaction(lambda uow: repo.mark_sent(uow.conn, mail_id, uow.now))
