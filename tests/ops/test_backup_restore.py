"""`kabar backup` / `kabar restore` round trip on both backends, through the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import create_database


def kabar(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "kabar", *args], env={**os.environ, **env}, capture_output=True, text=True, timeout=120)


def test_backup_then_restore_brings_back_exactly_the_backed_up_state(backend: str, tmp_path: Path):
    url = create_database(backend, tmp_path, "backup")
    data_dir = tmp_path / "data"
    (data_dir / "uploads").mkdir(parents=True)
    (data_dir / "uploads" / "photo.jpg").write_bytes(b"\xff\xd8 original")
    env = {"KABAR_DATABASE_URL": url, "KABAR_DATA_DIR": str(data_dir)}

    kept = kabar(env, "user", "create", "--email", "kept@example.test", "--password", "password-123")
    assert kept.returncode == 0, kept.stderr
    archive = tmp_path / "b.tar.gz"
    made = kabar(env, "backup", "--out", str(archive))
    assert made.returncode == 0, made.stderr
    assert archive.exists() and archive.stat().st_size > 0

    # Changes after the backup: a new user and changed media.
    later = kabar(env, "user", "create", "--email", "later@example.test", "--password", "password-123")
    assert later.returncode == 0, later.stderr
    (data_dir / "uploads" / "photo.jpg").write_bytes(b"changed")

    restored = kabar(env, "restore", str(archive), "--yes")
    assert restored.returncode == 0, restored.stderr

    # The backed-up user exists (a second create conflicts); the later one is gone (create works).
    again = kabar(env, "user", "create", "--email", "kept@example.test", "--password", "password-123")
    assert again.returncode != 0 and "already exists" in (again.stderr + again.stdout)
    recreated = kabar(env, "user", "create", "--email", "later@example.test", "--password", "password-123")
    assert recreated.returncode == 0, recreated.stderr
    assert (data_dir / "uploads" / "photo.jpg").read_bytes() == b"\xff\xd8 original"


def test_restore_of_a_missing_archive_fails_clearly(tmp_path: Path):
    url = f"sqlite:///{tmp_path / 'x.db'}"
    result = kabar({"KABAR_DATABASE_URL": url}, "restore", str(tmp_path / "nope.tar.gz"), "--yes")
    assert result.returncode != 0
    assert "no such backup" in result.stderr
