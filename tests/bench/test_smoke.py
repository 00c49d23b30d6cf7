"""A seconds-long `kabar bench --smoke` run: every workload answers, every response validates."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


def test_bench_smoke_run_produces_reports_without_errors(tmp_path: Path):
    out = tmp_path / "bench"
    result = subprocess.run(
        [sys.executable, "-m", "kabar", "bench", "--smoke", "--out", str(out)],
        env={**os.environ, "KABAR_LOG_LEVEL": "WARNING"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads((out / "bench.json").read_text())
    names = {r["name"] for r in report["results"]}
    assert {"by-phone", "list", "thread", "ingest", "send", "floor"} <= names
    for row in report["results"]:
        assert row["errors"] == 0, row
        assert row["ok"] > 0, row
    assert (out / "bench.md").read_text().startswith("# kabar bench")
    assert (out / "bench.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
