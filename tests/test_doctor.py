"""`hnpipe doctor [--env ENV] [--smoke]`: one test per check, passing and failing, against the test
model of Snowflake's rules (tests/snowflake_model.py, on an account set up by snowflake/setup.sql)
and on the embedded engine. `--smoke` removes what it made, also when a step fails.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pandas as pd
import pytest
import snowflake.connector

from hnpipe import cli
from hnpipe.ops import doctor
from snowflake_model import SnowflakeModel
from snowflake_account import SETUP, account, as_env, publish_all  # noqa: F401 (fixture)


def checks(report: doctor.Report) -> dict[str, str]:
    return {check.name: check.status for check in report}


def detail(report: doctor.Report, name: str) -> str:
    return next(check.line() for check in report if check.name == name)


def model_connect(model: SnowflakeModel, **changes):
    """The model's connector, with session parameters dropped or the role forced, to fail a check."""
    inner = model.connector()

    def connect(**kwargs):
        if "drop_session" in changes:
            kwargs["session_parameters"] = {k: v for k, v in kwargs["session_parameters"].items()
                                            if k != changes["drop_session"]}
        if "role" in changes:
            return model.connect(changes["role"], **kwargs)
        return inner(**kwargs)

    return connect


# -- embedded ----------------------------------------------------------------------------------
def test_doctor_on_the_embedded_engine_checks_which_files_an_environment_may_write(clean_env, capsys) -> None:
    assert cli.main(["doctor"]) == 0
    out = capsys.readouterr().out
    assert "[ok  ] must not    local is refused writes to STAGING, PRODUCTION, PRODUCTION_CLONE_1" in out
    assert "[ok  ] needs       local may write LOCAL." in out


def test_doctor_smoke_on_the_embedded_engine_runs_in_a_scratch_copy_it_removes(clean_env, capsys, monkeypatch) -> None:
    as_env(monkeypatch, "branch", pr=4)
    assert cli.main(["doctor", "--smoke"]) == 0
    out = capsys.readouterr().out
    assert "[ok  ] smoke       6 operations ran in a scratch copy" in out and "[ok  ] clean up" in out
    assert not clean_env.exists()  # nothing written where the real warehouse lives


def test_doctor_fails_when_the_warehouse_directory_cannot_be_written(tmp_path: Path, monkeypatch, capsys) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("HNPIPE_WAREHOUSE", f"duckdb:{blocker}/warehouse")
    assert cli.main(["doctor"]) == 1
    captured = capsys.readouterr()
    assert f"[FAIL] files       LOCAL.duckdb can be written in {blocker}; fix: make {blocker} a writable directory" in captured.out
    assert captured.err == "hnpipe: error: doctor: 1 of 4 checks failed (files)\n"


# -- Snowflake, against the model: each check passing, then failing -----------------------------
def test_every_check_passes_for_production_with_the_setup_scripts_grants(account, monkeypatch) -> None:
    as_env(monkeypatch, "production")
    report = doctor.run("production", connect=account.connector())
    assert checks(report) == {"login": "ok", "role": "ok", "query tag": "ok", "timeout": "ok", "target": "ok",
                              "needs": "ok", "must not": "ok"}, report.text()
    assert report.ok


def test_login_with_a_password_fails_outside_local(account, monkeypatch) -> None:
    as_env(monkeypatch, "production")
    monkeypatch.delenv("SNOWFLAKE_AUTHENTICATOR")
    monkeypatch.setenv("SNOWFLAKE_PASSWORD", "pw-for-doctor-77")
    report = doctor.run("production", connect=account.connector())
    assert checks(report)["login"] == "FAIL" and "Snowflake blocks password sign-in" in detail(report, "login")
    assert "pw-for-doctor-77" not in report.text()


@pytest.mark.parametrize("setting, method", [({"SNOWFLAKE_AUTHENTICATOR": "EXTERNALBROWSER"}, "browser SSO"),
                                             ({"SNOWFLAKE_PASSWORD": "pw-77", "SNOWFLAKE_PASSCODE": "123456"},
                                              "password + passcode")])
def test_doctor_names_a_persons_login_and_passes_it_only_for_local(account, monkeypatch, setting, method) -> None:
    """Issue 19: people sign in with SSO or an authenticator app; doctor says which login it used."""
    as_env(monkeypatch, "production")
    monkeypatch.delenv("SNOWFLAKE_AUTHENTICATOR")
    monkeypatch.delenv("SNOWFLAKE_TOKEN")
    monkeypatch.delenv("CI", raising=False)  # a person's own machine (CI refuses these logins)
    for name, value in setting.items():
        monkeypatch.setenv(name, value)
    report = doctor.run("production", connect=account.connector())
    assert checks(report)["login"] == "FAIL" and f"logged in with {method}, a person's login" in detail(report, "login")
    account.users["JANE"] = {"HNPIPE_DEV"}
    account.run("ACCOUNTADMIN", "CREATE SCHEMA LOCAL.JANE")
    account.run("ACCOUNTADMIN", "GRANT OWNERSHIP ON SCHEMA LOCAL.JANE TO ROLE HNPIPE_DEV")
    as_env(monkeypatch, "local")
    for name, value in {"SNOWFLAKE_USER": "JANE", "SNOWFLAKE_ROLE": "HNPIPE_DEV", "HNPIPE_DEV_SCHEMA": "JANE"}.items():
        monkeypatch.setenv(name, value)
    report = doctor.run("local", connect=account.connector())
    assert detail(report, "login").endswith(f"login       JANE logged in with {method} (a person's own runs only)")
    assert checks(report)["login"] == "ok"
    assert "123456" not in report.text() and "pw-77" not in report.text()


def test_the_key_file_must_be_readable_by_its_owner_only(account, monkeypatch, tmp_path) -> None:
    as_env(monkeypatch, "production")
    monkeypatch.delenv("SNOWFLAKE_AUTHENTICATOR")
    key = tmp_path / "rsa_key.p8"
    key.write_text("-----BEGIN PRIVATE KEY-----\nMIIEv\n-----END PRIVATE KEY-----\n")
    monkeypatch.setenv("SNOWFLAKE_PROD_PRIVATE_KEY_FILE", str(key))
    key.chmod(0o600)
    assert checks(doctor.run("production", connect=account.connector()))["key file"] == "ok"
    key.chmod(0o644)
    report = doctor.run("production", connect=account.connector())
    assert checks(report)["key file"] == "FAIL" and 'chmod 600 "$SNOWFLAKE_PROD_PRIVATE_KEY_FILE"' in detail(report, "key file")


def test_the_role_must_be_the_one_the_credentials_name(account, monkeypatch) -> None:
    as_env(monkeypatch, "production")
    report = doctor.run("production", connect=model_connect(account, role="HNPIPE_READER"))
    assert checks(report)["role"] == "FAIL" and "the session's role is HNPIPE_READER" in detail(report, "role")


def test_the_query_tag_must_reach_the_session(account, monkeypatch) -> None:
    as_env(monkeypatch, "production")
    report = doctor.run("production", connect=model_connect(account, drop_session="QUERY_TAG"))
    assert checks(report)["query tag"] == "FAIL"


def test_the_statement_timeout_must_reach_the_session(account, monkeypatch) -> None:
    as_env(monkeypatch, "production")
    report = doctor.run("production", connect=model_connect(account, drop_session="STATEMENT_TIMEOUT_IN_SECONDS"))
    assert checks(report)["timeout"] == "FAIL" and "unset" in detail(report, "timeout")


def test_a_branch_without_its_clone_fails_the_target_check_and_says_to_clone(account, monkeypatch, capsys) -> None:
    publish_all(monkeypatch, "production", "20261127T020000_aaaaaa")
    as_env(monkeypatch, "branch", pr=7)
    report = doctor.run("branch", connect=account.connector())
    assert checks(report)["target"] == "FAIL" and "run `hnpipe admin clone --pr 7` first" in detail(report, "target")
    assert cli.main(["admin", "clone", "--pr", "7"]) == 0
    assert doctor.run("branch", connect=account.connector()).ok


def test_needs_fails_naming_the_missing_grant(account, monkeypatch) -> None:
    as_env(monkeypatch, "production")
    account.run("ACCOUNTADMIN", 'REVOKE CREATE STAGE ON SCHEMA PRODUCTION.HACKER_NEWS FROM ROLE HNPIPE_PROD')
    report = doctor.run("production", connect=account.connector())
    assert checks(report)["needs"] == "FAIL"
    assert "CREATE STAGE on schema PRODUCTION.HACKER_NEWS (publish: write_pandas' temporary stage; the fetch's HNPIPE_STAGE)" in detail(report, "needs")


def test_a_branch_needs_select_on_every_production_table(account, monkeypatch) -> None:
    publish_all(monkeypatch, "production", "20261127T020000_aaaaaa")
    as_env(monkeypatch, "branch", pr=7)
    assert cli.main(["admin", "clone", "--pr", "7"]) == 0
    account.run("ACCOUNTADMIN", 'REVOKE SELECT ON TABLE PRODUCTION.HACKER_NEWS.COMMENTS FROM ROLE HNPIPE_BRANCH')
    report = doctor.run("branch", connect=account.connector())
    assert checks(report)["needs"] == "FAIL"
    assert "lacks SELECT on PRODUCTION.HACKER_NEWS.COMMENTS (admin clone" in detail(report, "needs")


@pytest.mark.parametrize("env, grant", [
    ("branch", "GRANT INSERT ON ALL TABLES IN SCHEMA PRODUCTION.HACKER_NEWS TO ROLE HNPIPE_BRANCH"),
    ("staging", "GRANT CREATE TABLE ON SCHEMA PRODUCTION.HACKER_NEWS TO ROLE HNPIPE_STAGING"),
])
def test_must_not_fails_when_a_role_may_write_production(account, monkeypatch, capsys, env, grant) -> None:
    publish_all(monkeypatch, "production", "20261127T020000_aaaaaa")
    as_env(monkeypatch, env, pr=7 if env == "branch" else None)
    if env == "branch":
        assert cli.main(["admin", "clone", "--pr", "7"]) == 0
    assert checks(doctor.run(env, connect=account.connector()))["must not"] == "ok"
    account.run("ACCOUNTADMIN", grant)
    report = doctor.run(env, connect=account.connector())
    assert checks(report)["must not"] == "FAIL" and "PRODUCTION" in detail(report, "must not")


# -- --smoke -----------------------------------------------------------------------------------
def smoke_objects(model: SnowflakeModel) -> list[str]:
    return [f"{d}.{s}.{t}" for d, db in model.databases.items() for s, schema in db.schemas.items()
            for t in schema.tables if "SMOKE" in t] + [d for d in model.databases if "SMOKE" in d]


@pytest.mark.parametrize("env", ["production", "branch"])
def test_smoke_runs_every_statement_form_and_leaves_nothing(account, monkeypatch, capsys, env) -> None:
    publish_all(monkeypatch, "production", "20261127T020000_aaaaaa")
    as_env(monkeypatch, env, pr=7 if env == "branch" else None)
    if env == "branch":
        assert cli.main(["admin", "clone", "--pr", "7"]) == 0
    report = doctor.run(env, smoke=True, connect=account.connector())
    assert report.ok, report.text()
    assert "SWAP WITH" in detail(report, "smoke") and "read ARRAY back as integer lists" in detail(report, "smoke")
    assert "read TIME (UTC) and the flags back" in detail(report, "smoke")  # issue 19
    for step in ("CREATE STAGE + PUT", "LIST + GET", "COPY INTO .. MATCH_BY_COLUMN_NAME", "a bad file fails the COPY whole",
                 "REMOVE"):  # the stage (tests/snowflake_stages.py through the model's R14)
        assert step in detail(report, "smoke")
    assert not [path for stage in account.stage_rules.stages.values() for path in stage.files if "doctor/" in path]
    if env == "branch":
        assert "table clone of PRODUCTION.HACKER_NEWS.COMMENTS" in detail(report, "smoke")
    else:
        assert "future grants: HNPIPE_BRANCH and HNPIPE_READER may SELECT the new table" in detail(report, "smoke")
    assert smoke_objects(account) == []


def test_the_smoke_frame_carries_times_with_microseconds_a_missing_time_and_missing_flags() -> None:
    frame = doctor._smoke_frame()
    assert str(frame["TIME"].dtype) == "datetime64[us, UTC]" and frame["TIME"].isna().tolist() == [False, False, True]
    assert frame["TIME"].iloc[0] == pd.Timestamp("2023-11-14 22:13:20.123456", tz="UTC")
    assert frame["DEAD"].isna().any() and frame["DELETED"].isna().any() and frame["DEAD"].dtype == "boolean"


def shifting_times(inner, transform):
    """A connect whose write_pandas loads TIME changed by `transform` (a wrong load)."""
    def connect(**kwargs):
        connection = inner(**kwargs)
        original = connection.write_pandas

        def write_pandas(frame, table, database, schema):
            if "TIME" in frame.columns:
                frame = frame.assign(TIME=transform(frame["TIME"]))
            return original(frame, table, database, schema)

        connection.write_pandas = write_pandas
        return connection

    return connect


@pytest.mark.parametrize("transform", [lambda t: t + pd.Timedelta(hours=1),  # a time zone shift
                                       lambda t: t.dt.floor("ms")])  # microseconds lost
def test_smoke_fails_when_time_does_not_read_back_as_written(account, monkeypatch, transform) -> None:
    as_env(monkeypatch, "production")
    report = doctor.run("production", smoke=True, connect=shifting_times(account.connector(), transform))
    assert checks(report)["smoke"] == "FAIL" and "TIME read back as" in detail(report, "smoke")
    assert smoke_objects(account) == []


@pytest.mark.parametrize("env, role", [("production", "HNPIPE_BRANCH"), ("production", "HNPIPE_READER"),
                                       ("staging", "HNPIPE_READER")])
def test_smoke_fails_when_a_future_grant_is_missing(account, monkeypatch, env, role) -> None:
    """Issue 19: SHOW GRANTS TO ROLE lists no future grants; the new table shows whether they work."""
    as_env(monkeypatch, env)
    database = env.upper()
    account.run("ACCOUNTADMIN", f"REVOKE SELECT ON FUTURE TABLES IN SCHEMA {database}.HACKER_NEWS FROM ROLE {role}")
    report = doctor.run(env, smoke=True, connect=account.connector())
    assert checks(report)["smoke"] == "FAIL"
    assert f"{role} cannot SELECT the newly published HNPIPE_SMOKE_" in detail(report, "smoke")
    assert checks(report)["clean up"] == "ok" and smoke_objects(account) == []


def test_future_readers_are_the_roles_setup_sql_grants_future_select() -> None:
    granted = {}
    for database, role in re.findall(r"GRANT SELECT ON FUTURE TABLES IN SCHEMA (\w+)\.HACKER_NEWS TO ROLE (\w+);", SETUP):
        granted.setdefault(database.lower(), set()).add(role)
    assert {env: set(roles) for env, roles in doctor.FUTURE_READERS.items()} == granted


def test_smoke_cleans_up_after_a_failing_step(account, monkeypatch) -> None:
    as_env(monkeypatch, "production")
    inner = account.connector()

    def connect(**kwargs):
        connection = inner(**kwargs)
        original = connection.cursor

        def cursor():
            made = original()
            execute = made.execute

            def failing(sql, params=None):
                if sql.startswith("COMMENT ON"):
                    raise snowflake.connector.errors.ProgrammingError(msg="injected: comment refused")
                return execute(sql, params)

            made.execute = failing
            return made

        connection.cursor = cursor
        return connection

    report = doctor.run("production", smoke=True, connect=connect)
    assert checks(report)["smoke"] == "FAIL" and "injected: comment refused" in detail(report, "smoke")
    assert checks(report)["clean up"] == "ok"
    assert smoke_objects(account) == []
