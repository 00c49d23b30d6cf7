"""Queue a mail in the caller's unit of work; build the links it carries."""

from __future__ import annotations

from urllib.parse import urlencode

from kabar.config import Settings
from kabar.db.uow import UnitOfWork
from kabar.mail import repository as repo

SEND = "mail.send"


def link(settings: Settings, path: str, **query: str) -> str:
    """An absolute link to a Kabar page, for a mail (``KABAR_PUBLIC_URL`` + path)."""
    return f"{settings.public_url}{path}" + (f"?{urlencode(query)}" if query else "")


def queue_mail(uow: UnitOfWork, *, to: str, subject: str, body: str, kind: str) -> str:
    """Write the mail with the unit of work; with SMTP configured a job sends it after commit."""
    smtp = bool(uow.db.settings.smtp_url)
    mail_id = repo.insert_mail(
        uow.conn, to=to.strip().lower(), subject=subject, body=body, kind=kind, status="queued" if smtp else "outbox", now=uow.now
    )
    if smtp:
        uow.enqueue(SEND, {"mail_id": mail_id})
    return mail_id
