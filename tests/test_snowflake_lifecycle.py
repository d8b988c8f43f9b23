"""The whole Snowflake lifecycle, role by role, through the test model of Snowflake's ownership
rules (tests/snowflake_model.py), on an account set up by snowflake/setup.sql.

Each step runs hnpipe's own code (pipeline.start, `hnpipe admin`, `hnpipe restore`, `hnpipe admin
handover`) with the credentials of the identity that runs it in CI: the connection logs in as the
role the credentials name, which must be granted to that user. After every publish and restore a
reader's SELECT is checked. The three failures issue 9 found by reading the documentation are the
tests marked "issue 9": each failed on the code before the fix (the branch could not write its
clone, the prune saw nothing, production stopped after the handover).
"""

from __future__ import annotations

import re

import pytest
import snowflake.connector

from hnpipe import cli
from snowflake_account import PRODUCTION, account, as_env, as_prune_job, publish_all, reader_counts  # noqa: F401 (fixture)
from snowflake_model import InsufficientPrivileges


def admin(capsys, *args: str) -> str:
    code = cli.main(["admin", *args])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return captured.out


def test_production_publishes_and_readers_keep_select_across_publishes(account, monkeypatch) -> None:
    publish_all(monkeypatch, "production", "20261127T020000_aaaaaa")
    first = reader_counts(account)
    publish_all(monkeypatch, "production", "20261128T020000_bbbbbb", n_items=80)
    assert first["ITEMS"] > 0 and reader_counts(account)["ITEMS"] > first["ITEMS"]
    assert account.owner("PRODUCTION.HACKER_NEWS.ITEMS") == "HNPIPE_PROD"


def test_issue_9_a_branch_writes_the_clone_it_built_and_never_production(account, monkeypatch, capsys) -> None:
    publish_all(monkeypatch, "production", "20261127T020000_aaaaaa")
    as_env(monkeypatch, "branch", pr=7)
    admin(capsys, "clone", "--pr", "7")
    publish_all(monkeypatch, "branch", "20261127T100000_cccccc", pr=7, n_items=70)
    # The branch role owns its clone, down to every table (a database clone would have kept
    # production's owners: https://docs.snowflake.com/en/user-guide/object-clone).
    for path in ("PRODUCTION_CLONE_7", "PRODUCTION_CLONE_7.HACKER_NEWS", "PRODUCTION_CLONE_7.HACKER_NEWS.ITEMS"):
        assert account.owner(path) == "HNPIPE_BRANCH", path
    assert account.table("PRODUCTION_CLONE_7", "HACKER_NEWS", "ITEMS").rows != account.table(
        "PRODUCTION", "HACKER_NEWS", "ITEMS").rows
    # Readers of the branch (branch_role: HNPIPE_READER) keep SELECT after the branch's publish.
    assert reader_counts(account, '"PRODUCTION_CLONE_7"."HACKER_NEWS"')["ITEMS"] > 0
    with pytest.raises(InsufficientPrivileges):  # and the branch role still cannot write PRODUCTION
        account.connect("HNPIPE_BRANCH").cursor().execute(f'CREATE TABLE {PRODUCTION}."X" ("ID" NUMBER)')


def test_restore_in_production_keeps_readers_select(account, monkeypatch, capsys) -> None:
    publish_all(monkeypatch, "production", "20261127T020000_aaaaaa", n_items=60)
    first = reader_counts(account)["ITEMS"]
    publish_all(monkeypatch, "production", "20261128T020000_bbbbbb", n_items=90)
    assert reader_counts(account)["ITEMS"] > first
    as_env(monkeypatch, "production", run_id="20261128T090000_dddddd")
    assert cli.main(["restore", "ITEMS", "--run", "20261128T020000_bbbbbb"]) == 0, capsys.readouterr().err
    assert reader_counts(account)["ITEMS"] == first  # put back, and still readable


def test_a_branch_drops_its_own_clone(account, monkeypatch, capsys) -> None:
    publish_all(monkeypatch, "production", "20261127T020000_aaaaaa")
    as_env(monkeypatch, "branch", pr=7)
    admin(capsys, "clone", "--pr", "7")
    admin(capsys, "drop", "--pr", "7")
    assert "PRODUCTION_CLONE_7" not in account.databases


def test_issue_9_the_nightly_prune_sees_and_drops_the_branch_roles_clones(account, monkeypatch, capsys) -> None:
    publish_all(monkeypatch, "production", "20261127T020000_aaaaaa")
    for pr in (7, 8):
        as_env(monkeypatch, "branch", pr=pr)
        admin(capsys, "clone", "--pr", str(pr))
    as_prune_job(monkeypatch)  # the scheduled prune job, with PR 8 still open
    out = admin(capsys, "prune", "--older-than", "0", "--keep-pr", "8", "--min-age-hours", "0", "--apply")
    assert "PRODUCTION_CLONE_7" in out
    assert "PRODUCTION_CLONE_7" not in account.databases and "PRODUCTION_CLONE_8" not in account.databases
    # It logged in as the branch user, which owns the clones (SHOW DATABASES shows a role only
    # what it holds a privilege on: https://docs.snowflake.com/en/sql-reference/sql/show).
    prune_logins = [call for call in snowflake.connector.connect.calls if call.get("role") == "HNPIPE_BRANCH"]
    assert prune_logins


def test_issue_9_production_still_publishes_after_the_handover(account, monkeypatch, capsys) -> None:
    publish_all(monkeypatch, "production", "20261127T020000_aaaaaa")
    as_env(monkeypatch, "production")
    monkeypatch.setenv("SNOWFLAKE_PROD_USER", "IT_JANE")  # applied by a person who may manage grants
    monkeypatch.setenv("SNOWFLAKE_AUTHENTICATOR", "EXTERNALBROWSER")  # the person's browser SSO (issue 19)
    monkeypatch.delenv("CI", raising=False)  # on the person's laptop: CI refuses a person's login
    monkeypatch.setenv("SNOWFLAKE_PROD_ROLE", "SECURITYADMIN")
    assert cli.main(["admin", "handover", "--owner-role", "IT_ADMIN", "--reader-role", "HNPIPE_READER",
                     "--analyst-role", "ANALYST", "--apply"]) == 0, capsys.readouterr().err
    printed = capsys.readouterr().out
    assert account.owner("PRODUCTION.HACKER_NEWS") == "IT_ADMIN"
    monkeypatch.setenv("SNOWFLAKE_PROD_USER", "HNPIPE_PROD_SVC")
    monkeypatch.setenv("SNOWFLAKE_PROD_ROLE", "HNPIPE_PROD")
    before = reader_counts(account)["ITEMS"]
    publish_all(monkeypatch, "production", "20261128T020000_bbbbbb", n_items=80)
    assert reader_counts(account)["ITEMS"] > before
    assert "pipeline role HNPIPE_PROD" in printed  # the follow-up names the role that keeps publishing
    # IT controls the tables the pipeline owns (role hierarchy), e.g. may drop one.
    account.connect("IT_ADMIN").cursor().execute(f'DROP TABLE {PRODUCTION}."STORIES"')


def test_no_identifier_binding_is_left_in_any_statement_hnpipe_sends(account, monkeypatch, capsys) -> None:
    """IDENTIFIER(?) is documented for some places only (https://docs.snowflake.com/en/sql-reference/identifier-literal):
    every name hnpipe sends is checked and double-quoted instead; bind variables carry values."""
    publish_all(monkeypatch, "production", "20261127T020000_aaaaaa")
    publish_all(monkeypatch, "production", "20261128T020000_bbbbbb")
    as_env(monkeypatch, "branch", pr=7)
    admin(capsys, "clone", "--pr", "7")
    admin(capsys, "drop", "--pr", "7")
    sent = [sql for role, sql in account.log if role.startswith("HNPIPE_")]
    assert len(sent) > 50
    assert not [sql for sql in sent if "IDENTIFIER(" in sql.upper()]
    ddl = re.compile(r"(CREATE|ALTER|DROP|GRANT|REVOKE|COMMENT|USE)\b", re.IGNORECASE)
    for sql in sent:
        if ddl.match(sql) and not sql.startswith("<"):
            names = re.findall(r'(?<![."\w])([A-Z][A-Z0-9_]*__[A-Z0-9_]+|PRODUCTION_CLONE_\d+|HACKER_NEWS)(?![\w"])', sql)
            assert not names, f"unquoted name in {sql}"
