"""Warehouses: one interface (base), two engines, and the one place an environment becomes one.

`connect(run)` is how every run gets its guarded warehouse (one per run, in a `with` block);
`reader(env, command)` one that refuses every write. Engines import nothing above this package.
The module map is docs/development.md.
"""

from __future__ import annotations

import functools
from typing import Any, Mapping

from hnpipe import config, environments, params
from hnpipe.environments import Target
from hnpipe.errors import GuardError, WarehouseError
from hnpipe.run_context import RunContext
from hnpipe.warehouse.base import (
    HISTORY_TABLE,
    Gate,
    TableVersion,
    Warehouse,
    WriteGuard,
    is_bookkeeping_table,
)

__all__ = ["Gate", "HISTORY_TABLE", "TableVersion", "Warehouse", "WriteGuard", "connect",
           "frame_from_arrow", "is_bookkeeping_table", "open_environment", "open_warehouse", "reader"]

# Imported on first use: hnpipe.datasets needs only `Gate` from here, and `hnpipe run` reads
# the datasets before it starts the kernels, so importing pandas and duckdb here would put
# them (about 0.5 s, 60 MiB) on every run's start-up path and in its process.
_LAZY = {"DuckDBWarehouse": "hnpipe.warehouse.duckdb_engine", "frame_from_arrow": "hnpipe.warehouse.frames"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def open_warehouse(spec: str, write_guard: WriteGuard | None = None, **options) -> Warehouse:
    """The warehouse for a spec from `environments.warehouse_spec`: 'duckdb:<dir>' or 'snowflake'."""
    if spec.startswith("duckdb:"):
        # On use, like _LAZY above: the engine imports duckdb.
        from hnpipe.warehouse.duckdb_engine import DuckDBWarehouse

        return DuckDBWarehouse(spec.partition(":")[2], write_guard=write_guard, **options)
    if spec == "snowflake":
        # Imported on use: the connector takes about a second to import, and local runs
        # never need it.
        from hnpipe.warehouse.snowflake_engine import SnowflakeWarehouse

        return SnowflakeWarehouse(write_guard=write_guard, **options)
    raise WarehouseError(f"unknown warehouse {spec!r}: use 'snowflake' or 'duckdb:<directory>'")


def connect(run: RunContext, notebook: str = "") -> Warehouse:
    """The warehouse a run writes with: `run.env`'s engine, its write guard and (on Snowflake)
    the query tag with the run's id. Use it in a `with` block: it closes the session.

    On the embedded engine only production (in a process that runs as production) opens
    PRODUCTION for writing: every other environment opens its file read-only, whatever the
    guard would say.
    """
    return _guarded(run.env, run.values, notebook, run.run_id)


def open_environment(env: str, values: Mapping[str, Any], notebook: str = "") -> Warehouse:
    """`env`'s guarded warehouse for a command that is not a run of the pipeline (admin's
    handover, which has no target of its own); like `connect`."""
    return _guarded(env, values, notebook, config.current_run_id())


def _guarded(env: str, values: Mapping[str, Any], notebook: str, run_id: str) -> Warehouse:
    spec = environments.warehouse_spec(env)
    guard = functools.partial(environments.check_write, env)
    if spec == "snowflake":
        tag = {"env": env, "notebook": notebook, "run_id": run_id, "git_sha": config.git_sha()}
        return open_warehouse(spec, write_guard=guard, env_names=values.get("snowflake_env") or None,
                              query_tag=tag)
    writes_production = env == "production" and environments.process_environment() == "production"
    return open_warehouse(spec, write_guard=guard, on_lock_wait=_say,
                          read_only_databases=() if writes_production else ("PRODUCTION",))


def _say(line: str) -> None:
    """A lock wait, said where the person waiting looks (hnpipe.progress)."""
    # Imported on use: progress only matters when a file is locked.
    from hnpipe import progress

    progress.say(line)


def _refuse_writes(command: str, actual: Target) -> None:
    raise GuardError(f"refused write to {actual}: {command} only reads")


def reader(env: str, command: str, values: Mapping[str, Any] | None = None) -> Warehouse:
    """`env`'s warehouse opened for reading only (history, versions, docs): every write is
    refused. Snowflake credentials are the ones `values` (else params/<env>.yaml) name."""
    spec = environments.warehouse_spec(env)
    guard = functools.partial(_refuse_writes, command)
    if spec != "snowflake":
        return open_warehouse(spec, write_guard=guard, read_only_databases=("PRODUCTION",), on_lock_wait=_say)
    if values is None:
        values = params.params_file_values(env)
    return open_warehouse(spec, write_guard=guard, env_names=values.get("snowflake_env") or None,
                          query_tag={"env": env, "command": command, "git_sha": config.git_sha()})
