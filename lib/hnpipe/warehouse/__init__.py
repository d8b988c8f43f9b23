"""Warehouses: one interface (base), a registry of engines, one module per engine, and the one
place an environment becomes a warehouse.

`connect(run)` is how every run gets its guarded warehouse (one per run, in a `with` block);
`reader(env, command)` one that refuses every write. Engines import nothing above this package.
The module map is docs/development.md.
"""

from __future__ import annotations

import functools
import os
from typing import Any, Mapping, Sequence

from hnpipe import config, environments, params
from hnpipe.environments import Target
from hnpipe.errors import GuardError
from hnpipe.run_context import RunContext
from hnpipe.warehouse.base import (
    HISTORY_TABLE,
    Gate,
    TableVersion,
    Warehouse,
    WriteGuard,
    is_bookkeeping_table,
)
from hnpipe.warehouse.registry import WarehouseSpec, engine_class, parse_spec

__all__ = ["Gate", "HISTORY_TABLE", "TableVersion", "Warehouse", "WarehouseSpec", "WriteGuard", "connect",
           "engine_class", "frame_from_arrow", "is_bookkeeping_table", "open_environment", "open_warehouse",
           "parse_spec", "reader", "spec_for"]

# Imported on first use: hnpipe.datasets needs only `Gate` from here, and `hnpipe run` reads
# the datasets before it starts the kernels, so importing pandas and duckdb here would put
# them (about 0.5 s, 60 MiB) on every run's start-up path and in its process.
_LAZY = {"DuckDBWarehouse": "hnpipe.warehouse.duckdb_engine", "frame_from_arrow": "hnpipe.warehouse.frames"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# Without HNPIPE_WAREHOUSE, local runs on the embedded engine and the shared environments on
# Snowflake (docs/environments.md).
DEFAULT_ENGINE = {"local": "duckdb"}
SHARED_ENGINE = "snowflake"


def spec_for(env: str, environ: Mapping[str, str] | None = None) -> WarehouseSpec:
    """Which engine serves `env`: HNPIPE_WAREHOUSE, else DEFAULT_ENGINE's choice."""
    environ = os.environ if environ is None else environ
    return parse_spec(environ.get("HNPIPE_WAREHOUSE") or DEFAULT_ENGINE.get(env, SHARED_ENGINE))


def open_warehouse(spec: WarehouseSpec | str, write_guard: WriteGuard | None = None, **options) -> Warehouse:
    """The warehouse for a spec (`spec_for(env)`; a string is parsed as HNPIPE_WAREHOUSE is).
    `options` as `Warehouse.open` takes them: each engine uses those that apply to it."""
    if isinstance(spec, str):
        spec = parse_spec(spec, "warehouse")
    return engine_class(spec).open(spec, write_guard, **options)


def connect(run: RunContext, notebook: str = "") -> Warehouse:
    """The warehouse a run writes with: `run.env`'s engine, its write guard and (where sessions
    are tagged) the query tag with the run's id. Use it in a `with` block: it closes the session.

    On an engine that opens files, only production (in a process that runs as production) opens
    PRODUCTION for writing: every other environment opens its file read-only, whatever the
    guard would say.
    """
    return _guarded(run.env, run.values, notebook, run.run_id, guard=run.check_write)


def open_environment(env: str, values: Mapping[str, Any], notebook: str = "", *,
                     environ: Mapping[str, str] | None = None,
                     read_only_databases: Sequence[str] | None = None) -> Warehouse:
    """`env`'s guarded warehouse for a command that is not a run of the pipeline (admin, which
    has no target of its own); like `connect`. `read_only_databases` overrides which databases
    open read-only (admin never writes PRODUCTION); credentials are the ones `values` name."""
    return _guarded(env, values, notebook, config.current_run_id(),
                    functools.partial(environments.check_write, env, environ=environ), environ, read_only_databases)


def _guarded(env: str, values: Mapping[str, Any], notebook: str, run_id: str, guard: WriteGuard,
             environ: Mapping[str, str] | None = None,
             read_only_databases: Sequence[str] | None = None) -> Warehouse:
    spec = spec_for(env, environ)
    if read_only_databases is None:
        writes_production = env == "production" and environments.process_environment(environ) == "production"
        read_only_databases = () if writes_production else ("PRODUCTION",)

    def tag() -> dict[str, str]:  # asks git for the commit: only engines that tag sessions call it
        return {"env": env, "notebook": notebook, "run_id": run_id, "git_sha": config.git_sha()}

    return open_warehouse(spec, write_guard=guard, env_names=values.get("snowflake_env") or None, query_tag=tag,
                          read_only_databases=read_only_databases, on_lock_wait=_say)


def _say(line: str) -> None:
    """A lock wait, said where the person waiting looks (hnpipe.progress)."""
    # Imported on use: progress only matters when a file is locked.
    from hnpipe import progress

    progress.say(line)


def _refuse_writes(command: str, actual: Target) -> None:
    raise GuardError(f"refused write to {actual}: {command} only reads")


def reader(env: str, command: str, values: Mapping[str, Any] | None = None) -> Warehouse:
    """`env`'s warehouse opened for reading only (history, versions, docs, the dry run): every
    write is refused. Credentials are the ones `values` (else params/<env>.yaml) name."""
    spec = spec_for(env)
    guard = functools.partial(_refuse_writes, command)
    if values is None and engine_class(spec).LOGS_IN:
        values = params.params_file_values(env)

    def tag() -> dict[str, str]:
        return {"env": env, "command": command, "git_sha": config.git_sha()}

    return open_warehouse(spec, write_guard=guard, env_names=(values or {}).get("snowflake_env") or None,
                          query_tag=tag, read_only_databases=("PRODUCTION",), on_lock_wait=_say)
