"""Waiting for a DuckDB file another process holds: once per run, said at once, with who.

DuckDB lets one process write a file. When another holds it (a notebook kernel, another
run), hnpipe retries for `HNPIPE_LOCK_TIMEOUT_S`. The first conflict of a run starts that
budget and every later operation of the run on the file shares it, so a file that stays
locked fails the run once; what the run does after giving up (recording the failure) fails
at once instead of waiting again. A wait longer than a moment is announced, naming the file
and its holder ('a notebook kernel (PID n)' when /proc says so). This process's other threads
are waited for under the same budget (hnpipe.warehouse.duckdb_host).
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path
from typing import Callable, TypeVar

import duckdb

from hnpipe.errors import WarehouseError, WarehouseLockedError, one_line
from hnpipe.warehouse.duckdb_host import HeldInProcess

T = TypeVar("T")
# A wait is announced once it lasts this long: a run's own kernels (COMMENTS and STORIES
# build at once) hold the file for tens of ms, which is not worth a line.
ANNOUNCE_AFTER_S = 0.5


def lock_timeout(value: float | None) -> float:
    """Seconds to wait for a locked file: `value`, else HNPIPE_LOCK_TIMEOUT_S, else 30."""
    source = "lock_timeout_s"
    if value is None:
        source, value = "HNPIPE_LOCK_TIMEOUT_S", os.environ.get("HNPIPE_LOCK_TIMEOUT_S", "30")
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        seconds = -1.0
    if not seconds >= 0 or seconds == float("inf"):
        raise WarehouseError(f"invalid {source} {value!r}: use a number of seconds >= 0, e.g. 30")
    return seconds


def lock_holder(message: str) -> str:
    """Who holds the file, from DuckDB's lock error ('... held in <exe> (PID n) ...'): 'a
    notebook kernel (PID n)' when /proc says so, else the command, else 'another process'."""
    found = re.search(r"\(PID (\d+)\)", message)
    if not found:
        return "another process"
    pid = found.group(1)
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:  # not Linux, or the process is gone
        return f"another process (PID {pid})"
    command = " ".join(" ".join(argv).split())  # one line, whatever the arguments hold
    if "ipykernel" in command:
        return f"a notebook kernel (PID {pid})"
    if "hnpipe" in command:
        return f"hnpipe (PID {pid}: {command[:60]})"
    return f"PID {pid} ({command[:60]})"


class LockWaits:
    """One run's waits for locked files: `retry` each open, `begin_run` for the next run."""

    def __init__(self, timeout_s: float, announce: Callable[[str], None]) -> None:
        self.timeout_s, self.announce = timeout_s, announce
        self.deadlines: dict[Path, float] = {}
        self.failure: WarehouseLockedError | None = None  # the run's first give-up

    def begin_run(self) -> None:
        self.deadlines.clear()
        self.failure = None

    def retry(self, path: Path, open_file: Callable[[float], T]) -> T:
        """Run `open_file(wait_s)`, retrying while another process holds `path`'s lock.
        `open_file` itself waits up to `wait_s` for this process's other threads (on a
        condition: hnpipe.warehouse.duckdb_host), under the same budget and announcement."""
        pause, announced, began = 0.01, False, time.monotonic()
        while True:
            now = time.monotonic()
            budget = max(0.0, self.deadlines.get(path, began + self.timeout_s) - now)
            try:
                return open_file(budget if announced else min(budget, max(0.0, began + ANNOUNCE_AFTER_S - now)))
            except HeldInProcess as exc:
                holder, in_process = str(exc), True
            except duckdb.IOException as exc:
                if "Could not set lock" not in str(exc):
                    raise WarehouseError(f"cannot open {path}: {one_line(exc)}") from exc
                holder, in_process = lock_holder(str(exc)), False
            now = time.monotonic()
            earlier = path in self.deadlines and now - began < ANNOUNCE_AFTER_S
            deadline = self.deadlines.setdefault(path, began + self.timeout_s)
            remaining = deadline - now
            if remaining <= 0:
                waited = "this run already waited" if earlier else "waited"
                failure = WarehouseLockedError(
                    f"{path} is locked by {holder}; {waited} {self.timeout_s:g} s: "
                    "close it there (a notebook: Kernel > Shut Down Kernel) and retry, or raise "
                    "HNPIPE_LOCK_TIMEOUT_S")
                self.failure = self.failure or failure
                raise failure from None
            if not announced and now - began >= ANNOUNCE_AFTER_S:
                announced = True
                self.announce(f"waiting for {path}: {holder} holds it; this run waits "
                              f"up to {self.timeout_s:g} s in all (HNPIPE_LOCK_TIMEOUT_S)")
            if not in_process:  # the host waited on its condition already
                time.sleep(min(pause, remaining))
                # Capped low: the usual holder is another kernel of the same run (COMMENTS and
                # STORIES build at once) whose operations take tens of ms; a failed open is
                # cheap, while a long pause would idle after the file is free again.
                pause = min(pause * 2, 0.05)
