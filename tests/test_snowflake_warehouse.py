"""What only the Snowflake engine has: the SQL it sends (pinned through the recording
connection), the query tag, credentials and their redaction, names checked and bound, and
how the connector's results read back.

What both engines promise (publish, gates, swap, versions, restore, comments, append, guards,
close) is in test_warehouse_contract.py, which runs it on fakesnow too. The stand-ins for
Snowflake are test fakes in tests/snowflake_fakes.py.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pandas as pd
import pyarrow as pa
import pytest
import snowflake.connector
import snowflake.connector.errors
import snowflake.connector.pandas_tools
from hnpipe import datasets
from hnpipe.environments import Target
from hnpipe.errors import GuardError, HnpipeError, WarehouseError
from hnpipe.items import items_frame
from hnpipe.warehouse import open_warehouse
from hnpipe.warehouse.snowflake_engine import SnowflakeWarehouse
from snowflake_fakes import ENV, PASSWORD, Recorder, _meta

# fakesnow's own noise about DuckDB result copies; not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:Arrow output on a DB-API result:UserWarning")

STAGING = Target("STAGING", "HACKER_NEWS")
ITEMS_GATES = datasets.get("ITEMS").gates
COMMENTS = datasets.get("COMMENTS")

RAW_ITEMS = [
    {"id": 10, "type": "story", "by": "ann", "time": 1_700_000_000, "kids": [11, 12], "title": "Show HN",
     "url": "https://example.com", "score": 42, "descendants": 2},
    {"id": 11, "type": "comment", "by": "bob", "time": 1_700_000_100, "parent": 10, "text": "Nice", "kids": []},
    {"id": 12, "type": "comment", "by": "cy", "time": 1_700_000_200, "parent": 10, "deleted": True},
    {"id": 13, "type": "poll", "by": "dee", "time": 1_700_000_300, "parts": [14, 15], "dead": True},
]


def items(raw: list[dict] = RAW_ITEMS) -> pd.DataFrame:
    return items_frame(raw)


@pytest.mark.parametrize(
    ("database", "expected"),
    [
        ("LOCAL", r"^database LOCAL does not exist on Snowflake \(or this role cannot see it\): databases are created by an admin"),
        ("PRODUCTION_CLONE_7", r"^database PRODUCTION_CLONE_7 does not exist on Snowflake: run `hnpipe admin clone`"),
    ],
)
def test_ensure_schema_on_a_missing_database_names_it(fake_snowflake, database: str, expected: str) -> None:
    warehouse = fake_snowflake.create_databases("STAGING", "PRODUCTION").warehouse()
    with pytest.raises(WarehouseError, match=expected):
        warehouse.ensure_schema(Target(database, "HACKER_NEWS"))
    assert not warehouse.database_exists(database)


def test_open_warehouse_builds_the_snowflake_engine(fake_snowflake) -> None:
    fake_snowflake.create_databases("STAGING", "PRODUCTION")
    warehouse = open_warehouse("snowflake", environ=ENV)
    assert isinstance(warehouse, SnowflakeWarehouse) and warehouse.engine == "snowflake"
    assert warehouse.list_databases() == ["PRODUCTION", "STAGING"]  # via the patched connector
    warehouse.close()


# -- recorded SQL ------------------------------------------------------------------------
TABLES_SQL = (
    'SELECT TABLE_NAME, ROW_COUNT FROM "STAGING".INFORMATION_SCHEMA.TABLES '
    "WHERE TABLE_SCHEMA = ? AND TABLE_TYPE = 'BASE TABLE' ORDER BY TABLE_NAME"
)
SESSION = [
    ('USE SCHEMA "STAGING"."HACKER_NEWS"', None),
    ("SELECT CURRENT_DATABASE(), CURRENT_SCHEMA()", None),
    ("SHOW DATABASES", None),
    (TABLES_SQL, ["HACKER_NEWS"]),
]
ITEMS_DDL = (
    'CREATE TABLE "ITEMS__STAGING_RUN7" ("ID" NUMBER(38,0), "DELETED" BOOLEAN, "TYPE" VARCHAR, '
    '"USER_ID" VARCHAR, "TIME" TIMESTAMP_NTZ, "TEXT" VARCHAR, "DEAD" BOOLEAN, "PARENT" NUMBER(38,0), '
    '"POLL" NUMBER(38,0), "KIDS" ARRAY, "URL" VARCHAR, "SCORE" NUMBER(38,0), "TITLE" VARCHAR, '
    '"PARTS" ARRAY, "DESCENDANTS" NUMBER(38,0))'
)
CHECKS_SQL = [
    ('SELECT COUNT(*) FROM (SELECT ID FROM "STAGING"."HACKER_NEWS"."ITEMS__STAGING_RUN7" '
     "WHERE ID IS NULL) AS offending", None),
    ('SELECT COUNT(*) FROM (SELECT ID FROM "STAGING"."HACKER_NEWS"."ITEMS__STAGING_RUN7" '
     "GROUP BY ID HAVING COUNT(*) > 1) AS offending", None),
]


def test_connect_sets_query_tag_qmark_and_credentials_once() -> None:
    recorder = Recorder()
    tag = {"env": "staging", "notebook": "items.ipynb", "run_id": "20240101T000000Z", "git_sha": "abc1234"}
    warehouse = recorder.warehouse(query_tag=tag)
    assert recorder.connect_calls == []  # connects on first use only

    warehouse.list_databases()
    warehouse.list_databases()

    assert recorder.connect_calls == [{
        "account": "xy12345.eu-west-1", "user": "SVC_HNPIPE", "role": "HNPIPE_WRITER",
        "warehouse": "HNPIPE_WH", "password": PASSWORD, "paramstyle": "qmark", "login_timeout": 60,
        "session_parameters": {
            "TIMEZONE": "UTC", "STATEMENT_TIMEOUT_IN_SECONDS": 3600,
            "QUERY_TAG": '{"env":"staging","git_sha":"abc1234","notebook":"items.ipynb","run_id":"20240101T000000Z"}',
        },
    }]
    # The tag rides on the session: no statement for it, so none to forget on a reconnect.
    assert not any("QUERY_TAG" in sql for sql, _ in recorder.statements)
    assert PASSWORD not in repr(warehouse) and PASSWORD not in str(vars(warehouse))
    warehouse.close()
    assert recorder.connection.closed


def test_private_key_file_is_passed_by_path_not_password(tmp_path) -> None:
    key = tmp_path / "rsa_key.p8"
    key.write_text("-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBg\n-----END PRIVATE KEY-----\n")
    environ = {k: v for k, v in ENV.items() if k != "SNOWFLAKE_PASSWORD"}
    environ["SNOWFLAKE_PRIVATE_KEY_FILE"] = str(key)
    recorder = Recorder()
    recorder.warehouse(environ=environ).list_databases()
    (kwargs,) = recorder.connect_calls
    assert kwargs["private_key_file"] == str(key)  # connector 4.8 reads and converts it
    assert "password" not in kwargs


def test_an_overlong_query_tag_is_refused_before_connecting() -> None:
    recorder = Recorder()
    with pytest.raises(WarehouseError, match=r"^query_tag is \d+ characters as JSON; Snowflake allows at most 2000$"):
        recorder.warehouse(query_tag={"notebook": "x" * 2000})
    assert recorder.connect_calls == []


def test_missing_credentials_fail_at_construction_naming_the_variable() -> None:
    recorder = Recorder()
    environ = {k: v for k, v in ENV.items() if k != "SNOWFLAKE_ROLE"}
    with pytest.raises(HnpipeError, match=r"^missing Snowflake credential: set SNOWFLAKE_ROLE "):
        recorder.warehouse(environ=environ)
    assert recorder.connect_calls == []


def test_connector_errors_are_one_line_and_redacted() -> None:
    leaky = snowflake.connector.errors.DatabaseError(
        msg=f"250001: Failed to connect\nIncorrect username or password was specified: {PASSWORD}"
    )

    def refuse(**kwargs: Any) -> Any:
        raise leaky

    warehouse = SnowflakeWarehouse(environ=ENV, connect=refuse)
    with pytest.raises(WarehouseError) as caught:
        warehouse.list_databases()
    message = str(caught.value)
    assert message.startswith("cannot connect to Snowflake account xy12345.eu-west-1 as SVC_HNPIPE: ")
    assert PASSWORD not in message and "***" in message and "\n" not in message
    assert caught.value.__cause__ is None and caught.value.__suppress_context__  # no leaky chain


def test_errors_are_redacted_when_credentials_come_from_os_environ(monkeypatch, tmp_path) -> None:
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("HNPIPE_ROOT", str(tmp_path))  # no project .env to load

    def refuse(**kwargs: Any) -> Any:
        raise snowflake.connector.errors.DatabaseError(msg=f"bad password {kwargs['password']}")

    with pytest.raises(WarehouseError) as caught:
        SnowflakeWarehouse(connect=refuse).list_databases()
    assert str(caught.value).endswith("bad password ***")


def test_statement_errors_are_redacted_too() -> None:
    recorder = Recorder(failing={"SHOW DATABASES": snowflake.connector.errors.ProgrammingError(
        msg=f"SQL compilation error: near '{PASSWORD}'")})
    with pytest.raises(WarehouseError) as caught:
        recorder.warehouse().list_databases()
    assert str(caught.value).startswith("list databases failed: ")
    assert PASSWORD not in str(caught.value)


def test_first_publish_stages_checks_and_renames(recorded_write_pandas) -> None:
    recorder = Recorder()
    seen: list[Target] = []
    frame = items()

    rows = recorder.warehouse(seen.append).publish_frame(STAGING, "ITEMS", frame, "run7", ITEMS_GATES)

    assert rows == 4
    assert seen == [STAGING]
    assert recorder.statements == [
        *SESSION,
        (ITEMS_DDL, None),
        ("<write_pandas>", ["ITEMS__STAGING_RUN7"]),
        ('SELECT COUNT(*) FROM "ITEMS__STAGING_RUN7"', None),
        *CHECKS_SQL,
        ('ALTER TABLE "ITEMS__STAGING_RUN7" RENAME TO "ITEMS"', None),
    ]
    (call,) = recorded_write_pandas
    assert {k: call[k] for k in ("database", "schema", "quote_identifiers", "auto_create_table",
                                 "overwrite", "use_logical_type")} == {
        "database": "STAGING", "schema": "HACKER_NEWS", "quote_identifiers": True,
        "auto_create_table": False, "overwrite": False, "use_logical_type": True,
    }
    # TIME goes as naive UTC wall time (TIMESTAMP_NTZ); the caller's frame is not modified.
    assert str(call["frame"]["TIME"].dtype) == "datetime64[us]"
    assert call["frame"].loc[0, "TIME"] == pd.Timestamp("2023-11-14 22:13:20")
    assert str(frame["TIME"].dtype) == "datetime64[us, UTC]"


def test_republish_drops_leftovers_swaps_and_drops_the_old_copy(recorded_write_pandas) -> None:
    recorder = Recorder(tables={"ITEMS": 4, "ITEMS__STAGING_CRASHED": 2, "STORIES": 1})

    recorder.warehouse().publish_frame(STAGING, "ITEMS", items(), "run7", ITEMS_GATES)

    assert recorder.statements == [
        *SESSION,
        ('DROP TABLE IF EXISTS "ITEMS__STAGING_CRASHED"', None),
        (ITEMS_DDL, None),
        ("<write_pandas>", ["ITEMS__STAGING_RUN7"]),
        ('SELECT COUNT(*) FROM "ITEMS__STAGING_RUN7"', None),
        *CHECKS_SQL,
        ('ALTER TABLE "ITEMS" SWAP WITH "ITEMS__STAGING_RUN7"', None),
        ('DROP TABLE IF EXISTS "ITEMS__STAGING_RUN7"', None),
    ]
    assert not any(sql.startswith(("TRUNCATE", "DELETE")) for sql, _ in recorder.statements)


def test_publish_query_is_a_ctas_in_the_target_schema() -> None:
    recorder = Recorder(tables={"ITEMS": 4})
    recorder.connection.staged_rows = 2

    rows = recorder.warehouse().publish_query(STAGING, "COMMENTS", COMMENTS.sql + ";\n", "run7")

    assert rows == 2
    assert recorder.statements == [
        *SESSION,
        (f'CREATE TABLE "COMMENTS__STAGING_RUN7" AS {COMMENTS.sql}', None),
        ('SELECT COUNT(*) FROM "COMMENTS__STAGING_RUN7"', None),
        ('ALTER TABLE "COMMENTS__STAGING_RUN7" RENAME TO "COMMENTS"', None),
    ]


def test_a_short_load_is_refused_and_staging_dropped(recorded_write_pandas) -> None:
    recorder = Recorder(tables={"ITEMS": 4}, staged_rows=3)
    with pytest.raises(WarehouseError, match=r"^refused to publish STAGING.HACKER_NEWS.ITEMS: staged 3 rows, expected 4$"):
        recorder.warehouse().publish_frame(STAGING, "ITEMS", items(), "run7")
    sent = [sql for sql, _ in recorder.statements]
    assert recorder.statements[-1] == ('DROP TABLE IF EXISTS "ITEMS__STAGING_RUN7"', None)
    assert not any("SWAP" in sql or "RENAME" in sql for sql in sent)


def test_a_failed_swap_drops_staging_and_reports_the_swap(recorded_write_pandas) -> None:
    recorder = Recorder(tables={"ITEMS": 4}, failing={
        'ALTER TABLE "ITEMS" SWAP': snowflake.connector.errors.ProgrammingError(msg="insufficient privileges")})
    with pytest.raises(WarehouseError, match=r"^swap ITEMS__STAGING_RUN7 into STAGING.HACKER_NEWS.ITEMS failed: "):
        recorder.warehouse().publish_frame(STAGING, "ITEMS", items(), "run7")
    assert recorder.statements[-1] == ('DROP TABLE IF EXISTS "ITEMS__STAGING_RUN7"', None)


def test_guard_gets_what_the_session_reports_not_what_was_asked(recorded_write_pandas) -> None:
    # e.g. a session that silently stayed elsewhere: the guard must judge the real place.
    recorder = Recorder(reports=("PRODUCTION", "HACKER_NEWS"))
    seen: list[Target] = []
    with pytest.raises(WarehouseError, match=r"^refused write: asked for STAGING.HACKER_NEWS but the connection is at PRODUCTION.HACKER_NEWS$"):
        recorder.warehouse(seen.append).publish_frame(STAGING, "ITEMS", items(), "run7")
    assert seen == [Target("PRODUCTION", "HACKER_NEWS")]
    assert [sql for sql, _ in recorder.statements] == [SESSION[0][0], SESSION[1][0]]  # nothing written


def test_ensure_schema_guards_then_creates_in_the_checked_database() -> None:
    recorder = Recorder()
    seen: list[Target] = []
    recorder.warehouse(seen.append).ensure_schema(STAGING)
    assert recorder.statements == [
        ("SHOW DATABASES", None),
        ('SELECT SCHEMA_NAME FROM "STAGING".INFORMATION_SCHEMA.SCHEMATA', None),
        ('USE DATABASE "STAGING"', None),
        ("SELECT CURRENT_DATABASE()", None),
        ('CREATE SCHEMA IF NOT EXISTS "STAGING"."HACKER_NEWS"', None),
        ('USE SCHEMA "STAGING"."HACKER_NEWS"', None),
        ("SELECT CURRENT_DATABASE(), CURRENT_SCHEMA()", None),
    ]
    assert seen == [STAGING, STAGING]  # before creating, and in the schema once made


def test_ensure_schema_on_an_existing_schema_creates_nothing() -> None:
    recorder = Recorder(schemas=["HACKER_NEWS"])
    recorder.warehouse().ensure_schema(STAGING)
    assert not any(sql.startswith("CREATE") for sql, _ in recorder.statements)


def test_a_clone_is_built_by_this_role_table_by_table_so_it_owns_everything_in_it() -> None:
    # Not CREATE DATABASE .. CLONE: its schemas and tables would keep production's owners
    # (https://docs.snowflake.com/en/user-guide/object-clone); tests/test_snowflake_lifecycle.py
    # shows the branch then cannot publish into it.
    recorder = Recorder(schemas=["HACKER_NEWS", "PUBLIC", "INFORMATION_SCHEMA"],
                        tables={"ITEMS": 5, "ITEMS__STAGING_CRASHED": 1, "STORIES": 2})
    recorder.warehouse().clone_database("PRODUCTION", "PRODUCTION_CLONE_42")
    assert [sql for sql, _ in recorder.statements if not sql.startswith(("SHOW", "SELECT"))] == [
        'CREATE OR REPLACE DATABASE "PRODUCTION_CLONE_42"',
        'CREATE SCHEMA "PRODUCTION_CLONE_42"."HACKER_NEWS" WITH MANAGED ACCESS',
        'CREATE TABLE "PRODUCTION_CLONE_42"."HACKER_NEWS"."ITEMS" CLONE "PRODUCTION"."HACKER_NEWS"."ITEMS"',
        'CREATE TABLE "PRODUCTION_CLONE_42"."HACKER_NEWS"."STORIES" CLONE "PRODUCTION"."HACKER_NEWS"."STORIES"',
    ]


def test_a_failed_table_clone_drops_the_half_made_clone() -> None:
    recorder = Recorder(schemas=["HACKER_NEWS"], tables={"ITEMS": 5}, failing={
        'CREATE TABLE "PRODUCTION_CLONE_42"': snowflake.connector.errors.ProgrammingError(msg="Insufficient privileges")})
    with pytest.raises(WarehouseError, match=r"^clone PRODUCTION.HACKER_NEWS.ITEMS into PRODUCTION_CLONE_42.HACKER_NEWS.ITEMS failed"):
        recorder.warehouse().clone_database("PRODUCTION", "PRODUCTION_CLONE_42")
    assert recorder.statements[-1] == ('DROP DATABASE IF EXISTS "PRODUCTION_CLONE_42"', None)


def test_clone_of_a_missing_source_is_refused_before_cloning() -> None:
    recorder = Recorder(databases=["STAGING"])
    with pytest.raises(WarehouseError, match=r"^cannot clone PRODUCTION: no such database on Snowflake"):
        recorder.warehouse().clone_database("PRODUCTION", "PRODUCTION_CLONE_42")
    assert [sql for sql, _ in recorder.statements] == ["SHOW DATABASES"]


@pytest.mark.parametrize(("databases", "existed"), [(["PRODUCTION", "PRODUCTION_CLONE_42"], True), (["PRODUCTION"], False)])
def test_drop_database_drops_if_exists_and_says_whether_it_existed(databases, existed) -> None:
    recorder = Recorder(databases=databases)
    assert recorder.warehouse().drop_database("PRODUCTION_CLONE_42") is existed
    assert recorder.statements == [
        ("SHOW DATABASES", None),
        ('DROP DATABASE IF EXISTS "PRODUCTION_CLONE_42"', None),
    ]


def test_grant_usage_lets_a_reader_read_the_clone_now_and_after_branch_publishes() -> None:
    recorder = Recorder(schemas=["HACKER_NEWS", "PUBLIC"])
    recorder.warehouse().grant_usage("PRODUCTION_CLONE_42", "HNPIPE_READER")
    where = '"PRODUCTION_CLONE_42"."HACKER_NEWS"'
    assert [sql for sql, _ in recorder.statements if sql.startswith("GRANT")] == [
        'GRANT USAGE ON DATABASE "PRODUCTION_CLONE_42" TO ROLE "HNPIPE_READER"',
        f'GRANT USAGE ON SCHEMA {where} TO ROLE "HNPIPE_READER"',
        f'GRANT SELECT ON ALL TABLES IN SCHEMA {where} TO ROLE "HNPIPE_READER"',
        f'GRANT SELECT ON FUTURE TABLES IN SCHEMA {where} TO ROLE "HNPIPE_READER"',
    ]


def test_reads_quote_the_table_name() -> None:
    recorder = Recorder(tables={"ITEMS": 0})
    frame = recorder.warehouse().read_table(STAGING, "ITEMS")
    assert recorder.statements[-1] == ('SELECT * FROM "ITEMS"', None)
    assert recorder.statements[-3] == ('USE SCHEMA "STAGING"."HACKER_NEWS"', None)
    assert isinstance(frame, pd.DataFrame)


@pytest.mark.parametrize("name", ["PRODUCTION", "STAGING", "LOCAL", "PRODUCTION_CLONE_", "PRODUCTION_CLONE_01",
                                  "PRODUCTION_CLONE_1X", "production_clone_1", "PRODUCTION_CLONE_1; DROP DATABASE PRODUCTION"])
def test_drop_and_clone_refuse_anything_but_a_branch_clone_before_any_sql(name: str) -> None:
    recorder = Recorder(databases=["PRODUCTION", "STAGING", "LOCAL"])
    warehouse = recorder.warehouse()
    with pytest.raises(GuardError, match=r"^refused to drop database .*only PRODUCTION_CLONE_<digits> databases"):
        warehouse.drop_database(name)
    with pytest.raises(GuardError, match=r"^refused to clone database "):
        warehouse.clone_database("PRODUCTION", name)
    assert recorder.statements == [] and recorder.connect_calls == []


BAD_NAMES = [
    "42; DROP DATABASE PRODUCTION",
    'ITEMS"; DROP TABLE ITEMS; --',
    "ITEMS'",
    "STAGING.HACKER_NEWS",
    "PRODUCT\u0130ON",  # Turkish dotted capital I: looks like PRODUCTION
    "\uff29TEMS",  # fullwidth I
    "ITEM\u200bS",  # zero-width space
    "",
    "A" * 129,
    "items",
    "ITEMS ",
    None,
]


def _every_identifier_use(warehouse: SnowflakeWarehouse, bad: Any) -> list:
    bad_target = SimpleNamespace(database=bad, schema="HACKER_NEWS")  # Target() itself refuses these
    bad_schema = SimpleNamespace(database="STAGING", schema=bad)
    frame = items()
    return [
        lambda: warehouse.publish_frame(STAGING, bad, frame, "run7"),
        lambda: warehouse.publish_frame(bad_target, "ITEMS", frame, "run7"),
        lambda: warehouse.publish_frame(bad_schema, "ITEMS", frame, "run7"),
        lambda: warehouse.publish_query(STAGING, bad, COMMENTS.sql, "run7"),
        lambda: warehouse.publish_query(bad_target, "COMMENTS", COMMENTS.sql, "run7"),
        lambda: warehouse.ensure_schema(bad_target),
        lambda: warehouse.ensure_schema(bad_schema),
        lambda: warehouse.read_table(STAGING, bad),
        lambda: warehouse.read_table(bad_schema, "ITEMS"),
        lambda: warehouse.query(bad_target, "SELECT 1"),
        lambda: warehouse.list_tables(bad_target),
        lambda: warehouse.list_tables(bad_schema),
        lambda: warehouse.table_exists(STAGING, bad),
        lambda: warehouse.database_exists(bad),
        lambda: warehouse.clone_database(bad, "PRODUCTION_CLONE_1"),
        lambda: warehouse.clone_database("PRODUCTION", bad),
        lambda: warehouse.drop_database(bad),
        lambda: warehouse.grant_usage(bad, "HNPIPE_READER"),
        lambda: warehouse.grant_usage("PRODUCTION_CLONE_1", bad),
    ]


@pytest.mark.parametrize("bad", BAD_NAMES, ids=repr)
def test_injection_in_any_identifier_is_refused_before_any_sql(bad: Any) -> None:
    recorder = Recorder()
    warehouse = recorder.warehouse()
    for call in _every_identifier_use(warehouse, bad):
        with pytest.raises((GuardError, WarehouseError)) as caught:
            call()
        assert "\n" not in str(caught.value)
    assert recorder.statements == []
    assert recorder.connect_calls == []


@pytest.mark.parametrize("run_id", ["", "1; DROP TABLE ITEMS", "a-b", "r\u0130", "x" * 120, None, 7])
def test_bad_run_ids_are_refused_before_any_sql(run_id: Any) -> None:
    recorder = Recorder()
    warehouse = recorder.warehouse()
    with pytest.raises((GuardError, WarehouseError), match=r"run_id|staging table"):
        warehouse.publish_frame(STAGING, "ITEMS", items(), run_id)
    with pytest.raises((GuardError, WarehouseError), match=r"run_id|staging table"):
        warehouse.publish_query(STAGING, "COMMENTS", COMMENTS.sql, run_id)
    assert recorder.statements == [] and recorder.connect_calls == []


def test_unstorable_frames_are_refused_before_any_sql() -> None:
    recorder = Recorder()
    warehouse = recorder.warehouse()
    with pytest.raises(WarehouseError, match=r"column BLOB has dtype object; use Int64"):
        warehouse.publish_frame(STAGING, "T", pd.DataFrame({"BLOB": [b"x"]}), "run7")
    with pytest.raises(GuardError, match=r"refused column of STAGING.HACKER_NEWS.T 'id'"):
        warehouse.publish_frame(STAGING, "T", pd.DataFrame({"id": [1]}), "run7")
    with pytest.raises(WarehouseError, match=r"invalid check 'SELECT 1'"):
        warehouse.publish_frame(STAGING, "T", pd.DataFrame({"ID": [1]}), "run7", ["SELECT 1"])
    with pytest.raises(WarehouseError, match=r"^refused to publish STAGING.HACKER_NEWS.T from 'DROP TABLE ITEMS'"):
        warehouse.publish_query(STAGING, "T", "DROP TABLE ITEMS", "run7")
    assert recorder.statements == [] and recorder.connect_calls == []


def test_arrays_and_timestamps_read_back_as_hnpipe_dtypes() -> None:
    # What the real connector hands back: ARRAY as (pretty-printed) JSON text, NTZ naive.
    import datetime as dt

    from hnpipe.warehouse.snowflake_engine import _frame

    cursor = SimpleNamespace(
        description=[_meta("ID", 0, 0), _meta("KIDS", 10), _meta("TIME", 8), _meta("OK", 13), _meta("T")],
        fetchall=lambda: [
            (1, "[\n  2,\n  3\n]", dt.datetime(2024, 1, 1, 12, 0, 0, 5), True, "x"),
            (2, None, None, None, None),
        ],
    )
    frame = _frame(cursor)
    assert frame["KIDS"].tolist()[0] == [2, 3] and pd.isna(frame["KIDS"].iloc[1])
    assert frame.loc[0, "TIME"] == pd.Timestamp("2024-01-01 12:00:00.000005", tz="UTC")
    assert [str(t) for t in frame.dtypes] == [
        "Int64", str(pd.ArrowDtype(pa.list_(pa.int64()))), "datetime64[us, UTC]", "boolean", "string"]


