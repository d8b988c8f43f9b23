"""hnpipe admin: the guard, clone/drop/list/prune on real DuckDB files, the exact Snowflake SQL,
the command line and admin.ipynb under papermill.

Snowflake stand-ins: fakesnow where it answers (clone, list); a recording connection for
what it cannot do (DROP DATABASE, GRANT, creation times other than 1970).
"""

from __future__ import annotations

import re
import hashlib
import logging
import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import nbformat
import pytest
import snowflake.connector
from hnpipe import cli, params
from hnpipe.environments import Target
from hnpipe.errors import GuardError, HnpipeError, ParameterError, WarehouseError
from hnpipe.items import items_frame
from hnpipe.ops import admin
from hnpipe.warehouse.duckdb_engine import DuckDBWarehouse
from hnpipe.warehouse.snowflake_engine import SnowflakeWarehouse
from helpers_faults import scribble_over
from snowflake_fakes import ENV, PASSWORD

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = "HACKER_NEWS"
RAW_ITEMS = [
    {"id": 10, "type": "story", "by": "ann", "time": 1_700_000_000, "kids": [11], "title": "Show HN", "score": 3},
    {"id": 11, "type": "comment", "by": "bob", "time": 1_700_000_100, "parent": 10, "text": "Nice"},
    {"id": 12, "type": "comment", "by": "cy", "time": 1_700_000_200, "parent": 10, "deleted": True},
]


def fingerprint(directory: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(directory.iterdir())}


def tables(directory: Path, database: str) -> dict[str, Any]:
    wh = DuckDBWarehouse(directory)
    target = Target(database, SCHEMA)
    return {name: wh.read_table(target, name) for name in sorted(wh.list_tables(target))}


def assert_same_tables(directory: Path, database: str, other: str) -> None:
    mine, theirs = tables(directory, database), tables(directory, other)
    assert list(mine) == list(theirs) and mine
    for name in mine:
        assert mine[name].equals(theirs[name]), name


@pytest.fixture
def warehouse(clean_env: Path) -> Path:
    """PRODUCTION (ITEMS, COMMENTS), STAGING and LOCAL files with data; returns the directory."""
    wh = DuckDBWarehouse(clean_env)
    items = items_frame(RAW_ITEMS)
    for database in ("PRODUCTION", "STAGING", "LOCAL"):
        target = Target(database, SCHEMA)
        wh.publish_frame(target, "ITEMS", items, "SETUP")
    wh.publish_frame(Target("PRODUCTION", SCHEMA), "COMMENTS", items[items.TYPE == "comment"], "SETUP")
    return clean_env


def environ(directory: Path, env: str, pr: str | None = None) -> dict[str, str]:
    values = {"HNPIPE_ENV": env, "HNPIPE_WAREHOUSE": f"duckdb:{directory}"}
    if pr is not None:
        values["HNPIPE_PR_ID"] = pr
    return values


def act(directory: Path, env: str, action: str, pr: str | None = None, **options: Any) -> admin.AdminResult:
    """One admin action as `env` (with HNPIPE_PR_ID=pr), on the embedded warehouse in directory."""
    return admin.run({"environment": env, "action": action, **options}, environ=environ(directory, env, pr))


# -- clone -------------------------------------------------------------------------------
def test_clone_makes_a_fresh_copy_and_never_writes_production(warehouse: Path) -> None:
    production = fingerprint(warehouse)["PRODUCTION.duckdb"]
    result = act(warehouse, "production", "clone", pr_id=5)
    assert result.ok and result.changed == ("PRODUCTION_CLONE_5",)
    assert result.message.startswith("created PRODUCTION_CLONE_5")
    assert [c.pr_id for c in result.clones] == [5]
    assert_same_tables(warehouse, "PRODUCTION_CLONE_5", "PRODUCTION")
    assert fingerprint(warehouse)["PRODUCTION.duckdb"] == production
    assert not (warehouse / "PRODUCTION.duckdb.wal").exists()


def test_clone_replaces_the_earlier_clone_of_that_pr_only(warehouse: Path) -> None:
    act(warehouse, "production", "clone", pr_id=5)
    act(warehouse, "production", "clone", pr_id=6)
    # The branch run wrote its own ITEMS into clone 5.
    DuckDBWarehouse(warehouse).publish_frame(Target("PRODUCTION_CLONE_5", SCHEMA), "ITEMS",
                                             items_frame(RAW_ITEMS[:1]), "BRANCH")
    other = fingerprint(warehouse)["PRODUCTION_CLONE_6.duckdb"]
    result = act(warehouse, "branch", "clone", pr="5")
    assert result.message.startswith("replaced PRODUCTION_CLONE_5")
    assert_same_tables(warehouse, "PRODUCTION_CLONE_5", "PRODUCTION")
    assert fingerprint(warehouse)["PRODUCTION_CLONE_6.duckdb"] == other


def test_clone_without_production_fails_in_one_line_and_creates_nothing(clean_env: Path) -> None:
    with pytest.raises(WarehouseError, match="cannot clone PRODUCTION"):
        act(clean_env, "production", "clone", pr_id=5)
    assert not clean_env.exists() or not list(clean_env.iterdir())


# -- the guard ---------------------------------------------------------------------------
def test_a_branch_may_clone_and_drop_only_its_own_clone(warehouse: Path) -> None:
    act(warehouse, "production", "clone", pr_id=6)
    before = fingerprint(warehouse)
    for action in ("clone", "drop"):
        with pytest.raises(GuardError) as refused:
            act(warehouse, "branch", action, pr="5", pr_id=6)
        message = str(refused.value)
        assert "\n" not in message
        assert f"admin {action} of PRODUCTION_CLONE_6" in message and "pull request 5" in message
        assert "--pr 5" in message and "HNPIPE_ENV=production" in message
    with pytest.raises(GuardError, match="only HNPIPE_ENV=production may prune"):
        act(warehouse, "branch", "prune", pr="5", apply=True)
    with pytest.raises(GuardError, match="without HNPIPE_PR_ID"):
        act(warehouse, "branch", "clone", pr_id=6)
    assert fingerprint(warehouse) == before
    # Its own pull request, from HNPIPE_PR_ID or named explicitly:
    assert act(warehouse, "branch", "clone", pr="5").changed == ("PRODUCTION_CLONE_5",)
    assert act(warehouse, "branch", "drop", pr="5", pr_id=5).changed == ("PRODUCTION_CLONE_5",)
    assert fingerprint(warehouse) == before


@pytest.mark.parametrize("env", ["local", "staging"])
def test_local_and_staging_may_only_list(warehouse: Path, env: str) -> None:
    act(warehouse, "production", "clone", pr_id=5)
    before = fingerprint(warehouse)
    for action, options in (("clone", {"pr_id": 6}), ("drop", {"pr_id": 5}), ("prune", {"older_than_days": 0, "apply": True})):
        with pytest.raises(GuardError, match=f"HNPIPE_ENV={env} may only list clones|only HNPIPE_ENV=production may prune"):
            act(warehouse, env, action, pr="5", **options)
    assert fingerprint(warehouse) == before
    assert [c.database for c in act(warehouse, env, "list").clones] == ["PRODUCTION_CLONE_5"]


def test_parameters_must_agree_with_the_process(warehouse: Path) -> None:
    with pytest.raises(GuardError, match="ask for environment 'production' but this process runs as HNPIPE_ENV=local"):
        admin.run({"environment": "production", "action": "clone", "pr_id": 5},
                  environ=environ(warehouse, "local"))
    assert "PRODUCTION_CLONE_5.duckdb" not in fingerprint(warehouse)


@pytest.mark.parametrize("options, message", [
    ({"action": "drop"}, "needs a pull request"),
    ({"action": "list", "pr_id": 3}, "pr_id=3 does not apply to list"),
    ({"action": "clone", "pr_id": 3, "apply": True}, "apply=True does not apply to clone"),
    ({"action": "drop", "pr_id": 3, "keep_prs": [3]}, "keep_prs=[3] does not apply to drop"),
    ({"action": "nuke"}, "action='nuke' is not allowed"),
    ({"action": "prune", "older_than_days": -1}, "older_than_days=-1 is not allowed"),
    ({"action": "prune", "keep_prs": ["7"]}, "keep_prs=['7'] is not allowed"),
    ({"action": "list", "password": "x"}, "secrets are never parameters"),
])
def test_bad_options_are_refused_before_connecting(warehouse: Path, monkeypatch, options, message) -> None:
    monkeypatch.setattr(admin, "_connect", connection_forbidden)
    with pytest.raises(ParameterError) as refused:
        admin.run({"environment": "production", **options}, environ=environ(warehouse, "production"))
    assert message in str(refused.value) and "\n" not in str(refused.value)


def connection_forbidden(*args: Any) -> None:
    raise AssertionError("admin connected to the warehouse before refusing")


# Inputs that must never drop anything: what a person or a script might pass as a PR number.
HOSTILE_PR_TEXT = [
    "PRODUCTION", "STAGING", "LOCAL", "PRODUCTION_CLONE_", "PRODUCTION_CLONE_1", "production_clone_1",
    "PRODUCTION_CLONE_1; DROP DATABASE PRODUCTION", "1; DROP DATABASE PRODUCTION", "../PRODUCTION", "../1",
    "PRODUCTION_CLONE_1 ", "1 ", " 1", "1\n", "\u0661", "\U0001d7cf", "\u00b9", "\uff11", "-1", "0", "00", "01",
    "+1", "1.0", "1e3", "0x1", "", "12345678901", "1,2", "*", "%", "NULL",
]
HOSTILE_PR_VALUES = [*HOSTILE_PR_TEXT, -1, 0, 10**10, True, False, 1.0, None, [1], {"pr": 1}]
# Names that reach the engines (a bug in admin, or another caller) must be refused there too.
HOSTILE_DATABASES = [
    "PRODUCTION", "STAGING", "LOCAL", "PRODUCTION_CLONE_", "production_clone_1",
    "PRODUCTION_CLONE_1; DROP DATABASE PRODUCTION", "../PRODUCTION", "PRODUCTION_CLONE_1 ", " PRODUCTION_CLONE_1",
    "PRODUCTION_CLONE_1\n", "PRODUCTION_CLONE_\u0661", "PRODUCTION_CLONE_\U0001d7cf", "PRODUCTION_CLONE_-1",
    "PRODUCTION_CLONE_0", "PRODUCTION_CLONE_01", "PRODUCTION_CLONE_1/../../PRODUCTION", "PRODUCTION_CLONE_1.duckdb",
    "", None, 1, -1, 0,
]


def test_hostile_inputs_drop_nothing_anywhere(warehouse: Path, monkeypatch, capsys) -> None:
    act(warehouse, "production", "clone", pr_id=1)
    before = fingerprint(warehouse)
    monkeypatch.setenv("HNPIPE_ENV", "production")  # the most permissive environment
    monkeypatch.setattr(admin, "_connect", connection_forbidden)
    for value in HOSTILE_PR_VALUES:
        with pytest.raises(HnpipeError) as refused:
            admin.run({"environment": "production", "action": "drop", "pr_id": value},
                      environ=environ(warehouse, "production"))
        assert "\n" not in str(refused.value), value
    for text in HOSTILE_PR_TEXT:
        for argv in (["admin", "drop", "--pr", text], ["admin", "clone", "--pr", text],
                     ["admin", "prune", "--keep-pr", text, "--apply"]):
            assert cli.main(argv) == 1, argv
            stderr = capsys.readouterr().err
            assert stderr.startswith("hnpipe: error: ") and stderr.count("\n") == 1, (argv, stderr)
    engine = DuckDBWarehouse(warehouse)
    for name in HOSTILE_DATABASES:
        with pytest.raises(GuardError):
            engine.drop_database(name)
        with pytest.raises(GuardError):
            engine.clone_database("PRODUCTION", name)
    assert fingerprint(warehouse) == before


# -- drop, list, prune -------------------------------------------------------------------
def test_drop_removes_the_clone_and_a_missing_one_is_no_error(warehouse: Path) -> None:
    act(warehouse, "production", "clone", pr_id=5)
    result = act(warehouse, "production", "drop", pr_id=5)
    assert result.changed == ("PRODUCTION_CLONE_5",) and [c.pr_id for c in result.clones] == [5]
    assert "PRODUCTION_CLONE_5.duckdb" not in fingerprint(warehouse)
    again = act(warehouse, "production", "drop", pr_id=5)
    assert again.ok and again.changed == () and again.message == "PRODUCTION_CLONE_5 does not exist; nothing to drop"
    assert sorted(fingerprint(warehouse)) == ["LOCAL.duckdb", "PRODUCTION.duckdb", "STAGING.duckdb"]


def test_list_shows_every_clone_by_pr_with_creation_size_and_age(warehouse: Path) -> None:
    started = datetime.now(timezone.utc) - timedelta(seconds=2)  # file times may be coarse
    for pr in (10, 2, 9):
        act(warehouse, "production", "clone", pr_id=pr)
    later = datetime.now(timezone.utc) + timedelta(days=3)
    result = admin.run({"environment": "local", "action": "list"}, environ=environ(warehouse, "local"), now=later)
    assert [c.pr_id for c in result.clones] == [2, 9, 10]  # numerically, not as text
    for clone in result.clones:
        assert clone.database == f"PRODUCTION_CLONE_{clone.pr_id}"
        assert clone.size_bytes == (warehouse / f"{clone.database}.duckdb").stat().st_size
        assert started <= clone.created <= datetime.now(timezone.utc)
        assert clone.age == later - clone.created
    frame = result.to_frame()
    assert list(frame.columns) == ["PR", "DATABASE", "CREATED", "AGE_DAYS", "SIZE_BYTES"]
    assert frame.PR.tolist() == [2, 9, 10] and (frame.AGE_DAYS.between(2.99, 3.01)).all()
    text = result.to_text().splitlines()
    assert text[0] == "3 clones of PRODUCTION" and text[2].split()[:2] == ["2", "PRODUCTION_CLONE_2"]
    assert "3d 0h" in text[2]


def clone_aged(pr: int, days: float | None) -> admin.Clone:
    now = datetime(2026, 11, 21, tzinfo=timezone.utc)
    age = None if days is None else timedelta(days=days)
    return admin.Clone(f"PRODUCTION_CLONE_{pr}", pr, None if age is None else now - age, None, age)


@pytest.mark.parametrize("older_than, keep, stale", [
    (14, [], {3: "older than 14 days"}),  # without keep_prs only age counts
    (14, [1, 2, 3, 4], {3: "older than 14 days"}),  # open but not pushed for 20 days
    (14, [2], {1: "pull request not open", 3: "pull request not open; older than 14 days",
               4: "pull request not open"}),
    (30, [1, 2, 3, 4], {}),
    (0, [], {1: "older than 0 days", 2: "older than 0 days", 3: "older than 0 days"}),  # CI: no PR open
])
def test_which_clones_are_stale(older_than: int, keep: list[int], stale: dict[int, str]) -> None:
    clones = [clone_aged(1, 1), clone_aged(2, 14), clone_aged(3, 20), clone_aged(4, None)]
    expected = {f"PRODUCTION_CLONE_{pr}": why for pr, why in stale.items()}
    assert admin.stale_clones(clones, older_than, keep, min_age_hours=0) == expected


def test_a_clone_younger_than_the_minimum_age_stays_whatever_keep_prs_says() -> None:
    """Issue 19: CI lists the open pull requests, then prunes; a pull request opened in between
    has a clone seconds old that no --keep-pr names. Only asked (min_age_hours=0) does it go."""
    clones = [clone_aged(1, 0), clone_aged(2, 0.9), clone_aged(3, 1.5), clone_aged(4, None)]
    assert admin.stale_clones(clones, 14, [9]) == {"PRODUCTION_CLONE_3": "pull request not open",
                                                   "PRODUCTION_CLONE_4": "pull request not open"}
    assert admin.stale_clones(clones, 0, []) == {"PRODUCTION_CLONE_3": "older than 0 days"}
    assert admin.stale_clones(clones, 14, [9], min_age_hours=48) == {"PRODUCTION_CLONE_4": "pull request not open"}
    assert set(admin.stale_clones(clones, 14, [9], min_age_hours=0)) == {f"PRODUCTION_CLONE_{n}" for n in (1, 2, 3, 4)}


def test_prune_lists_by_default_and_drops_only_with_apply(warehouse: Path) -> None:
    for pr in (1, 2, 3):
        act(warehouse, "production", "clone", pr_id=pr)
    before = fingerprint(warehouse)
    fresh = act(warehouse, "production", "prune", keep_prs=[2], apply=True)  # minutes old: all stay
    assert fresh.changed == () and fingerprint(warehouse) == before
    listed = act(warehouse, "production", "prune", keep_prs=[2], min_age_hours=0)
    assert [c.pr_id for c in listed.clones] == [1, 3] and listed.changed == ()
    assert listed.message == "2 stale clones of 3; nothing dropped (apply to drop them)"
    assert listed.to_frame().STALE_BECAUSE.tolist() == ["pull request not open"] * 2
    assert fingerprint(warehouse) == before
    applied = act(warehouse, "production", "prune", keep_prs=[2], apply=True, min_age_hours=0)
    assert applied.changed == ("PRODUCTION_CLONE_1", "PRODUCTION_CLONE_3")
    assert applied.to_frame().DROPPED.tolist() == [True, True]
    after = fingerprint(warehouse)
    assert sorted(after) == ["LOCAL.duckdb", "PRODUCTION.duckdb", "PRODUCTION_CLONE_2.duckdb", "STAGING.duckdb"]
    assert {name: after[name] for name in after} == {name: before[name] for name in after}
    # A month on, the open pull request's clone is stale too.
    month = datetime.now(timezone.utc) + timedelta(days=30)
    aged = admin.run({"environment": "production", "action": "prune", "keep_prs": [2], "apply": True},
                     environ=environ(warehouse, "production"), now=month)
    assert aged.changed == ("PRODUCTION_CLONE_2",) and aged.reasons == {"PRODUCTION_CLONE_2": "older than 14 days"}


def test_admin_opens_production_read_only_on_the_embedded_engine(warehouse: Path) -> None:
    for env in ("local", "staging", "branch", "production"):
        opened = admin._connect(env, {}, environ(warehouse, env, "5"))
        assert isinstance(opened, DuckDBWarehouse) and "PRODUCTION" in opened.read_only_databases
        with pytest.raises(WarehouseError, match="read-only"):
            opened.ensure_schema(Target("PRODUCTION", SCHEMA))


def test_every_action_is_recorded_once_done_or_refused(warehouse: Path, caplog) -> None:
    caplog.set_level(logging.INFO, logger="hnpipe.ops.admin")
    act(warehouse, "production", "clone", pr_id=5)
    with pytest.raises(GuardError):
        act(warehouse, "local", "drop", pr_id=5)
    records = [r for r in caplog.records if r.name == "hnpipe.ops.admin"]
    assert [r.getMessage() for r in records] == [
        "admin clone by production on duckdb: created PRODUCTION_CLONE_5 as a fresh copy of PRODUCTION",
        "admin drop by local refused or failed: refused admin drop of PRODUCTION_CLONE_5: HNPIPE_ENV=local may "
        "only list clones; clone and drop run in CI (HNPIPE_ENV=branch with HNPIPE_PR_ID=<PR>, or "
        "HNPIPE_ENV=production)",
    ]


# -- Snowflake ---------------------------------------------------------------------------
class RecordingConnection:
    """Test fake: records every (sql, params); knows its databases and their creation times,
    applies CREATE OR REPLACE .. CLONE and DROP DATABASE to them, fails statements on request."""

    def __init__(self, databases: dict[str, datetime], failing: tuple[str, ...] = ()) -> None:
        self.databases = dict(databases)
        self.failing = failing
        self.statements: list[tuple[str, list | None]] = []

    def cursor(self) -> RecordingConnection:
        return self

    def close(self) -> None:
        pass

    def execute(self, sql: str, params: list | None = None) -> RecordingConnection:
        self.statements.append((sql, params))
        names = re.findall(r'"([A-Z0-9_]+)"', sql)
        if sql.startswith(self.failing or ("\0",)):
            raise snowflake.connector.errors.ProgrammingError(f"Insufficient privileges to operate on {names}")
        self.description, self._rows = [("status",)], [("ok",)]
        if sql == "SHOW DATABASES":
            self.description = [("created_on",), ("name",)]
            self._rows = [(created, name) for name, created in self.databases.items()]
        elif "INFORMATION_SCHEMA.SCHEMATA" in sql:  # every database has the published schema
            self.description, self._rows = [("SCHEMA_NAME",)], [("HACKER_NEWS",)]
        elif "INFORMATION_SCHEMA.TABLES" in sql:  # and ITEMS in it
            self.description, self._rows = [("TABLE_NAME",), ("ROW_COUNT",)], [("ITEMS", 3)]
        elif sql.startswith("CREATE OR REPLACE DATABASE"):
            self.databases[names[0]] = NOW
        elif sql.startswith("DROP DATABASE"):
            self.databases.pop(names[0], None)
        return self

    def fetchall(self) -> list:
        return self._rows

    def changes(self) -> list[tuple[str, list | None]]:
        return [(sql, params) for sql, params in self.statements if not sql.startswith(("SHOW", "SELECT"))]


NOW = datetime(2026, 11, 21, 12, 0, tzinfo=timezone.utc)


def snowflake_run(connection: RecordingConnection, action: str, env: str = "production", pr: str | None = None,
                  **options: Any) -> admin.AdminResult:
    warehouse = SnowflakeWarehouse(environ=ENV, connect=lambda **kwargs: connection)
    values = {"environment": env, "action": action, **options}
    return admin.run(values, environ={"HNPIPE_ENV": env, **({"HNPIPE_PR_ID": pr} if pr else {})},
                     warehouse=warehouse, now=NOW)


CLONE_SQL = [
    'CREATE OR REPLACE DATABASE "PRODUCTION_CLONE_42"',
    'CREATE SCHEMA "PRODUCTION_CLONE_42"."HACKER_NEWS" WITH MANAGED ACCESS',
    'CREATE TABLE "PRODUCTION_CLONE_42"."HACKER_NEWS"."ITEMS" CLONE "PRODUCTION"."HACKER_NEWS"."ITEMS"',
]


def test_snowflake_clone_grants_usage_to_the_branch_role() -> None:
    connection = RecordingConnection({"PRODUCTION": NOW - timedelta(days=400)})
    result = snowflake_run(connection, "clone", pr_id=42, branch_role="HNPIPE_READER")
    where = '"PRODUCTION_CLONE_42"."HACKER_NEWS"'
    assert [sql for sql, _ in connection.changes()] == [
        *CLONE_SQL,
        'GRANT USAGE ON DATABASE "PRODUCTION_CLONE_42" TO ROLE "HNPIPE_READER"',
        f'GRANT USAGE ON SCHEMA {where} TO ROLE "HNPIPE_READER"',
        f'GRANT SELECT ON ALL TABLES IN SCHEMA {where} TO ROLE "HNPIPE_READER"',
        f'GRANT SELECT ON FUTURE TABLES IN SCHEMA {where} TO ROLE "HNPIPE_READER"',
    ]
    assert result.message.endswith("usage granted to role HNPIPE_READER")
    assert [(c.pr_id, c.size_bytes) for c in result.clones] == [(42, None)]  # SHOW DATABASES tells no size


def test_snowflake_clone_without_a_branch_role_grants_nothing() -> None:
    connection = RecordingConnection({"PRODUCTION": NOW})
    snowflake_run(connection, "clone", env="branch", pr="42")
    assert [sql for sql, _ in connection.changes()] == CLONE_SQL


def test_a_failed_grant_drops_the_unusable_clone_again() -> None:
    connection = RecordingConnection({"PRODUCTION": NOW}, failing=("GRANT",))
    with pytest.raises(WarehouseError) as failed:
        snowflake_run(connection, "clone", pr_id=42, branch_role="HNPIPE_BRANCH")
    assert "could not grant usage to HNPIPE_BRANCH (dropped it again)" in str(failed.value)
    assert "Insufficient privileges" in str(failed.value) and PASSWORD not in str(failed.value)
    assert connection.changes()[-1] == ('DROP DATABASE IF EXISTS "PRODUCTION_CLONE_42"', None)
    assert sorted(connection.databases) == ["PRODUCTION"]


def test_snowflake_prune_drops_exactly_the_stale_clones() -> None:
    connection = RecordingConnection({
        "PRODUCTION": NOW - timedelta(days=900), "STAGING": NOW - timedelta(days=900),
        "PRODUCTION_CLONE_7": NOW - timedelta(days=2),  # open, fresh
        "PRODUCTION_CLONE_8": NOW - timedelta(days=20),  # open, not pushed for 20 days
        "PRODUCTION_CLONE_9": NOW - timedelta(days=3),  # closed
        "PRODUCTION_CLONE_10": NOW - timedelta(hours=1),  # not listed as open: opened after the listing?
        "PRODUCTION_CLONE_X": NOW - timedelta(days=90),  # not a clone name
    })
    result = snowflake_run(connection, "prune", keep_prs=[7, 8], apply=True)
    assert connection.changes() == [
        ('DROP DATABASE IF EXISTS "PRODUCTION_CLONE_8"', None),
        ('DROP DATABASE IF EXISTS "PRODUCTION_CLONE_9"', None),
    ]
    assert result.reasons == {"PRODUCTION_CLONE_8": "older than 14 days", "PRODUCTION_CLONE_9": "pull request not open"}
    assert sorted(connection.databases) == ["PRODUCTION", "PRODUCTION_CLONE_10", "PRODUCTION_CLONE_7",
                                            "PRODUCTION_CLONE_X", "STAGING"]


def test_snowflake_drop_sends_one_guarded_statement() -> None:
    connection = RecordingConnection({"PRODUCTION": NOW, "PRODUCTION_CLONE_5": NOW})
    assert snowflake_run(connection, "drop", env="branch", pr="5").changed == ("PRODUCTION_CLONE_5",)
    assert connection.changes() == [('DROP DATABASE IF EXISTS "PRODUCTION_CLONE_5"', None)]


@pytest.mark.filterwarnings("ignore:Arrow output on a DB-API result:UserWarning")
def test_clone_and_list_on_fakesnow(fake_snowflake) -> None:
    fake_snowflake.create_databases("PRODUCTION")

    def run(action: str, **options: Any) -> admin.AdminResult:
        return admin.run({"environment": "production", "action": action, **options},
                         environ={"HNPIPE_ENV": "production"}, warehouse=fake_snowflake.warehouse())

    assert run("clone", pr_id=3).changed == ("PRODUCTION_CLONE_3",)
    assert [c.database for c in run("list").clones] == ["PRODUCTION_CLONE_3"]
    # fakesnow dates every database 1970: a dry-run prune finds it stale and drops nothing.
    assert run("prune").reasons == {"PRODUCTION_CLONE_3": "older than 14 days"}
    assert [c.database for c in run("list").clones] == ["PRODUCTION_CLONE_3"]


# -- the command line and the notebook ----------------------------------------------------
def test_cli_actions_and_options(warehouse: Path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("HNPIPE_ENV", "production")
    assert cli.main(["admin", "clone", "--pr", "4"]) == 0
    assert capsys.readouterr().out.startswith("created PRODUCTION_CLONE_4 as a fresh copy of PRODUCTION\nPR")
    assert cli.main(["admin", "clone", "--pr", "5"]) == 0
    capsys.readouterr()
    assert cli.main(["admin", "list"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "2 clones of PRODUCTION" and [line.split()[0] for line in out[2:]] == ["4", "5"]
    assert cli.main(["admin", "prune", "--keep-pr", "4", "--keep-pr", "9"]) == 0
    assert capsys.readouterr().out.startswith("no stale clones of 2")  # minutes old: they stay
    assert cli.main(["admin", "prune", "--keep-pr", "4", "--keep-pr", "9", "--min-age-hours", "0"]) == 0
    assert "PRODUCTION_CLONE_5" in capsys.readouterr().out
    assert "PRODUCTION_CLONE_5.duckdb" in fingerprint(warehouse)  # no --apply: nothing dropped
    for argv in (["admin", "prune", "--older-than", bad] for bad in ("-1", "1.5", "\u0661", "14 ", "3651", "")):
        assert cli.main(argv) == 1
        assert capsys.readouterr().err.count("\n") == 1
    for argv in (["admin", "prune", "--min-age-hours", bad] for bad in ("-1", "1.5", "24h", "87601")):
        assert cli.main(argv) == 1
        assert capsys.readouterr().err.count("\n") == 1
    assert cli.main(["admin", "prune", "--older-than", "0", "--apply"]) == 0  # minutes old: they stay
    assert len(fingerprint(warehouse)) == 5
    assert cli.main(["admin", "prune", "--older-than", "0", "--min-age-hours", "0", "--apply"]) == 0
    assert sorted(fingerprint(warehouse)) == ["LOCAL.duckdb", "PRODUCTION.duckdb", "STAGING.duckdb"]
    monkeypatch.setenv("HNPIPE_ENV", "branch")
    monkeypatch.setenv("HNPIPE_PR_ID", "8")
    assert cli.main(["admin", "clone"]) == 0  # the pull request from HNPIPE_PR_ID
    assert "PRODUCTION_CLONE_8.duckdb" in fingerprint(warehouse)


def papermill_admin(out: Path, env: dict[str, str], *parameters: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "papermill", str(ROOT / "notebooks" / "admin.ipynb"), str(out),
         "--cwd", str(ROOT / "notebooks"), *parameters],
        env={**os.environ, **env}, capture_output=True, text=True, timeout=300,
    )


@pytest.mark.slow
def test_admin_notebook_clones_under_papermill(warehouse: Path, tmp_path: Path) -> None:
    branch = {"HNPIPE_ENV": "branch", "HNPIPE_PR_ID": "12"}
    done = papermill_admin(tmp_path / "clone.ipynb", branch, "-p", "environment", "branch", "-p", "action", "clone")
    assert done.returncode == 0, done.stderr[-2000:]
    assert_same_tables(warehouse, "PRODUCTION_CLONE_12", "PRODUCTION")
    executed = nbformat.read(tmp_path / "clone.ipynb", as_version=4)
    shown = "".join(str(output.get("data", output.get("text", ""))) for cell in executed.cells
                    for output in cell.get("outputs", []))
    assert "created PRODUCTION_CLONE_12" in shown and "SIZE_BYTES" in shown


def test_admin_notebook_refuses_unknown_injected_parameters() -> None:
    # What a kernel holds after `papermill -p drop_everything True`: the injected cell in In.
    namespace = {name: p.default for name, p in admin.DECLARED.items()}
    namespace.update(drop_everything=True, In=["", "action = 'list'", "# Parameters\ndrop_everything = True\n"])
    with pytest.raises(ParameterError, match="unknown parameter 'drop_everything'"):
        admin.notebook_parameters(namespace)
    namespace.update(In=["", "# Parameters\npr_id = '12'\n"], pr_id="12")
    del namespace["drop_everything"]
    with pytest.raises(ParameterError, match="parameter pr_id='12' \\(str\\) is not a whole number or None"):
        admin.notebook_parameters(namespace)


def test_admin_notebook_has_the_pipeline_parameters_cell_plus_the_admin_ones() -> None:
    admin_nb = nbformat.read(ROOT / "notebooks" / "admin.ipynb", as_version=4)
    items_nb = nbformat.read(ROOT / "notebooks" / "items.ipynb", as_version=4)

    def parameters_cells(nb) -> list[str]:
        return [c.source for c in nb.cells if "parameters" in c.metadata.get("tags", [])]

    [admin_cell], [items_cell] = parameters_cells(admin_nb), parameters_cells(items_nb)
    namespace: dict[str, Any] = {}
    exec(admin_cell, namespace)  # noqa: S102 - our own notebook's literal assignments
    declared = {k: v for k, v in namespace.items() if k != "__builtins__"}
    # The admin parameters and the pipeline ones admin uses (a notebook declares what it uses).
    assert set(admin.DECLARED) >= set(declared) >= {"environment", *params.ADMIN_PARAMETERS}
    assert declared == {name: admin.DECLARED[name].default for name in declared}
    assert all(not c.get("outputs") and c.get("execution_count") is None
               for c in admin_nb.cells if c.cell_type == "code")


def test_actions_that_reach_the_warehouse_are_rows_in_the_acting_environments_history(
        warehouse: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from hnpipe import history

    monkeypatch.setenv("HNPIPE_ENV", "production")
    admin.run({"environment": "production", "action": "clone", "pr_id": 5})
    admin.run({"environment": "production", "action": "list"})  # reads only: no row
    with pytest.raises(ParameterError):
        admin.run({"environment": "production", "action": "drop", "pr_id": 0})  # refused before connecting
    monkeypatch.setenv("HNPIPE_ENV", "branch")
    monkeypatch.setenv("HNPIPE_PR_ID", "5")
    admin.run({"environment": "branch", "action": "clone", "pr_id": 5})  # recorded in the clone itself
    wh = DuckDBWarehouse(warehouse)
    production = history.read(wh, Target("PRODUCTION", SCHEMA))
    assert production.ACTION.tolist() == ["admin clone"]
    assert production.STATUS.tolist() == ["succeeded"] and "PRODUCTION_CLONE_5" in production.DETAIL[0]
    branch = history.read(wh, Target("PRODUCTION_CLONE_5", SCHEMA))
    assert branch.ACTION.tolist()[0] == "admin clone" and branch.ENVIRONMENT.tolist()[0] == "branch"


def test_handover_prints_the_lockdown_and_applies_only_from_production(capsys, monkeypatch) -> None:
    assert cli.main(["admin", "handover", "--owner-role", "IT_ADMIN", "--reader-role", "READER",
                     "--analyst-role", "ANALYST"]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[0] == ('GRANT OWNERSHIP ON SCHEMA "PRODUCTION"."HACKER_NEWS" TO ROLE "IT_ADMIN" '
                          "COPY CURRENT GRANTS;")
    assert sum(line.startswith("REVOKE") and '"ANALYST"' in line for line in printed) == 3
    statements = [line for line in printed if not line.startswith("-- ")]
    assert statements[-1] == 'GRANT SELECT ON FUTURE TABLES IN SCHEMA "PRODUCTION"."HACKER_NEWS" TO ROLE "READER";'
    # The follow-up, as SQL comments: production keeps publishing as its own role (issue 9).
    follow_up = [line for line in printed if line.startswith("-- ")]
    assert follow_up[0].startswith("-- Follow-up: production keeps publishing as the pipeline role HNPIPE_PROD")
    assert printed[-1] == "-- Check it: HNPIPE_ENV=production hnpipe doctor --env production"
    assert cli.main(["admin", "handover", "--owner-role", "IT; DROP", "--reader-role", "READER"]) == 1
    assert "refused IT role 'IT; DROP'" in capsys.readouterr().err
    monkeypatch.setattr(admin, "_connect", connection_forbidden)
    monkeypatch.setenv("HNPIPE_ENV", "staging")
    assert cli.main(["admin", "handover", "--owner-role", "IT", "--reader-role", "R", "--apply"]) == 1
    assert "refused admin handover --apply: only HNPIPE_ENV=production" in capsys.readouterr().err


def test_clone_of_a_damaged_production_is_refused_in_one_line_and_leaves_nothing(clean_env: Path) -> None:
    """Issue 18 row 3: `admin clone` reads every table of PRODUCTION whole before the copy is
    moved into place; a damaged block is the one-line "damaged" message, as for a publish."""
    from hnpipe.sample import generate_sample  # only here: enough rows to fill whole blocks

    wh = DuckDBWarehouse(clean_env)
    big = items_frame([item for item in generate_sample(3000, seed=4).values() if item is not None])
    wh.publish_frame(Target("PRODUCTION", SCHEMA), "ITEMS", big, "SETUP")
    database = wh.path("PRODUCTION")
    scribble_over(database, f"{SCHEMA}.ITEMS")
    before = fingerprint(clean_env)
    with pytest.raises(WarehouseError) as refused:
        act(clean_env, "production", "clone", pr_id=5)
    assert re.match(rf"{re.escape(str(database))} is damaged \(PRODUCTION.{SCHEMA}.ITEMS cannot be read whole",
                    str(refused.value)), str(refused.value)
    assert "\n" not in str(refused.value)
    assert fingerprint(clean_env) == before  # no clone, no .tmp, no .wal


def test_a_branch_run_never_recreates_its_dropped_clone(warehouse: Path, monkeypatch) -> None:
    """Issue 18 row 4: `admin drop --pr 5` while the branch run for 5 fetches. Its publish used to
    create a new PRODUCTION_CLONE_5 file holding ITEMS only; now it is refused, naming the drop."""
    from hnpipe.run_context import RunContext
    from hnpipe.warehouse import connect  # the warehouse a branch run's notebook gets

    act(warehouse, "production", "clone", pr_id=5)
    for name, value in environ(warehouse, "branch", "5").items():
        monkeypatch.setenv(name, value)
    branch = connect(RunContext.for_command("branch", params.params_for("branch")), "items.ipynb")
    target = Target("PRODUCTION_CLONE_5", SCHEMA)
    assert branch.list_tables(target)  # the run started against its clone
    act(warehouse, "production", "drop", pr_id=5)  # ... and it is dropped while the run fetches
    with pytest.raises(WarehouseError, match=r"^refused write to PRODUCTION_CLONE_5.HACKER_NEWS: "
                                             r"PRODUCTION_CLONE_5 does not exist \(dropped during the run\?\)"):
        branch.publish_frame(target, "ITEMS", items_frame(RAW_ITEMS), "20261121T000000_000005")
    with pytest.raises(WarehouseError, match="PRODUCTION_CLONE_5 does not exist"):
        branch.ensure_schema(target)
    assert sorted(fingerprint(warehouse)) == ["LOCAL.duckdb", "PRODUCTION.duckdb", "STAGING.duckdb"]
    # Whoever builds the engine by hand gets the same: only clone_database makes a clone.
    with pytest.raises(WarehouseError, match="PRODUCTION_CLONE_5 does not exist"):
        DuckDBWarehouse(warehouse).publish_frame(target, "ITEMS", items_frame(RAW_ITEMS), "20261121T000000_000006")
    assert "PRODUCTION_CLONE_5.duckdb" not in fingerprint(warehouse)


def test_a_clone_removes_the_temporary_copy_a_killed_clone_left(warehouse: Path) -> None:
    """Issue 18 row 5: a SIGKILLed `admin clone` leaves `.PRODUCTION_CLONE_<N>.duckdb.<pid>.tmp`
    (nothing runs then); the next clone removes it, and leaves a living process's alone."""
    dead = warehouse / ".PRODUCTION_CLONE_7.duckdb.999999999.tmp"
    dead.write_bytes(b"half a copy")
    (warehouse / ".PRODUCTION_CLONE_7.duckdb.999999999.tmp.wal").write_bytes(b"log")
    living = warehouse / f".PRODUCTION_CLONE_8.duckdb.{os.getppid()}.tmp"  # a clone under way
    living.write_bytes(b"being copied")
    act(warehouse, "production", "clone", pr_id=5)
    assert not dead.exists() and not dead.with_name(dead.name + ".wal").exists()
    assert living.exists()
    living.unlink()
    assert sorted(fingerprint(warehouse)) == ["LOCAL.duckdb", "PRODUCTION.duckdb", "PRODUCTION_CLONE_5.duckdb",
                                              "STAGING.duckdb"]


@pytest.mark.slow  # an hnpipe process
def test_sigterm_unwinds_a_command_so_its_cleanup_runs(clean_env: Path) -> None:
    """SIGTERM used to end every command at once, skipping its cleanup (a clone's .tmp file);
    now it unwinds like Ctrl-C: finally blocks run, one line, exit 143."""
    script = ("import os, signal, sys\n"
              "from hnpipe import cli\n"
              "from hnpipe.ops import admin\n"
              "def run(values, *, environ=None):\n"
              "    try:\n"
              "        os.kill(os.getpid(), signal.SIGTERM)\n"
              "        import time; time.sleep(5)\n"
              "    finally:\n"
              "        print('cleaned up', flush=True)\n"
              "admin.run = run\n"
              "sys.exit(cli.main(['admin', 'list']))\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
                          env={**os.environ, **environ(clean_env, "production")})
    assert done.returncode == 143 and done.stdout == "cleaned up\n", (done.stdout, done.stderr)
    assert done.stderr == "hnpipe: terminated by SIGTERM\n"
