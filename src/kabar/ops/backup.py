"""Backups: SQLite's online backup API, or pg_dump/pg_restore for PostgreSQL.

A SQLite backup is taken while Kabar runs (the backup API copies a consistent snapshot page by
page without blocking writers for long). A PostgreSQL backup is pg_dump's custom format.
Uploaded and downloaded media live in KABAR_DATA_DIR and are archived beside the database.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import tarfile
import tempfile
from pathlib import Path

from sqlalchemy.engine import make_url


class BackupError(RuntimeError):
    pass


def _sqlite_path(database_url: str) -> Path:
    path = make_url(database_url).database
    if not path:
        raise BackupError("in-memory SQLite databases cannot be backed up")
    return Path(path)


def _pg_args(database_url: str) -> tuple[list[str], dict[str, str]]:
    url = make_url(database_url)
    args = ["-h", url.host or "127.0.0.1", "-p", str(url.port or 5432), "-U", url.username or "postgres"]
    env = dict(os.environ)
    if url.password:
        env["PGPASSWORD"] = url.password  # passed by environment, never on the command line
    return args + ["-d", url.database or "postgres"], env


def backup(database_url: str, data_dir: Path, out: Path) -> Path:
    """Write a ``.tar.gz`` holding ``database.sqlite3`` or ``database.pgdump`` and ``data/``."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        staging = Path(tmp)
        if database_url.startswith("sqlite"):
            source = sqlite3.connect(_sqlite_path(database_url))
            target = sqlite3.connect(staging / "database.sqlite3")
            try:
                source.backup(target)
            finally:
                target.close()
                source.close()
        else:
            if shutil.which("pg_dump") is None:
                raise BackupError("pg_dump is not installed (Debian: postgresql-client)")
            args, env = _pg_args(database_url)
            result = subprocess.run(["pg_dump", "--format=custom", "--no-owner", "-f", str(staging / "database.pgdump"), *args], env=env, capture_output=True, text=True)
            if result.returncode != 0:
                raise BackupError(f"pg_dump failed: {result.stderr.strip()[:500]}")
        with tarfile.open(out, "w:gz") as archive:
            for item in staging.iterdir():
                archive.add(item, arcname=item.name)
            if data_dir.exists():
                archive.add(data_dir, arcname="data")
    return out


def restore(database_url: str, data_dir: Path, archive_path: Path) -> None:
    """Replace the database (and media) with a backup's contents. Stop Kabar first."""
    if not archive_path.exists():
        raise BackupError(f"no such backup: {archive_path}")
    with tempfile.TemporaryDirectory() as tmp:
        staging = Path(tmp)
        with tarfile.open(archive_path, "r:gz") as archive:
            archive.extractall(staging, filter="data")
        if database_url.startswith("sqlite"):
            snapshot = staging / "database.sqlite3"
            if not snapshot.exists():
                raise BackupError("this backup holds no SQLite database")
            target_path = _sqlite_path(database_url)
            source = sqlite3.connect(snapshot)
            target = sqlite3.connect(target_path)
            try:
                source.backup(target)  # page-level copy into the live file, WAL included
            finally:
                target.close()
                source.close()
        else:
            dump = staging / "database.pgdump"
            if not dump.exists():
                raise BackupError("this backup holds no PostgreSQL dump")
            if shutil.which("pg_restore") is None:
                raise BackupError("pg_restore is not installed (Debian: postgresql-client)")
            args, env = _pg_args(database_url)
            result = subprocess.run(["pg_restore", "--clean", "--if-exists", "--no-owner", "--single-transaction", *args, str(dump)], env=env, capture_output=True, text=True)
            if result.returncode != 0:
                raise BackupError(f"pg_restore failed: {result.stderr.strip()[:500]}")
        media = staging / "data"
        if media.exists():
            if data_dir.exists():
                shutil.rmtree(data_dir)
            shutil.copytree(media, data_dir)
