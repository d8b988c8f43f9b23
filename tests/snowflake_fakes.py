"""Test fakes for the Snowflake engine, shared by the tests that need them.

No Snowflake account exists for tests. Two stand-ins, both clearly test fakes:

* fakesnow 0.12.1, in process (`fakesnow.patch()`): runs the SQL on DuckDB. It cannot parse
  `ALTER TABLE .. SWAP WITH`, so `SwapEmulatingConnection` replays that one statement as three
  renames; it has no DROP DATABASE or GRANT, ignores QUERY_TAG, and clones databases empty.
* `RecordingConnection`: records every (sql, params) it is sent and answers from a small
  script, so the exact statements Snowflake would receive are pinned.
"""

from __future__ import annotations

import re
from typing import Any

from hnpipe.warehouse.snowflake_engine import SnowflakeWarehouse

PASSWORD = "sn0wflake-Pa55-do-not-leak"
ENV = {
    "SNOWFLAKE_ACCOUNT": "xy12345.eu-west-1",
    "SNOWFLAKE_USER": "SVC_HNPIPE",
    "SNOWFLAKE_PASSWORD": PASSWORD,
    "SNOWFLAKE_ROLE": "HNPIPE_WRITER",
    "SNOWFLAKE_WAREHOUSE": "HNPIPE_WH",
}

# -- fakesnow ----------------------------------------------------------------------------
class SwapEmulatingConnection:
    """Test fake around a fakesnow connection: replays `ALTER TABLE .. SWAP WITH` (which
    fakesnow 0.12.1 cannot parse) as three renames, and creates a schema `WITH MANAGED ACCESS`
    (which it cannot parse either) without it. Not atomic, unlike Snowflake's swap; the
    recorded-SQL tests and the ownership model (tests/snowflake_model.py) pin the real
    statements. Everything else goes to fakesnow unchanged."""

    SWAP = re.compile(r'ALTER TABLE "([A-Z0-9_]+)" SWAP WITH "([A-Z0-9_]+)"')

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.swaps: list[tuple[str, str]] = []

    def cursor(self, *args: Any, **kwargs: Any) -> Any:
        return _SwapEmulatingCursor(self._inner.cursor(*args, **kwargs), self)

    def __getattr__(self, name: str) -> Any:  # write_pandas reaches fakesnow's internals
        return getattr(self._inner, name)


class _SwapEmulatingCursor:
    def __init__(self, inner: Any, connection: SwapEmulatingConnection) -> None:
        self._inner, self._connection = inner, connection

    def execute(self, sql: str, params: Any = None) -> Any:
        if match := SwapEmulatingConnection.SWAP.fullmatch(sql):
            table, other = match.groups()
            spare = f"{table}__SWAPPING"
            for old, new in ((table, spare), (other, table), (spare, other)):
                self._inner.execute(f'ALTER TABLE "{old}" RENAME TO "{new}"')
            self._connection.swaps.append((table, other))
            return self
        self._inner.execute(sql.removesuffix(" WITH MANAGED ACCESS"), params)
        return self

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)



# -- recorded SQL ------------------------------------------------------------------------
def _meta(name: str, type_code: int = 2, scale: int | None = None) -> tuple:
    # DB-API description row: name, type_code, display_size, internal_size, precision, scale, null_ok
    return (name, type_code, None, None, None, scale, True)


_STATUS = ([_meta("status")], [("Statement executed successfully.",)])
_USE = re.compile(r'USE SCHEMA "([A-Z0-9_]+)"\."([A-Z0-9_]+)"')
_USE_DATABASE = re.compile(r'USE DATABASE "([A-Z0-9_]+)"')


class RecordingConnection:
    """Test fake: records every (sql, params) it is sent and answers a few questions from
    its state (databases, tables, the session's schema); anything else gets a status row."""

    def __init__(self, databases=("STAGING", "PRODUCTION"), schemas=(), tables=None, staged_rows=None,
                 reports=None, failing=None, columns=()) -> None:
        self.statements: list[tuple[str, list | None]] = []
        self.databases = list(databases)
        self.schemas = list(schemas)  # in every database
        self.tables: dict[str, int] = dict(tables or {})
        self.staged_rows = staged_rows  # COUNT(*) of the staging table; None: what was loaded
        self.reports = reports  # (database, schema) CURRENT_* answers, whatever USE said
        self.failing = failing or {}  # sql prefix -> exception to raise
        self.columns = list(columns)  # (name, type, comment) of any table described
        self.current: tuple[str | None, str | None] = (None, None)
        self.loaded = 0
        self.closed = False

    def cursor(self) -> RecordingCursor:
        return RecordingCursor(self)

    def close(self) -> None:
        self.closed = True

    def answer(self, sql: str, params: list | None) -> tuple[list, list]:
        for prefix, error in self.failing.items():
            if sql.startswith(prefix):
                raise error
        if match := _USE.fullmatch(sql):
            self.current = match.groups()
            return _STATUS
        if match := _USE_DATABASE.fullmatch(sql):
            self.current = (match.group(1), "PUBLIC")
            return _STATUS
        if sql == "SELECT CURRENT_DATABASE()":
            return [_meta("CURRENT_DATABASE()")], [(self.current[0],)]
        if "INFORMATION_SCHEMA.SCHEMATA" in sql:
            return [_meta("SCHEMA_NAME")], [(name,) for name in self.schemas]
        if sql == "SELECT CURRENT_DATABASE(), CURRENT_SCHEMA()":
            return [_meta("CURRENT_DATABASE()"), _meta("CURRENT_SCHEMA()")], [self.reports or self.current]
        if sql == "SHOW DATABASES":
            return [_meta("created_on", 6), _meta("name")], [(None, name) for name in self.databases]
        if sql.startswith("SELECT COMMENT FROM") and "INFORMATION_SCHEMA.TABLES" in sql:
            return [_meta("COMMENT")], [(None,)]
        if "INFORMATION_SCHEMA.COLUMNS" in sql:
            return [_meta("COLUMN_NAME"), _meta("DATA_TYPE"), _meta("COMMENT")], self.columns
        if "INFORMATION_SCHEMA.TABLES" in sql:
            return [_meta("TABLE_NAME"), _meta("ROW_COUNT", 0, 0)], sorted(self.tables.items())
        if re.fullmatch(r'SELECT COUNT\(\*\) FROM "[A-Z0-9_]+"', sql):
            rows = self.loaded if self.staged_rows is None else self.staged_rows
            return [_meta("COUNT(*)", 0, 0)], [(rows,)]
        if sql.startswith("SELECT COUNT(*) FROM ("):  # quality checks: none fail here
            return [_meta("COUNT(*)", 0, 0)], [(0,)]
        return _STATUS


class RecordingCursor:
    def __init__(self, connection: RecordingConnection) -> None:
        self.connection = connection
        self.description: list | None = None
        self._rows: list = []

    def execute(self, sql: str, params: Any = None) -> RecordingCursor:
        self.connection.statements.append((sql, None if params is None else list(params)))
        self.description, self._rows = self.connection.answer(sql, params)
        return self

    def fetchone(self) -> Any:
        return self._rows[0] if self._rows else None

    def fetchall(self) -> list:
        return list(self._rows)


class Recorder:
    """A recording connection plus the connect() kwargs the adapter used."""

    def __init__(self, **script: Any) -> None:
        self.connection = RecordingConnection(**script)
        self.connect_calls: list[dict] = []

    def connect(self, **kwargs: Any) -> RecordingConnection:
        self.connect_calls.append(kwargs)
        return self.connection

    @property
    def statements(self) -> list[tuple[str, list | None]]:
        return self.connection.statements

    def warehouse(self, guard=None, **options: Any) -> SnowflakeWarehouse:
        return SnowflakeWarehouse(guard, environ=options.pop("environ", ENV), connect=self.connect, **options)
