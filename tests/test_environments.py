"""Environment resolution and guards, in-process (the papermill matrix is in test_guards.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hnpipe import environments as envs
from hnpipe.environments import Target
from hnpipe.errors import GuardError
from hnpipe.run_context import RunContext
from hnpipe.warehouse import WarehouseSpec, spec_for

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
    with pytest.raises(GuardError, match="1 to 10 digits"):
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


@pytest.mark.parametrize("env", envs.ENVIRONMENTS)
@pytest.mark.parametrize("database", ["LOCAL", "STAGING", "PRODUCTION", "PRODUCTION_CLONE_42",
                                      "PRODUCTION_CLONE_43", "OTHER"])
def test_a_runs_write_guard_allows_only_the_target_it_resolved(env: str, database: str) -> None:
    """RunContext.check_write, the guard of every write a run makes, follows check_write's rule
    against the target resolved once."""
    run = RunContext(env, {"environment": env}, envs.target_for(env, BASE), "20261207T000000_abcdef")
    actual = Target(database, "JANE" if database == "LOCAL" else "HACKER_NEWS")
    if actual == run.target:
        run.check_write(actual)
    else:
        with pytest.raises(GuardError, match=f"refused write to {database}.*environment '{env}' may write only to {run.target}"):
            run.check_write(actual)


def test_a_runs_write_guard_does_not_move_when_the_process_environment_changes(monkeypatch) -> None:
    run = RunContext("branch", {"environment": "branch"}, envs.target_for("branch", BASE), "20261207T000000_abcdef")
    monkeypatch.setenv("HNPIPE_PR_ID", "43")  # resolved as PR 42 (BASE): the run stays there
    run.check_write(Target("PRODUCTION_CLONE_42", "HACKER_NEWS"))
    with pytest.raises(GuardError):
        run.check_write(Target("PRODUCTION_CLONE_43", "HACKER_NEWS"))


def test_check_write_refuses_another_schema_in_the_right_database() -> None:
    with pytest.raises(GuardError):
        envs.check_write("local", Target("LOCAL", "BOB"), BASE)
    with pytest.raises(GuardError):
        envs.check_write("production", Target("PRODUCTION", "PUBLIC"), BASE)


def test_warehouse_spec(tmp_path) -> None:
    assert spec_for("production", {}) == WarehouseSpec("snowflake")
    assert spec_for("local", {"HNPIPE_WAREHOUSE": "snowflake"}) == WarehouseSpec("snowflake")
    assert spec_for("production", {"HNPIPE_WAREHOUSE": f"duckdb:{tmp_path}"}) == WarehouseSpec("duckdb", str(tmp_path))
    assert str(spec_for("production", {"HNPIPE_WAREHOUSE": f"duckdb:{tmp_path}"})) == f"duckdb:{tmp_path}"
    local = spec_for("local", {})
    assert local.engine == "duckdb" and local.location.endswith("/.warehouse") and local.directory == Path(local.location)
    assert spec_for("local", {"HNPIPE_WAREHOUSE": "snowflake"}).directory is None
    with pytest.raises(GuardError, match="unknown HNPIPE_WAREHOUSE 'postgres': use 'duckdb', 'duckdb:<directory>' or 'snowflake'"):
        spec_for("local", {"HNPIPE_WAREHOUSE": "postgres"})
    with pytest.raises(GuardError, match="unknown HNPIPE_WAREHOUSE 'snowflake:/tmp'"):
        spec_for("local", {"HNPIPE_WAREHOUSE": "snowflake:/tmp"})


# -- .env never chooses the environment -----------------------------------------------------
@pytest.fixture
def dotenv_project(tmp_path, monkeypatch: pytest.MonkeyPatch):
    """A project root of our own whose .env the test writes; HNPIPE_ENV and the PR id unset."""
    import os

    (tmp_path / "project" / "params").mkdir(parents=True)
    (tmp_path / "project" / "pyproject.toml").write_text("")
    root = Path(__file__).resolve().parents[1]
    for name in ("local.yaml", "production.yaml"):
        (tmp_path / "project" / "params" / name).write_bytes((root / "params" / name).read_bytes())
    monkeypatch.setenv("HNPIPE_ROOT", str(tmp_path / "project"))
    monkeypatch.setenv("HNPIPE_WAREHOUSE", f"duckdb:{tmp_path / 'warehouse'}")
    monkeypatch.setenv("HNPIPE_RUNS_DIR", str(tmp_path / "runs"))
    for key in ("HNPIPE_ENV", "HNPIPE_PR_ID", "CI_MERGE_REQUEST_IID", "GITHUB_REF"):
        monkeypatch.delenv(key, raising=False)
    saved = dict(os.environ)
    yield tmp_path
    os.environ.clear()  # .env loads into the process: undo it for the next test
    os.environ.update(saved)


@pytest.mark.parametrize("line", ["HNPIPE_ENV=production", "HNPIPE_PR_ID=7", "export HNPIPE_ENV=production",
                                  "GITHUB_REF=refs/pull/7/merge", "CI_MERGE_REQUEST_IID=7"])
@pytest.mark.parametrize("argv", [["run", "--env", "production"], ["run", "--env", "local"], ["history"],
                                  ["versions", "ITEMS"], ["docs"], ["admin", "list"]])
def test_a_dotenv_that_sets_where_runs_write_is_refused_by_every_command(dotenv_project, capsys, line: str,
                                                                         argv: list[str]) -> None:
    from hnpipe import cli

    dotenv = dotenv_project / "project" / ".env"
    dotenv.write_text(f"SNOWFLAKE_USER=jane\n{line}\n")
    assert cli.main(argv) == 1
    err = capsys.readouterr().err
    variable = line.removeprefix("export ").partition("=")[0]
    assert err.startswith(f"hnpipe: error: refused {dotenv}: it sets {variable}") and err.count("\n") == 1, err
    assert not (dotenv_project / "warehouse").exists() and not (dotenv_project / "runs").exists()


def test_every_command_sees_what_dotenv_provides_the_same_way(dotenv_project, monkeypatch, capsys) -> None:
    """`history` (and versions, docs) used to resolve the target before loading .env."""
    from hnpipe import cli

    monkeypatch.delenv("HNPIPE_DEV_SCHEMA", raising=False)
    (dotenv_project / "project" / ".env").write_text("HNPIPE_DEV_SCHEMA=JANE\n")
    assert cli.main(["history"]) == 0
    assert "run history of local (LOCAL.JANE.PIPELINE_RUNS)" in capsys.readouterr().out


def test_a_refusal_in_jupyterlab_speaks_of_the_parameters_cell_elsewhere_of_the_params_file() -> None:
    from hnpipe.errors import GuardError

    with pytest.raises(GuardError) as lab:
        envs.resolve("production", {"JPY_SESSION_NAME": "/p/notebooks/items.ipynb"})
    assert str(lab.value).endswith('set environment = "local" in the parameters cell and run it again, '
                                   "or run where HNPIPE_ENV=production is set")
    assert "params/" not in str(lab.value)
    for environ in ({}, {"JPY_SESSION_NAME": "x.ipynb", "HNPIPE_NOTEBOOK_OUTPUT": "/runs/x.ipynb"}):
        with pytest.raises(GuardError, match=r"use params/local\.yaml here"):
            envs.resolve("production", environ)
