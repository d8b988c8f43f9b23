"""The Snowflake engine behind staging, production and branch runs.

How it keeps its promises (see `hnpipe.warehouse.Warehouse`):

* Names: every database, schema, table and role name passes `environments.check_identifier`
  (`[A-Z][A-Z0-9_]*`) before any SQL is sent and is written into the statement double-quoted
  (`_q`): an upper-case quoted name is the same object as the unquoted one, and quoting keeps a
  reserved word (ORDER) a name. No `IDENTIFIER(?)`: Snowflake documents bind variables in
  IDENTIFIER() for "some cases" only (https://docs.snowflake.com/en/sql-reference/identifier-literal),
  and not for CLONE sources, SWAP WITH, DROP DATABASE, GRANT .. TO ROLE or COMMENT ON. Bind
  variables (qmark) carry values only. Comment texts go inline as escaped string literals.
* Ownership (docs/snowflake.md, "Snowflake: who owns what"): the role that creates an object owns it, and
  SWAP WITH, RENAME, DROP and COMMENT need that ownership. A publish creates its staging table, so
  the pipeline's role owns every table it publishes. A branch clone is built by the branch role
  itself, table by table (`CREATE TABLE .. CLONE`), so it owns everything in it; a database clone
  would keep production's owners and grants (https://docs.snowflake.com/en/user-guide/object-clone).
* Sessions: a login timeout and STATEMENT_TIMEOUT_IN_SECONDS on every session
  (HNPIPE_SNOWFLAKE_LOGIN_TIMEOUT_S, HNPIPE_SNOWFLAKE_STATEMENT_TIMEOUT_S); `close()` ends it and the
  callers close when their step ends. A password login is warned about once per warehouse.
* Guards: before any write the session runs `USE SCHEMA`, asks Snowflake where it actually
  is (`CURRENT_DATABASE(), CURRENT_SCHEMA()`) and hands that to the write guard. Writes then
  use unqualified names, which resolve exactly where the guard looked.
* Atomic publish: load `<TABLE>__STAGING_<RUN ID>`, count and check it, then
  `ALTER TABLE <table> SWAP WITH <staging>` (one metadata operation) or, on the first publish,
  `ALTER TABLE <staging> RENAME TO <table>`. Never truncate-then-load. On failure the staging
  table is dropped and the published table is untouched. After a swap the staging table holds
  the old data: it is renamed to `<TABLE>__VERSION_<RUN ID>` when versions are kept (zero-copy),
  else dropped. A restore swaps a version back the same way. A merge (incremental refresh)
  loads the new rows into `<STAGING>_DELTA`, builds the staging table with one
  `CREATE TABLE .. AS SELECT` (kept rows UNION ALL the delta), drops the delta, and goes on
  like any publish.
* Secrets: credentials come from `hnpipe.credentials` at connect time and are never kept on
  the object; connector errors are re-raised as one-line WarehouseErrors passed through
  `credentials.redact`, without chaining the original (which could carry them).
* Query tag: JSON of the caller's `query_tag` (env, notebook, run_id, git_sha), set once per
  session through `session_parameters={"QUERY_TAG": ...}` at connect.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import os
import re
from datetime import datetime, timezone
from typing import Any, Callable, Mapping, Sequence

import pandas as pd
import snowflake.connector
import snowflake.connector.errors
import snowflake.connector.pandas_tools

from hnpipe import credentials
from hnpipe.environments import CLONE_NAME, PUBLISHED_SCHEMA, Target, check_identifier, is_identifier
from hnpipe.environments import quote_identifier as _q
from hnpipe.errors import GuardError, HnpipeError, WarehouseError, one_line
from hnpipe.warehouse.base import (
    STAGING_MARKER,
    Gate,
    ColumnInfo,
    DatabaseInfo,
    TableInfo,
    Warehouse,
    WriteGuard,
    check_clone_name,
    check_comment_columns,
    run_gates,
    check_keep_ids,
    check_keep_versions,
    checked_gates,
    delta_table_name,
    is_bookkeeping_table,
    keep_plan,
    merge_select,
    missing_version_message,
    staging_table_name,
    version_table_name,
    versions_to_drop,
)
from hnpipe.warehouse.registry import WarehouseSpec
from hnpipe.warehouse.snowflake_stage import SnowflakeStage
from hnpipe.warehouse.snowflake_session import (
    LOGIN_TIMEOUT_VARIABLE,
    STATEMENT_TIMEOUT_VARIABLE,
    HiddenEnviron,
    query_tag_json,
    timeout_seconds,
)
from hnpipe.warehouse.snowflake_frames import (
    _bind_value,
    _column_type,
    _frame,
    _literal,
    _prepare_frame,
)

log = logging.getLogger(__name__)

# A SELECT or WITH, after any leading comments (a notebook's SQL often starts with one; the
# embedded engine took them, this check refused them: found by the contract suite).
_READ_ONLY_SQL = re.compile(r"(\s*(--[^\n]*(\n|$)|/\*.*?\*/))*\s*\(*\s*(SELECT|WITH)\b", re.IGNORECASE | re.DOTALL)
_GRANT_SQL = re.compile(r"((GRANT|REVOKE) [A-Z ,]+ ON [A-Z ]+ \"[A-Z0-9_]+\"(\.\"[A-Z0-9_]+\")? "
                        r"(TO|FROM) ROLE \"[A-Z0-9_]+\"( COPY CURRENT GRANTS)?"
                        r"|GRANT ROLE \"[A-Z0-9_]+\" TO ROLE \"[A-Z0-9_]+\")", re.ASCII)


def _connect_with_snowflake_connector(**kwargs: Any) -> Any:
    # Looked up at call time, so fakesnow.patch() (which patches the module attribute) works.
    return snowflake.connector.connect(**kwargs)




class SnowflakeWarehouse(Warehouse):
    """A Snowflake account, reached with credentials from the environment or .env.

    One connection per instance, opened on first use; `close()` (or `with`) ends it.
    `connect` replaces snowflake.connector.connect (tests pass fakes); it receives the
    credentials, `paramstyle="qmark"` and `session_parameters` as keyword arguments.
    """

    engine = "snowflake"
    LOGS_IN = True
    SUPPORTS_GRANTS = True

    @classmethod
    def open(cls, spec: WarehouseSpec, write_guard: WriteGuard | None = None, *, query_tag=None,
             read_only_databases=(), on_lock_wait=None, **options: Any) -> SnowflakeWarehouse:
        """A session of the account the credentials name; roles, not files, decide what is
        read-only here, and nothing waits on a file lock."""
        return cls(write_guard, query_tag=query_tag() if callable(query_tag) else query_tag, **options)

    @classmethod
    def login_detail(cls, env_names: Mapping[str, str] | None) -> str:
        found = credentials.snowflake_credentials(env_names)
        used = credentials.variables_used(env_names, found)
        return f"set (values not shown): {', '.join(used)}; logs in with {credentials.login_method(found)}"

    @property
    def where(self) -> str:
        return "Snowflake"

    def catalog(self, database: str) -> str:
        return f"{_q(database, 'database')}.INFORMATION_SCHEMA"  # one per database

    def __init__(
        self,
        write_guard: WriteGuard | None = None,
        *,
        env_names: Mapping[str, str] | None = None,
        query_tag: Mapping[str, Any] | None = None,
        connect: Callable[..., Any] | None = None,
        environ: Mapping[str, str] | None = None,
        statement_timeout_s: int | None = None,
        login_timeout_s: int | None = None,
    ) -> None:
        super().__init__(write_guard)
        self._env_names = credentials.check_env_names(env_names)
        self._environ = None if environ is None else HiddenEnviron(environ)
        # Fail now, naming the missing variable or a bad timeout, rather than mid-run; keep no value.
        credentials.snowflake_credentials(self._env_names, environ)
        settings = os.environ if environ is None else environ
        self.statement_timeout_s = statement_timeout_s or timeout_seconds(settings, STATEMENT_TIMEOUT_VARIABLE, 3600, 7 * 86400)
        self.login_timeout_s = login_timeout_s or timeout_seconds(settings, LOGIN_TIMEOUT_VARIABLE, 60, 3600)
        self._query_tag = query_tag_json(query_tag)
        self._connect = connect or _connect_with_snowflake_connector
        self._connection: Any = None
        self._warned_password = False
        credentials.install_log_redaction()

    def __repr__(self) -> str:
        return f"SnowflakeWarehouse(connected={self._connection is not None})"

    def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            with contextlib.suppress(Exception):  # closing is best effort
                connection.close()

    # -- accounts (see Warehouse) --------------------------------------------------------------
    def execute(self, sql: str, what: str | None = None) -> Any:
        return self._execute(sql, what=what)

    def session_parameter(self, name: str) -> str:
        name = check_identifier(name, "parameter")
        cursor = self._execute(f"SHOW PARAMETERS LIKE '{name}' IN SESSION", what=f"read {name}")
        columns = [column[0].lower() for column in cursor.description]
        rows = cursor.fetchall()
        return "" if not rows else str(rows[0][columns.index("value")] or "")

    def show_grants(self, role: str) -> list[tuple[str, str, str]]:
        """SHOW GRANTS TO ROLE: (privilege, granted_on, name) rows, names unquoted."""
        cursor = self._execute(f"SHOW GRANTS TO ROLE {_q(role, 'role')}", what=f"list the grants of {role}")
        columns = [column[0].lower() for column in cursor.description]
        at = [columns.index(name) for name in ("privilege", "granted_on", "name")]
        return [tuple(str(row[i] or "").replace('"', "") for i in at) for row in cursor.fetchall()]

    def with_guard(self, write_guard: WriteGuard) -> SnowflakeWarehouse:
        """The same session under another write guard (hnpipe doctor's throwaway database).
        It shares this warehouse's connection: close this one, not the copy."""
        other = copy.copy(self)
        other.write_guard = write_guard
        other._connection = self._connect_once()
        return other

    # -- reads -------------------------------------------------------------------------
    def list_databases(self) -> list[str]:
        cursor = self._execute("SHOW DATABASES", what="list databases")
        at = [column[0].lower() for column in cursor.description].index("name")
        names = {row[at] for row in cursor.fetchall()}
        return sorted(name for name in names if isinstance(name, str) and is_identifier(name))

    def list_tables(self, target: Target, bookkeeping: bool = False) -> dict[str, int]:
        return {
            name: rows for name, rows in self._tables(target).items()
            if bookkeeping or not is_bookkeeping_table(name)  # staging, kept versions, the history
        }

    def read_table(self, target: Target, table: str) -> pd.DataFrame:
        check_identifier(table, "table")
        if table not in self._tables(target):
            raise WarehouseError(f"no table {target}.{table} on Snowflake (or this role cannot see it)")
        self._use(target)
        frame = _frame(self._execute(f"SELECT * FROM {_q(table)}", what=f"read {target}.{table}"))
        if "ID" in frame.columns:
            frame = frame.sort_values("ID", kind="stable").reset_index(drop=True)
        return frame

    def query(self, target: Target, sql: str, params: Sequence[object] = ()) -> pd.DataFrame:
        if not isinstance(sql, str) or not _READ_ONLY_SQL.match(sql):
            raise WarehouseError(f"refused query {sql!r:.80}: query() runs a single SELECT (or WITH ... SELECT)")
        self._use(target)
        return _frame(self._execute(sql.strip().rstrip(";"), list(params), what=f"query in {target}"))

    def query_across(self, databases: Sequence[str], sql: str, params: Sequence[object] = ()) -> pd.DataFrame:
        # Snowflake reads across databases natively; the names only have to exist.
        if not isinstance(sql, str) or not _READ_ONLY_SQL.match(sql):
            raise WarehouseError(f"refused query {sql!r:.80}: query_across() runs a single SELECT")
        present = set(self.list_databases())
        for database in databases:
            if check_identifier(database, "database") not in present:
                raise WarehouseError(f"no database {database} on Snowflake (or this role cannot see it)")
        return _frame(self._execute(sql.strip().rstrip(";"), list(params),
                                    what=f"query across {', '.join(databases)}"))

    def describe_databases(self) -> list[DatabaseInfo]:
        cursor = self._execute("SHOW DATABASES", what="list databases")
        columns = [column[0].lower() for column in cursor.description]
        infos = []
        for row in cursor.fetchall():
            record = dict(zip(columns, row))
            name, created = record.get("name"), record.get("created_on")
            if isinstance(name, str) and is_identifier(name):
                if isinstance(created, datetime):
                    created = created.astimezone(timezone.utc) if created.tzinfo else created.replace(tzinfo=timezone.utc)
                # SHOW DATABASES tells no size; storage usage needs ACCOUNT_USAGE access.
                infos.append(DatabaseInfo(name, created if isinstance(created, datetime) else None, None))
        return sorted(infos, key=lambda info: info.name)

    # -- writes ------------------------------------------------------------------------
    def ensure_schema(self, target: Target) -> None:
        database = check_identifier(target.database, "database")
        schema = check_identifier(target.schema, "schema")
        if not self.database_exists(database):
            raise WarehouseError(_missing_database(database))
        if schema not in self._schemas(database):
            # The schema is part of the write: guard the database it would be created in.
            self._execute(f"USE DATABASE {_q(database)}", what=f"use {database}")
            current = self._execute("SELECT CURRENT_DATABASE()").fetchone()[0]
            self._guard(Target(current, schema))
            if current != database:
                raise WarehouseError(f"refused write: asked for {target} but the connection is at {current}")
            self._execute(f"CREATE SCHEMA IF NOT EXISTS {_q(database)}.{_q(schema)}", what=f"create {target}")
        self._use_for_write(target)

    def publish_frame(
        self, target: Target, table: str, frame: pd.DataFrame, run_id: str,
        gates: Sequence[Gate] = (), keep_versions: int | None = None,
    ) -> int:
        staging = staging_table_name(table, run_id)
        destination = f"{target}.{table}"
        # Everything checkable is checked before the first statement.
        ddl, prepared = _prepare_frame(frame, destination)
        gates = checked_gates(gates)
        keep = keep_plan(table, run_id, keep_versions)

        def load() -> None:
            self._load_frame(target, staging, ddl, prepared, destination)

        return self._publish(target, table, staging, load, len(prepared), gates, keep)

    def publish_merge(
        self, target: Target, table: str, frame: pd.DataFrame, run_id: str,
        keep_ids: tuple[int, int], gates: Sequence[Gate] = (), keep_versions: int | None = None,
    ) -> int:
        staging = staging_table_name(table, run_id)
        delta = delta_table_name(table, run_id)
        destination = f"{target}.{table}"
        ddl, prepared = _prepare_frame(frame, destination)
        keep_ids = check_keep_ids(keep_ids, frame, destination)
        gates = checked_gates(gates)
        keep = keep_plan(table, run_id, keep_versions)
        if table not in self._tables(target):
            raise WarehouseError(f"cannot merge into {destination}: no such table; publish it whole first")

        def load() -> None:
            # The new rows go to a table of their own first (write_pandas loads tables only),
            # then one CTAS merges them with the kept rows; the delta is dropped either way.
            try:
                self._load_frame(target, delta, ddl, prepared, destination)
                select = merge_select(_q(table), _q(delta), list(prepared.columns), keep_ids)
                self._execute(f"CREATE TABLE {_q(staging)} AS {select}", what=f"merge into {destination}")
            finally:
                with contextlib.suppress(HnpipeError):  # a leftover goes with the next publish
                    self._execute(f"DROP TABLE IF EXISTS {_q(delta)}")

        return self._publish(target, table, staging, load, None, gates, keep)

    def publish_query(
        self, target: Target, table: str, select_sql: str, run_id: str,
        gates: Sequence[Gate] = (), keep_versions: int | None = None,
    ) -> int:
        staging = staging_table_name(table, run_id)
        if not isinstance(select_sql, str) or not _READ_ONLY_SQL.match(select_sql):
            raise WarehouseError(
                f"refused to publish {target}.{table} from {select_sql!r:.80}: use a single SELECT (or WITH ... SELECT)"
            )
        select_sql = select_sql.strip().rstrip(";")
        gates = checked_gates(gates)
        keep = keep_plan(table, run_id, keep_versions)

        def load() -> None:
            # Unqualified names in select_sql resolve in target: the session is there.
            self._execute(f"CREATE TABLE {_q(staging)} AS {select_sql}", what=f"compute {target}.{table}")

        return self._publish(target, table, staging, load, None, gates, keep)

    def restore_version(self, target: Target, table: str, run_id: str, restore_run_id: str,
                        keep_versions: int) -> int:
        version = version_table_name(table, run_id)
        replaced = version_table_name(table, restore_run_id)
        keep = check_keep_versions(keep_versions)
        destination = f"{target}.{table}"
        self._use_for_write(target)
        existing = self._tables(target)
        if version not in existing:
            raise WarehouseError(missing_version_message(target, table, run_id, list(existing)))
        if replaced in existing:
            raise WarehouseError(f"refused to restore {destination}: {replaced} exists already; use a new run id")
        rows = self._execute(f"SELECT COUNT(*) FROM {_q(version)}").fetchone()[0]
        if table in existing:
            # Atomic, zero-copy: the table now holds the kept data, the version the replaced data,
            # which then takes the restore's run id so the restore can be undone.
            self._execute(f"ALTER TABLE {_q(table)} SWAP WITH {_q(version)}", what=f"swap {version} into {destination}")
            try:
                self._execute(f"ALTER TABLE {_q(version)} RENAME TO {_q(replaced)}", what=f"rename {version} to {replaced}")
            except HnpipeError as exc:
                raise WarehouseError(f"restored {destination} from run {run_id}, but the data it replaced "
                                     f"is still named {version}: {exc}") from None
            names = [name for name in existing if name != version] + [replaced]
        else:
            self._execute(f"ALTER TABLE {_q(version)} RENAME TO {_q(table)}", what=f"rename {version} to {destination}")
            names = [name for name in existing if name != version]
        self._prune_versions(table, names, keep)
        return rows

    def describe_table(self, target: Target, table: str) -> TableInfo:
        check_identifier(table, "table")
        tables = self._tables(target)
        if table not in tables:
            raise WarehouseError(f"no table {target}.{table} on Snowflake (or this role cannot see it)")
        database = _q(target.database, "database")
        comment = self._execute(
            f"SELECT COMMENT FROM {database}.INFORMATION_SCHEMA.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?",
            [target.schema, table], what=f"describe {target}.{table}").fetchone()
        columns = self._execute(
            f"SELECT COLUMN_NAME, DATA_TYPE, COMMENT FROM {database}.INFORMATION_SCHEMA.COLUMNS "
            "WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION",
            [target.schema, table], what=f"describe {target}.{table}").fetchall()
        return TableInfo(table, (comment or [None])[0] or None,
                         tuple(ColumnInfo(name, kind, text or None) for name, kind, text in columns))

    def comment_table(self, target: Target, table: str, comment: str,
                      column_comments: Mapping[str, str] = {}) -> None:
        check_identifier(table, "table")
        # Comments go inline as escaped literals: Snowflake does not bind values in DDL.
        statements = [(f"COMMENT ON TABLE {_q(table)} IS {_literal(comment)}", None)]
        statements += [(f"COMMENT ON COLUMN {_q(table)}.{_q(column, 'column')} IS {_literal(text)}", None)
                       for column, text in column_comments.items()]
        self._use_for_write(target)
        columns = [column.name for column in self.describe_table(target, table).columns]
        check_comment_columns(target, table, columns, column_comments)
        for sql, params in statements:
            self._execute(sql, params, what=f"comment {target}.{table}")

    def append_rows(self, target: Target, table: str, frame: pd.DataFrame) -> int:
        table = check_identifier(table, "table")
        destination = f"{target}.{table}"
        ddl, prepared = _prepare_frame(frame, destination)
        arrays = [column for column in prepared.columns
                  if _column_type(column, prepared[column], destination) == "ARRAY"]
        if arrays:
            raise WarehouseError(f"cannot append to {destination}: list column {arrays[0]}; append_rows takes scalar columns")
        rows = [[_bind_value(value) for value in row] for row in prepared.itertuples(index=False, name=None)]
        self.ensure_schema(target)  # guarded; leaves the session in target
        self._execute(f"CREATE TABLE IF NOT EXISTS {_q(table)} ({ddl})", what=f"create {destination}")
        if not rows:
            return 0
        columns = ", ".join(_q(column) for column in prepared.columns)
        row_marks = "(" + ", ".join("?" for _ in prepared.columns) + ")"
        insert = f"INSERT INTO {_q(table)} ({columns}) VALUES {', '.join(row_marks for _ in rows)}"
        self._execute("BEGIN TRANSACTION", what=f"append to {destination}")
        try:
            self._execute(insert, [value for row in rows for value in row], what=f"append to {destination}")
            self._execute("COMMIT", what=f"append to {destination}")
        except BaseException:
            with contextlib.suppress(HnpipeError):  # keep the first error, not the cleanup's
                self._execute("ROLLBACK")
            raise
        return len(rows)

    def clone_database(self, source: str, dest: str) -> None:
        source = check_identifier(source, "source database")
        dest = check_clone_name(dest, "clone")
        if dest == source:
            raise GuardError(f"refused to clone {source} into itself")
        if not self.database_exists(source):
            raise WarehouseError(f"cannot clone {source}: no such database on Snowflake (or this role cannot see it)")
        # Built by this role table by table, so it owns the database, its schemas and every
        # table (the creator owns an object; a database clone would keep the source's owners and
        # grants on its children: https://docs.snowflake.com/en/user-guide/object-clone). A table
        # clone is zero-copy and needs only SELECT on the source. Each table is consistent as of
        # its own clone; a production publish between two tables' clones would mix runs, which is
        # why the workflows never run a clone beside a production publish.
        plan = {schema: self._tables(Target(source, schema))
                for schema in sorted(self._schemas(source) - {"INFORMATION_SCHEMA", "PUBLIC"})}
        plan.setdefault(PUBLISHED_SCHEMA, {})
        self._execute(f"CREATE OR REPLACE DATABASE {_q(dest)}", what=f"create {dest}")
        try:
            for schema, tables in plan.items():
                # Managed access: its owner (this role) may define future grants in it, so the
                # readers granted below keep SELECT on tables a branch run creates later.
                self._execute(f"CREATE SCHEMA {_q(dest)}.{_q(schema)} WITH MANAGED ACCESS",
                              what=f"create {dest}.{schema}")
                for table in tables:
                    if STAGING_MARKER in table:
                        continue  # a crashed run's leftover: not part of production
                    self.clone_table(Target(source, schema), table, Target(dest, schema), table)
        except BaseException:
            with contextlib.suppress(HnpipeError):  # nothing half-made: drop the new clone again
                self._execute(f"DROP DATABASE IF EXISTS {_q(dest)}")
            raise

    def stage(self, target: Target) -> SnowflakeStage:
        return SnowflakeStage(self, target)  # HNPIPE_STAGE in target (hnpipe.warehouse.snowflake_stage)

    def clone_table(self, source: Target, table: str, dest: Target, name: str) -> None:
        """CREATE TABLE dest.name CLONE source.table: zero-copy, owned by this role, no grants
        copied (https://docs.snowflake.com/en/user-guide/object-clone)."""
        src = f"{_q(source.database)}.{_q(source.schema)}.{_q(table, 'table')}"
        new = f"{_q(dest.database)}.{_q(dest.schema)}.{_q(name, 'table')}"
        self._execute(f"CREATE TABLE {new} CLONE {src}", what=f"clone {source}.{table} into {dest}.{name}")

    def drop_table(self, target: Target, table: str) -> None:
        self._use_for_write(target)
        self._execute(f"DROP TABLE IF EXISTS {_q(table, 'table')}", what=f"drop {target}.{table}")

    def drop_database(self, database: str) -> bool:
        database = check_clone_name(database, "drop")  # before any SQL
        existed = self.database_exists(database)
        # Needs OWNERSHIP (https://docs.snowflake.com/en/sql-reference/sql/drop-database): the
        # branch role's, which built the clone.
        self._execute(f"DROP DATABASE IF EXISTS {_q(database)}", what=f"drop {database}")
        return existed

    def grant_usage(self, database: str, role: str) -> None:
        """Let `role` read a clone this role built: USAGE on it and its schemas, SELECT on its
        tables and on the tables created in them later (a future grant, which the owner of a
        managed access schema may define). Table clones copy no grants, so readers need these."""
        database = check_identifier(database, "database")
        role = check_identifier(role, "role")
        statements = [f"GRANT USAGE ON DATABASE {_q(database)} TO ROLE {_q(role)}"]
        for schema in sorted(self._schemas(database) - {"INFORMATION_SCHEMA", "PUBLIC"}):
            where = f"{_q(database)}.{_q(schema)}"
            statements += [f"GRANT USAGE ON SCHEMA {where} TO ROLE {_q(role)}",
                           f"GRANT SELECT ON ALL TABLES IN SCHEMA {where} TO ROLE {_q(role)}",
                           f"GRANT SELECT ON FUTURE TABLES IN SCHEMA {where} TO ROLE {_q(role)}"]
        for statement in statements:
            self._execute(statement, what=f"grant {role} read access to {database}")

    def run_grants(self, statements: Sequence[str]) -> None:
        """Run GRANT/REVOKE statements in order (hnpipe.handover builds them from checked
        names). Anything else is refused before the first one runs. Grants are not
        transactional in Snowflake: a failure names the statement, and the ones before it stay."""
        statements = list(statements)
        for statement in statements:
            if not isinstance(statement, str) or not _GRANT_SQL.fullmatch(statement):
                raise GuardError(f"refused {statement!r:.80}: run_grants runs single GRANT or REVOKE statements only")
        for number, statement in enumerate(statements, 1):
            self._execute(statement, what=f"statement {number} of {len(statements)} ({statement[:60]}...)")

    # -- internals ---------------------------------------------------------------------
    def _connect_once(self) -> Any:
        if self._connection is None:
            # In GitHub Actions a fresh OIDC token is fetched here, right before the login.
            settings = credentials.snowflake_credentials(self._env_names, self._environ, fetch_token=True)
            session: dict[str, Any] = {
                "TIMEZONE": "UTC",  # CURRENT_TIMESTAMP and NTZ comparisons in UTC
                # A runaway statement is cancelled (a session parameter:
                # https://docs.snowflake.com/en/sql-reference/parameters#statement-timeout-in-seconds).
                "STATEMENT_TIMEOUT_IN_SECONDS": self.statement_timeout_s,
            }
            if self._query_tag is not None:
                session["QUERY_TAG"] = self._query_tag
            if credentials.login_method(settings) == "password" and not self._warned_password:
                log.warning(credentials.PASSWORD_WARNING)
                self._warned_password = True
            try:
                # login_timeout: the connector's bound on the login itself
                # (https://docs.snowflake.com/en/developer-guide/python-connector/python-connector-api).
                self._connection = self._connect(**settings, paramstyle="qmark", session_parameters=session,
                                                 login_timeout=self.login_timeout_s)
            except Exception as exc:  # connector, network, key-file errors alike
                who = settings.get("user") or "its workload identity"
                raise WarehouseError(
                    f"cannot connect to Snowflake account {settings['account']} as {who}: {self._clean(exc)}"
                ) from None  # the original could carry what redact removed
        return self._connection

    def _execute(self, sql: str, params: Sequence[object] | None = None, *, what: str | None = None) -> Any:
        cursor = self._connect_once().cursor()
        bound = list(params) if params else None  # a fresh list: fakesnow consumes it
        log.debug("snowflake: %s %s", sql, bound or "")
        try:
            cursor.execute(sql, bound)
        except snowflake.connector.errors.Error as exc:
            raise WarehouseError(f"{what or 'Snowflake statement'} failed: {self._clean(exc)}") from None
        return cursor

    def _clean(self, error: BaseException) -> str:
        """One line, with the secrets of os.environ and of the caller's environ redacted."""
        text = credentials.redact(one_line(error))
        return text if self._environ is None else credentials.redact(text, self._environ)

    def _actual(self) -> Target:
        row = self._execute("SELECT CURRENT_DATABASE(), CURRENT_SCHEMA()").fetchone()
        if not row or row[0] is None or row[1] is None:
            raise WarehouseError(f"the Snowflake session has no current schema (it reports {row!r})")
        return Target(row[0], row[1])

    def _use(self, target: Target) -> Target:
        """Make target the session's schema; returns where the session says it is."""
        database = check_identifier(target.database, "database")
        schema = check_identifier(target.schema, "schema")
        # USE takes the name inline: checked above, and quoted.
        self._execute(f"USE SCHEMA {_q(database)}.{_q(schema)}", what=f"use {database}.{schema}")
        actual = self._actual()
        if actual != target:
            raise WarehouseError(f"asked for {target} but the Snowflake session is at {actual}")
        return actual

    def _use_for_write(self, target: Target) -> Target:
        database = check_identifier(target.database, "database")
        schema = check_identifier(target.schema, "schema")
        try:
            self._execute(f"USE SCHEMA {_q(database)}.{_q(schema)}", what=f"use {database}.{schema}")
        except WarehouseError:
            # Like the embedded engine, a write creates its schema (guarded first), and a missing
            # database is named as such rather than as a failed USE (found by the contract suite).
            if self.database_exists(database) and schema in self._schemas(database):
                raise
            self.ensure_schema(target)  # guards, creates, and comes back here once it exists
            return self._actual()
        actual = self._actual()
        self._guard(actual)  # with what Snowflake reports, not what was asked
        if actual != target:
            raise WarehouseError(f"refused write: asked for {target} but the connection is at {actual}")
        return actual

    def _load_frame(self, target: Target, table: str, ddl: str, prepared: pd.DataFrame, destination: str) -> None:
        """Create `table` from the column DDL and load the prepared frame into it."""
        self._execute(f"CREATE TABLE {_q(table)} ({ddl})", what=f"create {table}")
        if prepared.empty:
            return
        try:
            ok, _chunks, loaded, _ = snowflake.connector.pandas_tools.write_pandas(
                self._connect_once(), prepared, table,
                database=target.database, schema=target.schema,
                quote_identifiers=True, auto_create_table=False, overwrite=False,
                # Parquet logical types: timestamps load as timestamps, not integers.
                use_logical_type=True,
            )
        except Exception as exc:  # connector, network or Arrow errors alike
            raise WarehouseError(f"cannot load {destination}: {self._clean(exc)}") from None
        if not ok:
            raise WarehouseError(f"cannot load {destination}: write_pandas reported a failed load ({loaded} rows)")


    def _schemas(self, database: str) -> set[str]:
        cursor = self._execute(
            f"SELECT SCHEMA_NAME FROM {_q(database)}.INFORMATION_SCHEMA.SCHEMATA", what=f"list schemas of {database}"
        )
        return {row[0] for row in cursor.fetchall()}

    def _tables(self, target: Target) -> dict[str, int]:
        """Base tables in target (staging ones included) with row counts; {} if it is missing."""
        database = check_identifier(target.database, "database")
        schema = check_identifier(target.schema, "schema")
        if not self.database_exists(database):
            return {}
        cursor = self._execute(
            f"SELECT TABLE_NAME, ROW_COUNT FROM {_q(database)}.INFORMATION_SCHEMA.TABLES "
            "WHERE TABLE_SCHEMA = ? AND TABLE_TYPE = 'BASE TABLE' ORDER BY TABLE_NAME",
            [schema],
            what=f"list tables of {target}",
        )
        return {name: int(rows or 0) for name, rows in cursor.fetchall() if is_identifier(name)}

    def _publish(
        self, target: Target, table: str, staging: str, load: Callable[[], None],
        expected_rows: int | None, gates: Sequence[Gate], keep: tuple[str, int] | None = None,
    ) -> int:
        """Load staging, check it, swap it in; on any failure drop staging, keep the table."""
        destination = f"{target}.{table}"
        self._use_for_write(target)
        existing = self._tables(target)
        for leftover in existing:
            if leftover.startswith(table + STAGING_MARKER):  # from an earlier run that crashed
                self._execute(f"DROP TABLE IF EXISTS {_q(leftover)}", what=f"drop {leftover}")
        replacing = table in existing
        try:
            load()
            rows = self._execute(f"SELECT COUNT(*) FROM {_q(staging)}").fetchone()[0]
            if expected_rows is not None and rows != expected_rows:
                raise WarehouseError(
                    f"refused to publish {destination}: staged {rows} rows, expected {expected_rows}"
                )
            def fetch(sql: str, what: str) -> tuple[list[str], list[tuple]]:
                cursor = self._execute(sql, what=what)
                return [column[0] for column in cursor.description], cursor.fetchall()

            run_gates(gates, f"{_q(target.database)}.{_q(target.schema)}.{_q(staging)}", destination, fetch)
            if replacing:
                # Atomic: readers see the old table or the new one, never neither.
                # Needs OWNERSHIP of both tables; grants stay with the table objects, so the new
                # table has what the schema's future grants gave it at CREATE TABLE
                # (https://docs.snowflake.com/en/sql-reference/sql/alter-table; doctor --smoke).
                self._execute(f"ALTER TABLE {_q(table)} SWAP WITH {_q(staging)}", what=f"swap {staging} into {destination}")
            else:
                self._execute(f"ALTER TABLE {_q(staging)} RENAME TO {_q(table)}", what=f"rename {staging} to {destination}")
        except BaseException:
            with contextlib.suppress(HnpipeError):  # keep the first error, not the cleanup's
                self._execute(f"DROP TABLE IF EXISTS {_q(staging)}")
            raise
        names = list(existing)
        if replacing:
            # After the swap the staging table holds the old data: keep it as this run's
            # version (a rename, zero-copy) or drop it. A run replacing the table twice keeps
            # the version from before its first publish.
            version = None if keep is None or keep[0] in existing else keep[0]
            try:
                if version is None:
                    self._execute(f"DROP TABLE IF EXISTS {_q(staging)}")
                else:
                    self._execute(f"ALTER TABLE {_q(staging)} RENAME TO {_q(version)}")
                    names.append(version)
            except HnpipeError as exc:
                # Published already; the next publish of this table removes the leftover.
                log.warning("published %s but could not keep or drop %s: %s", destination, staging, exc)
        if keep is not None:
            try:
                self._prune_versions(table, names, keep[1])
            except HnpipeError as exc:  # published already; the next publish prunes again
                log.warning("published %s but could not drop its oldest versions: %s", destination, exc)
        return rows

    def _prune_versions(self, table: str, names: Sequence[str], keep: int) -> None:
        for old in versions_to_drop(table, names, keep):
            self._execute(f"DROP TABLE IF EXISTS {_q(old)}", what=f"drop {old}")

def _missing_database(database: str) -> str:
    if CLONE_NAME.fullmatch(database):
        return f"database {database} does not exist on Snowflake: run `hnpipe admin clone` for this pull request first"
    return (
        f"database {database} does not exist on Snowflake (or this role cannot see it): databases are "
        "created by an admin, hnpipe creates only schemas"
    )
