"""``kabar mail list``: the outbox (where mail waits when no SMTP server is configured)."""

from __future__ import annotations

from typing import Any

import typer
from rich.console import Console

from kabar.cli import app, run_with_runtime

mail_app = typer.Typer(help="Mail Kabar sends (invitations, password resets, verification links).", no_args_is_help=True)
app.add_typer(mail_app, name="mail")


@mail_app.command("list")
def mail_list(
    to: str = typer.Option(None, help="Only mail to this address."),
    limit: int = typer.Option(20, help="Newest first, at most this many."),
) -> None:
    """Print the newest mails with their bodies (links included) and delivery status."""
    from kabar.mail.repository import recent

    rows = run_with_runtime(lambda rt: rt.db.read(lambda conn: recent(conn, to=to, limit=limit)))
    out = Console()
    if not rows:
        out.print("No mail.")
        return
    for row in rows:
        out.rule(f"{row.created_at:%Y-%m-%d %H:%M:%S} · {row.status}")
        out.print(f"To: {row.to_addr}\nSubject: {row.subject}\n", markup=False, highlight=False)
        body: Any = row.body if row.body is not None else "(body cleared after delivery)"
        out.print(body, markup=False, highlight=False, soft_wrap=True)
        if row.last_error:
            out.print(f"Last error: {row.last_error}", markup=False, highlight=False)
