"""Handover: the datasets as one Snowflake statement each, and the production lockdown.

The SQL is checked by running its SELECT in DuckDB over a published ITEMS; the lockdown by its
exact statements, sent through a recording connection (fakesnow has no GRANT).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pandas as pd
import pytest
import snowflake.connector.errors
import sqlglot
from hnpipe import cli, pipeline
from hnpipe.environments import Target
from hnpipe.errors import GuardError, HnpipeError, WarehouseError
from hnpipe.items import items_frame
from hnpipe.ops import handover
from hnpipe.warehouse import open_environment
from hnpipe.warehouse.duckdb_engine import DuckDBWarehouse
from registered import DATASET_TABLES, build_in_sql, built_in_sql
from snowflake_fakes import Recorder

TARGET = Target("LOCAL", "TESTER")
PRODUCTION = Target("PRODUCTION", "HACKER_NEWS")


@pytest.fixture(scope="module")
def published(tmp_path_factory) -> Path:
    """Every dataset as the local pipeline publishes it."""
    directory = tmp_path_factory.mktemp("handover") / "warehouse"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HNPIPE_WAREHOUSE", f"duckdb:{directory}")
        patch.delenv("HNPIPE_ENV", raising=False)
        values = {"environment": "local", "n_items": 400}
        step = pipeline.start("ITEMS", values)
        step.publish(step.fetch_items())
        build_in_sql(values)
    return directory


@pytest.mark.parametrize("name", [dataset.name for dataset in built_in_sql()])
def test_hnpipe_sql_builds_the_same_rows_as_the_pipeline(published, capsys, name) -> None:
    assert cli.main(["sql", name, "--from", "LOCAL.TESTER.ITEMS", "--into", "ANALYTICS.HN"]) == 0
    printed = capsys.readouterr().out
    (statement,) = sqlglot.parse(printed, read="snowflake")  # one statement, Snowflake's dialect
    assert isinstance(statement, sqlglot.exp.Create) and statement.this.sql() == f"ANALYTICS.HN.{name}"
    head, select = printed.split(f"CREATE OR REPLACE TABLE ANALYTICS.HN.{name} COPY GRANTS AS\n")
    assert all(line.startswith("-- ") for line in head.splitlines())
    assert select.startswith("WITH\nITEMS AS (") and select.endswith(f"FROM {name};\n")

    wh = DuckDBWarehouse(published)
    rebuilt = wh.query(TARGET, select.rstrip().rstrip(";")).sort_values("ID").reset_index(drop=True)
    expected = wh.read_table(TARGET, name)
    assert len(expected) > 0
    pd.testing.assert_frame_equal(rebuilt, expected)


def test_sql_defaults_to_the_published_production_items(capsys) -> None:
    assert cli.main(["sql", "STORIES"]) == 0
    printed = capsys.readouterr().out
    assert "CREATE OR REPLACE TABLE PRODUCTION.HACKER_NEWS.STORIES COPY GRANTS AS\n" in printed
    assert "    FROM PRODUCTION.HACKER_NEWS.ITEMS\n" in printed


@pytest.mark.parametrize("args,message", [
    (["sql", "ITEMS"], "ITEMS is loaded from the HN API in Python (notebooks/items.ipynb), not built in SQL"),
    (["sql", "USERS"], f"unknown dataset 'USERS': choose one of {', '.join(DATASET_TABLES)}"),
    (["sql", "STORIES", "--from", "ITEMS"], "--from table 'ITEMS' is not allowed: use 3 upper-case names"),
    (["sql", "STORIES", "--from", "P.H.ITEMS; DROP TABLE X"], "refused --from table 'ITEMS; DROP TABLE X'"),
    (["sql", "STORIES", "--into", "prod.hn"], "refused --into schema 'prod'"),
])
def test_sql_refuses_bad_input_in_one_line(capsys, args, message) -> None:
    assert cli.main(args) == 1
    captured = capsys.readouterr()
    assert message in captured.err and captured.err.count("\n") == 1 and captured.out == ""


# -- the lockdown --------------------------------------------------------------------------
EXPECTED = [
    'GRANT OWNERSHIP ON SCHEMA "PRODUCTION"."HACKER_NEWS" TO ROLE "IT_DATA" COPY CURRENT GRANTS',
    # Production keeps what a publish needs (ownership of the tables it swaps; issue 9), and IT
    # controls those tables through the pipeline's role.
    'GRANT OWNERSHIP ON ALL TABLES IN SCHEMA "PRODUCTION"."HACKER_NEWS" TO ROLE "HNPIPE_PROD" COPY CURRENT GRANTS',
    'GRANT USAGE ON DATABASE "PRODUCTION" TO ROLE "HNPIPE_PROD"',
    'GRANT USAGE, CREATE TABLE, CREATE STAGE ON SCHEMA "PRODUCTION"."HACKER_NEWS" TO ROLE "HNPIPE_PROD"',
    'GRANT ROLE "HNPIPE_PROD" TO ROLE "IT_DATA"',
    'REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON ALL TABLES IN SCHEMA "PRODUCTION"."HACKER_NEWS" FROM ROLE "ANALYST"',
    'REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON FUTURE TABLES IN SCHEMA "PRODUCTION"."HACKER_NEWS" FROM ROLE "ANALYST"',
    'REVOKE CREATE TABLE ON SCHEMA "PRODUCTION"."HACKER_NEWS" FROM ROLE "ANALYST"',
    'REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON ALL TABLES IN SCHEMA "PRODUCTION"."HACKER_NEWS" FROM ROLE "DATA_SCIENCE"',
    'REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON FUTURE TABLES IN SCHEMA "PRODUCTION"."HACKER_NEWS" FROM ROLE "DATA_SCIENCE"',
    'REVOKE CREATE TABLE ON SCHEMA "PRODUCTION"."HACKER_NEWS" FROM ROLE "DATA_SCIENCE"',
    'GRANT USAGE ON DATABASE "PRODUCTION" TO ROLE "HN_READER"',
    'GRANT USAGE ON SCHEMA "PRODUCTION"."HACKER_NEWS" TO ROLE "HN_READER"',
    'GRANT SELECT ON ALL TABLES IN SCHEMA "PRODUCTION"."HACKER_NEWS" TO ROLE "HN_READER"',
    'GRANT SELECT ON FUTURE TABLES IN SCHEMA "PRODUCTION"."HACKER_NEWS" TO ROLE "HN_READER"',
]
ROLES = {"it_role": "IT_DATA", "reader_role": "HN_READER", "analyst_roles": ["ANALYST", "DATA_SCIENCE", "ANALYST"]}


def test_lockdown_statements_are_exactly_these() -> None:
    assert handover.lockdown_statements(**ROLES) == EXPECTED
    assert handover.to_text(EXPECTED[:1]) == EXPECTED[0] + ";\n"


def test_apply_runs_them_in_order_on_snowflake_in_production(monkeypatch) -> None:
    monkeypatch.setenv("HNPIPE_ENV", "production")
    recorder = Recorder()
    assert handover.lockdown(recorder.warehouse(), apply=True, **ROLES) == EXPECTED
    assert recorder.statements == [(statement, None) for statement in EXPECTED]


@pytest.mark.parametrize("roles,message", [
    ({**ROLES, "it_role": "it_data"}, "refused IT role 'it_data'"),
    ({**ROLES, "reader_role": 'R" TO ROLE "ACCOUNTADMIN'}, "refused reader role"),
    ({**ROLES, "analyst_roles": ["ANALYST", "X; DROP SCHEMA P"]}, "refused analyst role 'X; DROP SCHEMA P'"),
    ({**ROLES, "analyst_roles": ["IT_DATA"]}, "analyst role IT_DATA is also the IT role"),
])
def test_bad_roles_are_refused_before_any_statement(monkeypatch, roles, message) -> None:
    monkeypatch.setenv("HNPIPE_ENV", "production")
    recorder = Recorder()
    with pytest.raises(HnpipeError, match=message.replace("(", r"\(")) as refused:
        handover.lockdown(recorder.warehouse(), apply=True, **roles)
    assert "\n" not in str(refused.value)
    assert recorder.statements == [] and recorder.connect_calls == []


def test_apply_is_refused_outside_production_and_off_snowflake(monkeypatch, tmp_path) -> None:
    recorder = Recorder()
    monkeypatch.setenv("HNPIPE_ENV", "staging")
    with pytest.raises(GuardError, match="from HNPIPE_ENV=staging: only production may change production"):
        handover.lockdown(recorder.warehouse(), apply=True, **ROLES)
    monkeypatch.setenv("HNPIPE_ENV", "production")
    with pytest.raises(GuardError, match="on DuckDBWarehouse: ownership and grants exist on Snowflake only"):
        handover.lockdown(DuckDBWarehouse(tmp_path), apply=True, **ROLES)
    assert handover.lockdown(None, **ROLES) == EXPECTED  # printing needs no warehouse
    assert recorder.statements == []


def test_run_grants_runs_grants_only_and_names_a_failing_one(monkeypatch) -> None:
    recorder = Recorder(failing={EXPECTED[2]: snowflake.connector.errors.ProgrammingError(msg="no such role")})
    warehouse = recorder.warehouse()
    with pytest.raises(GuardError, match="run_grants runs single GRANT or REVOKE statements only"):
        warehouse.run_grants([EXPECTED[0], "DROP SCHEMA PRODUCTION.HACKER_NEWS"])
    with pytest.raises(GuardError):
        warehouse.run_grants([EXPECTED[0] + "; DROP SCHEMA PRODUCTION.HACKER_NEWS"])
    assert recorder.statements == []
    with pytest.raises(WarehouseError, match=r"^statement 3 of 15 \(GRANT USAGE ON DATABASE \"PRODUCTION\" TO ROLE"):
        warehouse.run_grants(EXPECTED)
    assert [sql for sql, _ in recorder.statements] == EXPECTED[:3]


# -- the embedded engine: only production opens PRODUCTION for writing ------------------------
def fingerprint(directory: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(directory.iterdir())}


def test_only_production_opens_production_for_writing(clean_env, monkeypatch) -> None:
    frame = items_frame([{"id": 1, "type": "story"}])
    monkeypatch.setenv("HNPIPE_ENV", "production")
    writer = open_environment("production", {})
    writer.publish_frame(PRODUCTION, "ITEMS", frame, "run1")
    before = fingerprint(clean_env)

    monkeypatch.setenv("HNPIPE_ENV", "staging")
    step = pipeline.start("ITEMS", {"environment": "staging", "n_items": 1})
    assert step.warehouse.read_only_databases == {"PRODUCTION"}
    step.warehouse.write_guard = None  # even with the guard out of the way
    with pytest.raises(WarehouseError, match="refused write to PRODUCTION.HACKER_NEWS: this warehouse opens PRODUCTION read-only"):
        step.warehouse.publish_frame(PRODUCTION, "ITEMS", frame, "run2")
    # A staging process asking for production's warehouse gets it read-only too.
    with pytest.raises(WarehouseError, match="read-only"):
        open_environment("production", {}).publish_frame(PRODUCTION, "ITEMS", frame, "run2")
    assert len(step.warehouse.read_table(PRODUCTION, "ITEMS")) == 1  # reading is fine
    assert fingerprint(clean_env) == before
