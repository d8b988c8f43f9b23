"""Snowflake sessions: a login timeout and a statement timeout on every session, a warning for a
password login, and every connection closed when its step ends, also on error.

STATEMENT_TIMEOUT_IN_SECONDS is a session parameter
(https://docs.snowflake.com/en/sql-reference/parameters#statement-timeout-in-seconds); the
connector's login_timeout bounds the login
(https://docs.snowflake.com/en/developer-guide/python-connector/python-connector-api).
"""

from __future__ import annotations

import logging

import pytest
import snowflake.connector
import snowflake.connector.pandas_tools

from hnpipe import cli, credentials, params, pipeline
from hnpipe.errors import GuardError, HnpipeError
from snowflake_fakes import ENV, PASSWORD, Recorder
from snowflake_model import write_pandas_fake
from snowflake_account import SETUP, account, as_env, publish_all  # noqa: F401 (fixture)

KEYLESS = {key: value for key, value in ENV.items() if key != "SNOWFLAKE_PASSWORD"}
WIF = {**KEYLESS, "SNOWFLAKE_AUTHENTICATOR": "WORKLOAD_IDENTITY", "SNOWFLAKE_TOKEN": "ci.token"}


def test_every_session_has_a_login_timeout_and_a_statement_timeout() -> None:
    recorder = Recorder()
    recorder.warehouse(environ=WIF).list_databases()
    (call,) = recorder.connect_calls
    assert call["login_timeout"] == 60
    assert call["session_parameters"]["STATEMENT_TIMEOUT_IN_SECONDS"] == 3600


def test_the_timeouts_come_from_the_environment() -> None:
    recorder = Recorder()
    environ = {**WIF, "HNPIPE_SNOWFLAKE_LOGIN_TIMEOUT_S": "15", "HNPIPE_SNOWFLAKE_STATEMENT_TIMEOUT_S": "120"}
    recorder.warehouse(environ=environ).list_databases()
    (call,) = recorder.connect_calls
    assert (call["login_timeout"], call["session_parameters"]["STATEMENT_TIMEOUT_IN_SECONDS"]) == (15, 120)


@pytest.mark.parametrize("name, value", [("HNPIPE_SNOWFLAKE_STATEMENT_TIMEOUT_S", "abc"),
                                         ("HNPIPE_SNOWFLAKE_STATEMENT_TIMEOUT_S", "0"),
                                         ("HNPIPE_SNOWFLAKE_LOGIN_TIMEOUT_S", "-3")])
def test_a_bad_timeout_is_refused_in_one_line_before_connecting(name: str, value: str) -> None:
    recorder = Recorder()
    with pytest.raises(HnpipeError) as caught:
        recorder.warehouse(environ={**WIF, name: value})
    assert str(caught.value).startswith(f"{name}={value!r} is not allowed: use whole seconds from 1 to ")
    assert recorder.connect_calls == []


def test_a_password_login_warns_once_without_the_password(caplog) -> None:
    recorder = Recorder()
    warehouse = recorder.warehouse()  # snowflake_fakes.ENV logs in with a password
    with caplog.at_level(logging.WARNING, logger="hnpipe"):
        warehouse.list_databases()
        warehouse.close()
        warehouse.list_databases()  # a second login, same warehouse: warned already
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [credentials.PASSWORD_WARNING]
    assert PASSWORD not in caplog.text


def test_a_key_pair_or_workload_identity_login_does_not_warn(caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="hnpipe"):
        Recorder().warehouse(environ=WIF).list_databases()
    assert not caplog.records


def test_every_connection_is_closed_when_its_step_ends_also_on_error(account, monkeypatch, capsys) -> None:
    publish_all(monkeypatch, "production", "20261127T020000_aaaaaa")
    as_env(monkeypatch, "branch", pr=7)
    assert cli.main(["admin", "clone", "--pr", "7"]) == 0
    as_env(monkeypatch, "production", run_id="20261127T090000_dddddd")
    assert cli.main(["restore", "ITEMS", "--run", "20261127T020000_aaaaaa"]) == 1  # no such version: an error
    as_env(monkeypatch, "branch", pr=9, run_id="20261127T100000_eeeeee")  # no clone for PR 9: refused
    with pytest.raises(GuardError, match="run `hnpipe admin clone --pr 9` first"):
        pipeline.start("ITEMS", params.params_for("branch", {"hn_api_url": "sample", "n_items": 5}))
    as_env(monkeypatch, "production", run_id="20261127T110000_ffffff")
    step = pipeline.start("ITEMS", params.params_for("production", {"hn_api_url": "sample", "n_items": 5}))
    with pytest.raises(HnpipeError):
        step.publish(step.fetch_items().iloc[0:0].assign(ID=None))  # refused by a gate
    capsys.readouterr()
    opened = snowflake.connector.connect.connections
    assert len(opened) >= 6
    assert [(c.role, c.session.get("QUERY_TAG")) for c in opened if not c.closed] == []
