"""The CI workflows' steps, run verbatim: does a job fail, or report the truth, when something
goes wrong underneath it?

Each `run:` step of .github/workflows/*.yml (and each `script:` entry of .gitlab-ci.yml) is run
as the runner runs it: GitHub's default shell `bash -e`, GitLab's `bash -eo pipefail`, with
`${{ ... }}` expressions, `if:` conditions, step outputs and the job summary handled like
Actions does. Against a rehearsal: a git history of its own (a main that moved on after the
pull request branched off, a pull request deeper than GitLab's default 20-commit clone), the
embedded warehouse with a production run in it, and the bundled HN sample. Stand-ins on PATH
make `jq` or `python` fail, or `hnpipe run` fail, for the cases that need it; every `hnpipe`
call is logged and then run for real.

Steps that are not shell (checkout, setup-python, upload-artifact) and the install step are
left out: the checkout is made here (GitHub: the pull request's merge commit, full history;
GitLab: a clone of GIT_DEPTH commits of the merge request's head).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nbformat
import pytest

from hnpipe.warehouse import DuckDBWarehouse
from workflow_files import github, gitlab_document, gitlab_jobs, load, GITLAB

ROOT = Path(__file__).resolve().parents[1]
HNPIPE = Path(sys.executable).with_name("hnpipe")
ITEMS_N = 60  # rehearsal size (the params files of the rehearsal checkout say so)
DEEP = 25  # commits on the pull request branch: more than GitLab's default clone depth of 20


# -- a rehearsal repository -------------------------------------------------------------------
def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True,
                          timeout=60, env={**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
                                           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}).stdout.strip()


def change_notebook(path: Path, marker: str) -> None:
    """A change `hnpipe changes` counts: a statement added to the notebook's last code cell."""
    notebook = nbformat.read(path, as_version=4)
    cell = [c for c in notebook.cells if c.cell_type == "code"][-1]
    cell.source += f"\n_changed_by = {marker!r}"
    nbformat.write(notebook, path)


def notes(repo: Path, name: str, commits: int) -> None:
    """`commits` commits that change only a note (no dataset): history to be deep in."""
    for n in range(commits):
        (repo / name).write_text(f"note {n}\n")
        git(repo, "add", "-A")
        git(repo, "commit", "-qm", f"{name}: {n}")


@dataclass
class Rehearsal:
    origin: Path
    warehouse: Path
    runs: Path
    stale_base: str  # what pull_request.base.sha says: main when the pull request branched off
    main_tip: str  # main now: it has moved on with a COMMENTS change
    pr_head: str  # the pull request: STORIES only, DEEP commits
    base_env: dict[str, str] = field(default_factory=dict)


@pytest.fixture(scope="module")
def rehearsal(tmp_path_factory: pytest.TempPathFactory) -> Rehearsal:
    top = tmp_path_factory.mktemp("workflow-steps")
    origin = top / "origin"
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, check=True,
                           capture_output=True, text=True).stdout.splitlines()
    for name in files:
        if (ROOT / name).is_file():
            (origin / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, origin / name)
    for env in ("production", "branch"):  # offline and small, the same for both (as committed)
        path = origin / "params" / f"{env}.yaml"
        text = re.sub(r"(?m)^hn_api_url: .*$", "hn_api_url: sample", path.read_text())
        path.write_text(re.sub(r"(?m)^n_items: .*$", f"n_items: {ITEMS_N}", text))
    git(origin, "init", "-q", "-b", "main")
    git(origin, "add", "-A")
    git(origin, "commit", "-qm", "base")
    notes(origin, "NOTES.md", 3)  # history on main before the pull request branches off
    stale_base = git(origin, "rev-parse", "HEAD")
    git(origin, "checkout", "-qb", "pr")
    change_notebook(origin / "notebooks" / "stories.ipynb", "the pull request")
    git(origin, "commit", "-qam", "STORIES: the pull request's change")
    notes(origin, "PR_NOTES.md", DEEP - 1)
    pr_head = git(origin, "rev-parse", "HEAD")
    git(origin, "checkout", "-q", "main")
    change_notebook(origin / "notebooks" / "comments.ipynb", "main, after the pull request branched off")
    git(origin, "commit", "-qam", "COMMENTS: an unrelated change on main")
    main_tip = git(origin, "rev-parse", "HEAD")

    warehouse, runs = top / "warehouse", top / "runs"
    base_env = {**os.environ, "HNPIPE_WAREHOUSE": f"duckdb:{warehouse}", "HNPIPE_RUNS_DIR": str(runs)}
    for key in ("HNPIPE_ENV", "HNPIPE_PR_ID", "HNPIPE_ROOT", "GITHUB_REF", "CI_MERGE_REQUEST_IID"):
        base_env.pop(key, None)
    produced = subprocess.run([str(HNPIPE), "run", "--env", "production"], cwd=origin, capture_output=True,
                              text=True, timeout=600, env={**base_env, "HNPIPE_ENV": "production"})
    assert produced.returncode == 0, produced.stderr[-2000:]
    return Rehearsal(origin, warehouse, runs, stale_base, main_tip, pr_head, base_env)


def stand_ins(directory: Path, *, fail: tuple[str, ...] = ()) -> Path:
    """PATH entries: `hnpipe` logs each call, then runs the real one (or fails `run` when asked);
    each of `fail` ('jq', 'python', 'gh') exits 5 at once."""
    directory.mkdir(parents=True, exist_ok=True)
    failing_run = 'if [ "$1" = run ]; then echo "hnpipe: error: the branch run failed (stand-in)" >&2; exit 1; fi\n' \
        if "hnpipe run" in fail else ""
    (directory / "hnpipe").write_text(f'#!/bin/bash\necho "$*" >> "{directory}/hnpipe.log"\n{failing_run}'
                                      f'exec "{HNPIPE}" "$@"\n')
    for tool in fail:
        if tool != "hnpipe run":
            (directory / tool).write_text(f"#!/bin/sh\necho '{tool}: failing stand-in' >&2\nexit 5\n")
    (directory / "gh").write_text("#!/bin/sh\nexit 0\n") if "gh" not in fail else None  # no open PRs
    for path in directory.iterdir():
        path.chmod(0o755)
    (directory / "hnpipe.log").touch()
    return directory


def hnpipe_calls(directory: Path) -> list[str]:
    return (directory / "hnpipe.log").read_text().splitlines()


# -- GitHub Actions -------------------------------------------------------------------------
@dataclass
class Job:
    ok: bool
    outcomes: dict[str, str]
    summary: str
    log: str


def expression(text: str, context: dict[str, Any]) -> Any:
    """A GitHub expression as these workflows use them: context paths, ==, !=, &&, ||, !,
    'strings' and !cancelled() (never cancelled here)."""
    text = text.strip()
    if text.startswith("${{") and text.endswith("}}"):
        text = text[3:-2].strip()
    text = text.replace("!cancelled()", "True")

    def value(match: re.Match[str]) -> str:
        node: Any = context
        for part in match.group(0).split("."):
            node = node.get(part, "") if isinstance(node, dict) else ""
        return repr(node if node is not None else "")

    text = re.sub(r"\b(steps|github|secrets|vars)(\.[\w-]+)+", value, text)
    text = text.replace("&&", " and ").replace("||", " or ")
    text = re.sub(r"!(?!=)", " not ", text)
    return eval(text, {"__builtins__": {}}, {"True": True})  # noqa: S307 - our own workflow files


def substitute(text: str, context: dict[str, Any]) -> str:
    return re.sub(r"\$\{\{(.+?)\}\}", lambda m: str(expression(m.group(1), context)), text)


def run_github_job(workflow_name: str, job_name: str, workdir: Path, tools: Path, event: dict[str, Any],
                   env: dict[str, str]) -> Job:
    workflow = github(workflow_name)
    job = workflow["jobs"][job_name]
    context: dict[str, Any] = {"github": {"event": event}, "secrets": {}, "vars": {}, "steps": {}}
    temp = workdir.parent / f"runner-temp-{job_name}"
    temp.mkdir(exist_ok=True)
    summary = temp / "summary.md"
    summary.write_text("")
    failed, outcomes, log = False, {}, []
    for index, step in enumerate(job["steps"]):
        if "run" not in step or step["run"].startswith("pip install"):
            continue
        step_id = step.get("id", f"step{index}")
        condition = step.get("if")
        runs = (not failed) if condition is None else bool(expression(condition, context)) and (
            not failed or "!cancelled()" in condition)
        if not runs:
            outcomes[step_id] = "skipped"
            context["steps"][step_id] = {"outcome": "skipped", "outputs": {}}
            continue
        output = temp / f"output-{step_id}"
        output.write_text("")
        step_env = {**env}
        for block in (workflow.get("env", {}), job.get("env", {}), step.get("env", {})):
            step_env.update({k: substitute(str(v), context) for k, v in block.items()})
        step_env.update(GITHUB_OUTPUT=str(output), GITHUB_STEP_SUMMARY=str(summary), RUNNER_TEMP=str(temp),
                        PATH=f"{tools}:{env['PATH']}")
        script = temp / f"{step_id}.sh"
        script.write_text(substitute(step["run"], context))
        result = subprocess.run(["bash", "-e", str(script)], cwd=workdir, env=step_env, capture_output=True,
                                text=True, timeout=600)
        log.append(f"--- {step.get('name')}: exit {result.returncode}\n{result.stdout}{result.stderr}")
        outcome = "success" if result.returncode == 0 else "failure"
        failed = failed or outcome == "failure"
        outputs = dict(line.split("=", 1) for line in output.read_text().splitlines() if "=" in line)
        outcomes[step_id] = outcome
        context["steps"][step_id] = {"outcome": outcome, "outputs": outputs}
    return Job(not failed, outcomes, summary.read_text(), "\n".join(log))


def github_checkout(rehearsal: Rehearsal, where: Path) -> Path:
    """What actions/checkout makes of a pull_request event with fetch-depth 0: the merge of the
    pull request's head into main as main is now (refs/pull/N/merge), all history."""
    git(rehearsal.origin.parent, "clone", "-q", str(rehearsal.origin), str(where))
    git(where, "checkout", "-q", rehearsal.main_tip)
    git(where, "-c", "user.name=t", "-c", "user.email=t@t", "merge", "-q", "--no-ff", "-m", "merge", rehearsal.pr_head)
    return where


def pr_event(number: int, rehearsal: Rehearsal) -> dict[str, Any]:
    # base.sha as GitHub may report it: main as it was when the pull request was opened.
    return {"action": "synchronize", "pull_request": {"number": number, "base": {"sha": rehearsal.stale_base}}}


def headings(markdown: str) -> list[int]:
    return [len(match.group(1)) for match in re.finditer(r"(?m)^(#+) ", markdown)]


@pytest.mark.slow
def test_github_branch_job_fails_when_jq_fails_and_rebuilds_nothing(rehearsal: Rehearsal, tmp_path: Path) -> None:
    tools = stand_ins(tmp_path / "tools", fail=("jq",))
    job = run_github_job("branch-deployment.yml", "deploy", github_checkout(rehearsal, tmp_path / "checkout"),
                         tools, pr_event(11, rehearsal), rehearsal.base_env)
    assert not job.ok, job.log
    assert job.outcomes["changes"] == "failure"
    assert not [call for call in hnpipe_calls(tools) if call.startswith("run")], hnpipe_calls(tools)
    assert "changed" not in job.summary.lower() or "failed" in job.summary.lower(), job.summary


@pytest.mark.slow
def test_github_branch_job_compares_with_the_merge_commits_first_parent(rehearsal: Rehearsal,
                                                                        tmp_path: Path) -> None:
    tools = stand_ins(tmp_path / "tools")
    checkout = github_checkout(rehearsal, tmp_path / "checkout")
    # The clone is its own job (it shares production's concurrency group); deploy needs it.
    clone = run_github_job("branch-deployment.yml", "clone", checkout, tools, pr_event(12, rehearsal),
                           rehearsal.base_env)
    assert clone.ok, clone.log
    job = run_github_job("branch-deployment.yml", "deploy", checkout, tools, pr_event(12, rehearsal),
                         rehearsal.base_env)
    assert job.ok, job.log
    runs = [call for call in hnpipe_calls(tools) if call.startswith("run")]
    assert runs == ["run --env branch --only STORIES"], runs  # not COMMENTS: main changed that
    changed = job.summary.split("```")[1]
    assert "STORIES" in changed and "COMMENTS" not in changed, job.summary
    assert "Data diff" in job.summary
    levels = headings(job.summary)
    assert levels[0] == 1 and all(b <= a + 1 for a, b in zip(levels, levels[1:])), (levels, job.summary)
    assert levels.count(1) == 1


@pytest.mark.slow
def test_github_summary_says_the_branch_run_failed_instead_of_no_differences(rehearsal: Rehearsal,
                                                                             tmp_path: Path) -> None:
    tools = stand_ins(tmp_path / "tools", fail=("hnpipe run",))
    job = run_github_job("branch-deployment.yml", "deploy", github_checkout(rehearsal, tmp_path / "checkout"),
                         tools, pr_event(13, rehearsal), rehearsal.base_env)
    assert not job.ok and job.outcomes["run"] == "failure", job.log
    assert "branch run failed" in job.summary and "no differences" not in job.summary, job.summary


def test_branch_runs_fetch_as_many_items_as_production() -> None:
    from hnpipe import params

    branch = params.load_params_file(ROOT / "params" / "branch.yaml")
    production = params.load_params_file(ROOT / "params" / "production.yaml")
    assert branch["n_items"] == production["n_items"]


def make_clone(rehearsal: Rehearsal, pr: int) -> None:
    made = subprocess.run([str(HNPIPE), "admin", "clone", "--pr", str(pr)], cwd=rehearsal.origin, capture_output=True,
                          text=True, timeout=300, env={**rehearsal.base_env, "HNPIPE_ENV": "production"})
    assert made.returncode == 0, made.stderr


@pytest.mark.slow
def test_nightly_prune_with_no_open_pull_request_keeps_a_clone_made_minutes_ago(rehearsal: Rehearsal,
                                                                                tmp_path: Path) -> None:
    make_clone(rehearsal, 21)
    tools = stand_ins(tmp_path / "tools")
    job = run_github_job("production.yml", "prune-clones", rehearsal.origin, tools, {}, rehearsal.base_env)
    assert job.ok, job.log
    assert "PRODUCTION_CLONE_21" in DuckDBWarehouse(rehearsal.warehouse).list_databases(), job.log
    # The same on GitLab, whose prune lists the open merge requests with python (none open).
    (tools / "python").write_text("#!/bin/sh\ncat > /dev/null\necho\n")
    (tools / "python").chmod(0o755)
    gitlab = run_gitlab_job("prune-clones", rehearsal.origin, tools, {}, rehearsal.base_env)
    assert gitlab.ok, gitlab.log
    assert "PRODUCTION_CLONE_21" in DuckDBWarehouse(rehearsal.warehouse).list_databases(), gitlab.log


# -- GitLab CI --------------------------------------------------------------------------------
def expand(value: str, variables: dict[str, str]) -> str:
    return re.sub(r"\$\{?(\w+)\}?", lambda m: variables.get(m.group(1), ""), str(value))


def run_gitlab_job(job_name: str, workdir: Path, tools: Path, predefined: dict[str, str],
                   env: dict[str, str]) -> Job:
    """The job's before_script (less the install) and script entries, each under bash -eo pipefail,
    stopping at the first that fails, as GitLab Runner does."""
    job = gitlab_jobs()[job_name]
    variables = dict(predefined)
    for block in (gitlab_document(GITLAB).get("variables", {}), job.get("variables", {})):
        variables.update({k: expand(v, variables) for k, v in block.items()})
    job_env = {**env, **{k: str(v) for k, v in variables.items()}, "PATH": f"{tools}:{env['PATH']}"}
    log = []
    for entry in [*job.get("before_script", []), *job["script"]]:
        if entry.startswith("pip install"):
            continue
        result = subprocess.run(["bash", "-eo", "pipefail", "-c", entry], cwd=workdir, env=job_env,
                                capture_output=True, text=True, timeout=600)
        log.append(f"--- {entry[:60]}: exit {result.returncode}\n{result.stdout}{result.stderr}")
        if result.returncode != 0:
            return Job(False, {}, "", "\n".join(log))
    return Job(True, {}, "", "\n".join(log))


def gitlab_checkout(rehearsal: Rehearsal, where: Path, job_name: str, depth: str | None = None) -> Path:
    """A merge request pipeline's checkout: the source branch head, GIT_DEPTH commits deep
    (GitLab's default 20; 0 is the whole history), unless `depth` says otherwise."""
    depth = depth or str(gitlab_jobs()[job_name].get("variables", {}).get("GIT_DEPTH", 20))
    shallow = [] if depth == "0" else ["--depth", depth]
    git(rehearsal.origin.parent, "clone", "-q", *shallow, "--branch", "pr", f"file://{rehearsal.origin}", str(where))
    return where


def mr_variables(iid: int, rehearsal: Rehearsal) -> dict[str, str]:
    return {"CI_MERGE_REQUEST_IID": str(iid), "CI_MERGE_REQUEST_DIFF_BASE_SHA": rehearsal.stale_base,
            "CI_PIPELINE_SOURCE": "merge_request_event"}


@pytest.mark.slow
def test_gitlab_branch_job_fails_when_python_fails_and_rebuilds_nothing(rehearsal: Rehearsal,
                                                                        tmp_path: Path) -> None:
    tools = stand_ins(tmp_path / "tools", fail=("python",))
    workdir = gitlab_checkout(rehearsal, tmp_path / "checkout", "branch-deploy", depth="0")  # python alone fails
    job = run_gitlab_job("branch-deploy", workdir, tools, mr_variables(14, rehearsal), rehearsal.base_env)
    assert not job.ok, job.log
    assert "nothing to run" not in job.log
    assert not [call for call in hnpipe_calls(tools) if call.startswith(("run", "diff"))], hnpipe_calls(tools)


@pytest.mark.slow
def test_gitlab_branch_job_has_the_history_back_to_a_deep_merge_requests_base(rehearsal: Rehearsal,
                                                                             tmp_path: Path) -> None:
    tools = stand_ins(tmp_path / "tools")
    workdir = gitlab_checkout(rehearsal, tmp_path / "checkout", "branch-deploy")
    clone = run_gitlab_job("branch-clone", workdir, tools, mr_variables(15, rehearsal), rehearsal.base_env)
    assert clone.ok, clone.log  # branch-deploy needs it
    job = run_gitlab_job("branch-deploy", workdir, tools, mr_variables(15, rehearsal), rehearsal.base_env)
    assert job.ok, job.log
    assert json.loads((workdir / "changes.json").read_text())["datasets"] == ["STORIES"]
    runs = [call for call in hnpipe_calls(tools) if call.startswith("run")]
    assert runs == ["run --env branch --only STORIES"], runs
    report = (workdir / "data-diff.md").read_text()
    assert "Data diff" in report
    levels = headings(report)
    assert levels[0] == 1 and all(b <= a + 1 for a, b in zip(levels, levels[1:])), levels
