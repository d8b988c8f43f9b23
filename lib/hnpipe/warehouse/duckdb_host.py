"""One in-memory DuckDB instance per process that the embedded engine's files are attached to.

Each operation ATTACHes its file (alias: the database name, so `current_database()` is what the
write guard expects) and the last user of it in this process DETACHes it, which releases
DuckDB's file lock as closing a connection did: other processes (JupyterLab, a run's other
kernels) may take the file in between. Why a host rather than `duckdb.connect(file)` per
operation: that builds a whole database instance each time (docs/decisions.md).

Within the process the host is the only way to a file: fcntl locks do not conflict inside one
process, so a second instance on the same file could overwrite the first's blocks (DuckDB 2
refuses one, "Unique file handle conflict", at once rather than waiting). Users of the same file
in the same mode share one attachment (counted per thread); any other request for the name or
the file waits on a condition for its users to finish, bounded by the caller, and is refused at
once when the asking thread is one of those users (it would wait for itself).
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from hnpipe.environments import quote_identifier as _q
from hnpipe.errors import WarehouseError
from hnpipe.warehouse.duckdb_files import MEMORY_LIMIT, sql_string


class HeldInProcess(Exception):
    """The name is in use by this process's other threads in a way this request cannot share;
    the text says by whom, as duckdb_locks.lock_holder does for another process."""


@dataclass
class _Attachment:
    path: str
    mode: str  # "read", "write" or "exclusive" (never shared)
    users: Counter = field(default_factory=Counter)  # thread id -> open count


class Host:
    """The instance, what is attached to it and by whom. Use `current_host()`, not this class."""

    def __init__(self, temp_directory: str) -> None:
        self.pid = os.getpid()
        # Spills go beside the first file attached, where a connection to it spilled before.
        self._con = duckdb.connect(":memory:", config={"memory_limit": MEMORY_LIMIT, "temp_directory": temp_directory})
        self._changed = threading.Condition()
        self._attached: dict[str, _Attachment] = {}  # alias (case-folded, as DuckDB compares) -> attachment

    def attach(self, path: Path, mode: str, wait_s: float, alias: str | None = None) -> bool:
        """Attach `path` as `alias` (default: its stem) for this thread, or share it; True when
        this call attached it (the caller checks a freshly opened file). Waits up to `wait_s`
        for conflicting users in this process (then HeldInProcess); DuckDB's errors (another
        process's lock, a damaged file) pass through with nothing left attached."""
        alias = alias or path.stem
        key, me, where = alias.casefold(), threading.get_ident(), os.path.abspath(path)
        deadline = time.monotonic() + wait_s
        with self._changed:
            while True:
                held = self._attached.get(key) or next(  # or the file under another name
                    (other for other in self._attached.values() if other.path == where), None)
                if held is None:
                    break
                if held is self._attached.get(key) and held.path == where and held.mode == mode != "exclusive":
                    held.users[me] += 1
                    return False
                if me in held.users:
                    raise WarehouseError(f"cannot open {path} ({mode}): this thread holds {held.path} as "
                                         f"{alias} ({held.mode}) already, and would wait for itself")
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise HeldInProcess(f"another thread of this process (PID {self.pid}, {held.mode})")
                self._changed.wait(remaining)
            # Counted before, uncounted on any failure (KeyboardInterrupt too): never attached
            # without a user, nor a user without the attachment.
            self._attached[key] = _Attachment(where, mode, Counter({me: 1}))
            try:
                self._con.execute(f"ATTACH {sql_string(path)} AS {_q(alias)}" + (" (READ_ONLY)" if mode == "read" else ""))
            except BaseException:
                del self._attached[key]
                with contextlib.suppress(duckdb.Error):
                    self._con.execute(f"DETACH DATABASE IF EXISTS {_q(alias)}")
                self._changed.notify_all()
                raise
            return True

    def detach(self, path: Path, alias: str | None = None) -> None:
        """This thread is done with `alias`; the last user DETACHes it (DuckDB checkpoints
        a written file then, and lets go of its lock)."""
        alias = alias or path.stem
        key, me = alias.casefold(), threading.get_ident()
        with self._changed:
            held = self._attached[key]
            held.users[me] -= 1
            if held.users[me] <= 0:
                del held.users[me]
            if held.users:
                return
            del self._attached[key]  # first: a failed DETACH must not leave the name taken
            try:
                self._con.execute(f"DETACH {_q(alias)}")
            finally:
                self._changed.notify_all()

    def cursor(self, alias: str | None = None) -> duckdb.DuckDBPyConnection:
        """A connection of its own (transaction, registered frames, USE), at `alias` if given."""
        with self._changed:
            con = self._con.cursor()
        if alias is not None:
            try:
                con.execute(f"USE {_q(alias)}")
            except BaseException:
                con.close()
                raise
        return con

    def attached(self) -> dict[str, tuple[str, str, int]]:
        """alias -> (file, mode, users): what this process holds, for tests and diagnostics."""
        with self._changed:
            return {key: (held.path, held.mode, sum(held.users.values())) for key, held in self._attached.items()}


_host: Host | None = None
_creating = threading.Lock()


def current_host(first_path: Path) -> Host:
    """This process's host, made on first use (spilling beside `first_path`); a forked child
    makes its own."""
    global _host
    host = _host
    if host is not None:
        return host
    with _creating:
        if _host is None:
            _host = Host(f"{first_path}.tmp")
        return _host


def _after_fork_in_child() -> None:
    """A forked child never uses its parent's instance and never frees it: the instance's threads
    were not forked, and destroying it (at the child's exit too: sys.exit) crashed the child or
    checkpointed files the parent was still writing. So: one reference the interpreter's
    teardown never drops, and a host of the child's own on first use."""
    global _creating, _host
    _creating = threading.Lock()  # a parent thread may have held it at the fork
    if _host is not None:
        import ctypes  # here: only a child forked from a process with an instance needs it

        ctypes.pythonapi.Py_IncRef(ctypes.py_object(_host._con))
        _host = None


os.register_at_fork(after_in_child=_after_fork_in_child)
