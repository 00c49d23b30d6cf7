"""SMTP delivery with aiosmtplib."""

from __future__ import annotations

from email.message import EmailMessage
from email.utils import make_msgid
from urllib.parse import unquote, urlsplit

import aiosmtplib

from kabar.config import ConfigError, Settings

TIMEOUT_SECONDS = 20.0


def smtp_options(url: str) -> dict[str, object]:
    """``smtp://user:pass@host:587`` (STARTTLS when offered) or ``smtps://…:465`` (TLS first)."""
    parts = urlsplit(url)
    if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
        raise ConfigError("KABAR_SMTP_URL must look like smtp://user:password@host:587 or smtps://host:465")
    implicit_tls = parts.scheme == "smtps"
    return {
        "hostname": parts.hostname,
        "port": parts.port or (465 if implicit_tls else 587),
        "username": unquote(parts.username) if parts.username else None,
        "password": unquote(parts.password) if parts.password else None,
        "use_tls": implicit_tls,
        "start_tls": False if implicit_tls else None,  # None: upgrade when the server offers it
        "timeout": TIMEOUT_SECONDS,
    }


async def deliver(settings: Settings, *, to: str, subject: str, body: str) -> None:
    assert settings.smtp_url
    message = EmailMessage()
    message["From"] = settings.mail_from
    message["To"] = to
    message["Subject"] = subject
    message["Message-ID"] = make_msgid(domain="kabar")
    message.set_content(body)
    await aiosmtplib.send(message, **smtp_options(settings.smtp_url))  # type: ignore[arg-type]
