"""SIGTERM and SIGINT to `hnpipe run`: its kernels stop before it exits.

CI cancelling a job, `timeout`, a container stop (SIGTERM) and Ctrl-C (SIGINT) used to end the
runner at once while the notebook kernels, which jupyter_client starts in sessions of their own,
lived on and could still swap a table in after it had gone. While a run runs, `stopping_on_signals`
handles both: the kernels are interrupted (the running cell gets KeyboardInterrupt, so a publish
in progress rolls back), then told to terminate, then killed, all within STOP_BOUND_S; no later
wave starts. The runner then records every dataset that had not succeeded as failed with
"terminated by SIGTERM" (and what was published before), alerts as for any failed run, and
exits 128 + the signal's number (130, 143) with one line and no traceback.

Leftovers a SIGKILL leaves (nothing runs then) are removed on the next start: the kernels'
socket folders (`hnpipe-kernel-<pid>-*` in the temp folder) whose process is gone.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

from hnpipe.config import process_alive
from hnpipe.errors import HnpipeError
from hnpipe.run_context import RunContext

HANDLED = (signal.SIGTERM, signal.SIGINT)
INTERRUPT_GRACE_S = 2.0  # for the interrupted cell to roll back and stop
TERMINATE_GRACE_S = 3.0  # for the kernel to exit on SIGTERM before SIGKILL
STOP_BOUND_S = INTERRUPT_GRACE_S + TERMINATE_GRACE_S + 1.0
SOCKET_DIR_PREFIX = "hnpipe-kernel-"


class RunTerminated(HnpipeError):
    """The run was stopped by a signal; `exit_code` is 128 + its number."""

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.exit_code = 128 + signum


class Stop:
    """Which signal stopped the run (None: none yet)."""

    def __init__(self) -> None:
        self.signum: int | None = None

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name if self.signum else ""

    def check(self) -> None:
        """Raise Stopped once a signal came: the runner shuts the kernels, then `terminated`."""
        if self.signum is not None:
            raise Stopped(self.signum)


class Stopped(Exception):
    """A signal stopped the run: raised between its steps, never from the handler itself."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


@contextlib.contextmanager
def stopping_on_signals(processes: Callable[[], Iterable]) -> Iterator[Stop]:
    """While the block runs, SIGTERM and SIGINT stop the kernels `processes()` lists (Popen
    objects) and mark the returned Stop; the block checks it (Stop.check) between steps. Only
    the main thread may handle signals: elsewhere (a test's thread) nothing is installed."""
    stop = Stop()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def handle(signum: int, _frame: object) -> None:
        if stop.signum is None:
            stop.signum = signum
            stop_processes(list(processes()))
        # A second signal while stopping: the stop is under way and bounded; nothing more to do.

    def quiet(_record: logging.LogRecord) -> bool:
        return stop.signum is None  # "Kernel died ...": the stop did it, the one line says so

    previous = {number: signal.signal(number, handle) for number in HANDLED}
    logging.getLogger("papermill").addFilter(quiet)
    try:
        yield stop
    finally:
        logging.getLogger("papermill").removeFilter(quiet)
        for number, handler in previous.items():
            signal.signal(number, handler)


def stop_processes(processes: list, interrupt_grace_s: float = INTERRUPT_GRACE_S,
                   terminate_grace_s: float = TERMINATE_GRACE_S) -> None:
    """Interrupt, then terminate, then kill each process (and its process group: a kernel is
    a session leader); returns once every one has exited, within STOP_BOUND_S and a kill."""
    # An interrupted kernel stays up, idle: its grace is for the cell to stop, waited in full.
    for sig, grace, until_exit in ((signal.SIGINT, interrupt_grace_s, False),
                                   (signal.SIGTERM, terminate_grace_s, True), (signal.SIGKILL, 5.0, True)):
        alive = [process for process in processes if process.poll() is None]
        if not alive:
            return
        for process in alive:
            _send(process.pid, sig)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and (not until_exit or any(p.poll() is None for p in alive)):
            time.sleep(0.05)


def _send(pid: int, sig: int) -> None:
    with contextlib.suppress(OSError):
        try:
            os.killpg(pid, sig)  # the kernel's session: whatever its notebook started too
        except OSError:
            os.kill(pid, sig)


def terminated(stopped: Stopped, run: RunContext, planned: Sequence[str],
               output_of: Callable[[str], Path]) -> RunTerminated:
    """Record, alert and say how the run ended: each planned dataset without a succeeded row
    fails with "terminated by SIG..." and what was published before it. Best effort, like
    every record: the one line comes first."""
    # Imported on use: history and the warehouse pull in pandas and DuckDB, which a signalled
    # run may not have loaded yet.
    from hnpipe import alerts, history
    from hnpipe.warehouse import connect

    name = signal.Signals(stopped.signum).name
    published: dict[str, int] = {}
    with history.warnings_held(*history.SIDE_NOTE_LOGGERS) as notes:
        try:
            with connect(run) as warehouse:
                tables = warehouse.list_tables(run.target)
                done = [d for d in planned
                        if history.has_row(warehouse, run.target, run.run_id, d, status=history.SUCCEEDED)]
                published = {d: tables.get(d, 0) for d in done}
                before = ", ".join(f"{d} ({rows:,} rows)" for d, rows in published.items()) or "nothing"
                history.record(warehouse, run.target, *[history.RunRecord(
                    run.run_id, "run", d, run.env, history.FAILED, parameters=run.values, notebook=str(output_of(d)),
                    error=f"terminated by {name}", detail=f"hnpipe run stopped by {name}; published before: {before}")
                    for d in planned if d not in published])
        except Exception as exc:  # noqa: BLE001 - the warehouse may be what is wrong
            notes.append(f"not recorded: {history.error_line(exc)}")
        stopped_ones = [d for d in planned if d not in published]
        line = (f"run {run.run_id} terminated by {name}: its notebooks were stopped; published before: "
                + (", ".join(f"{d} ({rows:,} rows)" for d, rows in published.items()) or "nothing")
                + (f"; not published: {', '.join(stopped_ones)}" if stopped_ones else ""))
        if stopped_ones:
            alerts.notify_failure(run.env, stopped_ones[0], line, run.run_id, str(output_of(stopped_ones[0])))
    return RunTerminated(line + "".join(f"; {note}" for note in notes), stopped.signum)


def socket_dir() -> str:
    """A new socket folder for one kernel, named after this process so a later run can tell
    whether its owner is gone."""
    return tempfile.mkdtemp(prefix=f"{SOCKET_DIR_PREFIX}{os.getpid()}-")


def remove_stale_socket_dirs(directory: str | None = None) -> list[Path]:
    """Socket folders of runs that were killed (their process is gone); returns those removed."""
    removed = []
    for folder in Path(directory or tempfile.gettempdir()).glob(f"{SOCKET_DIR_PREFIX}*-*"):
        pid = folder.name[len(SOCKET_DIR_PREFIX):].partition("-")[0]
        if folder.is_dir() and pid.isdigit() and not process_alive(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed
