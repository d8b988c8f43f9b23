"""Kept versions of the published tables, and putting one back (`hnpipe restore`).

Every publish keeps the table it replaces as `<TABLE>__VERSION_<RUN ID>`, named after the run
that replaced it: a rename inside the swap on DuckDB, and on Snowflake the staging table that
`SWAP WITH` leaves holding the old data, renamed (zero-copy either way). The `keep_versions`
newest versions of each table are kept (parameter, default 5); older ones are dropped.

    hnpipe versions ITEMS              what can be restored: run, when it replaced it, rows
    hnpipe restore ITEMS --run RUN_ID  ITEMS as it was just before run RUN_ID replaced it

A restore is one atomic swap, like a publish, in the process environment's own target
(HNPIPE_ENV, guarded like every write). The table it replaces becomes a version itself, named
after the restore's own run id, so a restore can be undone by restoring that run. It is
recorded in the run history (ACTION restore) and alerts like a run when it fails. Restoring a
table does not touch the tables built from it: the message names them, and those that have a
version from the same run to restore too (or rebuild them all with `hnpipe run`).
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from hnpipe import config, datasets, environments, history
from hnpipe.environments import Target
from hnpipe.errors import HnpipeError, ParameterError
from hnpipe.run_context import RunContext
from hnpipe.warehouse import connect, reader
from hnpipe.warehouse.base import TableVersion, Warehouse, version_table_name


@dataclass(frozen=True)
class Restored:
    env: str
    target: Target
    table: str
    run: str  # the run whose replaced version was put back
    restore_run_id: str  # the restore's own run id: the replaced table's version name
    rows: int
    downstream: tuple[str, ...]  # published tables built from this one, left as they are
    restorable: tuple[str, ...]  # those of them with a version from the same run

    def to_text(self) -> str:
        lines = [f"restored {self.target}.{self.table} as it was before run {self.run}: {self.rows:,} rows",
                 f"the table it replaced is kept as a version: undo with "
                 f"`hnpipe restore {self.table} --run {self.restore_run_id}`"]
        if self.downstream:
            how = f"rebuild them with `hnpipe run --env {self.env}`"
            if self.restorable:
                how = f"restore {', '.join(self.restorable)} with --run {self.run} too, or {how}"
            lines.append(f"built from {self.table} and not restored: {', '.join(self.downstream)}; {how}")
        return "\n".join(lines)


def _table(name: object) -> str:
    return datasets.get(name).name  # one line naming the datasets when unknown


def check_run_id(run: object) -> str:
    if not config.fits_in_a_name(run):
        raise ParameterError(f"invalid run id {run!r}: use the RUN column of `hnpipe versions`, "
                             "e.g. 20261121T140102_3fa9c1")
    return run


def kept_versions(warehouse: Warehouse, target: Target, table: str) -> list[TableVersion]:
    """The versions of `table` that can be restored, newest first."""
    return warehouse.list_versions(target, _table(table))


def restore(table: str, run: str, *, warehouse: Warehouse | None = None) -> Restored:
    """Put back `table` as it was before run `run` replaced it, in HNPIPE_ENV's own target."""

    table, run = _table(table), check_run_id(run)
    # params/<env>.yaml (keep_versions, credentials' names); the restore is a run of its own
    context = RunContext.for_command(environments.process_environment(), run_id=config.new_run_id())
    if warehouse is not None:
        return _restore(warehouse, context, table, run)
    with connect(context, notebook="restore") as warehouse:  # the session ends with the command
        return _restore(warehouse, context, table, run)


def _restore(warehouse: Warehouse, context: RunContext, table: str, run: str) -> Restored:
    env, values, target = context.env, context.values, context.target
    wanted = version_table_name(table, run)
    kept = kept_versions(warehouse, target, table)
    if wanted not in {version.name for version in kept}:
        listed = ", ".join(version.run_id for version in kept) or "none"
        raise HnpipeError(f"no kept version of {target}.{table} from run {run}: kept are {listed} "
                          f"(see `hnpipe versions {table}`)")
    restore_run_id = context.run_id
    parameters = {"table": table, "run": run, "keep_versions": values["keep_versions"]}
    # What recording or alerting has to say joins the command's one line.
    with history.warnings_held(*history.SIDE_NOTE_LOGGERS) as notes:
        try:
            with history.recording(warehouse, target, action="restore", env=env, dataset=table,
                                   parameters=parameters, run_id=restore_run_id) as entry:
                rows = warehouse.restore_version(target, table, run, restore_run_id, values["keep_versions"])
                entry.rows = rows
                entry.detail = f"put back {table} as before run {run}; the replaced table is version {restore_run_id}"
        except HnpipeError as error:
            if notes:
                raise HnpipeError(f"{error}; " + "; ".join(notes)) from None
            raise
    for note in notes:
        print(f"warning: {note}")
    present = warehouse.list_tables(target, bookkeeping=True)
    downstream = tuple(name for name in datasets.downstream(table) if name in present)
    restorable = tuple(name for name in downstream if version_table_name(name, run) in present)
    return Restored(env, target, table, run, restore_run_id, rows, downstream, restorable)


def to_text(target: Target, table: str, kept: list[TableVersion]) -> str:
    header = f"kept versions of {target}.{table}, newest first"
    if not kept:
        return f"{header}\n(none: a version is kept each time a publish replaces {table})"
    shown = pd.DataFrame({
        "RUN (that replaced it)": [version.run_id for version in kept],
        "REPLACED AT (UTC)": [version.replaced_at.strftime("%Y-%m-%d %H:%M:%S") if version.replaced_at else "?"
                              for version in kept],
        "ROWS": [f"{version.rows:,}" for version in kept],
    })
    return "\n".join([header, shown.to_string(index=False, justify="left"),
                      f"restore one with: hnpipe restore {table} --run <RUN>"])


# -- `hnpipe versions` ---------------------------------------------------------------------
def add_arguments(parser) -> None:
    parser.add_argument("table", help="a dataset, e.g. ITEMS")
    parser.add_argument("--env", choices=environments.ENVIRONMENTS,
                        help="whose versions to list (default: HNPIPE_ENV, else local)")


def main(args) -> int:

    table = _table(args.table)
    env = args.env or environments.process_environment()
    target = environments.target_for(env)
    with reader(env, "hnpipe versions") as warehouse:
        print(to_text(target, table, kept_versions(warehouse, target, table)))
    return 0


# `hnpipe restore TABLE --run RUN_ID` (the cli finds these by the "restore_" prefix)
def restore_add_arguments(parser) -> None:
    parser.add_argument("table", help="a dataset, e.g. ITEMS")
    parser.add_argument("--run", required=True, metavar="RUN_ID",
                        help="the run whose replacement to undo: the RUN column of `hnpipe versions TABLE`")


def restore_main(args) -> int:
    print(restore(args.table, args.run).to_text())
    return 0
