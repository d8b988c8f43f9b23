"""The CI workflows: valid against their published schemas, calling only hnpipe commands that
exist, taking secrets only from the CI's secret store, wired to the right events.

The workflows are not run here (they run on the user's GitHub/GitLab); tests/test_pr_rehearsal.py
plays the branch workflow's hnpipe steps on the embedded engine.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest
from hnpipe import cli, credentials, params

from workflow_files import (
    ROOT,
    GITHUB,
    GITHUB_FILES,
    GITLAB,
    load,
    github,
    triggers,
    gitlab_jobs,
    gitlab_document,
    gitlab_files,
    github_scripts,
    gitlab_scripts,
    hnpipe_commands,
    all_hnpipe_commands,
    step_commands,
)


def test_hnpipe_commands_are_found_in_shell() -> None:
    script = ('hnpipe admin clone --pr "$PR"\n'
              'if [ -n "$x" ]; then hnpipe run --env branch; fi\n'
              'hnpipe changes --base "${{ github.sha }}" --json > "$RUNNER_TEMP/c.json"\n'
              "{ echo hi; hnpipe diff --markdown | tee d.md; } >> \"$GITHUB_STEP_SUMMARY\"\n"
              "x=$(python - <<'PY'\nhnpipe nope\nPY\n)\n"
              'hnpipe admin prune --apply "$@"\n'
              "echo hnpipe is not a command here # hnpipe run\n")
    assert hnpipe_commands(script, {"PR": "7", "github.sha": "abc"}) == [
        ["admin", "clone", "--pr", "7"], ["run", "--env", "branch"], ["changes", "--base", "abc", "--json"],
        ["diff", "--markdown"], ["admin", "prune", "--apply"],
    ]


# -- schemas -----------------------------------------------------------------------------
def check_jsonschema(schema: str, *files: Path) -> subprocess.CompletedProcess:
    # The vendored schemas ship inside check-jsonschema: no network needed.
    return subprocess.run([sys.executable, "-m", "check_jsonschema", "--builtin-schema", schema, *map(str, files)],
                          capture_output=True, text=True, timeout=120)


@pytest.mark.slow
def test_workflows_are_valid_against_their_published_schemas(tmp_path: Path) -> None:
    result = check_jsonschema("vendor.github-workflows", *(GITHUB / name for name in GITHUB_FILES))
    assert result.returncode == 0, result.stdout + result.stderr
    result = check_jsonschema("vendor.gitlab-ci", *gitlab_files(), ROOT / ".gitlab" / "python.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    # ... and the schemas do catch mistakes.
    broken = tmp_path / "broken.yml"
    broken.write_text("on: push\njobs:\n  test:\n    runs-on: ubuntu-latest\n    stepz: []\n")
    assert check_jsonschema("vendor.github-workflows", broken).returncode == 1
    broken.write_text("test:\n  script: pytest\n  when: sometimes\n")
    assert check_jsonschema("vendor.gitlab-ci", broken).returncode == 1


@pytest.mark.slow
def test_every_shell_script_parses() -> None:
    scripts = [script for name in GITHUB_FILES for _, script in github_scripts(github(name))]
    scripts += [script for _, script in gitlab_scripts()]
    assert len(scripts) > 10
    for script in scripts:
        result = subprocess.run(["bash", "-n"], input=script, capture_output=True, text=True, timeout=30)
        assert result.returncode == 0, (script, result.stderr)


# -- the commands ------------------------------------------------------------------------
def test_every_hnpipe_command_the_workflows_call_exists() -> None:
    commands = all_hnpipe_commands()
    parser = cli.build_parser()
    for where, command in commands:
        try:
            parser.parse_args(command)
        except SystemExit:
            pytest.fail(f"{where}: `hnpipe {shlex.join(command)}` is not a valid hnpipe command")
    called = {tuple(command[:2]) if command[0] in ("admin", "backfill") else (command[0],) for _, command in commands}
    assert called == {("admin", "clone"), ("admin", "drop"), ("admin", "prune"), ("run",), ("changes",), ("diff",),
                      ("freshness",), ("comment",),
                      ("backfill", "plan"), ("backfill", "run"), ("backfill", "status"), ("backfill", "merge")}


def test_secrets_are_never_parameters() -> None:
    for where, command in all_hnpipe_commands():
        for flag, value in zip(command, command[1:]):
            if flag in ("-p", "--param"):
                key = value.partition("=")[0]
                assert not credentials.looks_like_secret_key(key), (where, command)
                assert key in params.PARAMETERS, (where, command)
        raw = " ".join(command)
        assert "SNOWFLAKE" not in raw and "secrets." not in raw, (where, command)
    # ... nor written into a script, where they would land in logs.
    for name in GITHUB_FILES:
        for job, script in github_scripts(github(name)):
            assert "secrets." not in script and not re.search(r"\$\{?SNOWFLAKE_", script), (name, job)


def strings(node: Any) -> Iterator[str]:
    """Every string in a parsed YAML document (keys and values; comments are gone)."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield from strings(key)
            yield from strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from strings(value)
    elif isinstance(node, str):
        yield node


def github_env_blocks(workflow: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    yield "workflow", workflow.get("env", {})
    for job_name, job in workflow["jobs"].items():
        yield job_name, job.get("env", {})
        for step in job.get("steps", []):
            yield f"{job_name}/{step.get('name', step.get('uses'))}", step.get("env", {})


@pytest.mark.parametrize("name", GITHUB_FILES)
def test_github_secrets_come_only_from_the_secret_store(name: str) -> None:
    workflow = github(name)
    uses = [text for text in strings(workflow) if "secrets." in text]
    from_store = 0
    for where, env in github_env_blocks(workflow):
        for variable, value in env.items():
            if variable == "SNOWFLAKE_AUTHENTICATOR":  # a mode, not a secret: workload identity
                assert value == "WORKLOAD_IDENTITY", (where, variable)
                continue
            secret = credentials.secret_variable(variable) or variable.startswith("SNOWFLAKE_") or variable.endswith("_TOKEN")
            if variable.endswith("_ROLE") and re.fullmatch(r"HNPIPE_[A-Z]+", str(value)):
                continue  # a role named outright (the prune's HNPIPE_BRANCH): a name, not a secret
            if (where, variable) == ("prune-clones", "SNOWFLAKE_BRANCH_USER"):
                # Issue 19: the prune logs in as the production user (one user per OIDC subject).
                assert value == "${{ secrets.SNOWFLAKE_PROD_USER }}"
                from_store += 1
            elif secret:
                # The variable's value is exactly the secret of the same name (GITHUB_TOKEN for gh).
                assert value in (f"${{{{ secrets.{variable} }}}}", "${{ secrets.GITHUB_TOKEN }}"), (where, variable)
                from_store += 1
            else:
                assert "secrets." not in str(value), (where, variable)
    assert from_store == len(uses)  # every secret use is such an env variable
    # `with:` inputs never carry secrets either.
    for job in workflow["jobs"].values():
        for step in job.get("steps", []):
            assert "secrets." not in str(step.get("with", {}))


def required_snowflake_variables(env: str) -> set[str]:
    """The variables hnpipe reads for `env`'s Snowflake credentials in CI (params/<env>.yaml's
    names), logging in with workload identity: no password, no key file."""
    names = {**credentials.SNOWFLAKE_SETTINGS, **credentials.OPTIONAL_SETTINGS,
             **params.load_params_file(ROOT / "params" / f"{env}.yaml").get("snowflake_env", {})}
    return {names[setting] for setting in ("account", "user", "role", "warehouse", "authenticator")}


@pytest.mark.parametrize("name, env", [("branch-deployment.yml", "branch"), ("production.yml", "production")])
def test_github_workflows_provide_the_credentials_their_params_file_names(name: str, env: str) -> None:
    workflow = github(name)
    assert workflow["env"]["HNPIPE_ENV"] == env
    provided = {variable for variable in workflow["env"] if variable.startswith("SNOWFLAKE_")}
    assert provided == required_snowflake_variables(env)


def test_the_prune_logs_in_as_production_with_the_branch_role_that_owns_the_clones() -> None:
    """Issue 19: the prune presents production's OIDC subject (environment: production), so it
    logs in as the production user, which holds the branch role too (snowflake/setup.sql); a
    second user trusting the same subject is what Snowflake's docs do not allow for."""
    workflow = github("production.yml")
    prune = workflow["jobs"]["prune-clones"]
    provided = {variable for variable in prune["env"] if variable.startswith("SNOWFLAKE_")}
    assert provided == required_snowflake_variables("branch") - set(workflow["env"])
    assert prune["env"]["SNOWFLAKE_BRANCH_USER"] == workflow["env"]["SNOWFLAKE_PROD_USER"]
    assert prune["env"]["SNOWFLAKE_BRANCH_ROLE"] == "HNPIPE_BRANCH"
    assert prune["environment"] == workflow["jobs"]["run"]["environment"] == "production"
    assert prune["permissions"]["id-token"] == "write"


@pytest.mark.parametrize("name", ["branch-deployment.yml", "production.yml"])
def test_github_workflows_log_in_with_workload_identity_and_hold_no_password(name: str) -> None:
    """Issue 9: no password (or key) secret in any workflow; the job's OIDC token instead."""
    workflow = github(name)
    text = (GITHUB / name).read_text(encoding="utf-8")
    assert not re.search(r"PASSWORD|PRIVATE_KEY|\bPWD\b", text), name
    assert workflow["env"]["SNOWFLAKE_AUTHENTICATOR"] == "WORKLOAD_IDENTITY"
    assert workflow["permissions"]["id-token"] == "write"  # GitHub mints the token only with it
    for job in workflow["jobs"].values():  # a job's own permissions replace the workflow's
        assert job.get("permissions", {"id-token": "write"})["id-token"] == "write"


def test_gitlab_logs_in_with_id_tokens_on_main_and_a_key_pair_for_merge_requests() -> None:
    """Issue 19: a merge request job's ID token names its source branch, which no single
    Snowflake SUBJECT matches, so those jobs use the branch user's key pair (a File-type CI/CD
    variable, never a value here); the scheduled jobs on main use workload identity."""
    for path in gitlab_files():
        text = path.read_text(encoding="utf-8")
        assert not re.search(r"PASSWORD|\bPWD\b", text), path
        code = "\n".join(line.split("#", 1)[0] for line in text.splitlines())
        assert "PRIVATE_KEY" not in code, path  # named in comments only: its value is a CI/CD variable
    jobs = gitlab_jobs()
    for name in ("production-run", "prune-clones"):
        assert jobs[name]["id_tokens"] == {"SNOWFLAKE_TOKEN": {"aud": credentials.OIDC_AUDIENCE}}, name
        assert jobs[name]["variables"]["SNOWFLAKE_AUTHENTICATOR"] == "WORKLOAD_IDENTITY", name
    for name in ("branch-clone", "branch-deploy", "branch-stop"):
        assert "id_tokens" not in jobs[name] and "SNOWFLAKE_AUTHENTICATOR" not in jobs[name]["variables"], name
    branch_key = params.load_params_file(ROOT / "params" / "branch.yaml")["snowflake_env"]["private_key_file"]
    assert branch_key in GITLAB.read_text(encoding="utf-8").split("\nworkflow:")[0]  # the header says to set it


def test_gitlab_secrets_come_only_from_ci_variables() -> None:
    blocks = []
    for path in [*gitlab_files(), ROOT / ".gitlab" / "python.yml"]:
        document = load(path)
        blocks += [("global", document.get("variables", {}))]
        blocks += [(name, body.get("variables", {})) for name, body in document.items() if isinstance(body, dict)]
    for where, variables in blocks:
        for variable, value in variables.items():
            if variable == "SNOWFLAKE_AUTHENTICATOR":  # a mode, not a secret
                assert value == "WORKLOAD_IDENTITY"
                continue
            if variable.endswith("_ROLE") and re.fullmatch(r"HNPIPE_[A-Z]+", str(value)):
                continue  # a role named outright (the prune's HNPIPE_BRANCH)
            if (where, variable) == ("prune-clones", "SNOWFLAKE_BRANCH_USER"):
                assert value == "$SNOWFLAKE_PROD_USER"  # issue 19: production's login, by reference
                continue
            assert not (credentials.secret_variable(variable) or variable.startswith("SNOWFLAKE_")
                        or variable.endswith("_TOKEN")), (where, variable)
    # The comment at the top tells the user which CI/CD variables to set: all that hnpipe reads.
    header = GITLAB.read_text(encoding="utf-8").split("\nworkflow:")[0]
    for env in ("branch", "production"):
        assert required_snowflake_variables(env) <= set(re.findall(r"SNOWFLAKE_\w+", header)), env


# -- events and wiring -------------------------------------------------------------------
def test_branch_workflow_deploys_on_open_and_push_and_drops_on_close() -> None:
    workflow = github("branch-deployment.yml")
    on = triggers(workflow)
    assert list(on) == ["pull_request"]  # never pull_request_target: no secrets for untrusted code
    assert sorted(on["pull_request"]["types"]) == sorted(["opened", "synchronize", "reopened", "closed"])
    assert workflow["env"]["HNPIPE_PR_ID"] == "${{ github.event.pull_request.number }}"
    assert "github.event.pull_request.number" in workflow["concurrency"]["group"]
    clone, deploy, teardown = (workflow["jobs"][name] for name in ("clone", "deploy", "teardown"))
    assert clone["if"] == deploy["if"] == "github.event.action != 'closed'"
    assert teardown["if"] == "github.event.action == 'closed'" and deploy["needs"] == "clone"
    pr = {"HNPIPE_PR_ID": "7", "github.event.pull_request.number": "7", "BASE_SHA": "base"}
    assert step_commands(clone, pr) == [["admin", "clone", "--pr", "7"]]
    assert [c[:2] for c in step_commands(deploy, pr)] == [
        ["changes", "--base"], ["run", "--env"], ["changes", "--base"], ["diff", "--base"], ["comment", "--report"]]
    commands = step_commands(deploy, pr)
    assert commands[1] == ["run", "--env", "branch"]
    assert commands[3] == ["diff", "--base", "PRODUCTION", "--head", "PRODUCTION_CLONE_7", "--markdown"]
    assert step_commands(teardown, pr) == [["admin", "drop", "--pr", "7"]]
    # The run is skipped when no dataset changed; the report lands in the job summary and, with
    # the run's records linked, in the pull request's one comment.
    run_step = next(s for s in deploy["steps"] if "hnpipe run" in s.get("run", ""))
    assert run_step["if"] == "steps.changes.outputs.count != '0'"
    report = next(s for s in deploy["steps"] if "hnpipe diff" in s.get("run", ""))
    assert report["run"].rstrip().endswith('cat "$RUNNER_TEMP/report.md" >> "$GITHUB_STEP_SUMMARY"')
    comment = next(s for s in deploy["steps"] if "hnpipe comment" in s.get("run", ""))
    assert comment["env"]["RECORDS_URL"] == "${{ steps.records.outputs.artifact-url }}"
    assert deploy["permissions"]["pull-requests"] == "write"


def test_production_workflow_runs_on_schedule_and_prunes_keeping_open_prs() -> None:
    workflow = github("production.yml")
    on = triggers(workflow)
    assert set(on) == {"schedule", "workflow_dispatch"} and on["schedule"][0]["cron"]
    assert workflow["concurrency"] == {"group": "production", "cancel-in-progress": False}
    # Never beside a branch clone: they share one concurrency group (issue 9), where jobs queue
    # (issue 19: with one pending job, a second clone would cancel a waiting production run).
    shared = {"group": "production-data", "cancel-in-progress": False, "queue": "max"}
    assert workflow["jobs"]["run"]["concurrency"] == shared
    assert github("branch-deployment.yml")["jobs"]["clone"]["concurrency"] == shared
    assert step_commands(workflow["jobs"]["run"]) == [["run", "--env", "production", "--dry-run"],
                                                      ["run", "--env", "production"]]
    prune = workflow["jobs"]["prune-clones"]
    script = prune["steps"][-1]["run"]
    assert "gh pr list --state open" in script and "--json number" in script and "--keep-pr" in script
    assert step_commands(prune) == [["admin", "prune", "--apply"]]
    assert prune["permissions"]["pull-requests"] == "read"


@pytest.mark.parametrize("open_prs, expected", [
    ("12\n15\n", ["--apply", "--keep-pr", "12", "--keep-pr", "15"]),
    ("", ["--apply", "--older-than", "1"]),
])
@pytest.mark.slow
def test_prune_step_passes_the_open_prs(tmp_path: Path, open_prs: str, expected: list[str]) -> None:
    """The prune step's script, run by bash with stand-ins for gh and hnpipe that echo."""
    script = github("production.yml")["jobs"]["prune-clones"]["steps"][-1]["run"]
    (tmp_path / "gh").write_text(f"#!/bin/sh\nprintf '{open_prs}'\n")
    (tmp_path / "hnpipe").write_text('#!/bin/sh\nshift 2\nfor a in "$@"; do echo "$a"; done\n')
    for stand_in in ("gh", "hnpipe"):
        (tmp_path / stand_in).chmod(0o755)
    result = subprocess.run(["bash", "-eo", "pipefail", "-c", script], capture_output=True, text=True, timeout=30,
                            env={"PATH": f"{tmp_path}:/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == expected
    # gh failing stops the step before hnpipe runs.
    (tmp_path / "gh").write_text("#!/bin/sh\nexit 4\n")
    failed = subprocess.run(["bash", "-eo", "pipefail", "-c", script], capture_output=True, text=True, timeout=30,
                            env={"PATH": f"{tmp_path}:/usr/bin:/bin"})
    assert failed.returncode == 4 and failed.stdout == ""


def test_ci_workflow_installs_and_tests_as_the_readme_says() -> None:
    workflow = github("ci.yml")
    assert set(triggers(workflow)) == {"push", "pull_request"}
    runs = [step["run"] for step in workflow["jobs"]["test"]["steps"] if "run" in step]
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert runs == ['pip install -e ".[dev]"', "pytest"]
    assert 'pip install -e ".[dev]"' in readme and "\npytest\n" in readme
    assert not any("secrets" in text for text in strings(workflow))


def test_gitlab_merge_requests_deploy_and_their_environment_stops_by_dropping() -> None:
    jobs = gitlab_jobs()
    mr = {"CI_MERGE_REQUEST_IID": "7", "CI_MERGE_REQUEST_DIFF_BASE_SHA": "base"}
    clone, deploy, stop = jobs["branch-clone"], jobs["branch-deploy"], jobs[jobs["branch-deploy"]["environment"]["on_stop"]]
    # The clone never runs beside a production run: one resource group (issue 9).
    assert clone["resource_group"] == jobs["production-run"]["resource_group"] == "production-data"
    assert deploy["needs"] == ["branch-clone"]
    # Issue 19: the clone and the deploy of one merge request never overlap another pipeline's:
    # both run in a child pipeline whose trigger job holds branch-<IID> until the child is done.
    trigger = jobs["branch-deployment"]
    assert trigger["trigger"] == {"include": ".gitlab/branch-deployment.yml", "strategy": "depend"}
    assert trigger["resource_group"] == "branch-$CI_MERGE_REQUEST_IID"
    assert trigger["rules"] == [{"if": '$CI_PIPELINE_SOURCE == "merge_request_event"'}]
    child = load(ROOT / trigger["trigger"]["include"])
    assert {"branch-clone", "branch-deploy", "branch-stop"} <= set(child)
    assert not {"branch-clone", "branch-deploy", "branch-stop"} & set(load(GITLAB))
    # ... and an older pipeline is superseded: its branch jobs are cancelled by a newer one,
    # never production's (https://docs.gitlab.com/ci/yaml/#workflowauto_cancelon_new_commit).
    assert load(GITLAB)["workflow"]["auto_cancel"] == {"on_new_commit": "interruptible"}
    assert all(jobs[name].get("interruptible") is True for name in ("branch-deployment", "branch-clone", "branch-deploy"))
    assert not any(jobs[name].get("interruptible") for name in ("production-run", "prune-clones", "test"))
    assert [c for script in clone["script"] for c in hnpipe_commands(script, mr)] == [["admin", "clone", "--pr", "7"]]
    # The whole history (GIT_DEPTH 0): `hnpipe changes` needs the merge request's base commit.
    assert deploy["variables"] == {"HNPIPE_ENV": "branch", "HNPIPE_PR_ID": "$CI_MERGE_REQUEST_IID", "GIT_DEPTH": "0"}
    assert stop["environment"] == {"name": deploy["environment"]["name"], "action": "stop"}
    assert stop["variables"] == {"HNPIPE_ENV": "branch", "HNPIPE_PR_ID": "$CI_MERGE_REQUEST_IID"}
    assert "$CI_MERGE_REQUEST_IID" in deploy["environment"]["name"]
    for job in (clone, deploy, stop):  # a child pipeline's source is parent_pipeline: test the MR itself
        assert job["rules"][0]["if"] == "$CI_MERGE_REQUEST_IID"
    commands = [c for script in deploy["script"] for c in hnpipe_commands(script, mr)]
    assert [c[:2] for c in commands] == [["changes", "--base"], ["changes", "--base"],
                                          ["run", "--env"], ["diff", "--base"], ["comment", "--report"]]
    assert [c for script in stop["script"] for c in hnpipe_commands(script, mr)] == [["admin", "drop", "--pr", "7"]]
    production = [name for name, job in jobs.items() if job.get("variables", {}).get("HNPIPE_ENV") == "production"]
    assert sorted(production) == ["backfill-merge", "backfill-plan", "freshness", "production-run", "prune-clones"]
    for name in production:  # scheduled, or started by hand (a job, or a pipeline run from the web form)
        assert all("schedule" in rule["if"] or rule.get("when") == "manual"
                   or rule["if"].startswith('$CI_PIPELINE_SOURCE == "web" && $CI_COMMIT_BRANCH == $CI_DEFAULT_BRANCH')
                   for rule in jobs[name]["rules"])
    assert jobs["test"]["script"] == ["pytest"] and jobs["test"]["before_script"] == ['pip install -e ".[dev]"']
