"""Benchmark output: a terminal table, JSON, a Markdown report and a PNG latency chart."""

from __future__ import annotations

import json
import platform
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

COLUMNS = ["workload", "offered/s", "achieved/s", "p50 ms", "p95 ms", "p99 ms", "max ms", "ok", "errors"]


def _row(s: dict[str, Any]) -> list[str]:
    offered = "max" if s["offered_rate"] is None else f"{s['offered_rate']:.0f}"
    return [
        s["name"], offered, f"{s['achieved_rate']:.0f}", f"{s['p50_ms']:.2f}", f"{s['p95_ms']:.2f}",
        f"{s['p99_ms']:.2f}", f"{s['max_ms']:.2f}", str(s["ok"]), str(s["errors"]),
    ]


def machine() -> dict[str, Any]:
    import os

    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "processor": platform.processor() or platform.machine(),
    }


def print_table(results: list[dict[str, Any]], extras: dict[str, Any], console: Console | None = None) -> None:
    console = console or Console()
    table = Table(*COLUMNS, title="kabar bench")
    for s in results:
        table.add_row(*_row(s))
    console.print(table)
    for key, value in extras.items():
        console.print(f"{key}: {value}")


def write_reports(out_dir: Path, command: str, config: dict[str, Any], results: list[dict[str, Any]], extras: dict[str, Any]) -> dict[str, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    document = {"generated_at": stamp, "command": command, "machine": machine(), "config": config, "results": results, "extras": extras}
    paths = {"json": out_dir / "bench.json", "markdown": out_dir / "bench.md", "chart": out_dir / "bench.png"}
    paths["json"].write_text(json.dumps(document, indent=2, default=str))
    lines = [
        f"# kabar bench — {stamp}",
        "",
        f"Command: `{command}`  ",
        f"Machine: {document['machine']['cpus']} CPUs, {document['machine']['platform']}, Python {document['machine']['python']}  ",
        f"Config: {', '.join(f'{k}={v}' for k, v in config.items())}",
        "",
        "| " + " | ".join(COLUMNS) + " |",
        "|" + "---|" * len(COLUMNS),
    ]
    lines += ["| " + " | ".join(_row(s)) + " |" for s in results]
    lines.append("")
    for key, value in extras.items():
        lines.append(f"- **{key}**: {value}")
    lines += ["", "![latency chart](bench.png)", ""]
    paths["markdown"].write_text("\n".join(lines))
    draw_chart(paths["chart"], results)
    return paths


def draw_chart(path: Path, results: list[dict[str, Any]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [s["name"] for s in results]
    fig, ax = plt.subplots(figsize=(max(6, len(names) * 1.1), 4.5))
    width = 0.27
    xs = range(len(names))
    for offset, key, label in ((-width, "p50_ms", "P50"), (0, "p95_ms", "P95"), (width, "p99_ms", "P99")):
        ax.bar([x + offset for x in xs], [s[key] for s in results], width, label=label)
    ax.set_xticks(list(xs))
    ax.set_xticklabels(names, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("latency (ms)")
    ax.set_yscale("log")
    ax.set_title("kabar bench latency (open loop, from scheduled send time)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
