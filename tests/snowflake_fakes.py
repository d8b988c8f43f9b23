"""Test fakes for the Snowflake engine, and the pytest fixtures every test uses them through.

No Snowflake account exists for tests. Two stand-ins, both clearly test fakes:

* fakesnow 0.12.1, in process (`fakesnow.patch()`): runs the SQL on DuckDB. It cannot parse
  `ALTER TABLE .. SWAP WITH`, so `SwapEmulatingConnection` replays that one statement as three
  renames; it has no DROP DATABASE or GRANT, ignores QUERY_TAG, and clones databases empty.
  It cannot COPY from a stage path, LIST a path, GET or REMOVE, so the stage statements go to
  the stage model (tests/snowflake_stages.py, `FakeSnowflake.stages`), whose COPY hands the
  rows to fakesnow with write_pandas (fakesnow then holds them and runs the gates).
* `RecordingConnection`: records every (sql, params) it is sent and answers from a small
  script, so the exact statements Snowflake would receive are pinned.

The root conftest.py loads this module as a pytest plugin (`pytest_plugins`), so its fixtures
are there in every test without an import: `fake_snowflake` (fakesnow for one test, with
`.warehouse()`, `.create_databases()`, `.tables()` ...), `snowflake_process` (that account as
the process's default warehouse, credentials in the environment) and `recorded_write_pandas`.
"""

from __future__ import annotations

import re
from typing import Any, Iterator

import pytest
from snowflake_stages import STAGE_STATEMENT, Stages, matched_columns

PASSWORD = "sn0wflake-Pa55-do-not-leak"
ENV = {
    "SNOWFLAKE_ACCOUNT": "xy12345.eu-west-1",
    "SNOWFLAKE_USER": "SVC_HNPIPE",
    "SNOWFLAKE_PASSWORD": PASSWORD,
    "SNOWFLAKE_ROLE": "HNPIPE_WRITER",
    "SNOWFLAKE_WAREHOUSE": "HNPIPE_WH",
}


# -- fakesnow ----------------------------------------------------------------------------
# The swap as the engine sends it: names bound with IDENTIFIER(?), or checked and double-quoted
# (optionally qualified) inline.
_NAME = r'(?:IDENTIFIER\(\?\)|(?:"[A-Z0-9_]+"\.){0,2}"([A-Z0-9_]+)")'
_SWAP = re.compile(rf"ALTER TABLE {_NAME} SWAP WITH {_NAME}")


class SwapEmulatingConnection:
    """Test fake around a fakesnow connection: replays `ALTER TABLE .. SWAP WITH` (which
    fakesnow 0.12.1 cannot parse) as three renames, and creates a schema `WITH MANAGED ACCESS`
    (which it cannot parse either) without it. Not atomic, unlike Snowflake's swap; the
    recorded-SQL tests and the ownership model (tests/snowflake_model.py) pin the real
    statements. Everything else goes to fakesnow unchanged. `owner.fail_swaps`, when set, is raised instead of swapping (a failure inside the swap)."""

    def __init__(self, inner: Any, owner: Any = None) -> None:
        self._inner = inner
        self._owner = owner
        self.swaps: list[tuple[str, str]] = []

    @property
    def fail_swaps(self) -> BaseException | None:
        return getattr(self._owner, "fail_swaps", None)

    @property
    def stages(self) -> Stages | None:
        return getattr(self._owner, "stages", None)

    def cursor(self, *args: Any, **kwargs: Any) -> Any:
        return _SwapEmulatingCursor(self._inner.cursor(*args, **kwargs), self)

    def __getattr__(self, name: str) -> Any:  # write_pandas reaches fakesnow's internals
        return getattr(self._inner, name)


class _SwapEmulatingCursor:
    def __init__(self, inner: Any, connection: SwapEmulatingConnection) -> None:
        self._inner, self._connection = inner, connection

    _result: tuple | None = None  # a stage statement's (description, rows), answered by the stage model

    @property
    def description(self) -> Any:
        return self._result[0] if self._result is not None else self._inner.description

    def fetchall(self) -> list:
        return list(self._result[1]) if self._result is not None else self._inner.fetchall()

    def fetchone(self) -> Any:
        if self._result is not None:
            return self._result[1][0] if self._result[1] else None
        return self._inner.fetchone()

    def _copy_rows(self, table: str, loaded: Any) -> None:
        """The stage model's COPY: the file's rows into the fakesnow table, by column name."""
        import pyarrow as pa
        import snowflake.connector.pandas_tools
        from hnpipe.warehouse.frames import frame_from_arrow

        name = table.split(".")[-1].strip('"')
        database, schema = self._inner.execute("SELECT CURRENT_DATABASE(), CURRENT_SCHEMA()").fetchone()
        columns = [c[0] for c in self._inner.execute(f'SELECT * FROM "{name}" LIMIT 0').description]
        if not loaded.num_rows:
            return
        matched = matched_columns(loaded, columns)
        arrays = [found if found is not None else pa.nulls(loaded.num_rows) for found in matched.values()]
        frame = frame_from_arrow(pa.table(arrays, names=columns))
        for column in frame.columns:  # NTZ holds UTC wall time, as the engine's own loads write it
            if getattr(frame[column].dtype, "tz", None) is not None:
                frame[column] = frame[column].dt.tz_convert("UTC").dt.tz_localize(None)
        snowflake.connector.pandas_tools.write_pandas(
            self._connection._inner, frame, name, database=database, schema=schema, quote_identifiers=True,
            auto_create_table=False, overwrite=False, use_logical_type=True)

    def execute(self, sql: str, params: Any = None) -> Any:
        self._result = None
        if STAGE_STATEMENT.match(sql) and self._connection.stages is not None:
            current = tuple(self._inner.execute("SELECT CURRENT_DATABASE(), CURRENT_SCHEMA()").fetchone())
            self._result = self._connection.stages.execute(sql, current, "FAKESNOW", lambda need, on: True,
                                                           self._copy_rows)
            return self
        match = _SWAP.fullmatch(sql)
        if match:
            bound = iter(params or [])
            table, other = (name or next(bound) for name in match.groups())
            if self._connection.fail_swaps is not None:
                raise self._connection.fail_swaps
            spare = f"{table}__SWAPPING"
            for old, new in ((table, spare), (other, table), (spare, other)):
                self._inner.execute(f'ALTER TABLE "{old}" RENAME TO "{new}"')
            self._connection.swaps.append((table, other))
            return self
        self._inner.execute(sql.removesuffix(" WITH MANAGED ACCESS"), params)
        return self

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class FakeSnowflake:
    """One test's fakesnow account (`fake_snowflake` fixture): no database until
    `create_databases` makes them, as an admin would. Asks fakesnow directly for what a
    test checks, so the engine under test is not its own witness."""

    def __init__(self) -> None:
        self.connections: list[SwapEmulatingConnection] = []
        self.fail_swaps: BaseException | None = None  # set: every SWAP WITH raises it
        self.stages = Stages()  # the account's named stages (tests/snowflake_stages.py)

    def connect(self, **kwargs: Any) -> SwapEmulatingConnection:
        """A fakesnow connection that replays SWAP WITH; the engine's `connect`."""
        import snowflake.connector

        connection = SwapEmulatingConnection(snowflake.connector.connect(**kwargs), owner=self)
        self.connections.append(connection)
        return connection

    def warehouse(self, guard: Any = None, **options: Any) -> Any:
        """A SnowflakeWarehouse on this account, with ENV's (fake) credentials."""
        from hnpipe.warehouse.snowflake_engine import SnowflakeWarehouse

        return SnowflakeWarehouse(guard, environ=options.pop("environ", ENV), connect=self.connect, **options)

    def cursor(self) -> Any:
        """A cursor of a plain fakesnow connection (qmark), for a test's own questions."""
        import snowflake.connector

        return snowflake.connector.connect(paramstyle="qmark").cursor()

    def create_databases(self, *names: str) -> FakeSnowflake:
        for name in names:
            self.cursor().execute(f"CREATE DATABASE {name}")
        return self

    def databases(self) -> list[str]:
        return sorted(row[1] for row in self.cursor().execute("SHOW DATABASES").fetchall())

    def schemas(self, database: str) -> set[str]:
        cursor = self.cursor().execute(f'SELECT SCHEMA_NAME FROM "{database}".INFORMATION_SCHEMA.SCHEMATA')
        return {row[0] for row in cursor.fetchall()}

    def tables(self, database: str = "STAGING", schema: str = "HACKER_NEWS") -> dict[str, int]:
        """Every table in the schema with its rows, staging and versions too."""
        cursor = self.cursor().execute(
            f'SELECT TABLE_NAME, ROW_COUNT FROM "{database}".INFORMATION_SCHEMA.TABLES WHERE TABLE_SCHEMA = ?',
            [schema])
        return dict(cursor.fetchall())

    @property
    def swaps(self) -> list[tuple[str, str]]:
        """Every SWAP WITH replayed, over all connections, in order of connection."""
        return [swap for connection in self.connections for swap in connection.swaps]


@pytest.fixture
def fake_snowflake() -> Iterator[FakeSnowflake]:
    """fakesnow patched into snowflake.connector for one test; an empty account."""
    import fakesnow

    with fakesnow.patch():
        yield FakeSnowflake()


@pytest.fixture
def snowflake_process(fake_snowflake: FakeSnowflake, monkeypatch: pytest.MonkeyPatch) -> FakeSnowflake:
    """The fakesnow account as what the process connects to by itself (open_warehouse,
    pipeline.start, commands): HNPIPE_WAREHOUSE=snowflake, ENV's credentials in the environment,
    and the engine's connector wrapped to replay SWAP WITH."""
    from hnpipe.warehouse import snowflake_engine

    monkeypatch.setenv("HNPIPE_WAREHOUSE", "snowflake")
    for key, value in ENV.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(snowflake_engine, "_connect_with_snowflake_connector", fake_snowflake.connect)
    return fake_snowflake


@pytest.fixture
def recorded_write_pandas(monkeypatch: pytest.MonkeyPatch) -> list[dict]:
    """Test fake for write_pandas (which would PUT files to a Snowflake stage): records its call
    in a RecordingConnection's statement list as ('<write_pandas>', [table]) and 'loads' every
    row. Returns the calls, with a copy of each frame."""
    import snowflake.connector.pandas_tools

    calls: list[dict] = []

    def fake(conn, df, table_name, **kwargs):
        conn.statements.append(("<write_pandas>", [table_name]))
        conn.loaded = len(df)
        calls.append({"frame": df.copy(), "table_name": table_name, **kwargs})
        return True, 1, len(df), []

    monkeypatch.setattr(snowflake.connector.pandas_tools, "write_pandas", fake)
    return calls


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

    def warehouse(self, guard=None, **options: Any) -> Any:
        from hnpipe.warehouse.snowflake_engine import SnowflakeWarehouse

        return SnowflakeWarehouse(guard, environ=options.pop("environ", ENV), connect=self.connect, **options)
