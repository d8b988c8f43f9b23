"""The warehouse interface, and the embedded DuckDB engine behind local runs.

Two engines implement `Warehouse`: `DuckDBWarehouse` (here; one file per database under
`duckdb:<dir>`, tables `<SCHEMA>.<TABLE>`) and `SnowflakeWarehouse` (hnpipe.snowflake_warehouse).
Callers never build SQL with names in it: every database, schema and table name passes
`environments.check_identifier` first.

Writes are all-or-nothing: a table is published by loading a staging table
(`<TABLE>__STAGING_<RUN ID>`), checking it, and swapping it in within one transaction, so a
reader sees the old table or the new one, never a partial or missing one.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Callable, Sequence

import pandas as pd

from hnpipe.environments import Target, check_identifier
from hnpipe.errors import WarehouseError

WriteGuard = Callable[[Target], None]


@dataclass(frozen=True)
class Check:
    """A quality check run on the staging table before the swap.

    `sql` selects the offending rows from `{table}` (a placeholder the engine fills with the
    staging table's qualified name); the check passes when it returns no row.
    """

    name: str
    sql: str


def staging_table_name(table: str, run_id: str) -> str:
    return check_identifier(f"{check_identifier(table, 'table')}__STAGING_{run_id.upper()}", "staging table")


class Warehouse(ABC):
    """What the pipeline needs from a warehouse; both engines behave the same.

    `write_guard`, when given, is called with the connection's *actual* current
    database.schema right before every write, and raises to refuse it.
    """

    engine: str = "abstract"

    def __init__(self, write_guard: WriteGuard | None = None) -> None:
        self.write_guard = write_guard

    # -- reads -------------------------------------------------------------------------
    @abstractmethod
    def list_databases(self) -> list[str]:
        """Names of the databases this warehouse holds, sorted."""

    def database_exists(self, database: str) -> bool:
        return check_identifier(database, "database") in self.list_databases()

    @abstractmethod
    def list_tables(self, target: Target) -> dict[str, int]:
        """Tables in target's schema with their row counts ({} when the schema is missing)."""

    def table_exists(self, target: Target, table: str) -> bool:
        return check_identifier(table, "table") in self.list_tables(target)

    @abstractmethod
    def read_table(self, target: Target, table: str) -> pd.DataFrame:
        """The whole table, ordered by ID when it has one."""

    @abstractmethod
    def query(self, target: Target, sql: str, params: Sequence[object] = ()) -> pd.DataFrame:
        """Run a read-only SELECT with target as the current database.schema."""

    # -- writes ------------------------------------------------------------------------
    @abstractmethod
    def ensure_schema(self, target: Target) -> None:
        """Create target's database (embedded engine only) and schema if missing."""

    @abstractmethod
    def publish_frame(
        self, target: Target, table: str, frame: pd.DataFrame, run_id: str,
        checks: Sequence[Check] = (),
    ) -> int:
        """Atomically replace target.table with `frame`; returns the rows published."""

    @abstractmethod
    def publish_query(
        self, target: Target, table: str, select_sql: str, run_id: str,
        checks: Sequence[Check] = (),
    ) -> int:
        """Atomically replace target.table with the result of `select_sql`, computed inside
        the warehouse (unqualified names resolve in target's schema); returns the rows."""

    @abstractmethod
    def clone_database(self, source: str, dest: str) -> None:
        """Make `dest` a fresh, consistent copy of `source`, replacing any earlier `dest`."""

    @abstractmethod
    def drop_database(self, database: str) -> bool:
        """Drop a PRODUCTION_CLONE_<digits> database; returns False if it did not exist.
        Any other name is refused, whatever the caller."""

    def _guard(self, actual: Target) -> None:
        if self.write_guard is not None:
            self.write_guard(actual)


def open_warehouse(spec: str, write_guard: WriteGuard | None = None, **options) -> Warehouse:
    """The warehouse for a spec from `environments.warehouse_spec`: 'duckdb:<dir>' or 'snowflake'."""
    if spec.startswith("duckdb:"):
        return DuckDBWarehouse(spec.partition(":")[2], write_guard=write_guard, **options)
    if spec == "snowflake":
        from hnpipe.snowflake_warehouse import SnowflakeWarehouse

        return SnowflakeWarehouse(write_guard=write_guard, **options)
    raise WarehouseError(f"unknown warehouse {spec!r}: use 'snowflake' or 'duckdb:<directory>'")


# -- DuckDB ------------------------------------------------------------------------------
# (implementation below)
