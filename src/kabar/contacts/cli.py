"""``kabar contacts …``: bulk import from the command line (the same service as the HTTP import)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from sqlalchemy import Connection, or_, select

from kabar.auth.permissions import Role
from kabar.auth.scope import Principal, Scope
from kabar.cli import app, console, fail, run_with_runtime
from kabar.contacts import csv_io, service
from kabar.db import tables as t
from kabar.errors import Problem

contacts_app = typer.Typer(help="Manage contacts.", no_args_is_help=True)
app.add_typer(contacts_app, name="contacts")

SHOW_PROBLEM_ROWS = 50


def _operator_scope(conn: Connection, workspace: str) -> Scope | None:
    """The operator at the console acts as the workspace's owner."""
    row = conn.execute(
        select(t.workspaces.c.id, t.workspaces.c.owner_id).where(or_(t.workspaces.c.id == workspace, t.workspaces.c.slug == workspace))
    ).first()
    if row is None:
        return None
    return Scope(row.id, Role.OWNER, Principal("session", user_id=row.owner_id))


@contacts_app.command("import")
def import_command(
    file: Path = typer.Argument(..., exists=True, dir_okay=False, readable=True, help="A contacts CSV (see /v1/contacts/import-template.csv)."),
    workspace: str = typer.Option(..., "--workspace", "-w", help="Workspace id or slug."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Only report what would be created and updated."),
) -> None:
    """Import contacts from a CSV file, deduplicating on the canonical phone number."""
    try:
        rows = csv_io.read(file.read_bytes())
    except Problem as exc:
        fail(f"{file}: {exc.detail}")
    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()]
    with Progress(*columns, console=console, transient=False) as progress:
        tasks = {
            "check": progress.add_task("Checking rows", total=len(rows)),
            "write": progress.add_task("Writing", total=None, visible=not dry_run),
        }

        def on_progress(stage: str, done: int, total: int) -> None:
            progress.update(tasks[stage], completed=done, total=total)

        async def main(runtime: Any) -> Any:
            ctx = await runtime.db.read(_operator_scope, workspace)
            if ctx is None:
                return None
            if dry_run:
                return await runtime.db.read(service.preview_import, ctx, rows, on_progress)
            return await runtime.db.transaction(service.commit_import, ctx, rows, on_progress)

        result = run_with_runtime(main)
    if result is None:
        fail(f"No workspace with id or slug {workspace!r}")
    would = "Dry run: would create {}, update {}" if dry_run else "Imported: created {}, updated {}"
    print(
        would.format(result.created, result.updated) + f" ({result.unchanged} unchanged); "
        f"{result.duplicates_in_file} duplicate, {result.invalid_rows} invalid of {result.total_rows} rows."
    )
    problems = [row for row in result.rows if row.status in ("duplicate", "invalid")]
    for row in problems[:SHOW_PROBLEM_ROWS]:
        reasons = "; ".join(f"{e['field']}: {e['message']}" for e in row.errors)
        print(f"  row {row.row} (line {row.line}) {row.status}: {reasons}")
    if len(problems) > SHOW_PROBLEM_ROWS:
        print(f"  … and {len(problems) - SHOW_PROBLEM_ROWS} more")
