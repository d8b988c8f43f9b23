"""Run history: what ran where, by whom, with which parameters, and how it ended.

Each pipeline run appends one row per dataset to PIPELINE_RUNS in its own target schema
(PRODUCTION.HACKER_NEWS.PIPELINE_RUNS in production, LOCAL.<you>.PIPELINE_RUNS locally);
each restore and admin action appends one row. Rows are only ever appended, each append is
one INSERT in a transaction (`Warehouse.append_rows`), and the table is never part of a
publish, so the row of a failed run survives the rollback of its tables.

Who writes which row:

* the notebook's Step (hnpipe.pipeline) records `succeeded` once its dataset is published,
  and `failed` when its own work (fetch, publish, build) raises: the same in `hnpipe run`,
  plain papermill, JupyterLab or a script;
* `hnpipe run` records `failed` when papermill raises and the notebook recorded nothing for
  that dataset and run (it failed before its work began, or its kernel died);
* `recording(...)` wraps any other action (restore, admin) and records its outcome.

Recording is best effort: a failure to record is logged (redacted) and never replaces the
outcome of the run itself. Nothing secret is stored: parameters lose secret-looking keys and,
like errors, pass through `credentials.redact`.

    hnpipe history [--env ENV] [--dataset DATASET] [--limit N]
"""

from __future__ import annotations

import contextlib
import getpass
import json
import logging
import os
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Mapping, Sequence

from hnpipe import alerts, config, credentials, datasets, environments, notebook_filter, params
from hnpipe.environments import CLONE_NAME, Target
from hnpipe.errors import ParameterError, one_line, printable
from hnpipe.run_context import RunContext
from hnpipe.warehouse import connect, reader
from hnpipe.warehouse.base import HISTORY_TABLE, Warehouse

if TYPE_CHECKING:  # imported where frames are made: `hnpipe run` writes and reads its rows without pandas
    import pandas as pd

log = logging.getLogger("hnpipe.history")

TABLE = HISTORY_TABLE
SUCCEEDED, FAILED = "succeeded", "failed"
# `hnpipe run` appends a RUNNING row (its marker) before its first notebook; a run whose marker
# has no end (every planned dataset succeeded, or a failure) and whose process is gone was
# killed: it is ABANDONED, shown so by `hnpipe history` and recorded so by the next run.
RUNNING, ABANDONED = "running", "abandoned"
# A run on another machine cannot be looked up: after this long without an end it is abandoned.
STALE_AFTER_HOURS = 24
MAX_ERROR_CHARS = 1000

# Column -> pandas dtype: both engines create the table from these on first append.
COLUMNS: dict[str, str] = {
    "RUN_ID": "string",  # shared by every dataset of one `hnpipe run`
    "ACTION": "string",  # run | restore | admin <action>
    "DATASET": "string",  # None for admin actions
    "ENVIRONMENT": "string",
    "STATUS": "string",  # succeeded | failed
    "ROWS_WRITTEN": "Int64",
    "STARTED_AT": "datetime64[us, UTC]",
    "FINISHED_AT": "datetime64[us, UTC]",
    "DURATION_S": "float64",
    "RUN_BY": "string",  # the CI actor (github:<login>, gitlab:<login>), else the OS user
    "GIT_SHA": "string",
    "GIT_DIRTY": "boolean",  # uncommitted changes in the checkout; None when unknown
    "PARAMETERS": "string",  # JSON, without secrets
    "NOTEBOOK": "string",  # where the executed notebook is, as far as the run knows
    "ERROR": "string",  # one line, redacted
    "DETAIL": "string",  # one line on what the action did (restores, admin)
}


@dataclass
class RunRecord:
    """One row of PIPELINE_RUNS before it is written."""

    run_id: str
    action: str
    dataset: str | None
    environment: str
    status: str = SUCCEEDED
    started: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    finished: datetime | None = None
    rows: int | None = None
    parameters: Mapping[str, Any] = field(default_factory=dict)
    notebook: str | None = None
    error: str | None = None
    detail: str | None = None
    seconds: float | None = None  # time spent working, when it is not finished - started


# -- what a row says about the run ----------------------------------------------------------
def run_by(environ: Mapping[str, str] | None = None) -> str:
    """Who ran it: the CI's actor when CI runs it, else the OS user."""
    environ = os.environ if environ is None else environ
    if environ.get("GITHUB_ACTOR"):
        return f"github:{environ['GITHUB_ACTOR']}"
    if environ.get("GITLAB_USER_LOGIN"):
        return f"gitlab:{environ['GITLAB_USER_LOGIN']}"
    try:
        return environ.get("USER") or environ.get("USERNAME") or getpass.getuser()
    except (KeyError, OSError):  # no user name at all, e.g. some containers
        return "unknown"


def git_state() -> tuple[str, bool | None, list[str]]:
    """The checked-out commit, whether the working tree has uncommitted changes, and which
    files differ (as `git status` lists them; notebooks pass the nbstripout filter first, so
    a notebook that was only run and saved is not among them)."""
    try:
        root = config.project_root()
    except FileNotFoundError:
        return "unknown", None, []
    changed = notebook_filter.changed_files(root)
    return config.git_sha(root), None if changed is None else bool(changed), changed or []


def code_version_note(changed: Sequence[str], limit: int = 5) -> str | None:
    """What a dirty checkout's code version says beyond `+dirty`: the files that differ."""
    if not changed:
        return None
    more = f" and {len(changed) - limit} more" if len(changed) > limit else ""
    return f"uncommitted changes: {', '.join(changed[:limit])}{more}"


def safe_parameters(values: Mapping[str, Any]) -> str:
    """Parameters as JSON, without secret-looking keys (at any depth) or secret values."""
    def clean(value: Any) -> Any:  # called on containers only: scalars are kept as they are
        if isinstance(value, Mapping):
            return {str(k): clean(v) if isinstance(v, (Mapping, list, tuple)) else v
                    for k, v in value.items() if not credentials.looks_like_secret_key(str(k))}
        return [clean(v) if isinstance(v, (Mapping, list, tuple)) else v for v in value]

    text = json.dumps(clean(dict(values)), sort_keys=True, default=str)
    return credentials.redact(text)


def error_line(error: BaseException | str) -> str:
    """An error as one redacted line: 'Type: first line of the message'."""
    if isinstance(error, BaseException):
        message = one_line(error) if str(error).strip() else ""
        text = f"{type(error).__name__}: {message}" if message else type(error).__name__
    else:
        text = one_line(error) if str(error).strip() else ""
    return credentials.redact(text)[:MAX_ERROR_CHARS]


def notebook_location(namespace: Mapping[str, Any] | None = None,
                      environ: Mapping[str, str] | None = None) -> str:
    """Where this run's executed notebook will be, as far as the process can know."""
    environ = os.environ if environ is None else environ
    if environ.get("HNPIPE_NOTEBOOK_OUTPUT"):  # set by `hnpipe run` for each notebook it runs
        return environ["HNPIPE_NOTEBOOK_OUTPUT"]
    namespace = namespace or {}
    session = namespace.get("__session__") or environ.get("JPY_SESSION_NAME")
    if session:  # JupyterLab names the notebook; the executed copy is the one on screen
        return f"jupyter: {session} (interactive; not kept)"

    if params.injected_names(namespace):
        return "papermill: the output notebook given on its command line (the kernel is not told the path)"
    return "not a notebook (no executed notebook kept)"


def rows(records: Sequence[RunRecord], who: str | None = "") -> list[dict[str, Any]]:
    """Records as PIPELINE_RUNS rows (column -> plain value), with who ran them and the git
    state filled in (`who=None`: unknown, for rows describing someone else's run)."""
    sha, dirty, changed = git_state() if who is not None else (None, None, [])
    note = code_version_note(changed)
    who = run_by() if who == "" else who
    found = []
    for record in records:
        finished = record.finished or datetime.now(timezone.utc)
        found.append({
            "RUN_ID": record.run_id, "ACTION": record.action, "DATASET": record.dataset,
            "ENVIRONMENT": record.environment, "STATUS": record.status, "ROWS_WRITTEN": record.rows,
            "STARTED_AT": record.started, "FINISHED_AT": finished,
            "DURATION_S": round((finished - record.started).total_seconds() if record.seconds is None
                                else record.seconds, 3),
            "RUN_BY": who, "GIT_SHA": sha, "GIT_DIRTY": dirty,
            "PARAMETERS": safe_parameters(record.parameters), "NOTEBOOK": record.notebook,
            "ERROR": None if record.error is None else error_line(record.error),
            # a notebook run's row (no other detail) says which files its code version changed
            "DETAIL": _detail(record.detail, note if record.detail is None and record.action == "run"
                              and record.status in (SUCCEEDED, FAILED) else None),
        })
    return found


def to_frame(records: Sequence[RunRecord], who: str | None = "") -> pd.DataFrame:
    """Records as a PIPELINE_RUNS frame (see `rows`)."""
    # On use, like every frame here: `hnpipe run`'s own process never needs pandas.
    import pandas as pd

    frame = pd.DataFrame(rows(records, who), columns=list(COLUMNS))
    for column in ("STARTED_AT", "FINISHED_AT"):
        frame[column] = pd.to_datetime(frame[column], utc=True)
    return frame.astype(COLUMNS)


def _detail(detail: str | None, note: str | None) -> str | None:
    text = "; ".join(part for part in (detail, note) if part)
    return credentials.redact(text)[:MAX_ERROR_CHARS] if text else None


# -- writing --------------------------------------------------------------------------------
def append(warehouse: Warehouse, target: Target, *records: RunRecord) -> None:
    """Append the records to target's PIPELINE_RUNS (one transaction); raises on failure."""
    warehouse.append_records(target, TABLE, COLUMNS, rows(records))


def record(warehouse: Warehouse, target: Target, *records: RunRecord) -> bool:
    """Append the records, best effort: logs and returns False instead of raising.

    Never creates a branch clone just to say a run failed there.
    """
    try:
        if CLONE_NAME.fullmatch(target.database) and not warehouse.database_exists(target.database):
            log.warning("run %s not recorded: %s does not exist", records[0].run_id, target.database)
            return False
        append(warehouse, target, *records)
        return True
    except Exception as exc:  # recording must never hide the run's own outcome
        log.warning("could not record run %s in %s.%s: %s", records[0].run_id if records else "?",
                    target, TABLE, error_line(exc))
        return False


@contextmanager
def recording(warehouse: Warehouse, target: Target, *, action: str, env: str,
              dataset: str | None = None, parameters: Mapping[str, Any] | None = None,
              run_id: str | None = None, notebook: str | None = None,
              alert: bool = True) -> Iterator[RunRecord]:
    """Record the action in the `with` block as one row, succeeded or failed (re-raised).

    The block may set `.rows` and `.detail` on the record it is given. Failures in staging,
    production and branch alert (see hnpipe.alerts) unless `alert` is False.
    """
    entry = RunRecord(run_id or config.current_run_id(), action, dataset, env,
                      parameters=dict(parameters or {}), notebook=notebook)
    what = f"{action} {dataset}" if dataset else action
    try:
        yield entry
    except BaseException as exc:
        entry.status, entry.error, entry.finished = FAILED, error_line(exc), datetime.now(timezone.utc)
        record(warehouse, target, entry)
        if alert:
            alerts.notify_failure(env, what, entry.error, entry.run_id, notebook)
        raise
    entry.status, entry.finished = SUCCEEDED, datetime.now(timezone.utc)
    record(warehouse, target, entry)
    if alert:
        alerts.notify_success(env, what, entry.run_id, entry.detail or "")


def record_action(action: str, env: str, *, ok: bool, message: str, parameters: Mapping[str, Any],
                  started: datetime, warehouse: Warehouse | None = None,
                  notebook: str | None = None, alert: bool = True) -> bool:
    """One row for an action done outside the pipeline (hnpipe admin), in env's own target.

    `message` becomes DETAIL when `ok`, ERROR otherwise; failures alert like runs do. Opens
    the environment's warehouse as a run would (`warehouse.connect`) unless `warehouse` is
    given. Best effort: returns whether the row was written, never raises.
    """
    try:
        run = RunContext.for_command(env, parameters)  # env's own target; refuses an unknown env
        entry = RunRecord(run.run_id, action, None, env, SUCCEEDED if ok else FAILED,
                          started=started, finished=datetime.now(timezone.utc), parameters=dict(parameters),
                          notebook=notebook, error=None if ok else message, detail=message if ok else None)
        # A warehouse given is the caller's to close; one opened here ends its session with the row.
        opened = contextlib.nullcontext(warehouse) if warehouse is not None else connect(run, notebook or "")
    except Exception as exc:
        log.warning("could not record %s: %s", action, error_line(exc))
        return False
    with opened as warehouse:
        written = record(warehouse, run.target, entry)
    if not ok and alert:
        alerts.notify_failure(env, action, error_line(message), entry.run_id, notebook)
    return written


@contextmanager
def warnings_held(*logger_names: str) -> Iterator[list[str]]:
    """Hold back the WARNING records of these loggers and collect their messages instead.

    A command promises one line on stderr when it fails; what recording or alerting had to
    say about that failure is folded into that line by the caller rather than printed first.
    """
    notes: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            notes.append(credentials.redact(record.getMessage()))

    handler = Collect(logging.WARNING)
    loggers = [logging.getLogger(name) for name in logger_names]
    saved = [(logger, logger.propagate) for logger in loggers]
    for logger in loggers:
        logger.addHandler(handler)
        logger.propagate = False
    try:
        yield notes
    finally:
        for logger, propagate in saved:
            logger.removeHandler(handler)
            logger.propagate = propagate


SIDE_NOTE_LOGGERS = ("hnpipe.history", "hnpipe.alerts", "hnpipe.runner")


# -- reading --------------------------------------------------------------------------------
def exists(warehouse: Warehouse, target: Target) -> bool:
    return TABLE in warehouse.list_tables(target, bookkeeping=True)


def read(warehouse: Warehouse, target: Target, dataset: str | None = None, limit: int = 20,
         status: str | None = None) -> pd.DataFrame:
    """Target's history, newest first (an empty frame when nothing was recorded yet)."""
    if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= 100_000:
        raise ParameterError(f"limit {limit!r} is not allowed: use a whole number from 1 to 100000")
    if status not in (None, SUCCEEDED, FAILED, ABANDONED):
        raise ParameterError(f"status {status!r} is not allowed: use {SUCCEEDED}, {FAILED} or {ABANDONED}")
    if dataset is not None:
        dataset = datasets.get(dataset).name
    # On use: reading the history for a person is where frames are made.
    import pandas as pd

    if not exists(warehouse, target):
        return pd.DataFrame({column: pd.Series(dtype=dtype) for column, dtype in COLUMNS.items()})
    conditions, binds = ["STATUS <> ?"], [RUNNING]  # markers are bookkeeping
    for column, value in (("DATASET", dataset), ("STATUS", status)):
        if value is not None:
            conditions.append(f"{column} = ?")
            binds.append(value)
    where = f" WHERE {' AND '.join(conditions)}"
    frame = warehouse.query(
        target, f"SELECT * FROM {TABLE}{where} ORDER BY STARTED_AT DESC, FINISHED_AT DESC, RUN_ID DESC LIMIT {limit}", binds)
    if dataset is None and status in (None, ABANDONED):
        # Killed runs no later run has recorded yet: shown as abandoned all the same.
        unrecorded = abandoned_runs(warehouse, target)
        if unrecorded:
            frame = pd.concat([frame, to_frame(unrecorded, who=None)]).sort_values(
                ["STARTED_AT", "FINISHED_AT", "RUN_ID"], ascending=False).head(limit).reset_index(drop=True)
    return frame


# -- runs that never finished -------------------------------------------------------------------
def process_gone(info: Mapping[str, Any]) -> bool | None:
    """Whether the marker's process is gone: True/False on this host, None elsewhere."""
    import socket

    if info.get("host") != socket.gethostname() or not isinstance(info.get("pid"), int):
        return None
    return not config.process_alive(info["pid"])


def replacing(warehouse: Warehouse, target: Target, dataset: str, own_run_id: str | None = None,
              now: datetime | None = None) -> list[tuple[str, datetime]]:
    """Runs that started replacing `dataset` and have not ended (its marker, no end row for
    it, its process alive): (run id, started), oldest first. Never raises: [] when unsure."""
    now = now or datetime.now(timezone.utc)
    try:
        if not exists(warehouse, target):
            return []
        marked = warehouse.query_rows(target, f"SELECT * FROM {TABLE} WHERE RUN_ID IN "
                                              f"(SELECT RUN_ID FROM {TABLE} WHERE STATUS = ?)", [RUNNING])
    except Exception as exc:  # noqa: BLE001 - a note about others' runs must not fail this one
        log.info("could not look for runs replacing %s: %s", dataset, error_line(exc))
        return []
    try:
        return _replacing(marked, dataset, own_run_id, now)
    except (KeyError, TypeError, ValueError) as exc:  # rows not shaped as PIPELINE_RUNS: say nothing
        log.info("could not look for runs replacing %s: %s", dataset, error_line(exc))
        return []


def _replacing(marked: list[dict[str, Any]], dataset: str, own_run_id: str | None,
               now: datetime) -> list[tuple[str, datetime]]:
    by_run: dict[str, list[dict[str, Any]]] = {}
    for row in marked:
        by_run.setdefault(str(row["RUN_ID"]), []).append(row)
    found = []
    for run_id, run_rows in by_run.items():
        statuses = {row["STATUS"] for row in run_rows}
        if run_id == own_run_id or ABANDONED in statuses or FAILED in statuses:
            continue
        if any(row["DATASET"] == dataset and row["STATUS"] == SUCCEEDED for row in run_rows):
            continue  # it has replaced it already
        marker = next(row for row in run_rows if row["STATUS"] == RUNNING)
        info = _json(marker["DETAIL"])
        if dataset not in (info.get("datasets") or []):
            continue
        started = marker["STARTED_AT"]
        gone = process_gone(info)
        if gone or (gone is None and now - started >= timedelta(hours=STALE_AFTER_HOURS)):
            continue
        found.append((run_id, started))
    return sorted(found, key=lambda pair: pair[1])


def abandoned_runs(warehouse: Warehouse, target: Target, now: datetime | None = None) -> list[RunRecord]:
    """Runs of `hnpipe run` that started and never finished, and not yet recorded as abandoned:
    each as an ABANDONED record with the run's start time and what it had published."""
    now = now or datetime.now(timezone.utc)
    if not exists(warehouse, target):
        return []
    found: dict[str, list[dict[str, Any]]] = {}
    for row in warehouse.query_rows(target, f"SELECT * FROM {TABLE} WHERE RUN_ID IN "
                                            f"(SELECT RUN_ID FROM {TABLE} WHERE STATUS = ?)", [RUNNING]):
        found.setdefault(row["RUN_ID"], []).append(row)
    return [entry for run_id, run_rows in sorted(found.items())
            if (entry := _abandoned(str(run_id), run_rows, now)) is not None]


def _abandoned(run_id: str, run_rows: list[dict[str, Any]], now: datetime) -> RunRecord | None:
    """The ABANDONED record of one run's rows (its marker among them), or None when it ended,
    is recorded already, or may still be running."""
    if any(row["STATUS"] in (FAILED, ABANDONED) for row in run_rows):
        return None  # it ended (a failure), or is recorded already
    marker = next(row for row in run_rows if row["STATUS"] == RUNNING)
    info = _json(marker["DETAIL"])
    done = sorted((row for row in run_rows if row["STATUS"] == SUCCEEDED and row["DATASET"] is not None),
                  key=lambda row: row["FINISHED_AT"])
    planned = info.get("datasets") or []
    if planned and set(planned) <= {row["DATASET"] for row in done}:
        return None  # every dataset it ran succeeded
    started = marker["STARTED_AT"]
    gone = process_gone(info)
    if gone is False or (gone is None and now - started < timedelta(hours=STALE_AFTER_HOURS)):
        return None  # still running, or cannot tell yet
    published = ", ".join(f"{row['DATASET']} ({_count(row['ROWS_WRITTEN'])} rows)" for row in done)
    why = (f"process {info.get('pid')} on {info.get('host')} is gone" if gone
           else f"no end recorded within {STALE_AFTER_HOURS} h")
    return RunRecord(
        run_id, "run", None, str(marker["ENVIRONMENT"]), ABANDONED, started=started,
        finished=max(row["FINISHED_AT"] for row in run_rows), parameters=_json(marker["PARAMETERS"]),
        error=f"abandoned: the run never finished ({why}; killed?)",
        detail=f"published before it stopped: {published or 'nothing'}; planned: {', '.join(planned) or '?'}")


def _count(rows: object) -> str:
    return "?" if rows is None else f"{int(rows):,}"


def _json(text: object) -> dict[str, Any]:
    """A JSON object stored in a column, or {} when it is missing or not one."""
    try:
        value = json.loads(text) if isinstance(text, str) else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def mark_abandoned(warehouse: Warehouse, target: Target) -> list[RunRecord]:
    """Record every abandoned run (one row each); returns them. Best effort, like record()."""
    try:
        runs = abandoned_runs(warehouse, target)
    except Exception as exc:  # noqa: BLE001 - the new run matters more than the old one's row
        log.warning("could not look for abandoned runs in %s.%s: %s", target, TABLE, error_line(exc))
        return []
    if runs:
        record(warehouse, target, *runs)
    return runs


def has_row(warehouse: Warehouse, target: Target, run_id: str, dataset: str, status: str | None = None) -> bool:
    """Whether run `run_id` already recorded anything (with `status`) for `dataset`."""
    if not exists(warehouse, target):
        return False
    found = warehouse.query_rows(target, f"SELECT COUNT(*) AS N FROM {TABLE} WHERE RUN_ID = ? AND DATASET = ?"
                                 + (" AND STATUS = ?" if status else ""), [run_id, dataset, *([status] if status else [])])
    return int(found[0]["N"]) > 0


def last_successes(warehouse: Warehouse, target: Target) -> dict[str, pd.Series]:
    """Per dataset, its latest succeeded pipeline run (ACTION run)."""
    if not exists(warehouse, target):
        return {}
    frame = warehouse.query(
        target, f"SELECT * FROM {TABLE} WHERE STATUS = ? AND ACTION = ? ORDER BY FINISHED_AT DESC",
        [SUCCEEDED, "run"])
    latest: dict[str, pd.Series] = {}
    for _, row in frame.iterrows():
        if isinstance(row["DATASET"], str):
            latest.setdefault(row["DATASET"], row)
    return latest


def to_text(frame: pd.DataFrame) -> str:
    """The history as a plain text table for the terminal."""
    if frame.empty:
        return "(no runs recorded)"
    # On use: a frame shown to a person (see to_frame).
    import pandas as pd

    shown = pd.DataFrame({
        "STARTED (UTC)": frame["STARTED_AT"].dt.strftime("%Y-%m-%d %H:%M:%S"),
        "RUN": frame["RUN_ID"],
        "ACTION": frame["ACTION"],
        "DATASET": frame["DATASET"].fillna("-"),
        "STATUS": frame["STATUS"],
        "ROWS": frame["ROWS_WRITTEN"].map(lambda n: "-" if pd.isna(n) else f"{int(n):,}"),
        "SECONDS": frame["DURATION_S"].map(lambda s: "-" if pd.isna(s) else f"{s:.1f}"),
        "BY": frame["RUN_BY"],
        "GIT": [("" if pd.isna(sha) else str(sha)[:10]) + ("+dirty" if not pd.isna(dirty) and bool(dirty) else "")
                for sha, dirty in zip(frame["GIT_SHA"], frame["GIT_DIRTY"])],
        "NOTEBOOK (+ HTML)": frame["NOTEBOOK"].fillna("").map(_with_html),
        # Last and cut short, so one long error does not widen every row; the table has it whole.
        "ERROR / DETAIL": [_shorten(error if isinstance(error, str) else (detail if isinstance(detail, str) else ""))
                           for error, detail in zip(frame["ERROR"], frame["DETAIL"])],
    })
    # Errors and details may quote what the HN API or a file said: escape control characters,
    # so nothing in a row can move the cursor, recolour or clear the terminal.
    for column in shown.columns:
        shown[column] = shown[column].map(lambda value: printable(value) if isinstance(value, str) else value)
    return shown.to_string(index=False, justify="left")


def _with_html(notebook: str) -> str:
    """A kept record's path, naming its HTML rendering too (hnpipe.runner.records)."""
    html = Path(notebook).with_suffix(".html") if notebook.endswith(".ipynb") else None
    return f"{notebook} (+ {html.name})" if html is not None and html.is_file() else notebook


def _shorten(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


# -- `hnpipe history` ---------------------------------------------------------------------
def add_arguments(parser) -> None:
    parser.add_argument("--env", choices=environments.ENVIRONMENTS,
                        help="whose history to read (default: HNPIPE_ENV, else local)")
    parser.add_argument("--dataset", help="only this dataset, e.g. ITEMS")
    parser.add_argument("--limit", type=int, default=20, help="at most this many rows (default 20)")
    parser.add_argument("--status", choices=(SUCCEEDED, FAILED, ABANDONED), help="only runs that ended so")


def main(args) -> int:
    env = args.env or environments.process_environment()
    target = environments.target_for(env)
    warehouse = reader(env, "hnpipe history")
    frame = read(warehouse, target, args.dataset, args.limit, args.status)
    print(f"run history of {env} ({target}.{TABLE}), newest first")
    print(to_text(frame))
    return 0
