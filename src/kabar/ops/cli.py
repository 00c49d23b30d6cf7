"""Operator commands: backup and restore."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import typer

from kabar.cli import app, console, fail, settings_or_exit
from kabar.ops.backup import BackupError, backup, restore


@app.command("backup")
def backup_command(out: Path = typer.Option(None, help="Archive to write (default: backups/kabar-<time>.tar.gz).")) -> None:
    """Back up the database (online for SQLite, pg_dump for PostgreSQL) and media."""
    settings = settings_or_exit()
    target = out or Path("backups") / f"kabar-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}.tar.gz"
    try:
        path = backup(settings.database_url, Path(settings.data_dir), target)
    except BackupError as exc:
        fail(str(exc))
    console.print(f"[green]Backup written:[/green] {path}")
    print(path)


@app.command("restore")
def restore_command(
    archive: Path = typer.Argument(..., help="A backup archive from `kabar backup`."),
    yes: bool = typer.Option(False, "--yes", help="Do not ask before replacing the current data."),
) -> None:
    """Replace the database and media with a backup. Stop `kabar serve` and workers first."""
    settings = settings_or_exit()
    if not yes and not typer.confirm(f"Replace the data in {settings.database_url.split('@')[-1]} with {archive}?"):
        raise typer.Exit(1)
    try:
        restore(settings.database_url, Path(settings.data_dir), archive)
    except BackupError as exc:
        fail(str(exc))
    console.print("[green]Restored.[/green] Run `kabar migrate` if the backup is from an older version.")
