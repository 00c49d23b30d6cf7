"""`kabar ari …` commands; importing this module also registers ARI's demo data for `kabar seed`."""

from __future__ import annotations

import typer

from kabar.ari import hooks  # noqa: F401 - registers the demo seed hook
from kabar.cli import app, console, run_with_runtime

ari_app = typer.Typer(help="The AI receptionist.", no_args_is_help=True)
app.add_typer(ari_app, name="ari")


@ari_app.command("reminders")
def reminders() -> None:
    """Send the appointment reminders due within the hour now (the worker does this every 5 minutes)."""
    from kabar.ari.service import send_reminders

    sent = run_with_runtime(send_reminders)
    console.print(f"{sent} reminder(s) sent.")
