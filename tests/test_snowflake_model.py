"""The test model of Snowflake's ownership and privilege rules (tests/snowflake_model.py) follows
the documentation it cites, and snowflake/setup.sql sets up an account the model accepts.

One test per rule; each names the page the rule comes from. The lifecycle through hnpipe's own
code is in tests/test_snowflake_lifecycle.py.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

import snowflake.connector.errors

from snowflake_account import REPO, ci_token, setup_lines
from snowflake_model import DoesNotExist, InsufficientPrivileges, SnowflakeModel, oidc_token, split_sql

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


@pytest.mark.parametrize("ci", ["github", "gitlab"])
def test_the_setup_script_runs_twice_with_its_login_lines_filled_in(ci: str) -> None:
    """Issue 19: with the identity lines an admin uncomments, setup.sql still runs again."""
    model = SnowflakeModel()
    script = SETUP + setup_lines(ci)
    model.run("ACCOUNTADMIN", script)
    first = repr(model.users), repr(model.identities), repr(model.public_keys), repr(model.secondary_roles)
    model.run("ACCOUNTADMIN", script)
    assert (repr(model.users), repr(model.identities), repr(model.public_keys), repr(model.secondary_roles)) == first
    assert model.secondary_roles == dict.fromkeys(("HNPIPE_PROD_SVC", "HNPIPE_STAGING_SVC", "HNPIPE_BRANCH_SVC"), "()")
    assert model.users["HNPIPE_PROD_SVC"] == {"HNPIPE_PROD", "HNPIPE_BRANCH"}  # the prune's role
    # The line issue 19 removed could not run twice: a named identity has no IF NOT EXISTS.
    old = ("ALTER USER HNPIPE_BRANCH_SVC ADD WORKLOAD IDENTITY PRUNE TYPE = OIDC ISSUER = "
           f"'https://token.actions.githubusercontent.com' SUBJECT = 'repo:{REPO}:environment:production'")
    model.run("ACCOUNTADMIN", old)
    with pytest.raises(snowflake.connector.errors.ProgrammingError, match="already exists"):
        model.run("ACCOUNTADMIN", old)


def test_r13_an_oidc_token_logs_in_the_one_user_that_trusts_its_issuer_and_subject() -> None:
    # https://docs.snowflake.com/en/user-guide/workload-identity-federation,
    # https://docs.snowflake.com/sql-reference/sql/alter-user-add-workload-identity
    model = SnowflakeModel()
    model.run("ACCOUNTADMIN", SETUP + setup_lines("github"))
    connect = model.connector()
    login = {"account": "xy12345", "authenticator": "WORKLOAD_IDENTITY", "workload_identity_provider": "OIDC"}
    session = connect(**login, user="HNPIPE_PROD_SVC", role="HNPIPE_PROD", token=ci_token("production"))
    assert session.role == "HNPIPE_PROD"
    connect(**login, role="HNPIPE_BRANCH", token=ci_token("branch"))  # no user named: the token's
    refused = [  # (user, role, token) Snowflake turns away
        ("HNPIPE_BRANCH_SVC", "HNPIPE_BRANCH", ci_token("production")),  # another user's subject
        ("HNPIPE_PROD_SVC", "HNPIPE_PROD", ci_token("branch")),
        ("HNPIPE_BRANCH_SVC", "HNPIPE_BRANCH", oidc_token("https://token.actions.githubusercontent.com",
                                                          f"repo:{REPO}:ref:refs/heads/feature")),
        ("HNPIPE_PROD_SVC", "HNPIPE_PROD", oidc_token("https://gitlab.com", f"repo:{REPO}:environment:production")),
        ("HNPIPE_PROD_SVC", "HNPIPE_PROD", oidc_token("https://token.actions.githubusercontent.com",
                                                      f"repo:{REPO}:environment:production", audience="other")),
        ("HNPIPE_PROD_SVC", "HNPIPE_PROD", "ci.oidc.token"),  # not a JWT
    ]
    for user, role, token in refused:
        with pytest.raises(snowflake.connector.errors.DatabaseError, match="Failed to authenticate"):
            connect(**login, user=user, role=role, token=token)
    # Two users trusting one subject (the old prune line): which would it be? Refused.
    model.run("ACCOUNTADMIN", "ALTER USER HNPIPE_BRANCH_SVC ADD WORKLOAD IDENTITY PRUNE TYPE = OIDC ISSUER = "
                              f"'https://token.actions.githubusercontent.com' SUBJECT = 'repo:{REPO}:environment:production'")
    with pytest.raises(snowflake.connector.errors.DatabaseError, match="2 users trust"):
        connect(**login, user="HNPIPE_PROD_SVC", role="HNPIPE_PROD", token=ci_token("production"))


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


def test_r5_rename_needs_ownership_and_create_table_on_the_schema(account: SnowflakeModel) -> None:
    # https://docs.snowflake.com/en/sql-reference/sql/alter-table (RENAME TO: "you must have the
    # CREATE TABLE privilege on the schema for the table")
    publish_as_production(account)
    run(account, "ACCOUNTADMIN", "REVOKE CREATE TABLE ON SCHEMA PRODUCTION.HACKER_NEWS FROM ROLE HNPIPE_PROD")
    with pytest.raises(InsufficientPrivileges, match="RENAME needs CREATE TABLE"):
        run(account, "HNPIPE_PROD", 'ALTER TABLE "PRODUCTION"."HACKER_NEWS"."ITEMS" RENAME TO "PRODUCTION"."HACKER_NEWS"."ITEMS__V1"')
    run(account, "ACCOUNTADMIN", "GRANT CREATE TABLE ON SCHEMA PRODUCTION.HACKER_NEWS TO ROLE HNPIPE_PROD")
    run(account, "HNPIPE_PROD", 'ALTER TABLE "PRODUCTION"."HACKER_NEWS"."ITEMS" RENAME TO "PRODUCTION"."HACKER_NEWS"."ITEMS__V1"')
    assert "ITEMS__V1" in account.databases["PRODUCTION"].schemas["HACKER_NEWS"].tables


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


def test_r8_grant_ownership_of_an_object_with_grants_needs_copy_or_revoke(account: SnowflakeModel) -> None:
    # https://docs.snowflake.com/en/sql-reference/sql/grant-ownership (usage notes: "fails if
    # existing outbound privileges on the object are neither revoked nor copied")
    publish_as_production(account)
    items = '"PRODUCTION"."HACKER_NEWS"."ITEMS"'
    with pytest.raises(snowflake.connector.errors.ProgrammingError, match="COPY CURRENT GRANTS or REVOKE"):
        run(account, "SECURITYADMIN", f"GRANT OWNERSHIP ON TABLE {items} TO ROLE IT_ADMIN")
    assert account.owner("PRODUCTION.HACKER_NEWS.ITEMS") == "HNPIPE_PROD"  # nothing changed hands
    with pytest.raises(snowflake.connector.errors.ProgrammingError):  # ALL TABLES: no table moves either
        run(account, "SECURITYADMIN", "GRANT OWNERSHIP ON ALL TABLES IN SCHEMA PRODUCTION.HACKER_NEWS TO ROLE IT_ADMIN")
    run(account, "SECURITYADMIN", f"GRANT OWNERSHIP ON TABLE {items} TO ROLE IT_ADMIN REVOKE CURRENT GRANTS")
    table = account.table("PRODUCTION", "HACKER_NEWS", "ITEMS")
    assert table.grants.owner == "IT_ADMIN" and not any(table.grants.granted.values())
    run(account, "SECURITYADMIN", f"GRANT OWNERSHIP ON TABLE {items} TO ROLE HNPIPE_PROD")  # no grants left: fine


def test_r8_in_a_managed_access_schema_only_its_owner_or_manage_grants_grants(account: SnowflakeModel) -> None:
    # https://docs.snowflake.com/en/user-guide/security-access-control-overview#managed-access-schemas:
    # "object owners lose the ability to make grant decisions. Only the schema owner ... or a role
    # with the MANAGE GRANTS privilege can grant privileges on objects in the schema"
    run(account, "ACCOUNTADMIN", "CREATE DATABASE SCRATCH")
    run(account, "ACCOUNTADMIN", "CREATE SCHEMA SCRATCH.MANAGED WITH MANAGED ACCESS")
    run(account, "ACCOUNTADMIN", "CREATE SCHEMA SCRATCH.PLAIN")
    for schema in ("MANAGED", "PLAIN"):
        for grant in ("USAGE ON DATABASE SCRATCH", f"USAGE, CREATE TABLE ON SCHEMA SCRATCH.{schema}"):
            run(account, "ACCOUNTADMIN", f"GRANT {grant} TO ROLE HNPIPE_STAGING")
        run(account, "HNPIPE_STAGING", f'CREATE TABLE "SCRATCH"."{schema}"."T" ("ID" NUMBER)')
    # A regular schema: the table's owner grants on it.
    run(account, "HNPIPE_STAGING", 'GRANT SELECT ON TABLE "SCRATCH"."PLAIN"."T" TO ROLE HNPIPE_READER')
    # A managed access schema: the table's owner may not, on the table or on all tables ...
    with pytest.raises(InsufficientPrivileges):
        run(account, "HNPIPE_STAGING", 'GRANT SELECT ON TABLE "SCRATCH"."MANAGED"."T" TO ROLE HNPIPE_READER')
    with pytest.raises(InsufficientPrivileges):
        run(account, "HNPIPE_STAGING", "GRANT SELECT ON ALL TABLES IN SCHEMA SCRATCH.MANAGED TO ROLE HNPIPE_READER")
    # ... while the schema's owner may, without owning the table, and MANAGE GRANTS may.
    run(account, "ACCOUNTADMIN", "GRANT USAGE ON DATABASE SCRATCH TO ROLE SCHEMA_OWNER")
    run(account, "ACCOUNTADMIN", "GRANT OWNERSHIP ON SCHEMA SCRATCH.MANAGED TO ROLE SCHEMA_OWNER COPY CURRENT GRANTS")
    run(account, "SCHEMA_OWNER", 'GRANT SELECT ON TABLE "SCRATCH"."MANAGED"."T" TO ROLE HNPIPE_READER')
    run(account, "SCHEMA_OWNER", "GRANT SELECT ON FUTURE TABLES IN SCHEMA SCRATCH.MANAGED TO ROLE HNPIPE_READER")
    run(account, "SECURITYADMIN", 'GRANT INSERT ON TABLE "SCRATCH"."MANAGED"."T" TO ROLE HNPIPE_READER')
    assert account.table("SCRATCH", "MANAGED", "T").grants.granted["SELECT"] == {"HNPIPE_READER"}
    with pytest.raises(InsufficientPrivileges):  # future grants in a regular schema: MANAGE GRANTS only
        run(account, "HNPIPE_STAGING", "GRANT SELECT ON FUTURE TABLES IN SCHEMA SCRATCH.PLAIN TO ROLE HNPIPE_READER")


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
