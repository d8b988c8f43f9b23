"""`hnpipe run`: execute the pipeline notebooks with papermill, in dependency order.

Each executed notebook is kept under runs/<env>/<run id>/. The parameters come from
params/<env>.yaml plus `-p` overrides, and are validated, together with the environment
guard, before the first notebook starts. The run id reaches the notebooks through the
environment (HNPIPE_RUN_ID), not as a parameter, so every notebook of a run shares it; so
does where each executed notebook is kept (HNPIPE_NOTEBOOK_OUTPUT), for the run history.

When a notebook fails the run stops there: the runner records a failed row in the history
unless the notebook already recorded one for its dataset, sends one alert for the run
(hnpipe.alerts; staging, production and branch only) and exits 1 naming the notebook, the
error and the kept output. Neither the record nor the alert can change that error.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from concurrent.futures import Executor, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

from hnpipe import alerts, config, datasets, environments, history, notebook_filter, params, progress
from hnpipe.credentials import redact
from hnpipe.errors import HnpipeError, WarehouseLockedError
from hnpipe.run_context import RunContext
from hnpipe.runner import kernels, notebook_files, records, signals
from hnpipe.runner.preflight import Preflight, dry_run
from hnpipe.warehouse import Warehouse, connect

__all__ = ["Preflight", "RunContext", "RunFailed", "RunResult", "add_arguments", "dry_run", "main", "run",
           "run_notebooks"]

log = logging.getLogger("hnpipe.runner")
# A notebook declares only the parameters it uses while a run passes the whole validated set
# (params.validate has checked every name): papermill's warning about each other name would
# only break the promise of one line on stderr.
logging.getLogger("papermill").addFilter(lambda record: not record.getMessage().startswith("Passed unknown parameter"))


class RunFailed(HnpipeError):
    """A notebook failed; the message names it, its kept output and the error."""


@dataclass
class NotebookResult:
    dataset: str
    notebook: str
    output: Path
    seconds: float
    rows: int | None = None
    unsaved: OSError | None = None  # why the executed notebook could not be written


@dataclass
class RunResult:
    env: str
    run_id: str
    target: environments.Target
    directory: Path
    notebooks: list[NotebookResult] = field(default_factory=list)
    seconds: float = 0.0

    def summary(self) -> str:
        lines = [f"run {self.run_id} ({self.env} -> {self.target}) in {self.seconds:.1f} s",
                 f"{'dataset':<10} {'rows':>9} {'seconds':>8}"]
        for nb in self.notebooks:
            rows = "?" if nb.rows is None else f"{nb.rows:,}"
            lines.append(f"{nb.dataset:<10} {rows:>9} {nb.seconds:>8.1f}")
        lines.append(f"executed notebooks: {self.directory}")
        return "\n".join(lines)


@contextmanager
def _run_environment(run_id: str) -> Iterator[None]:
    """Hand the run id to the notebook kernels; their progress goes to this run's stdout
    (the kernels inherit it), never into the executed notebooks (hnpipe.progress)."""
    saved = {k: os.environ.get(k) for k in ("HNPIPE_RUN_ID", "HNPIPE_PROGRESS", "HNPIPE_NOTEBOOK_OUTPUT")}
    quiet = os.environ.get("HNPIPE_PROGRESS") == "0"
    os.environ.update(HNPIPE_RUN_ID=run_id, HNPIPE_PROGRESS="0" if quiet else "stdout")
    progress.under_run = True  # this process's lock waits are said on stdout too
    try:
        yield
    finally:
        progress.under_run = False
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def run(env: str, overrides: Mapping[str, Any] = (), root: Path | None = None,
        only: list[str] | None = None) -> RunResult:
    """Run the pipeline notebooks for `env`; raises RunFailed naming the failing notebook.

    The environment, parameters, target and run id are resolved once, here, into a RunContext
    (refused before any notebook starts) that everything below receives."""
    root = root or config.project_root()
    config.load_env(root)
    return run_notebooks(RunContext.for_run(env, overrides, root), root, only)


def run_notebooks(run: RunContext, root: Path, only: list[str] | None = None) -> RunResult:
    """Every notebook's kernel starts before the first notebook runs (hnpipe.runner.kernels), and
    the notebooks of one wave (those whose upstream datasets have all run: COMMENTS and STORIES)
    run at once. A failure stops the run after its wave: the later waves never start. The run's
    one warehouse (its marker, a failure's record, the row counts) is opened once and closed."""
    directory = config.runs_dir(root) / run.env / run.run_id
    directory.mkdir(parents=True, exist_ok=True)
    result = RunResult(run.env, run.run_id, run.target, directory)
    started = time.perf_counter()
    order = datasets.dependency_order(only)
    notebook_files.remove_stale_temporaries(config.runs_dir(root))
    signals.remove_stale_socket_dirs()  # what a killed run left
    started_kernels: dict[str, kernels.Kernel] = {}
    # Records are rendered (nbconvert, ~0.5 s for the first) beside the next wave, not between waves.
    keeper = ThreadPoolExecutor(1, thread_name_prefix="hnpipe-record")
    with _run_environment(run.run_id), signals.stopping_on_signals(
            lambda: [k.process for k in started_kernels.values() if k.process is not None]) as stop:
        try:
            for dataset in order:  # upstream first: the first notebook's kernel gets going first
                started_kernels[dataset.name] = kernels.Kernel(
                    config.notebooks_dir(root), {**os.environ, "HNPIPE_NOTEBOOK_OUTPUT": str(
                        directory / dataset.notebook)},
                    warm=kernels.WARM_MODULES if dataset.upstream else kernels.SOURCE_WARM_MODULES)
            # Opened after the kernels are launched, so its imports do not delay theirs.
            with _run_warehouse(run) as warehouse:
                _mark_started(run, warehouse, order)  # papermill is imported by now
                keeper.submit(_warm_records)  # on the core the runner leaves idle until ITEMS' kernel answers
                notebook_files.keep_under(config.runs_dir(root))  # whole or absent, a failed save reported
                for wave in _waves(order):
                    stop.check()  # SIGTERM, SIGINT: no later wave starts
                    outcomes = _run_wave(wave, started_kernels, root, directory, run, keeper,
                                         [order.index(dataset) + 1 for dataset in wave], len(order))
                    result.notebooks += [outcome for outcome in outcomes if isinstance(outcome, NotebookResult)]
                    stop.check()  # a notebook the signal stopped did not fail: the run was terminated
                    for dataset, outcome in zip(wave, outcomes):
                        if not isinstance(outcome, NotebookResult):
                            _raise_failed(run, warehouse, dataset, *outcome, directory, root)
                result.seconds = time.perf_counter() - started
                _count_rows(result, warehouse)
        except signals.Stopped as stopped:
            for kernel in started_kernels.values():
                kernel.shutdown()
            raise signals.terminated(stopped, run, [d.name for d in order],
                                     lambda name: directory / datasets.get(name).notebook) from None
        finally:
            for kernel in started_kernels.values():
                kernel.shutdown()
            keeper.shutdown(wait=True)  # every executed notebook kept as a record before the outcome
    _raise_unsaved(result)
    alerts.notify_success(run.env, "run", run.run_id, ", ".join(
        f"{nb.dataset} {'?' if nb.rows is None else f'{nb.rows:,}'} rows" for nb in result.notebooks))
    return result


@contextmanager
def _run_warehouse(run: RunContext) -> Iterator[Warehouse | Exception]:
    """The run's one warehouse, closed when the run ends; or, when it cannot be opened (missing
    credentials), the error: the notebooks then fail saying why, and the marker, a failure's
    record and the counts are skipped, as when the warehouse refuses them."""
    try:
        warehouse = connect(run)
    except Exception as error:  # noqa: BLE001 - said by the notebooks, and in a failure's line
        yield error
        return
    with warehouse:
        yield warehouse


def _mark_started(run: RunContext, warehouse: Warehouse | Exception, order: list[datasets.Dataset]) -> None:
    """The run's marker (and the abandoned runs before it), written while the kernels start
    and papermill is imported; stops the run when the warehouse file stayed locked."""
    marker = _in_background(_write_marker, run, warehouse, [dataset.name for dataset in order])
    kernels.import_papermill()  # while the kernels start
    marker.join()
    if isinstance(marker.error, WarehouseLockedError):  # waited once already: say it, stop
        raise RunFailed(f"run {run.run_id} stopped before any notebook ran: {marker.error}")


def _in_background(function, *args):
    """Run `function` in a thread; the thread's `error` is what it raised (or None)."""
    import threading

    def keep_error() -> None:
        try:
            function(*args)
        except BaseException as error:  # noqa: BLE001 - handed to the caller through .error
            thread.error = error

    thread = threading.Thread(target=keep_error, name="hnpipe-run-marker", daemon=True)
    thread.error = None
    thread.start()
    return thread


def _write_marker(run: RunContext, warehouse: Warehouse | Exception, planned: list[str]) -> None:
    """Record the runs a kill left unfinished as abandoned, then this run's own marker
    (hnpipe.history). Best effort: a warehouse that cannot take it fails the notebooks, which
    say why."""
    with history.warnings_held(*history.SIDE_NOTE_LOGGERS):
        try:
            if isinstance(warehouse, Exception):
                raise warehouse
            for entry in history.mark_abandoned(warehouse, run.target):
                _say(f"run {entry.run_id} (started {entry.started:%Y-%m-%d %H:%M:%S} UTC) never finished: "
                     f"recorded as abandoned; {entry.detail}")
            history.record(warehouse, run.target, marker(run, planned))
            if warehouse.lock_failure is not None:  # swallowed by the best-effort history
                raise warehouse.lock_failure
        except WarehouseLockedError:
            raise  # the file stayed locked for the whole wait: the run stops here, saying so
        except Exception as exc:  # noqa: BLE001
            log.warning("could not record the start of run %s: %s", run.run_id, history.error_line(exc))


def marker(run: RunContext, planned: list[str]) -> history.RunRecord:
    """The run's marker row in the history, written before its first notebook: which process
    runs which datasets (a later run finds it abandoned when that process is gone)."""
    detail = json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "datasets": planned})
    return history.RunRecord(run.run_id, "run", None, run.env, history.RUNNING, parameters=run.values, detail=detail)


def _waves(order: list[datasets.Dataset]) -> list[list[datasets.Dataset]]:
    """`order` cut into waves: each dataset one wave after the latest of its upstream ones
    in this run, so the datasets of a wave depend only on earlier waves."""
    wave_of: dict[str, int] = {}
    waves: list[list[datasets.Dataset]] = []
    for dataset in order:
        index = max((wave_of[up] + 1 for up in dataset.upstream if up in wave_of), default=0)
        wave_of[dataset.name] = index
        while len(waves) <= index:
            waves.append([])
        waves[index].append(dataset)
    return waves


def _run_wave(wave, started_kernels, root: Path, directory: Path, run: RunContext, keeper: Executor,
              numbers: list[int], total: int) -> list:
    """Execute the wave's notebooks at once; per dataset a NotebookResult, or (error, began).
    Each executed notebook is kept as a record by `keeper`'s thread, beside the next notebooks."""
    def keep(output: Path) -> None:
        keeper.submit(keep_record, output, run.run_id)

    if len(wave) == 1:
        return [_execute(wave[0], started_kernels[wave[0].name], root, directory, run, keep,
                         f"[{numbers[0]}/{total}]")]
    with ThreadPoolExecutor(len(wave), thread_name_prefix="hnpipe-notebook") as pool:
        futures = [pool.submit(_execute, dataset, started_kernels[dataset.name], root, directory, run, keep,
                               f"[{number}/{total}]") for dataset, number in zip(wave, numbers)]
        return [future.result() for future in futures]


def _execute(dataset, kernel, root: Path, directory: Path, run: RunContext, keep: Callable[[Path], None],
             counter: str = "[1/1]"):
    """Run one notebook with papermill in its started kernel; its NotebookResult, or
    (error, began) when it failed. The executed notebook is saved either way, then `keep`s it."""
    import papermill

    source = config.notebooks_dir(root) / dataset.notebook
    output = directory / dataset.notebook
    notebook_started = time.perf_counter()
    began = datetime.now(timezone.utc)
    log.info("running %s -> %s", source.name, output)
    _say(f"{counter} {source.name}: running ({dataset.name})")
    try:
        papermill.execute_notebook(
            str(source), str(output), parameters=run.parameters, kernel_name="python3",
            cwd=str(source.parent), progress_bar=False, log_output=False, km=kernel.manager,
        )
    except Exception as error:  # the notebook raised, its kernel died, or papermill failed
        return error, began
    finally:
        kernel.shutdown()  # finished and committed: nothing left to wait for
        keep(output)
    seconds = time.perf_counter() - notebook_started
    _say(f"{counter} {source.name}: done in {seconds:.1f} s")
    return NotebookResult(dataset.name, dataset.notebook, output, seconds, unsaved=notebook_files.failed_save(output))


def keep_record(output: Path, run_id: str) -> None:
    """The executed notebook becomes a read-only record with its HTML beside it
    (hnpipe.runner.records); a failure to do so is logged, never the run's outcome."""
    try:
        records.keep(output, run_id)
    except Exception as exc:  # noqa: BLE001
        log.warning("could not keep %s as a read-only record: %s", output, redact(str(exc)))


def _warm_records() -> None:
    try:
        records.warm_up()
    except Exception as exc:  # noqa: BLE001 - the first record then pays for it, or says why it failed
        log.warning("could not prepare the records' HTML rendering: %s", redact(str(exc)))


def _raise_failed(run: RunContext, warehouse: Warehouse | Exception, dataset, error: Exception,
                  began: datetime, directory: Path, root: Path) -> None:
    from papermill.exceptions import PapermillExecutionError

    source = config.notebooks_dir(root) / dataset.notebook
    output = directory / dataset.notebook
    if isinstance(error, PapermillExecutionError):
        reason = redact(f"{error.ename}: {error.evalue}".splitlines()[0])
    else:
        reason = history.error_line(error)
    notes = _failed(run, warehouse, dataset.name, began, reason, output)
    unsaved = notebook_files.failed_save(output)
    kept = f"kept at {output}" if unsaved is None else f"not written: {unsaved.strerror or unsaved}"
    raise RunFailed(f"{source.name} failed: {reason} (executed notebook {kept})"
                    + "".join(f"; {note}" for note in notes)) from None


def _say(line: str) -> None:
    """What the run is doing, one plain line as it happens (terminal or CI log), on stdout
    like the summary at the end: stderr is for the one-line error. HNPIPE_PROGRESS=0 keeps
    it quiet."""
    if line and os.environ.get("HNPIPE_PROGRESS") != "0":
        print(line, flush=True)


class _NotRecorded(Exception):
    """Recording a failure was skipped; the message says why."""


def _failed(run: RunContext, warehouse: Warehouse | Exception, dataset: str, began: datetime,
            reason: str, output: Path) -> list[str]:
    """A notebook failed: record it unless the notebook did, and alert once. Never raises;
    returns what went wrong doing so, for the run's one-line error."""
    with history.warnings_held(*history.SIDE_NOTE_LOGGERS) as notes:
        try:
            if reason.startswith("WarehouseLockedError"):
                # The notebook already waited its HNPIPE_LOCK_TIMEOUT_S for the file: recording
                # the failure there would only wait as long again, and fail the same way.
                raise _NotRecorded("the warehouse file is still locked")
            if isinstance(warehouse, Exception):
                raise warehouse
            if not history.has_row(warehouse, run.target, run.run_id, dataset):
                history.record(warehouse, run.target, history.RunRecord(
                    run.run_id, "run", dataset, run.env, history.FAILED, started=began,
                    parameters=run.values, notebook=str(output), error=reason))
        except _NotRecorded as skipped:
            log.warning("the failure of %s is not in the run history: %s", dataset, skipped)
        except Exception as exc:  # the warehouse may be what failed: the run's error comes first
            log.warning("could not record the failure of %s: %s", dataset, history.error_line(exc))
        alerts.notify_failure(run.env, dataset, reason, run.run_id, str(output))
    return notes


def _count_rows(result: RunResult, warehouse: Warehouse | Exception) -> None:
    """The published rows per dataset, for the summary: counted in the warehouse (without
    pandas on the embedded engine); unknown ("?") when it could not be opened."""
    if isinstance(warehouse, Exception):
        return
    tables = warehouse.list_tables(result.target)
    for nb in result.notebooks:
        nb.rows = tables.get(nb.dataset)


def _raise_unsaved(result: RunResult) -> None:
    """Every table was published, but an executed notebook could not be written: say exactly
    that (the history, written by the notebooks, records the tables as published), and alert."""
    unsaved = [nb for nb in result.notebooks if nb.unsaved is not None]
    if not unsaved:
        return
    published = ", ".join(f"{nb.dataset} ({'?' if nb.rows is None else f'{nb.rows:,}'} rows)"
                          for nb in result.notebooks)
    reasons = "; ".join(f"{nb.output}: {nb.unsaved.strerror or nb.unsaved}" for nb in unsaved)
    count = {1: "one table", 2: "both tables", 3: "the three tables"}.get(len(result.notebooks), "the tables")
    message = (f"run {result.run_id} published {published}, but could not write the executed notebook "
               f"{reasons} (the history records {count} as published)")
    alerts.notify_failure(result.env, unsaved[0].dataset, message, result.run_id, str(unsaved[0].output))
    raise RunFailed(message)


def main(args) -> int:
    overrides = dict(params.parse_override(p) for p in args.param)
    if args.dry_run:
        environments.process_environment()  # a bad HNPIPE_ENV is refused in one line, as by every command
        checks = dry_run(args.env, overrides)
        print(f"dry run of `hnpipe run --env {args.env}`: nothing fetched, nothing written")
        for check in checks:
            print(check.line())
        failed = [check.name for check in checks if check.ok is False]
        if failed:
            raise HnpipeError(f"dry run of {args.env}: {len(failed)} of {len(checks)} checks failed "
                              f"({', '.join(failed)}); see the checklist above")
        return 0
    only = [datasets.get(name).name for name in args.only] or None  # unknown names: one line, now
    root = config.project_root()
    config.load_env(root)
    run = RunContext.for_run(args.env, overrides, root)  # refused here, before any side effect
    if os.environ.get("HNPIPE_GIT_FILTER") != "0":  # the README's install line ends here
        _say(notebook_filter.ensure_installed(root) or "")
    print(run_notebooks(run, root, only).summary())
    return 0


# -- `hnpipe run` ------------------------------------------------------------------------
def add_arguments(parser) -> None:
    parser.add_argument("--env", required=True, choices=environments.ENVIRONMENTS,
                        help="which params/<env>.yaml to run; must match HNPIPE_ENV")
    parser.add_argument("-p", "--param", action="append", default=[], metavar="KEY=VALUE",
                        help="override a parameter, e.g. -p n_items=500")
    parser.add_argument("--only", action="append", default=[], metavar="DATASET",
                        help="run just this dataset's notebook (repeat for more; in dependency "
                             "order), e.g. the changed ones of a pull request")
    parser.add_argument("--dry-run", action="store_true",
                        help="check parameters, guard, credentials, warehouse and notebooks; fetch and write nothing")
