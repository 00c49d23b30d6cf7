"""``kabar bench``: the project's benchmark command (see kabar.bench.runner)."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from kabar.bench.runner import DEFAULT_RATES, WORKLOADS, BenchConfig, config_summary, run
from kabar.cli import app

console = Console(stderr=True)


@app.command()
def bench(
    db: str = typer.Option("sqlite", help="sqlite or postgres (a fresh database either way)."),
    url: str = typer.Option(None, help="Target a running Kabar instead of starting one (it must use KABAR_DATABASE_URL)."),
    scale: int = typer.Option(100_000, help="Contacts in total (one conversation each), 10k to 1M."),
    workspaces: int = typer.Option(3, help="Workspaces the contacts are spread over."),
    messages: int = typer.Option(10, help="Messages per conversation."),
    duration: float = typer.Option(10.0, help="Seconds per fixed-rate workload."),
    max_duration: float = typer.Option(5.0, help="Seconds per maximum-throughput run."),
    workload: list[str] = typer.Option(list(WORKLOADS), help="Workloads to run (repeat the option)."),
    rate: list[str] = typer.Option([], help="Override an offered rate, e.g. --rate by-phone=2000."),
    sockets: str = typer.Option("1,1000", help="Realtime subscriber counts to measure."),
    out: Path = typer.Option(Path("bench-results"), help="Directory for bench.json, bench.md, bench.png."),
    smoke: bool = typer.Option(False, help="Seconds-long run at tiny scale (CI)."),
) -> None:
    """Benchmark Kabar on a realistic dataset with an open-loop load generator."""
    if db not in ("sqlite", "postgres"):
        raise typer.BadParameter("--db must be sqlite or postgres")
    unknown = set(workload) - set(WORKLOADS)
    if unknown:
        raise typer.BadParameter(f"unknown workloads: {', '.join(sorted(unknown))}")
    rates = dict(DEFAULT_RATES)
    for item in rate:
        name, _, value = item.partition("=")
        if name not in rates or not value:
            raise typer.BadParameter(f"--rate wants NAME=VALUE with NAME in {', '.join(rates)}")
        rates[name] = float(value)
    config = BenchConfig(
        db=db, url=url, scale=scale, workspaces=workspaces, messages_per_conversation=messages,
        duration=duration, max_duration=max_duration, workloads=tuple(workload), rates=rates,
        sockets=tuple(int(s) for s in sockets.split(",") if s.strip()), out=out,
    )
    if smoke:
        config.scale, config.workspaces, config.messages_per_conversation = 600, 2, 3
        config.duration, config.max_duration, config.warmup = 1.0, 1.0, 0.3
        config.sockets = (1, 5)
        config.rates = {k: min(v, 100) for k, v in config.rates.items()}

    with Progress(TextColumn("seeding"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), console=console) as progress:
        task = progress.add_task("seed", total=config.scale)

        def progress_factory(total: int):  # noqa: ANN202
            progress.update(task, total=total)
            return lambda _kind, n: progress.advance(task, n)

        def log(message: str) -> None:
            progress.console.print(f"[dim]{message}[/dim]")

        results, extras = run(config, log, progress_factory)
    from kabar.bench.report import print_table, write_reports

    command = "kabar " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    print_table(results, extras, Console())
    paths = write_reports(out, command, config_summary(config), results, extras)
    console.print(f"Reports: {paths['markdown']}, {paths['json']}, {paths['chart']}")
    errors = sum(r["errors"] for r in results if not r["name"].endswith("-warmup"))
    if errors:
        console.print(f"[red]{errors} requests failed validation or errored; see the table.[/red]")
        raise typer.Exit(1)
