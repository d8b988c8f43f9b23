"""`hnpipe run --env ENV --dry-run`: a checklist of everything a run needs; nothing fetched or written."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest
from hnpipe import cli, runner
from hnpipe.environments import Target
from hnpipe.items import items_frame
from hnpipe.warehouse.duckdb_engine import DuckDBWarehouse

pytestmark = pytest.mark.filterwarnings("ignore:Arrow output on a DB-API result:UserWarning")

ROOT = Path(__file__).resolve().parents[1]
# As in CI: workload identity with the job's OIDC token (GitLab hands it over as SNOWFLAKE_TOKEN).
PROD_SECRETS = {"SNOWFLAKE_ACCOUNT": "acct-dry", "SNOWFLAKE_WAREHOUSE": "WH", "SNOWFLAKE_PROD_USER": "svc-dry",
                "SNOWFLAKE_AUTHENTICATOR": "WORKLOAD_IDENTITY", "SNOWFLAKE_TOKEN": "dry-run-canary-token-8d1f",
                "SNOWFLAKE_PROD_ROLE": "DRY_CANARY_ROLE_4C"}


def checklist(capsys) -> tuple[dict[str, list[str]], str]:
    """{check name: [marks]} from the printed checklist, and stderr."""
    captured = capsys.readouterr()
    marks: dict[str, list[str]] = {}
    for line in captured.out.splitlines()[1:]:
        mark, name = line[1:5].strip(), line[7:].split()[0]
        marks.setdefault(name, []).append(mark)
    return marks, captured.err


def fingerprint(directory: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(directory.rglob("*")) if p.is_file()}


def test_a_dry_run_under_a_bad_hnpipe_env_is_refused_in_one_line(clean_env, monkeypatch, capsys) -> None:
    monkeypatch.setenv("HNPIPE_ENV", "prod")
    assert cli.main(["run", "--env", "local", "--dry-run"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == ("hnpipe: error: unknown HNPIPE_ENV 'prod': choose one of local, staging, production, "
                            "branch\n")


def test_local_dry_run_passes_and_creates_nothing(clean_env, tmp_path, capsys) -> None:
    assert cli.main(["run", "--env", "local", "--dry-run"]) == 0
    marks, err = checklist(capsys)
    assert marks == {"parameters": ["ok"], "environment": ["ok"], "engine": ["ok"], "credentials": ["ok"],
                     "warehouse": ["ok"], "notebook": ["ok"] * 3, "outputs": ["ok"], "alerts": ["skip"]}
    assert err == ""
    assert not clean_env.exists() and not (tmp_path / "runs").exists()


def test_production_from_a_laptop_fails_the_guard_and_lists_the_rest(clean_env, capsys, monkeypatch) -> None:
    monkeypatch.setenv("HNPIPE_WAREHOUSE", "snowflake")
    assert cli.main(["run", "--env", "production", "--dry-run"]) == 1
    marks, err = checklist(capsys)
    assert marks["environment"] == ["FAIL"] and marks["credentials"] == ["FAIL"]
    assert marks["warehouse"] == ["skip"] and marks["notebook"] == ["ok"] * 3
    assert err == ("hnpipe: error: dry run of production: 2 of 10 checks failed (environment, credentials); "
                   "see the checklist above\n")


def test_missing_credentials_are_named_never_shown(clean_env, capsys, monkeypatch) -> None:
    monkeypatch.setenv("HNPIPE_ENV", "production")
    monkeypatch.setenv("HNPIPE_WAREHOUSE", "snowflake")
    for name, value in PROD_SECRETS.items():
        if name != "SNOWFLAKE_PROD_ROLE":
            monkeypatch.setenv(name, value)
    assert cli.main(["run", "--env", "production", "--dry-run"]) == 1
    captured = capsys.readouterr()
    assert "[FAIL] credentials  missing Snowflake credential: set SNOWFLAKE_PROD_ROLE " in captured.out
    assert not [value for value in PROD_SECRETS.values() if value in captured.out + captured.err]


@pytest.mark.parametrize("databases,expected", [
    (["PRODUCTION"], "[ok  ] warehouse    Snowflake reachable; PRODUCTION exists"),
    (["STAGING"], "[FAIL] warehouse    Snowflake reachable, but database PRODUCTION does not exist"),
])
def test_production_on_snowflake_connects_and_finds_its_database(clean_env, fake_snowflake, capsys, monkeypatch,
                                                                 databases, expected) -> None:
    monkeypatch.setenv("HNPIPE_ENV", "production")
    monkeypatch.setenv("HNPIPE_WAREHOUSE", "snowflake")
    monkeypatch.setenv("HNPIPE_SLACK_WEBHOOK_URL", "http://127.0.0.1:9/dry-run-webhook-canary")
    for name, value in PROD_SECRETS.items():
        monkeypatch.setenv(name, value)
    fake_snowflake.create_databases(*databases)
    code = cli.main(["run", "--env", "production", "--dry-run"])
    names, schemas = fake_snowflake.databases(), fake_snowflake.schemas(databases[0])
    captured = capsys.readouterr()
    assert expected in captured.out
    assert code == (0 if databases == ["PRODUCTION"] else 1)
    assert ("[ok  ] credentials  set (values not shown): SNOWFLAKE_ACCOUNT, SNOWFLAKE_PROD_USER, SNOWFLAKE_PROD_ROLE, "
            "SNOWFLAKE_WAREHOUSE, SNOWFLAKE_AUTHENTICATOR, SNOWFLAKE_TOKEN; logs in with workload identity") in captured.out
    assert "[ok  ] alerts       failures alert Slack" in captured.out
    assert not [v for v in [*PROD_SECRETS.values(), "dry-run-webhook-canary"] if v in captured.out + captured.err]
    assert names == databases and "HACKER_NEWS" not in schemas  # nothing was created


def test_branch_without_its_clone_says_to_clone_first(clean_env, capsys, monkeypatch) -> None:
    monkeypatch.setenv("HNPIPE_ENV", "branch")
    monkeypatch.setenv("HNPIPE_PR_ID", "7")
    monkeypatch.setenv("HNPIPE_WAREHOUSE", f"duckdb:{clean_env}")
    DuckDBWarehouse(clean_env).publish_frame(Target("STAGING", "HACKER_NEWS"),
                                             "ITEMS", items_frame([{"id": 1, "type": "story"}]), "run1")
    before = fingerprint(clean_env)
    assert cli.main(["run", "--env", "branch", "--dry-run"]) == 1
    out = capsys.readouterr().out
    assert ("[FAIL] warehouse    " + str(clean_env) + " reachable, but PRODUCTION_CLONE_7 does not exist: run "
            "`hnpipe admin clone --pr 7` first") in out
    assert fingerprint(clean_env) == before


def test_a_notebook_declaring_an_unknown_parameter_fails_its_check(tmp_path) -> None:
    """A notebook declares the parameters it uses (a subset, environment always), none unknown."""
    root = tmp_path / "project"
    for part in ("params", "notebooks"):
        shutil.copytree(ROOT / part, root / part)
    (root / "pyproject.toml").write_text("")
    notebook = root / "notebooks" / "comments.ipynb"
    notebook.write_text(notebook.read_text().replace('"keep_versions = 5', '"keep_version = 5', 1))
    checks = runner.dry_run("local", {}, root=root)
    failed = [(check.name, check.detail) for check in checks if check.ok is False]
    assert failed == [("notebook", "comments.ipynb: its parameters cell declares unknown keep_version")]
