"""The test model of Snowflake's ownership and privilege rules (tests/snowflake_model.py) follows
the documentation it cites, and snowflake/setup.sql sets up an account the model accepts.

One test per rule; each names the page the rule comes from. The lifecycle through hnpipe's own
code is in tests/test_snowflake_lifecycle.py.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from snowflake_model import DoesNotExist, InsufficientPrivileges, SnowflakeModel, split_sql

ROOT = Path(__file__).resolve().parents[1]
SETUP = (ROOT / "snowflake" / "setup.sql").read_text(encoding="utf-8")


@pytest.fixture
def account() -> SnowflakeModel:
    model = SnowflakeModel()
    model.run("ACCOUNTADMIN", SETUP)
    return model


def run(model: SnowflakeModel, role: str, sql: str) -> list:
    return model.connect(role).cursor().execute(sql).fetchall()


def publish_as_production(model: SnowflakeModel, table: str = "ITEMS", rows: int = 3) -> None:
    connection = model.connect("HNPIPE_PROD")
    cursor = connection.cursor()
    cursor.execute('USE SCHEMA "PRODUCTION"."HACKER_NEWS"')
    cursor.execute(f'CREATE TABLE "{table}" ("ID" NUMBER(38,0))')
    connection.write_pandas(pd.DataFrame({"ID": range(rows)}), table, "PRODUCTION", "HACKER_NEWS")


def test_the_setup_script_runs_twice_and_every_grant_says_which_step_uses_it() -> None:
    model = SnowflakeModel()
    model.run("ACCOUNTADMIN", SETUP)
    first = repr(model.databases), repr(model.users), repr(model.parents)
    model.run("ACCOUNTADMIN", SETUP)  # idempotent: the same account afterwards
    assert (repr(model.databases), repr(model.users), repr(model.parents)) == first
    grants = [line for line in SETUP.splitlines() if line.startswith("GRANT ")]
    assert len(grants) >= 25
    for line in grants:
        assert "--" in line and line.split("--", 1)[1].strip(), f"grant without the step that uses it: {line}"


def test_r1_the_creating_role_owns_a_new_object(account: SnowflakeModel) -> None:
    # https://docs.snowflake.com/en/user-guide/security-access-control-overview
    publish_as_production(account)
    assert account.owner("PRODUCTION.HACKER_NEWS.ITEMS") == "HNPIPE_PROD"
    run(account, "HNPIPE_PROD", 'DROP TABLE "PRODUCTION"."HACKER_NEWS"."ITEMS"')  # the owner may


def test_r2_a_database_clone_keeps_its_childrens_owners_and_grants(account: SnowflakeModel) -> None:
    # https://docs.snowflake.com/en/user-guide/object-clone ("Access control privileges for cloned objects")
    publish_as_production(account)
    run(account, "HNPIPE_BRANCH", 'CREATE DATABASE "PRODUCTION_CLONE_7" CLONE "PRODUCTION"')
    assert account.owner("PRODUCTION_CLONE_7") == "HNPIPE_BRANCH"
    assert account.owner("PRODUCTION_CLONE_7.HACKER_NEWS") == "ACCOUNTADMIN"
    assert account.owner("PRODUCTION_CLONE_7.HACKER_NEWS.ITEMS") == "HNPIPE_PROD"
    # ... so the branch role can neither create a staging table there nor swap ITEMS.
    with pytest.raises(InsufficientPrivileges):
        run(account, "HNPIPE_BRANCH", 'CREATE TABLE "PRODUCTION_CLONE_7"."HACKER_NEWS"."ITEMS__STAGING_R" ("ID" INT)')
    # The clone of the container itself has none of the source container's grants.
    assert account.databases["PRODUCTION_CLONE_7"].grants.granted == {}


def test_r3_a_table_clone_is_owned_by_its_creator_and_needs_select_on_the_source(account: SnowflakeModel) -> None:
    # https://docs.snowflake.com/en/user-guide/object-clone
    publish_as_production(account, rows=5)
    run(account, "HNPIPE_BRANCH", 'CREATE DATABASE "PRODUCTION_CLONE_7"')
    run(account, "HNPIPE_BRANCH", 'CREATE SCHEMA "PRODUCTION_CLONE_7"."HACKER_NEWS"')
    run(account, "HNPIPE_BRANCH", 'CREATE TABLE "PRODUCTION_CLONE_7"."HACKER_NEWS"."ITEMS" '
                                  'CLONE "PRODUCTION"."HACKER_NEWS"."ITEMS"')
    assert account.owner("PRODUCTION_CLONE_7.HACKER_NEWS.ITEMS") == "HNPIPE_BRANCH"
    assert account.table("PRODUCTION_CLONE_7", "HACKER_NEWS", "ITEMS").rows == 5
    with pytest.raises(DoesNotExist):  # staging has no privilege on PRODUCTION: cannot even see it
        run(account, "HNPIPE_STAGING", 'CREATE TABLE "STAGING"."HACKER_NEWS"."ITEMS" CLONE "PRODUCTION"."HACKER_NEWS"."ITEMS"')


def test_r4_swap_needs_ownership_of_both_and_the_grants_move_with_the_tables(account: SnowflakeModel) -> None:
    # https://docs.snowflake.com/en/sql-reference/sql/alter-table (SWAP WITH); checked on a real
    # account by `hnpipe doctor --smoke`.
    publish_as_production(account)
    account.databases["PRODUCTION"].schemas["HACKER_NEWS"].future.clear()  # no future grants here
    run(account, "ACCOUNTADMIN", 'GRANT SELECT ON TABLE "PRODUCTION"."HACKER_NEWS"."ITEMS" TO ROLE "ANALYST"')
    publish_as_production(account, "ITEMS__STAGING_R2")
    run(account, "HNPIPE_PROD", 'ALTER TABLE "PRODUCTION"."HACKER_NEWS"."ITEMS" SWAP WITH "PRODUCTION"."HACKER_NEWS"."ITEMS__STAGING_R2"')
    schema = account.databases["PRODUCTION"].schemas["HACKER_NEWS"]
    assert "ANALYST" not in schema.tables["ITEMS"].grants.granted.get("SELECT", set())  # moved away
    assert "ANALYST" in schema.tables["ITEMS__STAGING_R2"].grants.granted["SELECT"]
    run(account, "ACCOUNTADMIN", 'GRANT OWNERSHIP ON TABLE "PRODUCTION"."HACKER_NEWS"."ITEMS" TO ROLE "IT_ADMIN"')
    with pytest.raises(InsufficientPrivileges):
        run(account, "HNPIPE_PROD", 'ALTER TABLE "PRODUCTION"."HACKER_NEWS"."ITEMS" SWAP WITH "PRODUCTION"."HACKER_NEWS"."ITEMS__STAGING_R2"')


def test_r5_drop_database_needs_ownership(account: SnowflakeModel) -> None:
    # https://docs.snowflake.com/en/sql-reference/sql/drop-database
    run(account, "HNPIPE_BRANCH", 'CREATE DATABASE "PRODUCTION_CLONE_7"')
    run(account, "ACCOUNTADMIN", 'GRANT USAGE ON DATABASE "PRODUCTION_CLONE_7" TO ROLE "HNPIPE_PROD"')
    with pytest.raises(InsufficientPrivileges):
        run(account, "HNPIPE_PROD", 'DROP DATABASE IF EXISTS "PRODUCTION_CLONE_7"')
    run(account, "HNPIPE_BRANCH", 'DROP DATABASE IF EXISTS "PRODUCTION_CLONE_7"')
    assert "PRODUCTION_CLONE_7" not in account.databases


def test_r6_show_databases_lists_only_what_the_role_holds_a_privilege_on(account: SnowflakeModel) -> None:
    # https://docs.snowflake.com/en/sql-reference/sql/show ("only objects for which the current
    # role has been granted at least one access privilege")
    run(account, "HNPIPE_BRANCH", 'CREATE DATABASE "PRODUCTION_CLONE_7"')
    names = lambda role: [row[1] for row in run(account, role, "SHOW DATABASES")]  # noqa: E731
    assert names("HNPIPE_BRANCH") == ["PRODUCTION", "PRODUCTION_CLONE_7"]
    assert names("HNPIPE_PROD") == ["PRODUCTION"]  # the clone is invisible to production
    assert "PRODUCTION_CLONE_7" in names("SECURITYADMIN")  # MANAGE GRANTS sees everything


def test_r7_schema_future_grants_replace_the_databases_in_that_schema(account: SnowflakeModel) -> None:
    # https://docs.snowflake.com/en/sql-reference/sql/grant-privilege (future grants: schema level
    # takes precedence), https://docs.snowflake.com/en/release-notes/bcr-bundles/2025_01/bcr-1870
    run(account, "ACCOUNTADMIN", 'GRANT SELECT ON FUTURE TABLES IN DATABASE "PRODUCTION" TO ROLE "AUDITOR"')
    publish_as_production(account)
    table = account.table("PRODUCTION", "HACKER_NEWS", "ITEMS")
    assert "AUDITOR" not in table.grants.granted["SELECT"]  # ignored: HACKER_NEWS has its own
    assert {"HNPIPE_READER", "HNPIPE_BRANCH"} <= table.grants.granted["SELECT"]


def test_r8_grant_ownership_copy_current_grants_keeps_the_other_grants(account: SnowflakeModel) -> None:
    # https://docs.snowflake.com/en/sql-reference/sql/grant-ownership
    run(account, "ACCOUNTADMIN", 'GRANT OWNERSHIP ON SCHEMA "PRODUCTION"."HACKER_NEWS" TO ROLE "IT_ADMIN" COPY CURRENT GRANTS')
    schema = account.databases["PRODUCTION"].schemas["HACKER_NEWS"]
    assert schema.grants.owner == "IT_ADMIN" and "HNPIPE_PROD" in schema.grants.granted["CREATE TABLE"]
    with pytest.raises(InsufficientPrivileges):  # only the owner (or MANAGE GRANTS) grants
        run(account, "HNPIPE_PROD", 'GRANT USAGE ON SCHEMA "PRODUCTION"."HACKER_NEWS" TO ROLE "HNPIPE_STAGING"')


def test_r9_a_granted_role_passes_on_its_privileges_ownership_included(account: SnowflakeModel) -> None:
    # https://docs.snowflake.com/en/user-guide/security-access-control-overview (role hierarchy)
    publish_as_production(account)
    run(account, "ACCOUNTADMIN", 'GRANT ROLE "HNPIPE_PROD" TO ROLE "IT_ADMIN"')
    run(account, "IT_ADMIN", 'DROP TABLE "PRODUCTION"."HACKER_NEWS"."ITEMS"')


def test_r10_write_pandas_needs_create_stage_and_insert(account: SnowflakeModel) -> None:
    # https://docs.snowflake.com/en/developer-guide/python-connector/python-connector-api (write_pandas)
    publish_as_production(account)
    with pytest.raises(InsufficientPrivileges):
        account.connect("HNPIPE_READER").write_pandas(pd.DataFrame({"ID": [1]}), "ITEMS", "PRODUCTION", "HACKER_NEWS")


def test_split_sql_keeps_quoted_semicolons_and_drops_comments() -> None:
    assert split_sql("A 'x;y'; -- c;\nB \"q;r\";") == ["A 'x;y'", 'B "q;r"']
