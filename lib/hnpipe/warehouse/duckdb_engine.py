"""The embedded warehouse behind local runs: one DuckDB file per database.

`duckdb:<dir>` holds `<dir>/<DATABASE>.duckdb`, tables `<SCHEMA>.<TABLE>`. The interface and
the rules both engines share are in hnpipe.warehouse.base.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import threading
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping, Sequence, TypeVar

import duckdb

from hnpipe import config
from hnpipe.environments import Target, check_identifier, is_identifier
from hnpipe.environments import quote_identifier as _q
from hnpipe.errors import GuardError, WarehouseError, one_line
from hnpipe.warehouse.base import (
    STAGING_MARKER, Gate, ColumnInfo, DatabaseInfo, TableInfo, Warehouse, WriteGuard,
    check_clone_name, check_comment_columns, check_comment_text, check_keep_ids, check_keep_versions,
    checked_gates, is_bookkeeping_table, keep_plan, merge_select, refuse_missing_clone,
    missing_version_message, run_gates, staging_table_name, version_table_name, versions_to_drop,
)
from hnpipe.warehouse.directory_stage import DirectoryStage
from hnpipe.warehouse.duckdb_files import (
    check_length, check_readable, open_intact, remove_database_files, remove_file, remove_stale_temporaries,
    wal_path,
)
from hnpipe.warehouse.duckdb_host import current_host
from hnpipe.warehouse.duckdb_locks import LockWaits, lock_timeout
from hnpipe.warehouse.registry import WarehouseSpec

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa


def frame_from_arrow(table: "pa.Table") -> "pd.DataFrame":
    # pandas is imported on first use: `hnpipe run` counts rows with this engine without it.
    from hnpipe.warehouse.frames import frame_from_arrow

    return frame_from_arrow(table)


def frame_to_arrow(frame: "pd.DataFrame", destination: str) -> "pa.Table":
    # pandas on first use, as above.
    from hnpipe.warehouse.frames import frame_to_arrow

    return frame_to_arrow(frame, destination)

T = TypeVar("T")
log = logging.getLogger("hnpipe.warehouse")


class DuckDBWarehouse(Warehouse):
    """The embedded warehouse: `<directory>/<DATABASE>.duckdb`, tables `<SCHEMA>.<TABLE>`.

    A file is attached to this process's DuckDB instance for one operation only (each with a
    connection of its own), because JupyterLab may open the same files (duckdb_host).
    DuckDB lets one process write a file (or several read it): when another process holds
    it, operations wait up to `lock_timeout_s` (default: HNPIPE_LOCK_TIMEOUT_S, else 30 s),
    then raise WarehouseLockedError. Reads open files read-only. `read_only_databases`
    are never opened for writing (non-production environments use it for PRODUCTION).
    """

    engine = "duckdb"
    CREATES_DATABASES = True  # a database is a file, made by the first publish

    @classmethod
    def open(cls, spec: WarehouseSpec, write_guard: WriteGuard | None = None, *, env_names=None, query_tag=None,
             **options: Any) -> DuckDBWarehouse:
        return cls(spec.location, write_guard, **options)  # nothing to log in to, no session to tag

    @classmethod
    def login_detail(cls, env_names: Mapping[str, str] | None) -> str:
        return "none needed: the embedded warehouse"

    def __init__(
        self,
        directory: str | os.PathLike,
        write_guard: WriteGuard | None = None,
        lock_timeout_s: float | None = None,
        read_only_databases: Sequence[str] = (),
        on_lock_wait: Callable[[str], None] | None = None,
    ) -> None:
        super().__init__(write_guard)
        self.directory = Path(directory)
        self.lock_timeout_s = lock_timeout(lock_timeout_s)
        # One wait per file per run; "waiting for <file>" said where `on_lock_wait` says
        # (default: a logged warning). See hnpipe.warehouse.duckdb_locks.
        self._locks = LockWaits(self.lock_timeout_s, on_lock_wait or (lambda line: log.warning("%s", line)))
        if isinstance(read_only_databases, str):
            read_only_databases = (read_only_databases,)
        self.read_only_databases = frozenset(
            check_identifier(name, "read-only database") for name in read_only_databases
        )

    def __repr__(self) -> str:
        return f"DuckDBWarehouse({str(self.directory)!r})"

    @property
    def where(self) -> str:
        return str(self.directory)

    def probe(self) -> list[str]:
        """The directory can be written (or made): nothing is created here."""
        config.check_writable_directory(self.directory)
        return self.list_databases()

    def catalog(self, database: str) -> str:
        # One INFORMATION_SCHEMA for all attached databases, filtered by TABLE_CATALOG.
        check_identifier(database, "database")
        return "INFORMATION_SCHEMA"

    def stage(self, target: Target) -> DirectoryStage:
        return DirectoryStage(self, target, self.path(target.database).with_suffix(".stage") / target.schema)

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
        with self._selecting(target, sql, params) as relation:
            return frame_from_arrow(relation.to_arrow_table())

    def query_rows(self, target: Target, sql: str, params: Sequence[object] = ()) -> list[dict[str, object]]:
        with self._selecting(target, sql, params) as relation:
            names = relation.columns
            return [{name: _utc(value) for name, value in zip(names, row)} for row in relation.fetchall()]

    @contextmanager
    def _selecting(self, target: Target, sql: str, params: Sequence[object]) -> Iterator[duckdb.DuckDBPyRelation]:
        """`sql` as a DuckDB relation, run in target's schema. A relation, not the DB-API cursor:
        DuckDB 2 copies a cursor's rows once more for Arrow, and says so in a UserWarning that
        landed in every executed notebook's output."""
        with self._reading(target.database) as con:
            if con is None:
                raise WarehouseError(f"no database {target.database} in {self.directory}")
            if target.schema not in _schema_names(con):
                raise WarehouseError(f"no schema {target} in {self.directory}")
            con.execute(f"USE {_q(target.database)}.{_q(target.schema)}")
            try:
                _refuse_all_but_selects(con, sql, f"query in {target} failed")
                relation = con.sql(sql, params=list(params) or None)
                if relation is None:
                    raise WarehouseError(f"query in {target} returned no rows: query() runs SELECTs only")
                yield relation
            except duckdb.Error as exc:
                raise WarehouseError(f"query in {target} failed: {one_line(exc)}") from exc

    def query_across(self, databases: Sequence[str], sql: str, params: Sequence[object] = ()) -> pd.DataFrame:
        paths = [self.path(database) for database in dict.fromkeys(databases)]
        for path in paths:
            if not path.is_file():
                raise WarehouseError(f"no database {path.stem} in {self.directory}")
        with contextlib.ExitStack() as attached:
            for path in paths:  # each read-only under its name
                attached.enter_context(self._connect(path, "read"))
            # Its own connection, at the instance's empty in-memory database as before.
            host = current_host(paths[0] if paths else self.directory)
            con = attached.enter_context(contextlib.closing(host.cursor()))
            try:
                _refuse_all_but_selects(con, sql, f"query across {', '.join(databases)} failed")
                arrow = con.sql(sql, params=list(params) or None).to_arrow_table()
            except duckdb.Error as exc:
                raise WarehouseError(f"query across {', '.join(databases)} failed: {one_line(exc)}") from exc
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
        gates: Sequence[Gate] = (), keep_versions: int | None = None,
    ) -> int:
        staging = staging_table_name(table, run_id)
        # Convert before opening anything: a frame that cannot be stored writes nothing.
        arrow = frame_to_arrow(frame, f"{target}.{table}")
        gates = checked_gates(gates)
        keep = keep_plan(table, run_id, keep_versions)

        def load(con: duckdb.DuckDBPyConnection) -> None:
            _create_from_arrow(con, staging, arrow)

        with self._writing(target) as con:
            return self._publish(con, target, table, staging, load, len(frame), gates, keep)

    def publish_arrow(
        self, target: Target, table: str, data: "pa.Table | pa.RecordBatchReader", run_id: str,
        gates: Sequence[Gate] = (), keep_versions: int | None = None,
    ) -> int:
        # DuckDB scans the Arrow batches where they lie and sorts them by ID into the staging
        # table (spilling to disk when they do not fit its memory): no frame, no sorted copy.
        from hnpipe.warehouse.frames import arrow_to_store

        import pyarrow as pa

        staging = staging_table_name(table, run_id)
        source = arrow_to_store(data, f"{target}.{table}")  # refusals before opening anything
        gates = checked_gates(gates)
        keep = keep_plan(table, run_id, keep_versions)
        order = ' ORDER BY "ID"' if "ID" in source.schema.names else ""

        def load(con: duckdb.DuckDBPyConnection) -> None:
            _create_from_arrow(con, staging, source, order)

        expected = source.num_rows if isinstance(source, pa.Table) else None
        with self._writing(target) as con:
            return self._publish(con, target, table, staging, load, expected, gates, keep)

    def publish_query(
        self, target: Target, table: str, select_sql: str, run_id: str,
        gates: Sequence[Gate] = (), keep_versions: int | None = None,
    ) -> int:
        staging = staging_table_name(table, run_id)
        gates = checked_gates(gates)
        keep = keep_plan(table, run_id, keep_versions)
        select_sql = select_sql.strip().rstrip(";")

        def load(con: duckdb.DuckDBPyConnection) -> None:
            # Unqualified names in select_sql resolve in target: _writing ran USE target.
            con.execute(f"CREATE TABLE {_q(staging)} AS {select_sql}")

        with self._writing(target) as con:
            return self._publish(con, target, table, staging, load, None, gates, keep)

    def publish_merge(
        self, target: Target, table: str, frame: pd.DataFrame, run_id: str,
        keep_ids: tuple[int, int], gates: Sequence[Gate] = (), keep_versions: int | None = None,
    ) -> int:
        staging = staging_table_name(table, run_id)
        destination = f"{target}.{table}"
        arrow = frame_to_arrow(frame, destination)  # everything checkable before opening anything
        keep_ids = check_keep_ids(keep_ids, frame, destination)
        gates = checked_gates(gates)
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
            return self._publish(con, target, table, staging, load, None, gates, keep)

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
            # Read whole first, as a publish reads what it replaces: the live table stays if damaged.
            check_readable(con, target, version, self.path(target.database))
            rows = con.execute(f"SELECT COUNT(*) FROM {_q(version)}").fetchall()[0][0]
            statements = ([f"ALTER TABLE {_q(table)} RENAME TO {_q(replaced)}"] if table in present else [])
            statements.append(f"ALTER TABLE {_q(version)} RENAME TO {_q(table)}")
            after = [name for name in present if name != version] + ([replaced] if table in present else [])
            statements += [f"DROP TABLE {_q(old)}" for old in versions_to_drop(table, after, keep)]
            try:
                _in_transaction(con, statements)
            except duckdb.Error as exc:
                raise WarehouseError(f"swap {version} into {target}.{table} failed: {one_line(exc)}") from exc
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
            try:
                _in_transaction(con, statements)
            except duckdb.Error as exc:
                raise WarehouseError(f"comment {target}.{table} failed: {one_line(exc)}") from exc

    def append_rows(self, target: Target, table: str, frame: pd.DataFrame) -> int:
        destination = f"{target}.{check_identifier(table, 'table')}"
        arrow = frame_to_arrow(frame, destination)  # before opening anything
        lists = [name for name, kind in zip(arrow.column_names, arrow.schema.types) if str(kind).startswith("list")]
        if lists:  # as the Snowflake engine, which binds scalars only (found by the contract suite)
            raise WarehouseError(f"cannot append to {destination}: list column {lists[0]}; append_rows takes scalar columns")
        self._append(target, table, destination, [
            # The connection lives for this one operation: the registration goes with it.
            lambda con: con.register("hnpipe_rows", arrow),
            f"CREATE TABLE IF NOT EXISTS {_q(table)} AS SELECT * FROM hnpipe_rows LIMIT 0",
            # BY NAME: the frame's columns in any order; an unknown column fails the insert.
            f"INSERT INTO {_q(table)} BY NAME SELECT * FROM hnpipe_rows",
        ])
        return len(frame)

    def append_records(self, target: Target, table: str, columns: Mapping[str, str],
                       rows: Sequence[Mapping[str, object]]) -> int:
        destination = f"{target}.{check_identifier(table, 'table')}"
        types = [_SQL_TYPES.get(dtype) for dtype in columns.values()]
        if None in types:  # a programming error, said before anything is opened
            raise WarehouseError(f"cannot append to {destination}: no column type for {dict(columns)}")
        names = [check_identifier(name, "column") for name in columns]
        insert = f"INSERT INTO {_q(table)} ({', '.join(map(_q, names))}) VALUES ({', '.join('?' for _ in names)})"
        values = [[_stored(row.get(name)) if kind == "TIMESTAMP" else row.get(name)
                   for name, kind in zip(names, types)] for row in rows]
        self._append(target, table, destination, [
            # The same types as a frame of these dtypes creates through Arrow (append_rows).
            f"CREATE TABLE IF NOT EXISTS {_q(table)} ({', '.join(f'{_q(n)} {t}' for n, t in zip(names, types))})",
            lambda con: con.executemany(insert, values),
        ])
        return len(rows)

    def _append(self, target: Target, table: str, destination: str, statements: list) -> None:
        with self._writing(target) as con:
            if table in _table_names(con, target.schema):  # a damaged block: one line, no .wal
                check_readable(con, target, table, self.path(target.database))
            try:
                _in_transaction(con, statements)
            except duckdb.Error as exc:
                raise WarehouseError(f"cannot append to {destination}: {one_line(exc)}") from exc

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
        remove_stale_temporaries(self.directory)  # what a killed clone left
        remove_database_files(temporary)
        try:
            # Read-only: a consistent snapshot that never writes the source, and that shares
            # the file with other readers. The copy's name is this clone's alone (the host is
            # the whole process's); both are detached when the block ends, however it ends.
            copy = f"HNPIPE_CLONE_{threading.get_ident()}"
            with self._connect(source_path, "read") as con, self._connect(temporary, "exclusive", copy):
                # Every table read whole first: a damaged block is the one "damaged" line.
                for schema, table in con.execute("SELECT schema_name, table_name FROM duckdb_tables() "
                                                 "WHERE database_name = current_database()").fetchall():
                    check_readable(con, Target(source, schema), table, source_path)
                con.execute(f"COPY FROM DATABASE {_q(source)} TO {_q(copy)}")
                con.execute(f"CHECKPOINT {_q(copy)}")  # everything in the file, no WAL
            if dest_path.exists():
                self._wait_until_unused(dest_path)
            # A WAL left beside the old clone would be replayed into the new one.
            remove_file(wal_path(dest_path))
            os.replace(temporary, dest_path)
        except BaseException:
            remove_database_files(temporary)
            raise

    def drop_database(self, database: str) -> bool:
        database = check_clone_name(database, "drop")  # before touching the disk
        if database in self.read_only_databases:
            raise GuardError(f"refused to drop {database}: this warehouse opens it read-only")
        path = self.path(database)
        if not path.exists():
            return False
        self._wait_until_unused(path)
        remove_database_files(path)
        shutil.rmtree(path.with_suffix(".stage"), ignore_errors=True)  # its staged files (hnpipe.stage) go with it
        return True

    # -- internals ---------------------------------------------------------------------
    @contextmanager
    def _connect(self, path: Path, mode: str, alias: str | None = None) -> Iterator[duckdb.DuckDBPyConnection]:
        """A connection at `path`'s database (`alias`, default its name), which is attached to
        this process's DuckDB host for the block: mode "read" (read-only, shared with this
        process's other readers), "write" (shared with its writers) or "exclusive"."""
        host = current_host(path)
        fresh = self._retry_locked(path, lambda wait_s: open_intact(
            path, lambda: host.attach(path, mode, wait_s, alias)))
        try:
            with contextlib.closing(host.cursor(alias or path.stem)) as con:
                # Checked when this call attached it (a shared file was, by its first user). A
                # crash's log opened read-only is replayed in memory only: blocks beyond the file.
                wal = fresh and wal_path(path).exists()
                if fresh and not (wal and mode == "read"):
                    if wal:
                        con.execute("CHECKPOINT")  # fold the committed log into the file, then compare
                    check_length(con, path)
                yield con
        finally:
            host.detach(path, alias)

    def begin_run(self) -> None:
        """A new run: it may wait for a locked file again (once)."""
        super().begin_run()
        self._locks.begin_run()

    def _retry_locked(self, path: Path, open_file: Callable[[], T]) -> T:
        """Run `open_file`, waiting (once per run) while another process holds `path`."""
        try:
            return self._locks.retry(path, open_file)
        finally:
            self.lock_failure = self._locks.failure

    def _wait_until_unused(self, path: Path) -> None:
        """Open `path` for writing alone and close it: waits out other processes and this one's
        other threads (then raises WarehouseLockedError), and closing folds any WAL into the file."""
        with self._connect(path, "exclusive"):
            pass

    @contextmanager
    def _reading(self, database: str) -> Iterator[duckdb.DuckDBPyConnection | None]:
        """A read-only connection to `database`, or None when it has no file yet."""
        path = self.path(database)
        if not path.is_file():
            yield None
            return
        with self._connect(path, "read") as con:
            yield con

    @contextmanager
    def _writing(self, target: Target) -> Iterator[duckdb.DuckDBPyConnection]:
        """A connection whose current database.schema is target, after the guard allowed it.

        Creates the directory, file and schema when missing (never a clone's file: only
        clone_database makes those); if the guard refuses, what this
        call created is removed again, so a refused write leaves the disk as it was.
        """
        if target.database in self.read_only_databases:
            raise WarehouseError(
                f"refused write to {target}: this warehouse opens {target.database} read-only"
            )
        path = self.path(target.database)
        refuse_missing_clone(target, path.exists())
        created_directory = not self.directory.exists()
        created_file = not path.exists()
        allowed = False
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            with self._connect(path, "write") as con:
                self._use(con, target)
                allowed = True
                yield con
        finally:
            if not allowed and created_file:
                remove_database_files(path)
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
        gates: Sequence[Gate], keep: tuple[str, int] | None = None,
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
        if table in present:
            # The table replaced here is kept as a version (or dropped): it must read whole first,
            # or a damaged file would be published into and its broken table kept for restores.
            check_readable(con, target, table, self.path(target.database))
        try:
            try:
                load(con)
            except duckdb.Error as exc:
                raise WarehouseError(f"cannot load {destination}: {one_line(exc)}") from exc
            rows = con.execute(f"SELECT COUNT(*) FROM {_q(staging)}").fetchone()[0]
            if expected_rows is not None and rows != expected_rows:
                raise WarehouseError(
                    f"refused to publish {destination}: staged {rows} rows, expected {expected_rows}"
                )
            def fetch(sql: str, what: str) -> tuple[list[str], list[tuple]]:
                rows = con.execute(sql).fetchall()
                return [column[0] for column in con.description], rows

            run_gates(gates, f"{_q(target.database)}.{_q(target.schema)}.{_q(staging)}", destination, fetch)
            try:
                _in_transaction(con, swap)
            except duckdb.Error as exc:  # one hnpipe error line, as the Snowflake engine says it
                raise WarehouseError(f"swap {staging} into {destination} failed: {one_line(exc)}") from exc
        except BaseException:
            with contextlib.suppress(duckdb.Error):
                con.execute(f"DROP TABLE IF EXISTS {_q(staging)}")
            raise
        return rows

def _create_from_arrow(con: duckdb.DuckDBPyConnection, staging: str, arrow: object, order: str = "") -> None:
    """CREATE TABLE staging from an Arrow table or batch reader, read where it lies."""
    con.register("hnpipe_frame", arrow)
    try:
        con.execute(f"CREATE TABLE {_q(staging)} AS SELECT * FROM hnpipe_frame{order}")
    finally:
        con.unregister("hnpipe_frame")


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


def _duckdb_literal(text: str) -> str:
    return "'" + check_comment_text(text, "a table or column").replace("'", "''") + "'"


# pandas dtype -> the DuckDB type frame_to_arrow gives it (append_records): timestamps stored as
# naive UTC wall time like every hnpipe timestamp, labelled UTC when read (query_rows, as query()).
_SQL_TYPES = {"string": "VARCHAR", "Int64": "BIGINT", "float64": "DOUBLE", "boolean": "BOOLEAN",
              "datetime64[us, UTC]": "TIMESTAMP"}


def _stored(value: object) -> object:
    return value.astimezone(timezone.utc).replace(tzinfo=None) if isinstance(value, datetime) and value.tzinfo else value


def _utc(value: object) -> object:
    return value.replace(tzinfo=timezone.utc) if isinstance(value, datetime) and value.tzinfo is None else value


def _in_transaction(con: duckdb.DuckDBPyConnection,
                    statements: Sequence[str | Callable[[duckdb.DuckDBPyConnection], object]]) -> None:
    """Run the statements (SQL, or a function of the connection) in one transaction."""
    con.execute("BEGIN TRANSACTION")
    try:
        for statement in statements:
            statement(con) if callable(statement) else con.execute(statement)
        con.execute("COMMIT")
    except BaseException:
        with contextlib.suppress(duckdb.Error):  # DuckDB may have rolled back already
            con.execute("ROLLBACK")
        raise


# PRAGMAs that only read (each a table function underneath); the others change the instance.
READ_ONLY_PRAGMAS = frozenset({
    "table_info", "show", "show_tables", "show_tables_expanded", "show_databases", "database_list",
    "database_size", "storage_info", "metadata_info", "version", "platform", "functions",
    "collations", "user_agent"})
_EXPLAIN = re.compile(r"\s*EXPLAIN\b(\s+ANALY[SZ]E\b)?(\s*\([^)]*\))?", re.IGNORECASE)
_PRAGMA = re.compile(r"\s*PRAGMA\s+(\w+)", re.IGNORECASE)


def _refuse_all_but_selects(con: duckdb.DuckDBPyConnection, sql: str, failed: str) -> None:
    """query() and query_across() run on the process's one DuckDB instance: a statement that
    changed it (an ATTACH, a SET, a table in its in-memory database) would outlast the call.
    SELECTs pass, and what only reads: EXPLAIN of a SELECT, the PRAGMAs above."""
    refused = sorted({statement.type.name for statement in con.extract_statements(sql)
                      if not _reads_only(con, statement)})
    if refused:
        hint = " (a PIVOT needs its IN list here)" if "MULTI" in refused else ""
        raise WarehouseError(f"{failed}: it runs SELECTs only (and EXPLAIN of one, read-only PRAGMAs "
                             f"such as table_info), not {', '.join(refused)}{hint}")


def _reads_only(con: duckdb.DuckDBPyConnection, statement: duckdb.Statement) -> bool:
    kind, text = statement.type.name, statement.query
    if kind == "SELECT":
        return True
    if kind == "EXPLAIN" and (explained := _EXPLAIN.match(text)):
        inner = con.extract_statements(text[explained.end():])
        return bool(inner) and all(part.type.name == "SELECT" for part in inner)
    if kind == "PRAGMA" and (pragma := _PRAGMA.match(text)):
        return pragma.group(1).lower() in READ_ONLY_PRAGMAS
    return False


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
