"""``kabar webhooks list|replay``: look at stored provider webhooks and apply them again."""

from __future__ import annotations

from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from kabar.cli import app, console, fail, run_with_runtime

webhooks_app = typer.Typer(help="Inbound provider webhooks: list stored receipts, replay them.", no_args_is_help=True)
app.add_typer(webhooks_app, name="webhooks")


@webhooks_app.command("list")
def list_receipts(
    failed: bool = typer.Option(False, "--failed", help="Only receipts that could not be applied (failed or unrouted)."),
    status: str = typer.Option(None, help="applied, ignored, failed, unrouted, truncated or routed."),
    workspace: str = typer.Option(None, help="Only this workspace id."),
    limit: int = typer.Option(50),
) -> None:
    """Stored webhook receipts, newest first."""
    from kabar.ingest import repository as repo

    statuses = ("failed", "unrouted") if failed else ((status,) if status else None)
    rows = run_with_runtime(lambda rt: rt.db.read(repo.list_receipts, statuses=statuses, workspace_id=workspace, limit=limit))
    table = Table("id", "workspace", "provider", "event", "status", "attempts", "received_at", "error")
    for row in rows:
        table.add_row(row.id, row.workspace_id or "-", row.provider, row.event_type or "", row.status, str(row.attempts),
                      str(row.received_at), (row.error or "")[:80])
    Console().print(table)


@webhooks_app.command("replay")
def replay(
    ids: list[str] = typer.Option(None, "--id", help="Receipt id to apply again (repeatable)."),
    failed: bool = typer.Option(False, "--failed", help="Every failed and unrouted receipt."),
    limit: int = typer.Option(10_000, help="At most this many receipts with --failed."),
) -> None:
    """Apply stored receipts again (idempotent: what was applied before is not applied twice)."""
    from kabar.ingest import repository as repo
    from kabar.ingest.service import replay as replay_one

    if not ids and not failed:
        fail("Nothing to do: pass --id ID or --failed.")

    async def main(runtime: Any) -> dict[str, str]:
        targets = list(ids or [])
        if failed:
            rows = await runtime.db.read(repo.list_receipts, statuses=("failed", "unrouted"), workspace_id=None, limit=limit)
            targets += [row.id for row in reversed(rows)]  # oldest first
        results: dict[str, str] = {}
        for receipt_id in targets:
            try:
                results[receipt_id] = await replay_one(runtime, receipt_id)
            except LookupError:
                results[receipt_id] = "not found"
        return results

    results = run_with_runtime(main)
    for receipt_id, outcome in results.items():
        print(f"{receipt_id} {outcome}")
    bad = sum(1 for outcome in results.values() if outcome in ("failed", "unrouted", "truncated", "not found"))
    console.print(f"{len(results)} replayed, {bad} still not applied.")
    if bad:
        raise typer.Exit(1)
