"""The warehouse interface, and the embedded DuckDB engine behind local runs.

Two engines implement `Warehouse`: `DuckDBWarehouse` (here; one file per database under
`duckdb:<dir>`, tables `<SCHEMA>.<TABLE>`) and `SnowflakeWarehouse` (hnpipe.snowflake_warehouse).
Callers never build SQL with names in it: every database, schema and table name passes
`environments.check_identifier` first.

Writes are all-or-nothing: a table is published by loading a staging table
(`<TABLE>__STAGING_<RUN ID>`), checking it, and swapping it in within one transaction, so a
reader sees the old table or the new one, never a partial or missing one. `publish_merge`
(incremental refresh) stages the table's kept rows plus new ones by one CREATE TABLE .. AS
SELECT, then goes through the same checks and swap. Rows are appended (`append_rows`, the run
history) by one INSERT in a transaction.

Besides the published tables a schema holds hnpipe's bookkeeping, which `list_tables` leaves
out (`is_bookkeeping_table`): staging tables (and publish_merge's `<STAGING>_DELTA` on
Snowflake), kept versions (`<TABLE>__VERSION_<RUN ID>`, see `publish_frame`'s keep_versions)
and the run history, PIPELINE_RUNS (hnpipe.history).
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from abc import ABC, abstractmethod
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterator, Mapping, Sequence, TypeVar

import duckdb
import pandas as pd
import pyarrow as pa

from hnpipe.environments import CLONE_NAME, CLONE_PREFIX, Target, check_identifier, is_identifier
from hnpipe.errors import GuardError, WarehouseError, WarehouseLockedError

WriteGuard = Callable[[Target], None]


@dataclass(frozen=True)
class Check:
    """A quality check run on the staging table before the swap.

    `sql` selects the offending rows from `{table}` (a placeholder the engine fills with the
    staging table's qualified name); the check passes when it returns no row. `explain`, when
    given, says what was expected, for checks whose rows are not offending items (counts).
    """

    name: str
    sql: str
    explain: str = ""


def check_failure(check: Check, count: int, names: Sequence[str], sample: Sequence[Sequence[object]]) -> str:
    """How a failed check reads in the error: its name, how many rows and a few ids."""
    at = list(names).index("ID") if "ID" in names else 0
    values = ", ".join(str(row[at]) for row in sample)
    if check.explain:
        return f"{check.name} ({check.explain}; got {names[at]} {values})"
    return f"{check.name} ({count} rows, e.g. {names[at]} {values})"


@dataclass(frozen=True)
class TableVersion:
    """A kept earlier version of a published table: `<TABLE>__VERSION_<RUN ID>`, where the
    run is the one that replaced it."""

    table: str
    name: str
    run_id: str  # as in the name: upper case
    rows: int

    @property
    def replaced_at(self) -> datetime | None:
        """When the replacing run started, read from its id (None for other run ids)."""
        match = _STAMPED_RUN_ID.fullmatch(self.run_id)
        if not match:
            return None
        return datetime.strptime(match.group(1), "%Y%m%dT%H%M%S").replace(tzinfo=timezone.utc)

    @property
    def run(self) -> str:
        """The run id as hnpipe writes it (config.new_run_id: lower-case hex)."""
        match = _STAMPED_RUN_ID.fullmatch(self.run_id)
        return f"{match.group(1)}_{match.group(2).lower()}" if match else self.run_id


_STAMPED_RUN_ID = re.compile(r"([0-9]{8}T[0-9]{6})_([0-9A-F]{6})", re.ASCII)


@dataclass(frozen=True)
class ColumnInfo:
    name: str
    type: str  # as the engine names it, e.g. BIGINT (DuckDB) or NUMBER (Snowflake)
    comment: str | None


@dataclass(frozen=True)
class TableInfo:
    name: str
    comment: str | None
    columns: tuple[ColumnInfo, ...]


@dataclass(frozen=True)
class DatabaseInfo:
    name: str
    created: datetime | None  # UTC
    size_bytes: int | None


STAGING_MARKER = "__STAGING_"  # staging tables are <TABLE>__STAGING_<RUN ID>
VERSION_MARKER = "__VERSION_"  # kept versions are <TABLE>__VERSION_<RUN ID that replaced it>
HISTORY_TABLE = "PIPELINE_RUNS"  # one row per dataset per run: hnpipe.history
MAX_KEPT_VERSIONS = 100


def is_bookkeeping_table(name: str) -> bool:
    """Whether a table is hnpipe's own (staging, kept version, run history), not published data."""
    return STAGING_MARKER in name or VERSION_MARKER in name or name == HISTORY_TABLE


def staging_table_name(table: str, run_id: str) -> str:
    return check_identifier(f"{check_identifier(table, 'table')}__STAGING_{run_id.upper()}", "staging table")


def delta_table_name(table: str, run_id: str) -> str:
    """Where publish_merge loads the new rows on engines that cannot read a frame in SQL
    (Snowflake). A staging name too, so a crashed run's leftover is hidden and dropped
    by the next publish of the table like any staging table."""
    return check_identifier(f"{staging_table_name(table, run_id)}_DELTA", "delta table")


def check_keep_ids(keep_ids: object, frame: pd.DataFrame, destination: str) -> tuple[int, int]:
    """publish_merge's (first, last) id range, refused in one line unless it is two whole
    numbers with first <= last and no row of `frame` (a DataFrame) falls inside it."""
    ok = (isinstance(keep_ids, tuple) and len(keep_ids) == 2
          and all(isinstance(v, int) and not isinstance(v, bool) for v in keep_ids))
    if not ok or keep_ids[0] > keep_ids[1]:
        raise WarehouseError(f"cannot merge into {destination}: keep_ids {keep_ids!r} is not "
                             "(first id, last id) with first <= last")
    if "ID" not in frame.columns:
        raise WarehouseError(f"cannot merge into {destination}: the new rows need an ID column")
    inside = frame["ID"][frame["ID"].between(*keep_ids).fillna(False).astype(bool)]
    if len(inside):
        raise WarehouseError(f"cannot merge into {destination}: {len(inside)} new rows have ids inside "
                             f"the kept range {keep_ids[0]}..{keep_ids[1]}, e.g. ID {inside.iloc[0]}")
    return keep_ids


def merge_select(kept_from: str, new_from: str, columns: Sequence[str], keep_ids: tuple[int, int]) -> str:
    """The one SELECT a merge stages: the rows of `kept_from` (the published table) whose ID
    is in keep_ids, then every row of `new_from`, both as `columns`. The engine passes the
    two table expressions (a quoted name, IDENTIFIER(?)); the columns are checked and quoted
    here, the ids are integers checked by check_keep_ids."""
    names = ", ".join(f'"{check_identifier(column, "column")}"' for column in columns)
    first, last = (int(value) for value in keep_ids)
    return (f'SELECT {names} FROM {kept_from} WHERE "ID" BETWEEN {first} AND {last} '
            f"UNION ALL SELECT {names} FROM {new_from}")


def version_table_name(table: str, run_id: str) -> str:
    if not isinstance(run_id, str) or not re.fullmatch(r"[A-Za-z0-9_]+", run_id, re.ASCII):
        raise WarehouseError(f"invalid run id {run_id!r}: use ASCII letters, digits and _ only")
    return check_identifier(f"{check_identifier(table, 'table')}{VERSION_MARKER}{run_id.upper()}", "version table")


def check_keep_versions(value: object) -> int | None:
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_KEPT_VERSIONS:
        raise WarehouseError(f"invalid keep_versions {value!r}: use a whole number from 0 to {MAX_KEPT_VERSIONS}")
    return value


def versions_to_drop(table: str, names: Sequence[str], keep: int) -> list[str]:
    """The versions of `table` beyond the `keep` newest (run ids sort by time)."""
    versions = sorted((name for name in names if name.startswith(table + VERSION_MARKER)), reverse=True)
    return versions[keep:]


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
    def list_tables(self, target: Target, bookkeeping: bool = False) -> dict[str, int]:
        """Tables in target's schema with their row counts ({} when the schema is missing).

        hnpipe's bookkeeping tables (staging, kept versions, PIPELINE_RUNS) only with
        `bookkeeping=True`."""

    def table_exists(self, target: Target, table: str) -> bool:
        return check_identifier(table, "table") in self.list_tables(target)

    @abstractmethod
    def read_table(self, target: Target, table: str) -> pd.DataFrame:
        """The whole table, ordered by ID when it has one."""

    @abstractmethod
    def query(self, target: Target, sql: str, params: Sequence[object] = ()) -> pd.DataFrame:
        """Run a read-only SELECT with target as the current database.schema."""

    @abstractmethod
    def query_across(self, databases: Sequence[str], sql: str, params: Sequence[object] = ()) -> pd.DataFrame:
        """A read-only SELECT over several databases, which `sql` names as
        "<DATABASE>"."<SCHEMA>"."<TABLE>" (the data diff compares PRODUCTION with a clone)."""

    @abstractmethod
    def describe_databases(self) -> list[DatabaseInfo]:
        """Every database with its creation time and size (None where the engine cannot tell)."""

    # -- writes ------------------------------------------------------------------------
    @abstractmethod
    def ensure_schema(self, target: Target) -> None:
        """Create target's database (embedded engine only) and schema if missing."""

    @abstractmethod
    def publish_frame(
        self, target: Target, table: str, frame: pd.DataFrame, run_id: str,
        checks: Sequence[Check] = (), keep_versions: int | None = None,
    ) -> int:
        """Atomically replace target.table with `frame`; returns the rows published.

        `keep_versions`: None drops the replaced table; a number K keeps it as
        `<TABLE>__VERSION_<run_id>` (renamed in the swap, never copied) and drops all but
        the K newest versions of the table. A run that replaces a table twice keeps the
        version from before its first publish.
        """

    @abstractmethod
    def publish_query(
        self, target: Target, table: str, select_sql: str, run_id: str,
        checks: Sequence[Check] = (), keep_versions: int | None = None,
    ) -> int:
        """Atomically replace target.table with the result of `select_sql`, computed inside
        the warehouse (unqualified names resolve in target's schema); returns the rows.
        `keep_versions` as for publish_frame."""

    @abstractmethod
    def publish_merge(
        self, target: Target, table: str, frame: pd.DataFrame, run_id: str,
        keep_ids: tuple[int, int], checks: Sequence[Check] = (), keep_versions: int | None = None,
    ) -> int:
        """Atomically replace target.table with its own rows whose ID lies in `keep_ids`
        (first, last; inclusive) plus every row of `frame`, merged inside the warehouse by
        one CREATE TABLE .. AS SELECT into the staging table, then checked and swapped in
        like publish_frame; returns the rows published. The table must exist, and no row of
        `frame` may have an ID inside `keep_ids` (refused before anything is written).
        Used by incremental refresh (hnpipe.refresh)."""

    def list_versions(self, target: Target, table: str) -> list[TableVersion]:
        """The kept versions of target.table, newest first."""
        check_identifier(table, "table")
        tables = self.list_tables(target, bookkeeping=True)
        versions = [TableVersion(table, name, name[len(table) + len(VERSION_MARKER):], rows)
                    for name, rows in tables.items() if name.startswith(table + VERSION_MARKER)]
        return sorted(versions, key=lambda version: version.run_id, reverse=True)

    @abstractmethod
    def restore_version(self, target: Target, table: str, run_id: str, restore_run_id: str,
                        keep_versions: int) -> int:
        """Atomically put back the version of target.table that run `run_id` replaced; the
        table it replaces becomes the version of `restore_run_id` (so a restore can itself
        be undone). Keeps the `keep_versions` newest versions; returns the rows restored."""

    @abstractmethod
    def describe_table(self, target: Target, table: str) -> TableInfo:
        """target.table's comment and columns (name, type, comment), in column order."""

    @abstractmethod
    def comment_table(self, target: Target, table: str, comment: str,
                      column_comments: Mapping[str, str] = {}) -> None:
        """Set the comments of target.table and of its columns (COMMENT ON; guarded like
        every write). Every column named must exist."""

    @abstractmethod
    def append_rows(self, target: Target, table: str, frame: pd.DataFrame) -> int:
        """Append `frame`'s rows to target.table (created from the frame's columns when missing)
        in one transaction: all rows or none. Returns the rows appended."""

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
T = TypeVar("T")

# How frames travel: pandas <-> Arrow <-> DuckDB. One mapping from Arrow to pandas, used by
# both the ItemsBuilder and warehouse reads, so a published frame reads back identical.

_NULLABLE_INTS = {
    pa.int8(): pd.Int8Dtype(), pa.int16(): pd.Int16Dtype(),
    pa.int32(): pd.Int32Dtype(), pa.int64(): pd.Int64Dtype(),
    pa.uint8(): pd.UInt8Dtype(), pa.uint16(): pd.UInt16Dtype(),
    pa.uint32(): pd.UInt32Dtype(), pa.uint64(): pd.UInt64Dtype(),
}


def _pandas_dtype(arrow_type: pa.DataType):
    """types_mapper for Table.to_pandas: nullable pandas dtypes instead of float/object."""
    if arrow_type in _NULLABLE_INTS:
        return _NULLABLE_INTS[arrow_type]
    if pa.types.is_boolean(arrow_type):
        return pd.BooleanDtype()
    if pa.types.is_string(arrow_type):
        return pd.StringDtype()  # Arrow-backed: wraps the Arrow buffers, no Python strings
    if pa.types.is_list(arrow_type):
        return pd.ArrowDtype(arrow_type)  # a cell reads as a Python list, or NA
    return None  # the default, e.g. timestamp[us, UTC] -> datetime64[us, UTC]


def frame_from_arrow(table: pa.Table) -> pd.DataFrame:
    """An Arrow table as a frame with hnpipe's dtypes (Int64, boolean, string, UTC, lists).

    Naive timestamps are UTC wall time (how the warehouses store them) and come back UTC.
    """
    columns = []
    for field, column in zip(table.schema, table.columns):
        kind = field.type
        if pa.types.is_timestamp(kind) and kind.tz is None:
            column = column.cast(pa.timestamp(kind.unit, tz="UTC"))  # same values, labelled UTC
        elif pa.types.is_large_string(kind) or pa.types.is_string_view(kind):
            column = column.cast(pa.string())
        elif pa.types.is_list(kind) or pa.types.is_large_list(kind):
            column = column.cast(pa.list_(kind.value_type))  # DuckDB names the item field "l"
        columns.append(column)
    return pa.table(columns, names=table.column_names).to_pandas(types_mapper=_pandas_dtype)


def _one_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def check_publishable(frame: object, destination: str) -> None:
    """Refuse, in one line, a frame neither engine can publish: not a DataFrame, column names
    that are not identifiers, duplicate columns."""
    if not isinstance(frame, pd.DataFrame):
        raise WarehouseError(f"cannot publish {destination}: expected a pandas DataFrame, got {type(frame).__name__}")
    for column in frame.columns:
        check_identifier(column, f"column of {destination}")
    if frame.columns.has_duplicates:
        duplicated = sorted(set(frame.columns[frame.columns.duplicated()]))
        raise WarehouseError(f"cannot publish {destination}: duplicate columns {duplicated}")


def _frame_to_arrow(frame: pd.DataFrame, destination: str) -> pa.Table:
    """The frame as the Arrow table DuckDB loads; refuses what cannot be stored, in one line.

    Timestamps become naive UTC wall time in microseconds (DuckDB TIMESTAMP, like Snowflake
    TIMESTAMP_NTZ); naive ones are taken to be UTC already. Converted in Arrow so the
    session time zone never shifts them.
    """
    check_publishable(frame, destination)
    try:
        table = pa.Table.from_pandas(frame, preserve_index=False)
        columns = []
        for field, column in zip(table.schema, table.columns):
            if pa.types.is_timestamp(field.type):
                # A tz-aware column holds UTC instants; dropping the label keeps them UTC.
                # safe=True: refuse sub-microsecond values rather than truncating silently.
                column = column.cast(pa.timestamp("us"), safe=True)
            columns.append(column)
        return pa.table(columns, names=table.column_names)
    except (pa.ArrowException, TypeError, ValueError) as exc:
        raise WarehouseError(f"cannot publish {destination}: {_one_line(exc)}") from exc


def _q(name: str) -> str:
    """A checked identifier, double-quoted so DuckDB keeps it exactly (upper case)."""
    return f'"{check_identifier(name)}"'


def check_clone_name(database: object, action: str) -> str:
    """Only branch clones may be replaced or dropped wholesale, whoever asks (both engines)."""
    if not isinstance(database, str) or not CLONE_NAME.fullmatch(database):
        raise GuardError(
            f"refused to {action} database {database!r}: only {CLONE_PREFIX}<digits> databases "
            f"(e.g. {CLONE_PREFIX}123) may be the target of {action}"
        )
    return database


def _lock_timeout(value: float | None) -> float:
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


class DuckDBWarehouse(Warehouse):
    """The embedded warehouse: `<directory>/<DATABASE>.duckdb`, tables `<SCHEMA>.<TABLE>`.

    Connections live for one operation only, because JupyterLab may open the same files.
    DuckDB lets one process write a file (or several read it): when another process holds
    it, operations wait up to `lock_timeout_s` (default: HNPIPE_LOCK_TIMEOUT_S, else 30 s),
    then raise WarehouseLockedError. Reads open files read-only. `read_only_databases`
    are never opened for writing (non-production environments use it for PRODUCTION).
    """

    engine = "duckdb"

    def __init__(
        self,
        directory: str | os.PathLike,
        write_guard: WriteGuard | None = None,
        lock_timeout_s: float | None = None,
        read_only_databases: Sequence[str] = (),
    ) -> None:
        super().__init__(write_guard)
        self.directory = Path(directory)
        self.lock_timeout_s = _lock_timeout(lock_timeout_s)
        if isinstance(read_only_databases, str):
            read_only_databases = (read_only_databases,)
        self.read_only_databases = frozenset(
            check_identifier(name, "read-only database") for name in read_only_databases
        )

    def __repr__(self) -> str:
        return f"DuckDBWarehouse({str(self.directory)!r})"

    def path(self, database: str) -> Path:
        """The file holding `database`."""
        return self.directory / f"{check_identifier(database, 'database')}.duckdb"

    # -- reads -------------------------------------------------------------------------
    def list_databases(self) -> list[str]:
        if not self.directory.is_dir():
            return []
        return sorted(
            path.stem for path in self.directory.glob("*.duckdb")
            if path.is_file() and is_identifier(path.stem)
        )

    def list_tables(self, target: Target, bookkeeping: bool = False) -> dict[str, int]:
        with self._reading(target.database) as con:
            if con is None:
                return {}
            names = [
                name for name in _table_names(con, target.schema)
                # Staging, kept versions and the history are hnpipe's, not published data.
                if is_identifier(name) and (bookkeeping or not is_bookkeeping_table(name))
            ]
            qualified = f"{_q(target.database)}.{_q(target.schema)}"
            return {
                name: con.execute(f"SELECT COUNT(*) FROM {qualified}.{_q(name)}").fetchone()[0]
                for name in names
            }

    def read_table(self, target: Target, table: str) -> pd.DataFrame:
        check_identifier(table, "table")
        with self._reading(target.database) as con:
            if con is None or table not in _table_names(con, target.schema):
                raise WarehouseError(f"no table {target}.{table} in {self.directory}")
            columns = [row[0] for row in con.execute(
                "SELECT column_name FROM duckdb_columns() "
                "WHERE database_name = current_database() AND schema_name = ? AND table_name = ?",
                [target.schema, table],
            ).fetchall()]
            order = ' ORDER BY "ID"' if "ID" in columns else ""
            arrow = con.sql(
                f"SELECT * FROM {_q(target.database)}.{_q(target.schema)}.{_q(table)}{order}"
            ).to_arrow_table()
        return frame_from_arrow(arrow)

    def query(self, target: Target, sql: str, params: Sequence[object] = ()) -> pd.DataFrame:
        with self._reading(target.database) as con:
            if con is None:
                raise WarehouseError(f"no database {target.database} in {self.directory}")
            if target.schema not in _schema_names(con):
                raise WarehouseError(f"no schema {target} in {self.directory}")
            con.execute(f"USE {_q(target.database)}.{_q(target.schema)}")
            try:
                # The file is open read-only, so anything but a read fails here.
                relation = con.sql(sql, params=list(params) or None)
                if relation is None:
                    raise WarehouseError(f"query in {target} returned no rows: query() runs SELECTs only")
                arrow = relation.to_arrow_table()
            except duckdb.Error as exc:
                raise WarehouseError(f"query in {target} failed: {_one_line(exc)}") from exc
        return frame_from_arrow(arrow)

    def query_across(self, databases: Sequence[str], sql: str, params: Sequence[object] = ()) -> pd.DataFrame:
        con = duckdb.connect()  # in memory; each database attached read-only under its name
        try:
            for database in dict.fromkeys(databases):
                path = self.path(database)
                if not path.is_file():
                    raise WarehouseError(f"no database {database} in {self.directory}")
                self._retry_locked(path, lambda: con.execute(
                    f"ATTACH {_sql_string(path)} AS {_q(database)} (READ_ONLY)"))
            try:
                arrow = con.sql(sql, params=list(params) or None).to_arrow_table()
            except duckdb.Error as exc:
                raise WarehouseError(f"query across {', '.join(databases)} failed: {_one_line(exc)}") from exc
        finally:
            con.close()
        return frame_from_arrow(arrow)

    def describe_databases(self) -> list[DatabaseInfo]:
        infos = []
        for name in self.list_databases():
            stat = self.path(name).stat()
            # A file's change time is when the clone was moved into place.
            infos.append(DatabaseInfo(name, datetime.fromtimestamp(stat.st_ctime, timezone.utc),
                                      stat.st_size))
        return infos

    # -- writes ------------------------------------------------------------------------
    def ensure_schema(self, target: Target) -> None:
        with self._writing(target):
            pass  # _writing creates the file and schema (after the guard)

    def publish_frame(
        self, target: Target, table: str, frame: pd.DataFrame, run_id: str,
        checks: Sequence[Check] = (), keep_versions: int | None = None,
    ) -> int:
        staging = staging_table_name(table, run_id)
        # Convert before opening anything: a frame that cannot be stored writes nothing.
        arrow = _frame_to_arrow(frame, f"{target}.{table}")
        checks = checked_checks(checks)
        keep = keep_plan(table, run_id, keep_versions)

        def load(con: duckdb.DuckDBPyConnection) -> None:
            con.register("hnpipe_frame", arrow)
            try:
                con.execute(f"CREATE TABLE {_q(staging)} AS SELECT * FROM hnpipe_frame")
            finally:
                con.unregister("hnpipe_frame")

        with self._writing(target) as con:
            return self._publish(con, target, table, staging, load, len(frame), checks, keep)

    def publish_query(
        self, target: Target, table: str, select_sql: str, run_id: str,
        checks: Sequence[Check] = (), keep_versions: int | None = None,
    ) -> int:
        staging = staging_table_name(table, run_id)
        checks = checked_checks(checks)
        keep = keep_plan(table, run_id, keep_versions)
        select_sql = select_sql.strip().rstrip(";")

        def load(con: duckdb.DuckDBPyConnection) -> None:
            # Unqualified names in select_sql resolve in target: _writing ran USE target.
            con.execute(f"CREATE TABLE {_q(staging)} AS {select_sql}")

        with self._writing(target) as con:
            return self._publish(con, target, table, staging, load, None, checks, keep)

    def publish_merge(
        self, target: Target, table: str, frame: pd.DataFrame, run_id: str,
        keep_ids: tuple[int, int], checks: Sequence[Check] = (), keep_versions: int | None = None,
    ) -> int:
        staging = staging_table_name(table, run_id)
        destination = f"{target}.{table}"
        arrow = _frame_to_arrow(frame, destination)  # everything checkable before opening anything
        keep_ids = check_keep_ids(keep_ids, frame, destination)
        checks = checked_checks(checks)
        keep = keep_plan(table, run_id, keep_versions)
        missing = f"cannot merge into {destination}: no such table; publish it whole first"
        if not self.table_exists(target, table):  # read-only: a refusal creates no file or schema
            raise WarehouseError(missing)

        def load(con: duckdb.DuckDBPyConnection) -> None:
            if table not in _table_names(con, target.schema):  # dropped since by another process
                raise WarehouseError(missing)
            # DuckDB reads the frame where it lies: no delta table needed.
            con.register("hnpipe_frame", arrow)
            try:
                con.execute(f"CREATE TABLE {_q(staging)} AS "
                            + merge_select(_q(table), "hnpipe_frame", arrow.column_names, keep_ids))
            finally:
                con.unregister("hnpipe_frame")

        with self._writing(target) as con:
            return self._publish(con, target, table, staging, load, None, checks, keep)

    def restore_version(self, target: Target, table: str, run_id: str, restore_run_id: str,
                        keep_versions: int) -> int:
        version = version_table_name(table, run_id)
        replaced = version_table_name(table, restore_run_id)
        keep = check_keep_versions(keep_versions)
        # Read first: a missing version is refused before anything is opened for writing.
        tables = list(self.list_tables(target, bookkeeping=True))
        if version not in tables:
            raise WarehouseError(missing_version_message(target, table, run_id, tables))
        with self._writing(target) as con:
            present = _table_names(con, target.schema)
            if version not in present:  # gone since: another process restored or pruned it
                raise WarehouseError(missing_version_message(target, table, run_id, present))
            if replaced in present:
                raise WarehouseError(f"refused to restore {target}.{table}: {replaced} exists already; "
                                     "use a new run id")
            rows = con.execute(f"SELECT COUNT(*) FROM {_q(version)}").fetchall()[0][0]
            statements = ([f"ALTER TABLE {_q(table)} RENAME TO {_q(replaced)}"] if table in present else [])
            statements.append(f"ALTER TABLE {_q(version)} RENAME TO {_q(table)}")
            after = [name for name in present if name != version] + ([replaced] if table in present else [])
            statements += [f"DROP TABLE {_q(old)}" for old in versions_to_drop(table, after, keep)]
            _in_transaction(con, statements)
        return rows

    def describe_table(self, target: Target, table: str) -> TableInfo:
        check_identifier(table, "table")
        with self._reading(target.database) as con:
            if con is None or table not in _table_names(con, target.schema):
                raise WarehouseError(f"no table {target}.{table} in {self.directory}")
            return _describe(con, target, table)

    def comment_table(self, target: Target, table: str, comment: str,
                      column_comments: Mapping[str, str] = {}) -> None:
        check_identifier(table, "table")
        statements = [f"COMMENT ON TABLE {_q(table)} IS {_duckdb_literal(comment)}"]
        statements += [f"COMMENT ON COLUMN {_q(table)}.{_q(column)} IS {_duckdb_literal(text)}"
                       for column, text in column_comments.items()]
        with self._writing(target) as con:
            if table not in _table_names(con, target.schema):
                raise WarehouseError(f"cannot comment {target}.{table}: no such table")
            check_comment_columns(target, table, [c.name for c in _describe(con, target, table).columns], column_comments)
            _in_transaction(con, statements)

    def append_rows(self, target: Target, table: str, frame: pd.DataFrame) -> int:
        destination = f"{target}.{check_identifier(table, 'table')}"
        arrow = _frame_to_arrow(frame, destination)  # before opening anything
        with self._writing(target) as con:
            con.register("hnpipe_rows", arrow)
            try:
                _in_transaction(con, [
                    f"CREATE TABLE IF NOT EXISTS {_q(table)} AS SELECT * FROM hnpipe_rows LIMIT 0",
                    # BY NAME: the frame's columns in any order; an unknown column fails the insert.
                    f"INSERT INTO {_q(table)} BY NAME SELECT * FROM hnpipe_rows",
                ])
            except duckdb.Error as exc:
                raise WarehouseError(f"cannot append to {destination}: {_one_line(exc)}") from exc
            finally:
                con.unregister("hnpipe_rows")
        return len(frame)

    def clone_database(self, source: str, dest: str) -> None:
        source = check_identifier(source, "source database")
        dest = check_clone_name(dest, "clone")
        if dest == source or dest in self.read_only_databases:
            raise GuardError(f"refused to clone {source} into {dest}: {dest} is the source or read-only")
        source_path, dest_path = self.path(source), self.path(dest)
        if not source_path.is_file():
            raise WarehouseError(f"cannot clone {source}: no database file {source_path}")
        # Build the copy beside its destination, then rename it in place (atomic on one
        # file system): readers see the old clone or the new one, never half a copy.
        temporary = dest_path.with_name(f".{dest}.duckdb.{os.getpid()}.tmp")
        _remove_database_files(temporary)
        try:
            con = duckdb.connect()  # in memory; the files are attached below
            try:
                # READ_ONLY: a consistent snapshot that never writes the source, and that
                # shares the file with other readers.
                self._retry_locked(source_path, lambda: con.execute(
                    f"ATTACH {_sql_string(source_path)} AS hnpipe_source (READ_ONLY)"))
                con.execute(f"ATTACH {_sql_string(temporary)} AS hnpipe_clone")
                con.execute("COPY FROM DATABASE hnpipe_source TO hnpipe_clone")
                con.execute("CHECKPOINT hnpipe_clone")  # everything in the file, no WAL
                con.execute("DETACH hnpipe_clone")
                con.execute("DETACH hnpipe_source")
            finally:
                con.close()
            if dest_path.exists():
                self._wait_until_unused(dest_path)
            # A WAL left beside the old clone would be replayed into the new one.
            _remove_file(_wal(dest_path))
            os.replace(temporary, dest_path)
        except BaseException:
            _remove_database_files(temporary)
            raise

    def drop_database(self, database: str) -> bool:
        database = check_clone_name(database, "drop")  # before touching the disk
        if database in self.read_only_databases:
            raise GuardError(f"refused to drop {database}: this warehouse opens it read-only")
        path = self.path(database)
        if not path.exists():
            return False
        self._wait_until_unused(path)
        _remove_database_files(path)
        return True

    # -- internals ---------------------------------------------------------------------
    def _connect(self, path: Path, read_only: bool) -> duckdb.DuckDBPyConnection:
        return self._retry_locked(path, lambda: duckdb.connect(str(path), read_only=read_only))

    def _retry_locked(self, path: Path, open_file: Callable[[], T]) -> T:
        """Run `open_file`, retrying while another process holds `path`'s lock."""
        deadline = time.monotonic() + self.lock_timeout_s
        pause = 0.02
        while True:
            try:
                return open_file()
            except duckdb.IOException as exc:
                if "Could not set lock" not in str(exc):
                    raise WarehouseError(f"cannot open {path}: {_one_line(exc)}") from exc
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    holder = re.search(r"\(PID \d+\)", str(exc))
                    raise WarehouseLockedError(
                        f"{path} is locked by another process{' ' + holder.group(0) if holder else ''}; "
                        f"waited {self.lock_timeout_s:g} s: close it there (e.g. a notebook "
                        "kernel) and retry, or raise HNPIPE_LOCK_TIMEOUT_S"
                    ) from None
                time.sleep(min(pause, remaining))
                pause = min(pause * 2, 0.5)

    def _wait_until_unused(self, path: Path) -> None:
        """Open `path` for writing and close it: waits out other processes (then raises
        WarehouseLockedError), and closing folds any WAL into the file."""
        self._connect(path, read_only=False).close()

    @contextmanager
    def _reading(self, database: str) -> Iterator[duckdb.DuckDBPyConnection | None]:
        """A read-only connection to `database`, or None when it has no file yet."""
        path = self.path(database)
        if not path.is_file():
            yield None
            return
        con = self._connect(path, read_only=True)
        try:
            yield con
        finally:
            con.close()

    @contextmanager
    def _writing(self, target: Target) -> Iterator[duckdb.DuckDBPyConnection]:
        """A connection whose current database.schema is target, after the guard allowed it.

        Creates the directory, file and schema when missing; if the guard refuses, what this
        call created is removed again, so a refused write leaves the disk as it was.
        """
        if target.database in self.read_only_databases:
            raise WarehouseError(
                f"refused write to {target}: this warehouse opens {target.database} read-only"
            )
        path = self.path(target.database)
        created_directory = not self.directory.exists()
        created_file = not path.exists()
        allowed = False
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            con = self._connect(path, read_only=False)
            try:
                self._use(con, target)
                allowed = True
                yield con
            finally:
                con.close()
        finally:
            if not allowed and created_file:
                _remove_database_files(path)
                if created_directory:
                    with contextlib.suppress(OSError):
                        self.directory.rmdir()

    def _use(self, con: duckdb.DuckDBPyConnection, target: Target) -> None:
        """Make target current, guarding with the connection's actual location first."""
        con.execute(f"USE {_q(target.database)}")
        if target.schema in _schema_names(con):
            con.execute(f"USE {_q(target.database)}.{_q(target.schema)}")
            # fetchall, not fetchone: DuckDB refuses register() while a result is unfinished.
            (location,) = con.execute("SELECT current_database(), current_schema()").fetchall()
            actual = Target(*location)
            self._guard(actual)
        else:
            # The schema is part of the write: guard the database it would be created in.
            actual = Target(con.execute("SELECT current_database()").fetchall()[0][0], target.schema)
            self._guard(actual)
            con.execute(f"CREATE SCHEMA {_q(target.schema)}")
            con.execute(f"USE {_q(target.database)}.{_q(target.schema)}")
        if actual != target:
            raise WarehouseError(f"refused write: asked for {target} but the connection is at {actual}")

    def _publish(
        self, con: duckdb.DuckDBPyConnection, target: Target, table: str, staging: str,
        load: Callable[[duckdb.DuckDBPyConnection], None], expected_rows: int | None,
        checks: Sequence[Check], keep: tuple[str, int] | None = None,
    ) -> int:
        """Load staging, check it, swap it in; on any failure drop staging, keep the table."""
        destination = f"{target}.{table}"
        present = _table_names(con, target.schema)
        for leftover in present:
            if leftover.startswith(table + STAGING_MARKER) and is_identifier(leftover):
                con.execute(f"DROP TABLE {_q(leftover)}")  # from an earlier run that crashed
        if keep is None or table not in present:
            swap = _swap_sql(table, staging)
        elif keep[0] in present:  # this run replaced the table before: keep that older version
            swap = _swap_sql(table, staging)
        else:
            swap = _swap_sql(table, staging, keep_as=keep[0])
        if keep is not None:
            kept = present + ([keep[0]] if table in present else [])
            swap += [f"DROP TABLE IF EXISTS {_q(old)}" for old in versions_to_drop(table, kept, keep[1])]
        try:
            try:
                load(con)
            except duckdb.Error as exc:
                raise WarehouseError(f"cannot load {destination}: {_one_line(exc)}") from exc
            rows = con.execute(f"SELECT COUNT(*) FROM {_q(staging)}").fetchone()[0]
            if expected_rows is not None and rows != expected_rows:
                raise WarehouseError(
                    f"refused to publish {destination}: staged {rows} rows, expected {expected_rows}"
                )
            self._run_checks(con, target, destination, staging, checks)
            _in_transaction(con, swap)
        except BaseException:
            with contextlib.suppress(duckdb.Error):
                con.execute(f"DROP TABLE IF EXISTS {_q(staging)}")
            raise
        return rows

    def _run_checks(
        self, con: duckdb.DuckDBPyConnection, target: Target, destination: str, staging: str,
        checks: Sequence[Check],
    ) -> None:
        qualified = f"{_q(target.database)}.{_q(target.schema)}.{_q(staging)}"
        failures = []
        for check in checks:
            offending = check.sql.replace("{table}", qualified).strip().rstrip(";")
            count = con.execute(f"SELECT COUNT(*) FROM ({offending}) AS offending").fetchone()[0]
            if count:
                sample = con.execute(f"SELECT * FROM ({offending}) AS offending LIMIT 5")
                names = [column[0] for column in con.description]
                failures.append(check_failure(check, count, names, sample.fetchall()))
        if failures:
            raise WarehouseError(f"refused to publish {destination}: failed checks: {'; '.join(failures)}")



def _swap_sql(table: str, staging: str, keep_as: str | None = None) -> list[str]:
    """Statements that replace table by staging; run in one transaction. With `keep_as` the
    old table is renamed to that version name instead of dropped."""
    old = f"ALTER TABLE {_q(table)} RENAME TO {_q(keep_as)}" if keep_as else f"DROP TABLE IF EXISTS {_q(table)}"
    return [old, f"ALTER TABLE {_q(staging)} RENAME TO {_q(table)}"]


def _describe(con: duckdb.DuckDBPyConnection, target: Target, table: str) -> TableInfo:
    where = "WHERE database_name = ? AND schema_name = ? AND table_name = ?"
    place = [target.database, target.schema, table]
    (comment,) = con.execute(f"SELECT comment FROM duckdb_tables() {where}", place).fetchall()[0]
    columns = con.execute(f"SELECT column_name, data_type, comment FROM duckdb_columns() {where} "
                          "ORDER BY column_index", place).fetchall()
    return TableInfo(table, comment or None, tuple(ColumnInfo(n, t, c or None) for n, t, c in columns))


def check_comment_text(text: object, what: str) -> str:
    if not isinstance(text, str):
        raise WarehouseError(f"invalid comment for {what}: {text!r} is not text")
    return text


def _duckdb_literal(text: str) -> str:
    return "'" + check_comment_text(text, "a table or column").replace("'", "''") + "'"


def check_comment_columns(target: Target, table: str, present: Sequence[str], wanted: Mapping[str, str]) -> None:
    missing = [check_identifier(column, "column") for column in wanted if column not in present]
    if missing:
        raise WarehouseError(f"cannot comment {target}.{table}: no column {', '.join(missing)} "
                             f"(it has {', '.join(present)})")


def _in_transaction(con: duckdb.DuckDBPyConnection, statements: Sequence[str]) -> None:
    con.execute("BEGIN TRANSACTION")
    try:
        for statement in statements:
            con.execute(statement)
        con.execute("COMMIT")
    except BaseException:
        with contextlib.suppress(duckdb.Error):  # DuckDB may have rolled back already
            con.execute("ROLLBACK")
        raise


def keep_plan(table: str, run_id: str, keep_versions: int | None) -> tuple[str, int] | None:
    """(the version name this run would keep, how many to keep), or None to keep none."""
    keep = check_keep_versions(keep_versions)
    return None if keep is None else (version_table_name(table, run_id), keep)


def missing_version_message(target: Target, table: str, run_id: str, present: Sequence[str]) -> str:
    kept = sorted((TableVersion(table, name, name[len(table) + len(VERSION_MARKER):], 0).run
                   for name in present if name.startswith(table + VERSION_MARKER)), reverse=True)
    return (f"no kept version of {target}.{table} from run {run_id}: "
            + (f"kept are runs {', '.join(kept)}" if kept else "none is kept")
            + f" (see `hnpipe versions {table}`)")


def checked_checks(checks: Sequence[Check]) -> tuple[Check, ...]:
    """The checks as a tuple, each a Check selecting offending rows from {table} (both engines)."""
    checks = tuple(checks)
    for check in checks:
        if not isinstance(check, Check) or "{table}" not in check.sql:
            raise WarehouseError(f"invalid check {check!r}: use Check(name, sql) selecting offending rows from {{table}}")
    return checks



def _schema_names(con: duckdb.DuckDBPyConnection) -> list[str]:
    return [row[0] for row in con.execute(
        "SELECT schema_name FROM duckdb_schemas() WHERE database_name = current_database()"
    ).fetchall()]


def _table_names(con: duckdb.DuckDBPyConnection, schema: str) -> list[str]:
    return [row[0] for row in con.execute(
        "SELECT table_name FROM duckdb_tables() "
        "WHERE database_name = current_database() AND schema_name = ? ORDER BY table_name",
        [schema],
    ).fetchall()]


def _sql_string(path: Path) -> str:
    return "'" + str(path).replace("'", "''") + "'"


def _wal(path: Path) -> Path:
    return path.with_name(path.name + ".wal")


def _remove_file(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.remove(path)


def _remove_database_files(path: Path) -> None:
    _remove_file(path)
    _remove_file(_wal(path))
