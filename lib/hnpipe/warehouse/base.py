"""The warehouse interface both engines implement, and the rules they share.

`Warehouse` is what the pipeline needs from a warehouse; `DuckDBWarehouse`
(hnpipe.warehouse.duckdb_engine) and `SnowflakeWarehouse` (hnpipe.warehouse.snowflake_engine)
implement it, and tests/test_warehouse_contract.py holds both to the same promises.
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

from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Callable, ClassVar, Mapping, Sequence

if TYPE_CHECKING:  # imported where used: hnpipe.datasets imports this module, pandas-free
    import pandas as pd
    import pyarrow as pa

from hnpipe import config
from hnpipe.environments import CLONE_NAME, CLONE_PREFIX, Target, check_identifier
from hnpipe.errors import GuardError, WarehouseError
from hnpipe.warehouse.registry import WarehouseSpec

WriteGuard = Callable[[Target], None]


@dataclass(frozen=True)
class Gate:
    """A quality gate: a check run on the staging table before the swap.

    `sql` selects the offending rows from `{table}` (a placeholder the engine fills with the
    staging table's qualified name); the check passes when it returns no row. `explain`, when
    given, says what was expected, for checks whose rows are not offending items (counts).
    """

    name: str
    sql: str
    explain: str = ""


def gate_failure(check: Gate, count: int, names: Sequence[str], sample: Sequence[Sequence[object]]) -> str:
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
    rows: int

    @property
    def run_id(self) -> str:
        """The replacing run's id as hnpipe writes it (lower-case hex), read from the name."""
        return config.run_id_as_written(self.name[len(self.table) + len(VERSION_MARKER):])

    @property
    def replaced_at(self) -> datetime | None:
        """When the replacing run started, read from its id (None for other run ids)."""
        return config.run_id_started(self.run_id)


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
BACKFILL_LEDGER = "BACKFILL_LEDGER"  # the backfill plans and their shards: hnpipe.backfill.ledger
MAX_KEPT_VERSIONS = 100


def is_bookkeeping_table(name: str) -> bool:
    """Whether a table is hnpipe's own (staging, kept version, run history), not published data."""
    return STAGING_MARKER in name or VERSION_MARKER in name or name in (HISTORY_TABLE, BACKFILL_LEDGER)


def staging_table_name(table: str, run_id: str) -> str:
    # The run id is checked here for both engines: an empty one made `ITEMS__STAGING_`, a valid
    # name, so DuckDB published with it while Snowflake refused (found by the contract suite).
    check_identifier(table, "table")
    if not config.fits_in_a_name(run_id):
        raise WarehouseError(f"invalid run_id {run_id!r}: use ASCII letters, digits and _ only")
    return check_identifier(f"{table}__STAGING_{run_id.upper()}", "staging table")


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
    two table expressions (quoted names); the columns are checked and quoted
    here, the ids are integers checked by check_keep_ids."""
    names = ", ".join(f'"{check_identifier(column, "column")}"' for column in columns)
    first, last = (int(value) for value in keep_ids)
    return (f'SELECT {names} FROM {kept_from} WHERE "ID" BETWEEN {first} AND {last} '
            f"UNION ALL SELECT {names} FROM {new_from}")


def version_table_name(table: str, run_id: str) -> str:
    if not config.fits_in_a_name(run_id):
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


STAGE_NAME = "HNPIPE_STAGE"  # an engine's named stage in each database.schema (hnpipe.stage)


class FileStage(ABC):
    """A database.schema's stage as an engine keeps it: Parquet files written part by part on
    the local disk under `local` (hnpipe.stage's PartWriter), handed to the engine one by one
    (`upload`), and loaded by the engine into a staging table (`publish`). Paths are relative
    to the stage's root, checked by hnpipe.stage (`runs/<RUN>/part-000001.parquet`).

    `shared`: the files are in the warehouse, readable from other machines (a CI matrix's
    shards merge on another runner); else they are on this machine only."""

    local: Path
    shared: ClassVar[bool] = False

    @abstractmethod
    def upload(self, path: str, local_file: Path) -> None:
        """Put the complete local file at `path` in the stage (nothing to do when `local` is the stage)."""

    @abstractmethod
    def read_text(self, path: str) -> str | None:
        """A small file's text (a manifest), None when the stage has no such file."""

    @abstractmethod
    def listing(self, prefix: str) -> dict[str, int]:
        """Every file under `prefix` with its size in bytes, by its path relative to `prefix`."""

    def local_copy(self, path: str) -> Path | None:
        """The file itself when it is readable here (its sha256 can be checked), else None."""
        found = self.local.joinpath(*path.split("/"))
        return found if not self.shared and found.is_file() else None

    @abstractmethod
    def remove(self, prefix: str) -> None:
        """Remove every file under `prefix` (a folder), here and in the warehouse."""

    @abstractmethod
    def prune(self, prefix: str, older_than_s: float) -> None:
        """Remove the folders under `prefix` whose files are all older than `older_than_s`."""

    @abstractmethod
    def publish(self, table: str, prefix: str, names: Sequence[str], schema: "pa.Schema", run_id: str,
                gates: Sequence[Gate], keep_versions: int | None) -> int:
        """Atomically replace `table` with the rows of the files `prefix`/`names` (in that
        order; `schema` is theirs), loaded inside the warehouse into the staging table, gated and swapped as
        publish_frame does; a file that cannot be read fails the whole publish."""


class Warehouse(ABC):
    """What the pipeline needs from a warehouse; both engines behave the same.

    `write_guard`, when given, is called with the connection's *actual* current
    database.schema right before every write, and raises to refuse it.

    Callers outside this package ask an engine what it can do through the capabilities below,
    never its name: a new engine sets them and is served by every command that can use it.
    """

    engine: ClassVar[str] = "abstract"
    # Logs in with credentials named by the parameters (`snowflake_env`): the dry run checks
    # them, and admin logs in as the clone owner (hnpipe.ops.admin).
    LOGS_IN: ClassVar[bool] = False
    # A publish creates a missing database (else an admin creates databases: the dry run says so).
    CREATES_DATABASES: ClassVar[bool] = False
    # Roles and grants: grant_usage, run_grants, show_grants (admin clone, handover, doctor).
    SUPPORTS_GRANTS: ClassVar[bool] = False

    @classmethod
    @abstractmethod
    def open(cls, spec: WarehouseSpec, write_guard: WriteGuard | None = None, *,
             env_names: Mapping[str, str] | None = None,
             query_tag: Mapping[str, object] | Callable[[], Mapping[str, object]] | None = None,
             read_only_databases: Sequence[str] = (), on_lock_wait: Callable[[str], None] | None = None,
             **options: object) -> Warehouse:
        """This engine's warehouse at `spec`. Every engine takes the same options and uses
        those that apply to it: `env_names` (which variables hold the credentials) and
        `query_tag` (a mapping, or a function making one, e.g. calling git, only when it is
        used) for engines that log in; `read_only_databases` and `on_lock_wait` for engines
        that open files. `options` are the engine's own (tests pass fakes)."""

    @classmethod
    def login_detail(cls, env_names: Mapping[str, str] | None) -> str:
        """What the dry run says about credentials: which variables are set (never their
        values) and how it logs in; raises in one line when one is missing."""
        return f"none needed: the {cls.engine} warehouse"

    @property
    def where(self) -> str:
        """Where this warehouse is, as messages name it (its directory, or the engine)."""
        return self.engine

    def probe(self) -> list[str]:
        """Check the warehouse can be reached (and, for files, written) without changing
        anything; returns its databases (the dry run's reachability check)."""
        return self.list_databases()

    def catalog(self, database: str) -> str:
        """The INFORMATION_SCHEMA that describes `database`'s tables (hnpipe diff)."""
        raise self._unsupported("reading the catalog")

    def __init__(self, write_guard: WriteGuard | None = None) -> None:
        self.write_guard = write_guard
        # The embedded engine's last give-up on a locked file in this run, even where a caller
        # swallowed it (best-effort history): `hnpipe run` stops on it instead of waiting again.
        self.lock_failure: Exception | None = None

    def begin_run(self) -> None:
        """A new run begins on this warehouse (a notebook rerun): the embedded engine may
        wait for a locked file again. Nothing to do elsewhere."""
        self.lock_failure = None

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
        gates: Sequence[Gate] = (), keep_versions: int | None = None,
    ) -> int:
        """Atomically replace target.table with `frame`; returns the rows published.

        `keep_versions`: None drops the replaced table; a number K keeps it as
        `<TABLE>__VERSION_<run_id>` (renamed in the swap, never copied) and drops all but
        the K newest versions of the table. A run that replaces a table twice keeps the
        version from before its first publish.
        """

    def publish_arrow(
        self, target: Target, table: str, data: "pa.Table | pa.RecordBatchReader", run_id: str,
        gates: Sequence[Gate] = (), keep_versions: int | None = None,
    ) -> int:
        """Atomically replace target.table with the rows of an Arrow table (or a stream of
        record batches), sorted by ID inside the warehouse when there is an ID column; the
        same staging table, gates, versions and swap as publish_frame. ITEMS comes this way
        from the fetch (hnpipe.items.FetchedItems), without a pandas frame.

        This default makes the frame after all (Snowflake loads pandas through write_pandas);
        the DuckDB engine streams the batches into the staging table instead."""
        import pyarrow as pa

        # pandas and pyarrow on first use: `hnpipe run` imports base without them.
        from hnpipe.warehouse.frames import arrow_to_store, frame_from_arrow

        data = arrow_to_store(data, f"{target}.{table}")
        if isinstance(data, pa.RecordBatchReader):
            data = data.read_all()
        if "ID" in data.column_names:
            data = data.sort_by("ID")
        return self.publish_frame(target, table, frame_from_arrow(data), run_id, gates, keep_versions)

    @abstractmethod
    def publish_query(
        self, target: Target, table: str, select_sql: str, run_id: str,
        gates: Sequence[Gate] = (), keep_versions: int | None = None,
    ) -> int:
        """Atomically replace target.table with the result of `select_sql`, computed inside
        the warehouse (unqualified names resolve in target's schema); returns the rows.
        `keep_versions` as for publish_frame."""

    @abstractmethod
    def publish_merge(
        self, target: Target, table: str, frame: pd.DataFrame, run_id: str,
        keep_ids: tuple[int, int], gates: Sequence[Gate] = (), keep_versions: int | None = None,
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
        versions = [TableVersion(table, name, rows)
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

    # -- accounts: engines with roles and sessions (SUPPORTS_GRANTS) -----------------------
    def stage(self, target: Target) -> FileStage:
        """target's stage (hnpipe.stage opens it after the write guard allowed target)."""
        raise self._unsupported("a stage")

    def clone_table(self, source: Target, table: str, dest: Target, name: str) -> None:
        """Make dest.name a copy of source.table (doctor's smoke test)."""
        raise self._unsupported("clone_table")

    def drop_table(self, target: Target, table: str) -> None:
        """Drop target.table if it exists, after the write guard (doctor's clean-up)."""
        raise self._unsupported("drop_table")

    def grant_usage(self, database: str, role: str) -> None:
        """Let `role` read `database` (a branch clone) now and the tables created in it later."""
        raise self._unsupported("grant_usage")

    def run_grants(self, statements: Sequence[str]) -> None:
        """Run GRANT/REVOKE statements in order (hnpipe.ops.handover builds them)."""
        raise self._unsupported("run_grants")

    def show_grants(self, role: str) -> list[tuple[str, str, str]]:
        """(privilege, granted_on, name) granted to `role` (doctor)."""
        raise self._unsupported("show_grants")

    def session_parameter(self, name: str) -> str:
        """The session's value of a parameter, '' when unset (doctor)."""
        raise self._unsupported("session_parameter")

    def execute(self, sql: str, what: str | None = None) -> object:
        """Run one statement as given, without the write guard: doctor's own questions and
        throwaway database only, built from checked, quoted names."""
        raise self._unsupported("execute")

    def with_guard(self, write_guard: WriteGuard) -> Warehouse:
        """The same session under another write guard (doctor's throwaway database)."""
        raise self._unsupported("with_guard")

    def _unsupported(self, what: str) -> WarehouseError:
        return WarehouseError(f"{what} is not available on the {self.engine} warehouse")

    # -- plain rows (no pandas) --------------------------------------------------------
    # `hnpipe run` reads and writes its run history with these (its marker, a failure's row):
    # its own process then never imports pandas (about 0.5 s of every run's start-up). The
    # defaults go through the frames; the embedded engine overrides them with plain rows.
    def query_rows(self, target: Target, sql: str, params: Sequence[object] = ()) -> list[dict[str, object]]:
        """A SELECT's rows as dicts (column -> value, None for a missing one)."""
        frame = self.query(target, sql, params)
        return frame.astype(object).where(frame.notna(), None).to_dict("records")

    def append_records(self, target: Target, table: str, columns: Mapping[str, str],
                       rows: Sequence[Mapping[str, object]]) -> int:
        """Append plain rows, like `append_rows`; `columns` maps each column to its pandas dtype
        (what the table is created with when it is missing)."""
        # On use: pandas is what this default needs, and what the override avoids.
        import pandas as pd

        frame = pd.DataFrame(list(rows), columns=list(columns))
        for column, dtype in columns.items():
            if dtype.startswith("datetime64"):
                frame[column] = pd.to_datetime(frame[column], utc=True)
        return self.append_rows(target, table, frame.astype(dict(columns)))

    # -- lifetime ------------------------------------------------------------------------
    def close(self) -> None:
        """Release what the engine holds (Snowflake: its session). Safe to call twice; the
        embedded engine holds nothing between operations. Also a context manager."""

    def __enter__(self) -> "Warehouse":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _guard(self, actual: Target) -> None:
        if self.write_guard is not None:
            self.write_guard(actual)


def check_clone_name(database: object, action: str) -> str:
    """Only branch clones may be replaced or dropped wholesale, whoever asks (both engines)."""
    if not isinstance(database, str) or not CLONE_NAME.fullmatch(database):
        raise GuardError(
            f"refused to {action} database {database!r}: only {CLONE_PREFIX}<digits> databases "
            f"(e.g. {CLONE_PREFIX}123) may be the target of {action}"
        )
    return database


def refuse_missing_clone(target: Target, exists: bool) -> None:
    """Only `hnpipe admin clone` makes a clone: a write into one that is gone (dropped while a
    branch run fetched) is refused, never answered by a new clone holding one table."""
    if not exists and CLONE_NAME.fullmatch(target.database):
        raise WarehouseError(
            f"refused write to {target}: {target.database} does not exist (dropped during the run?); "
            f"only `hnpipe admin clone --pr {target.database.removeprefix(CLONE_PREFIX)}` makes it, "
            "a write never does")


def check_comment_text(text: object, what: str) -> str:
    if not isinstance(text, str):
        raise WarehouseError(f"invalid comment for {what}: {text!r} is not text")
    return text


def check_comment_columns(target: Target, table: str, present: Sequence[str], wanted: Mapping[str, str]) -> None:
    missing = [check_identifier(column, "column") for column in wanted if column not in present]
    if missing:
        raise WarehouseError(f"cannot comment {target}.{table}: no column {', '.join(missing)} "
                             f"(it has {', '.join(present)})")


def keep_plan(table: str, run_id: str, keep_versions: int | None) -> tuple[str, int] | None:
    """(the version name this run would keep, how many to keep), or None to keep none."""
    keep = check_keep_versions(keep_versions)
    return None if keep is None else (version_table_name(table, run_id), keep)


def missing_version_message(target: Target, table: str, run_id: str, present: Sequence[str]) -> str:
    kept = sorted((TableVersion(table, name, 0).run_id
                   for name in present if name.startswith(table + VERSION_MARKER)), reverse=True)
    return (f"no kept version of {target}.{table} from run {run_id}: "
            + (f"kept are runs {', '.join(kept)}" if kept else "none is kept")
            + f" (see `hnpipe versions {table}`)")


def checked_gates(gates: Sequence[Gate]) -> tuple[Gate, ...]:
    """The checks as a tuple, each a Check selecting offending rows from {table} (both engines)."""
    gates = tuple(gates)
    for check in gates:
        if not isinstance(check, Gate) or "{table}" not in check.sql:
            raise WarehouseError(f"invalid check {check!r}: use Check(name, sql) selecting offending rows from {{table}}")
    return gates



def run_gates(gates: Sequence[Gate], staging: str, destination: str,
              fetch: Callable[[str, str], tuple[list[str], list[tuple]]]) -> None:
    """Run each gate on the staging table (`staging`, qualified and quoted) and refuse the
    publish naming every gate that failed. `fetch(sql, what)` is the engine's: it runs a
    SELECT and returns (column names, rows)."""
    failures = []
    for gate in gates:
        offending = gate.sql.replace("{table}", staging).strip().rstrip(";")
        what = f"check {gate.name} on {destination}"
        (_, [(count,)]) = fetch(f"SELECT COUNT(*) FROM ({offending}) AS offending", what)
        if count:
            names, sample = fetch(f"SELECT * FROM ({offending}) AS offending LIMIT 5", what)
            failures.append(gate_failure(gate, count, names, sample))
    if failures:
        raise WarehouseError(f"refused to publish {destination}: failed checks: {'; '.join(failures)}")
