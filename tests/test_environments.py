"""Environment resolution and guards, in-process (the papermill matrix is in test_guards.py)."""

from __future__ import annotations

import pytest
from hnpipe import environments as envs
from hnpipe.environments import Target
from hnpipe.errors import GuardError

PAIRS = [(running, wanted) for running in envs.ENVIRONMENTS for wanted in envs.ENVIRONMENTS]
BASE = {"HNPIPE_DEV_SCHEMA": "JANE", "HNPIPE_PR_ID": "42"}

HOSTILE = [
    "42; DROP DATABASE PRODUCTION", 'X"; DROP TABLE ITEMS; --', "LOCAL.JANE", "PRODUCTİON",
    "ＰRODUCTION", "", " ", "jane", "A" * 129, "1ABC", "A-B", "A B", "A\nB", None, 42,
]


@pytest.mark.parametrize("running,wanted", PAIRS)
def test_resolve_accepts_only_agreeing_pairs(running: str, wanted: str) -> None:
    environ = {**BASE, "HNPIPE_ENV": running}
    if running == wanted:
        assert envs.resolve(wanted, environ) == envs.target_for(running, environ)
    else:
        with pytest.raises(GuardError) as refused:
            envs.resolve(wanted, environ)
        message = str(refused.value)
        assert "\n" not in message
        assert f"'{wanted}'" in message and f"HNPIPE_ENV={running}" in message


def test_default_process_environment_is_local() -> None:
    assert envs.process_environment({}) == "local"
    with pytest.raises(GuardError, match="HNPIPE_ENV 'prod'.*local, staging, production, branch"):
        envs.process_environment({"HNPIPE_ENV": "prod"})


def test_targets() -> None:
    assert str(envs.target_for("local", BASE)) == "LOCAL.JANE"
    assert str(envs.target_for("staging", BASE)) == "STAGING.HACKER_NEWS"
    assert str(envs.target_for("production", BASE)) == "PRODUCTION.HACKER_NEWS"
    assert str(envs.target_for("branch", BASE)) == "PRODUCTION_CLONE_42.HACKER_NEWS"


def test_branch_without_pr_id_never_becomes_none() -> None:
    with pytest.raises(GuardError, match="no pull-request id"):
        envs.target_for("branch", {})


@pytest.mark.parametrize("environ,expected", [
    ({"HNPIPE_PR_ID": "7"}, "7"),
    ({"CI_MERGE_REQUEST_IID": "12"}, "12"),
    ({"GITHUB_REF": "refs/pull/99/merge"}, "99"),
    ({"GITHUB_REF": "refs/heads/main"}, None),
    ({"HNPIPE_PR_ID": "5", "GITHUB_REF": "refs/pull/99/merge"}, "5"),
])
def test_pr_id_sources(environ: dict, expected: str | None) -> None:
    assert envs.pr_id(environ) == expected


@pytest.mark.parametrize("bad", ["0", "007", "-1", "1.5", "12a", "1 2", "None", "١٢", "9" * 11])
def test_pr_id_must_be_plain_digits(bad: str) -> None:
    with pytest.raises(GuardError, match="digits only"):
        envs.pr_id({"HNPIPE_PR_ID": bad})


@pytest.mark.parametrize("bad", HOSTILE)
def test_identifiers_refuse_hostile_values(bad: object) -> None:
    with pytest.raises(GuardError, match="refused"):
        envs.check_identifier(bad)


@pytest.mark.parametrize("bad", [v for v in HOSTILE if isinstance(v, str) and v])
def test_developer_schema_from_environment_is_checked(bad: str) -> None:
    with pytest.raises(GuardError):
        envs.developer_schema({"HNPIPE_DEV_SCHEMA": bad})


def test_developer_schema_from_os_user_is_folded() -> None:
    assert envs.developer_schema({"USER": "jane.doe-x"}) == "JANE_DOE_X"
    assert envs.developer_schema({"USER": "1ci"}) == "DEV_1CI"


@pytest.mark.parametrize("env", envs.ENVIRONMENTS)
@pytest.mark.parametrize("database", ["LOCAL", "STAGING", "PRODUCTION", "PRODUCTION_CLONE_42",
                                      "PRODUCTION_CLONE_43", "OTHER"])
def test_check_write_allows_only_the_own_target(env: str, database: str) -> None:
    schema = "JANE" if database == "LOCAL" else "HACKER_NEWS"
    actual = Target(database, schema)
    if actual == envs.target_for(env, BASE):
        envs.check_write(env, actual, BASE)
    else:
        with pytest.raises(GuardError, match=f"refused write to {database}"):
            envs.check_write(env, actual, BASE)


def test_check_write_refuses_another_schema_in_the_right_database() -> None:
    with pytest.raises(GuardError):
        envs.check_write("local", Target("LOCAL", "BOB"), BASE)
    with pytest.raises(GuardError):
        envs.check_write("production", Target("PRODUCTION", "PUBLIC"), BASE)


def test_warehouse_spec(tmp_path) -> None:
    assert envs.warehouse_spec("production", {}) == "snowflake"
    assert envs.warehouse_spec("local", {"HNPIPE_WAREHOUSE": "snowflake"}) == "snowflake"
    assert envs.warehouse_spec("production", {"HNPIPE_WAREHOUSE": f"duckdb:{tmp_path}"}) == f"duckdb:{tmp_path}"
    assert envs.warehouse_spec("local", {}).endswith("/.warehouse")
    with pytest.raises(GuardError, match="unknown HNPIPE_WAREHOUSE 'postgres'"):
        envs.warehouse_spec("local", {"HNPIPE_WAREHOUSE": "postgres"})
