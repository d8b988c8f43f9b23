"""The embedded engine's files beside each database: its write-ahead log, the temporary copy a
clone is built in, and removing them."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from hnpipe.config import process_alive


def sql_string(path: Path) -> str:
    return "'" + str(path).replace("'", "''") + "'"


def wal_path(path: Path) -> Path:
    return path.with_name(path.name + ".wal")


def remove_file(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.remove(path)


def remove_database_files(path: Path) -> None:
    remove_file(path)
    remove_file(wal_path(path))


def remove_stale_temporaries(directory: Path) -> list[Path]:
    """Clones' temporary copies (`.<DATABASE>.duckdb.<pid>.tmp`) whose process is gone: a
    SIGKILL (nothing runs then) leaves them; SIGTERM unwinds and removes its own."""
    removed = []
    for leftover in directory.glob(".*.duckdb.*.tmp"):
        pid = leftover.name.rsplit(".", 2)[-2]
        if pid.isdigit() and not process_alive(int(pid)):
            remove_database_files(leftover)
            removed.append(leftover)
    return removed
