"""The embedded engine's files: each database's write-ahead log, the temporary copy a clone is
built in, removing them, and telling a damaged file (one that does not open, is cut short, or has
a table that cannot be read whole) before anything is written to it."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Callable, TypeVar

import duckdb

from hnpipe.config import process_alive
from hnpipe.environments import Target
from hnpipe.environments import quote_identifier as _q
from hnpipe.errors import WarehouseError, one_line

T = TypeVar("T")


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


# DuckDB's file: three 4 KiB headers, then its blocks (PRAGMA database_size).
_HEADER_BYTES = 3 * 4096


def damaged(path: Path, reason: str) -> WarehouseError:
    """The one error for a database file that cannot be read whole, with how to recover."""
    local = path.stem == "LOCAL"
    return WarehouseError(
        f"{path} is damaged ({reason}); nothing was written to it. Restore it from a copy"
        + (", or (a local run's database) delete it and run again: hnpipe rebuilds it" if local else
           "; do not delete it unless you can rebuild every table in it")
    )


MEMORY_LIMIT = "256MB"  # the process's DuckDB instance evicts and spills past it: memory flat in N (docs/performance.md)


def open_intact(path: Path, open_file: Callable[[], T]) -> T:
    """`open_file()` (which attaches `path`), with DuckDB's refusals of a damaged file said as
    `damaged`."""
    try:
        return open_file()
    except duckdb.Error as exc:
        if "Could not set lock" in str(exc):
            raise  # _retry_locked waits for the other process
        if isinstance(exc, (duckdb.SerializationException, duckdb.InternalException)) or "orrupt" in str(exc) \
                or "not a valid DuckDB database" in str(exc):
            raise damaged(path, f"it does not open: {one_line(exc)}") from None
        raise


def check_length(con: duckdb.DuckDBPyConnection, path: Path) -> None:
    """A file shorter than the blocks its header lists was cut short (a full disk, a copy that
    stopped): its tables would fail later, half-way through a run. Cheap: one pragma, one stat."""
    try:
        rows = con.execute("PRAGMA database_size").fetchall()
    except duckdb.Error:
        return  # nothing to compare with; reads still fail loudly
    for name, _, block_size, _total, used_blocks, *_ in rows:
        if name != path.stem or not block_size:
            continue
        # Free blocks at the end need not be on disk; the used ones must be (a lower bound:
        # used blocks may sit anywhere below the highest).
        needed = _HEADER_BYTES + int(used_blocks) * int(block_size)
        actual = path.stat().st_size
        if actual < needed:
            raise damaged(path, f"{actual:,} bytes on disk, but its blocks need {needed:,}: truncated")


def check_readable(con: duckdb.DuckDBPyConnection, target: Target, table: str, path: Path) -> None:
    """Read every value of `table` (hashing whole rows), so a damaged block shows now."""
    try:
        con.execute(f"SELECT COUNT(*), bit_xor(hash(t)) FROM {_q(target.database)}."
                    f"{_q(target.schema)}.{_q(table)} AS t").fetchall()
    except duckdb.Error as exc:
        raise damaged(path, f"{target}.{table} cannot be read whole: {one_line(exc)}") from None
