"""The backfill workflows rehearsed: .github/workflows/backfill.yml's and .gitlab-ci.yml's backfill
jobs, their shell steps run as the runners run them (GitHub `bash -e`, GitLab `bash -eo pipefail`)
against the embedded warehouse and a sample server, job after job: plan, one job per pending
shard (the matrix / the generated child pipeline), merge. Re-running the plan after some shards
resumes. Steps that are not shell (checkout, setup-python, upload-artifact) and installs are
left out; their settings are checked as data."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import duckdb
import pytest

from hnpipe.sample import SampleServer, generate_sample
from workflow_files import GITLAB, github, gitlab_jobs, load

ROOT = Path(__file__).resolve().parents[1]
IDS, SHARD_SIZE, MAX_ITEM = 3_000, 1_000, 46_000_000


def _lookup(path: str, context: dict[str, Any]) -> Any:
    node: Any = context
    for part in path.split("."):
        node = node.get(part, "") if isinstance(node, dict) else ""
    return node


def expression(text: str, context: dict[str, Any]) -> Any:
    """The expressions these jobs use: context paths, fromJSON, ==, !=, &&, ||, !cancelled()."""
    text = text.strip()
    if text.startswith("${{") and text.endswith("}}"):
        text = text[3:-2].strip()
    text = text.replace("!cancelled()", "True")
    text = re.sub(r"\b(inputs|matrix|needs|steps|github|secrets|vars)(\.[\w-]+)+",
                  lambda m: repr(_lookup(m.group(0), context)), text)
    text = text.replace("&&", " and ").replace("||", " or ")
    return eval(text, {"__builtins__": {}, "fromJSON": json.loads, "True": True})  # noqa: S307 - our own file


def substitute(text: str, context: dict[str, Any]) -> str:
    return re.sub(r"\$\{\{(.+?)\}\}", lambda m: str(expression(m.group(1), context)), text)


def run_github_job(workflow: dict, name: str, context: dict[str, Any], workdir: Path, env: dict[str, str]) -> dict:
    """The job's shell steps under `bash -e`; its outputs (job-level), and whether it succeeded."""
    job = workflow["jobs"][name]
    temp = workdir / f"runner-temp-{name}-{len(list(workdir.glob('runner-temp-*')))}"
    temp.mkdir()
    steps: dict[str, Any] = {}
    context = {**context, "steps": steps}
    ok = True
    for index, step in enumerate(job["steps"]):
        if "run" not in step or step["run"].startswith("pip install"):
            continue
        output, summary = temp / f"out{index}", temp / "summary.md"
        output.touch()
        step_env = {**env}
        for block in (workflow.get("env", {}), job.get("env", {}), step.get("env", {})):
            step_env.update({k: substitute(str(v), context) for k, v in block.items()})
        step_env.update(GITHUB_OUTPUT=str(output), GITHUB_STEP_SUMMARY=str(summary), RUNNER_TEMP=str(temp))
        script = temp / f"step{index}.sh"
        script.write_text(substitute(step["run"], context))
        result = subprocess.run(["bash", "-e", str(script)], cwd=workdir, env=step_env, capture_output=True,
                                text=True, timeout=900)
        assert result.returncode == 0, f"{name}/{step.get('name')}: {result.stdout}{result.stderr}"
        steps[step.get("id", f"s{index}")] = {"outputs": dict(
            line.split("=", 1) for line in output.read_text().splitlines() if "=" in line)}
    outputs = {key: substitute(value, {**context, "steps": steps}) for key, value in job.get("outputs", {}).items()}
    return {"ok": ok, "outputs": outputs}


@pytest.fixture
def rehearsal(tmp_path: Path):
    """A project root whose production params point at a sample server; production on DuckDB."""
    root = tmp_path / "project"
    for part in ("params", "notebooks"):
        shutil.copytree(ROOT / part, root / part)
    shutil.copy2(ROOT / "pyproject.toml", root / "pyproject.toml")
    items = generate_sample(n_ids=IDS, max_item=MAX_ITEM)
    with SampleServer(items=items) as server:
        path = root / "params" / "production.yaml"
        text = re.sub(r"(?m)^hn_api_url: .*$", f"hn_api_url: {server.base_url}", path.read_text())
        text = re.sub(r"(?m)^hn_api_private_hosts: .*$", "hn_api_private_hosts: [127.0.0.1]", text)
        path.write_text(re.sub(r"(?m)^concurrency: .*$", "concurrency: 8", text))
        env = {**os.environ, "HNPIPE_ROOT": str(root), "HNPIPE_WAREHOUSE": f"duckdb:{tmp_path / 'warehouse'}",
               "HNPIPE_RUNS_DIR": str(root / "runs"), "HNPIPE_DEV_SCHEMA": "TESTER"}
        for key in ("HNPIPE_ENV", "HNPIPE_PR_ID"):
            env.pop(key, None)
        yield root, env, items, server, tmp_path / "warehouse"


def published_ids(warehouse: Path, table: str = "ITEMS") -> list[int]:
    with duckdb.connect(str(warehouse / "PRODUCTION.duckdb"), read_only=True) as con:
        return [row[0] for row in con.execute(f'SELECT ID FROM PRODUCTION.HACKER_NEWS."{table}" ORDER BY ID').fetchall()]


def test_github_backfill_workflow_is_shaped_as_the_issue_asks() -> None:
    workflow = github("backfill.yml")
    on = workflow.get("on", workflow.get(True))
    assert set(on) == {"workflow_dispatch"}
    assert {"from", "to", "shard_size", "max_parallel", "max_requests_per_s"} <= set(on["workflow_dispatch"]["inputs"])
    assert workflow["env"]["HNPIPE_ENV"] == "production"  # as the logins table says (tests/test_logins.py)
    shard = workflow["jobs"]["shard"]
    assert shard["strategy"]["fail-fast"] is False
    assert shard["strategy"]["max-parallel"] == "${{ fromJSON(inputs.max_parallel) }}"
    assert shard["strategy"]["matrix"] == "${{ fromJSON(needs.plan.outputs.matrix) }}"
    assert any(step.get("uses", "").startswith("actions/upload-artifact") for step in shard["steps"])
    assert workflow["permissions"]["id-token"] == "write"  # workload identity, as production logs in
    assert workflow["env"]["SNOWFLAKE_AUTHENTICATOR"] == "WORKLOAD_IDENTITY"
    assert workflow["jobs"]["merge"]["concurrency"]["group"] == "production-data"
    assert "max_parallel x max_requests_per_s" in (ROOT / ".github/workflows/backfill.yml").read_text()


@pytest.mark.slow
def test_github_backfill_workflow_rehearsed_resumes_and_merges(rehearsal) -> None:
    root, env, items, server, warehouse = rehearsal
    workflow = github("backfill.yml")
    inputs = {"from": str(MAX_ITEM - IDS + 1), "to": "maxitem", "shard_size": str(SHARD_SIZE),
              "max_parallel": "2", "max_requests_per_s": "5000"}
    context: dict[str, Any] = {"inputs": inputs, "github": {"run_id": "1", "run_attempt": "1"}, "secrets": {}}
    plan = run_github_job(workflow, "plan", context, root, env)
    matrix = json.loads(plan["outputs"]["matrix"])
    assert plan["outputs"]["pending"] == "3" and [m["shard"] for m in matrix["include"]] == [1, 2, 3]
    # One shard job runs, then the workflow is run again (a lost run): the plan resumes with the other two.
    first = matrix["include"][0]
    run_github_job(workflow, "shard", {**context, "matrix": first}, root, env)
    plan = run_github_job(workflow, "plan", context, root, env)
    again = json.loads(plan["outputs"]["matrix"])
    assert [m["shard"] for m in again["include"]] == [2, 3]
    needs = {"plan": {"outputs": plan["outputs"]}}
    assert expression(workflow["jobs"]["shard"]["if"], {**context, "needs": needs})
    before = server.requests_served
    for entry in again["include"]:
        run_github_job(workflow, "shard", {**context, "matrix": entry, "needs": needs}, root, env)
    assert server.requests_served - before == 2 * SHARD_SIZE + 2  # the two shards' ids and maxitem each
    needs["shard"] = {"result": "success"}
    assert expression(workflow["jobs"]["merge"]["if"], {**context, "needs": needs})
    assert not expression(workflow["jobs"]["merge"]["if"], {**context, "needs": {**needs, "shard": {"result": "failure"}}})
    run_github_job(workflow, "merge", {**context, "needs": needs}, root, env)
    assert published_ids(warehouse) == sorted(i for i, item in items.items() if item is not None)
    assert published_ids(warehouse, "STORIES") == sorted(i for i, item in items.items()
                                                         if item is not None and item["type"] == "story")


@pytest.mark.slow
def test_gitlab_backfill_child_pipeline_rehearsed(rehearsal) -> None:
    root, env, items, server, warehouse = rehearsal
    jobs = gitlab_jobs()
    variables = {"BACKFILL_FROM": str(MAX_ITEM - IDS + 1), "BACKFILL_TO": "maxitem",
                 "BACKFILL_SHARD_SIZE": str(SHARD_SIZE), "BACKFILL_MAX_PARALLEL": "2", "BACKFILL_BUDGET": "5000",
                 "HNPIPE_ENV": "production"}
    assert jobs["backfill-merge"]["resource_group"] == "production-data"
    assert jobs["backfill-shards"]["trigger"]["include"][0] == {"artifact": "backfill-child.yml", "job": "backfill-plan"}

    def script(entries: list[str]) -> None:
        for entry in entries:
            if entry.startswith("pip install"):
                continue
            result = subprocess.run(["bash", "-eo", "pipefail", "-c", entry], cwd=root, env={**env, **variables},
                                    capture_output=True, text=True, timeout=900)
            assert result.returncode == 0, result.stdout + result.stderr

    script(jobs["backfill-plan"]["script"])
    child = load(root / "backfill-child.yml")
    assert sorted(child) == ["shard-1", "shard-2", "shard-3"]
    assert {job["resource_group"] for job in child.values()} == {"backfill-slot-0", "backfill-slot-1"}  # 2 at once
    assert all(job["artifacts"]["paths"] == ["runs/"] for job in child.values())
    for job in child.values():
        script(job["script"])
    script(jobs["backfill-merge"]["script"])
    assert published_ids(warehouse) == sorted(i for i, item in items.items() if item is not None)
    assert GITLAB.is_file()
