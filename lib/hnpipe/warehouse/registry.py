"""The engines hnpipe knows, and the one place a warehouse spec is read.

A spec names an engine and, for engines that keep files, their directory: HNPIPE_WAREHOUSE is
`duckdb`, `duckdb:<directory>` or `snowflake`. `parse_spec` reads it once into a
`WarehouseSpec` (which engine serves which environment is hnpipe.warehouse.spec_for), which
every caller passes along instead of the string; what an engine can do
is asked of its class (`engine_class(spec).SUPPORTS_GRANTS`, hnpipe.warehouse.base), never by
comparing names outside this package.

A new engine is one module beside duckdb_engine.py and one `Engine` line below
(docs/development.md lists the other files it touches).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path

from hnpipe import config
from hnpipe.errors import GuardError


@dataclass(frozen=True)
class Engine:
    """One engine: its name in HNPIPE_WAREHOUSE and where its class lives (imported on first
    use: the Snowflake connector takes about a second to import, DuckDB and pandas 0.5 s)."""

    name: str
    module: str
    class_name: str
    keeps_files: bool  # its location is a local directory: `<name>:<directory>`


ENGINES: dict[str, Engine] = {engine.name: engine for engine in (
    Engine("duckdb", "hnpipe.warehouse.duckdb_engine", "DuckDBWarehouse", keeps_files=True),
    Engine("snowflake", "hnpipe.warehouse.snowflake_engine", "SnowflakeWarehouse", keeps_files=False),
)}


@dataclass(frozen=True)
class WarehouseSpec:
    """Which engine, and where: an absolute directory for engines that keep files, else ''."""

    engine: str
    location: str = ""

    def __str__(self) -> str:
        return f"{self.engine}:{self.location}" if self.location else self.engine

    @property
    def directory(self) -> Path | None:
        """The local directory the warehouse's files live in (None for a remote engine)."""
        return Path(self.location) if ENGINES[self.engine].keeps_files else None


def _allowed() -> str:
    forms = [form for engine in ENGINES.values()
             for form in ((engine.name, f"{engine.name}:<directory>") if engine.keeps_files else (engine.name,))]
    return ", ".join(f"'{form}'" for form in forms[:-1]) + f" or '{forms[-1]}'"


def parse_spec(text: str, what: str = "HNPIPE_WAREHOUSE") -> WarehouseSpec:
    """`text` as a spec; an engine that keeps files without a directory gets the default one
    (.warehouse/ in the project), made absolute. Refused in one line naming what is allowed."""
    name, colon, location = str(text).partition(":")
    engine = ENGINES.get(name)
    if engine is None or (colon and not engine.keeps_files):
        raise GuardError(f"unknown {what} {text!r}: use {_allowed()}")
    if not engine.keeps_files:
        return WarehouseSpec(name)
    directory = location or str(config.default_warehouse_dir())
    return WarehouseSpec(name, str(Path(directory).expanduser().resolve()))


def engine_class(spec: WarehouseSpec) -> type:
    """The `Warehouse` subclass that implements `spec`'s engine (hnpipe.warehouse.base imports
    this module, so not named here), imported now; ask it for capabilities."""
    engine = ENGINES[spec.engine]
    return getattr(importlib.import_module(engine.module), engine.class_name)
