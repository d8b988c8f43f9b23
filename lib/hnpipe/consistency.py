"""Notebooks that know about each other: which version of a table a notebook read, whether
another run is replacing it right now, and whether tables charted together come from one run.

A table's version is the run that last published it successfully (hnpipe.history); a run
replacing a table is one whose start marker plans it and that has not ended: `hnpipe run`'s
marker in the run history, or, for a notebook's fetch on an engine with a local directory
(DuckDB), a small file beside the database naming the kernel (written without the database's
write lock, so a fetch never waits for another notebook). Best effort: what cannot be looked
up says nothing rather than failing the notebook.
"""

from __future__ import annotations

import json
import os
import socket
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from hnpipe import datasets, history
from hnpipe.environments import Target
from hnpipe.warehouse.base import Warehouse


@dataclass(frozen=True)
class Version:
    table: str
    run_id: str | None
    finished: datetime | None
    rows: int | None = None

    def line(self) -> str:
        rows = f"{self.rows:,} rows, " if self.rows is not None else ""
        if self.run_id is None:
            return f"{self.table}: {rows}no successful run recorded"
        return f"{self.table}: {rows}published by run {self.run_id} at {self.finished:%Y-%m-%d %H:%M:%S} UTC"


def version(warehouse: Warehouse, target: Target, table: str, rows: int | None = None) -> Version:
    try:
        last = history.last_successes(warehouse, target).get(table)
    except Exception:  # noqa: BLE001 - best effort, see the module
        last = None
    if last is None:
        return Version(table, None, None, rows)
    return Version(table, str(last["RUN_ID"]), last["FINISHED_AT"].to_pydatetime(), rows)


def _marks(warehouse: Warehouse, target: Target, table: str) -> list[Path]:
    directory = getattr(warehouse, "directory", None)  # engines with local files only
    if directory is None or not Path(directory).is_dir():
        return []
    return sorted(Path(directory).glob(f".replacing.{target.database}.{target.schema}.{table}.*.json"))


def mark_replacing(warehouse: Warehouse, target: Target, table: str, run_id: str) -> Path | None:
    """Say (by a file beside the database) that this process is replacing `table`."""
    directory = getattr(warehouse, "directory", None)
    if directory is None:
        return None
    path = Path(directory) / f".replacing.{target.database}.{target.schema}.{table}.{run_id}.json"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"run_id": run_id, "pid": os.getpid(), "host": socket.gethostname(),
                                    "started": datetime.now(timezone.utc).isoformat()}))
    except OSError:
        return None
    return path


def unmark(path: Path | None) -> None:
    if path is not None:
        path.unlink(missing_ok=True)


def replacing(warehouse: Warehouse, target: Target, table: str, own_run_id: str | None = None
              ) -> list[tuple[str, datetime]]:
    """Runs replacing `table` now: `hnpipe run`'s (history) and notebooks' (marks), oldest first."""
    found = list(history.replacing(warehouse, target, table, own_run_id))
    for path in _marks(warehouse, target, table):
        try:
            mark = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if mark.get("run_id") == own_run_id or history.process_gone(mark) is not False:
            continue  # our own, or its kernel is gone (or elsewhere: cannot tell)
        found.append((str(mark["run_id"]), datetime.fromisoformat(mark["started"])))
    return sorted(found, key=lambda pair: pair[1])


def replacing_note(warehouse: Warehouse, target: Target, table: str, own_run_id: str | None = None) -> str | None:
    """A warning when another run is replacing `table` now, naming the version read instead."""
    runs = replacing(warehouse, target, table, own_run_id)
    if not runs:
        return None
    run_id, started = runs[-1]
    used = version(warehouse, target, table)
    what = (f"run {used.run_id} (published {used.finished:%H:%M:%S} UTC)" if used.run_id
            else "the table as it is")
    return (f"warning: run {run_id} (started {started:%H:%M:%S} UTC) is replacing {table} right now; "
            f"this used {table} of {what}: run this cell again once run {run_id} has published")


def mixed_runs_warning(seen: dict[str, Version]) -> str | None:
    """Tables read together that come from different runs: which, and what is older."""
    known = {name: v for name, v in seen.items() if v.run_id is not None}
    if len({v.run_id for v in known.values()}) <= 1:
        return None
    parts = [f"{name} from run {v.run_id} ({v.finished:%Y-%m-%d %H:%M:%S})" for name, v in known.items()]
    stale = [name for name, v in known.items()
             for up in (datasets.DATASETS[name].upstream if name in datasets.DATASETS else ())
             if up in known and known[up].finished > v.finished]
    advice = (f"; {', '.join(stale)} was built before the current {'/'.join(sorted({u for n in stale for u in datasets.DATASETS[n].upstream}))}: "
              f"rerun {', '.join(f'notebooks/{datasets.DATASETS[n].notebook}' for n in stale)} (or `hnpipe run`)"
              if stale else "")
    return f"warning: these tables come from different runs: {', '.join(parts)}{advice}"
