"""A pull request's life, rehearsed on the embedded engine: open, push, push, close.

The hnpipe steps come from .github/workflows/branch-deployment.yml itself (its `deploy` job on
opened/synchronize, `teardown` on closed) and run in order as real `hnpipe` processes, with
HNPIPE_ENV and HNPIPE_PR_ID set as the workflow sets them. Differences from CI, on purpose:

* the engine is DuckDB (HNPIPE_WAREHOUSE=duckdb:<tmp>) and the HN source the bundled sample,
  with few items (`-p` added to `hnpipe run`);
* `hnpipe changes` compares with this checkout's HEAD, so its answer depends on the working
  tree: it is checked for shape only. Whether the branch run happens (the workflow skips it
  when no dataset changed) follows the story instead: the pull request opens with a
  documentation-only commit (no run; the fresh clone shows no differences), then each push
  changes a dataset (run; the clone differs from production);
* steps that are not hnpipe (checkout, install, artifact upload) are left out.

Throughout, PRODUCTION must stay exactly as the production run left it: same tables and rows,
and its file never written (same bytes, same modification time, no write-ahead log).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from hnpipe import datasets
from hnpipe.environments import Target
from hnpipe.warehouse.duckdb_engine import DuckDBWarehouse
from workflow_files import github, step_commands

# Every test here starts kernels, servers or processes: `pytest -m "not slow"` skips them.
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
PR = "41"
CLONE = f"PRODUCTION_CLONE_{PR}"
PRODUCTION_ITEMS, BRANCH_ITEMS = 120, 80  # so a branch run visibly changes its clone
SAMPLE = ["-p", "hn_api_url=sample"]
# (event, whether the commits so far change a dataset)
STORY = [("opened", False), ("synchronize", True), ("synchronize", True), ("closed", True)]


def hnpipe(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    executable = Path(sys.executable).with_name("hnpipe")  # the installed console script, as in CI
    command = [str(executable)] if executable.exists() else [sys.executable, "-m", "hnpipe.cli"]
    return subprocess.run([*command, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


def read_all(directory: Path, database: str) -> dict[str, pd.DataFrame]:
    warehouse = DuckDBWarehouse(directory)
    target = Target(database, "HACKER_NEWS")
    return {name: warehouse.read_table(target, name) for name in sorted(warehouse.list_tables(target))}


def same(left: dict[str, pd.DataFrame], right: dict[str, pd.DataFrame]) -> bool:
    return list(left) == list(right) and all(left[name].equals(right[name]) for name in left)


def file_state(path: Path) -> tuple[str, int, int, bool]:
    stat = path.stat()
    return hashlib.sha256(path.read_bytes()).hexdigest(), stat.st_mtime_ns, stat.st_size, \
        path.with_name(path.name + ".wal").exists()


def test_a_pull_request_from_open_to_close(clean_env: Path) -> None:
    warehouse = clean_env
    base_env = {**os.environ, "HNPIPE_WAREHOUSE": f"duckdb:{warehouse}"}
    produced = hnpipe(["run", "--env", "production", "-p", f"n_items={PRODUCTION_ITEMS}", *SAMPLE],
                      {**base_env, "HNPIPE_ENV": "production"})
    assert produced.returncode == 0, produced.stderr[-2000:]
    production = read_all(warehouse, "PRODUCTION")
    assert set(production) == {dataset.name for dataset in datasets.dependency_order()}
    production_file = warehouse / "PRODUCTION.duckdb"
    untouched = file_state(production_file)

    workflow = github("branch-deployment.yml")
    branch_env = {**base_env, **{k: v for k, v in workflow["env"].items() if k.startswith("HNPIPE_")},
                  "HNPIPE_PR_ID": PR}
    assert branch_env["HNPIPE_ENV"] == "branch"
    values = {"HNPIPE_PR_ID": PR, "github.event.pull_request.number": PR, "base": "HEAD", "BASE": "HEAD"}
    clone_file = warehouse / f"{CLONE}.duckdb"
    played = []
    ran_since_clone = False  # the clone holds what a branch run wrote
    for event, datasets_changed in STORY:
        jobs = ["teardown"] if event == "closed" else ["clone", "deploy"]  # deploy needs clone
        for command in [c for name in jobs for c in commands_to_play(workflow["jobs"][name], values, datasets_changed)]:
            if command[0] == "run":
                command = [*command, "-p", f"n_items={BRANCH_ITEMS}", *SAMPLE]
            assert clone_file.exists() == bool(played), "the clone exists from the first step to the drop"
            if command[:2] == ["admin", "clone"] and played:
                # A push: the clone still holds the last branch run's data (production's if none ran).
                assert same(read_all(warehouse, CLONE), production) != ran_since_clone
            done = hnpipe(command, branch_env)
            assert done.returncode == 0, (event, command, done.stderr[-2000:])
            played.append((event, command[0] if command[0] != "admin" else f"admin {command[1]}"))
            if command[0] == "run" or command[:2] == ["admin", "clone"]:
                ran_since_clone = command[0] == "run"
            check_step(warehouse, event, command, done.stdout, production, datasets_changed)
            assert file_state(production_file) == untouched, (event, command)

    assert played == [
        ("opened", "admin clone"), ("opened", "changes"), ("opened", "changes"), ("opened", "diff"),
        *[(push, step) for push in ("synchronize", "synchronize")
          for step in ("admin clone", "changes", "run", "changes", "diff")],
        ("closed", "admin drop"),
    ]
    assert same(read_all(warehouse, "PRODUCTION"), production)
    # the clone went with its staged files; production keeps its stage folder (hnpipe.stage)
    assert sorted(path.name for path in warehouse.iterdir()) in (["PRODUCTION.duckdb"],
                                                                 ["PRODUCTION.duckdb", "PRODUCTION.stage"])


def commands_to_play(job: dict, values: dict[str, str], datasets_changed: bool) -> list[list[str]]:
    """The job's hnpipe commands in order, without the steps its `if:` skips when no dataset
    changed (the only step condition that differs between the events played here)."""
    played = []
    for step in job["steps"]:
        skipped = "steps.changes.outputs.count != '0'" in str(step.get("if", "")) and not datasets_changed
        if "run" in step and not skipped:
            # `hnpipe comment` posts to GitHub's API: test_workflow_steps rehearses it against a
            # stand-in API; here the warehouse's story is what is played.
            played += [c for c in step_commands({"steps": [step]}, values) if c[0] != "comment"]
    return played


def check_step(warehouse: Path, event: str, command: list[str], stdout: str,
               production: dict[str, pd.DataFrame], datasets_changed: bool) -> None:
    """What each workflow step must have done to the clone."""
    clone_file = warehouse / f"{CLONE}.duckdb"
    if command[:2] == ["admin", "clone"]:
        # Opened: the clone appears; pushed: it is refreshed. Either way it is production now.
        assert clone_file.exists()
        assert same(read_all(warehouse, CLONE), production)
    elif command[0] == "changes" and "--json" in command:
        answer = json.loads(stdout)
        assert set(answer["datasets"]) <= set(datasets.DATASETS)
    elif command[0] == "run":
        clone = read_all(warehouse, CLONE)
        assert set(clone) == set(production)
        assert 0 < len(clone["ITEMS"]) <= BRANCH_ITEMS < len(production["ITEMS"])
        assert set(clone["ITEMS"].ID) < set(production["ITEMS"].ID)  # the newest ids, fewer of them
    elif command[0] == "diff":
        assert CLONE in stdout
        for table in production:
            status = "changed" if datasets_changed else "no differences"
            assert f"| {table} | {status} |" in stdout, stdout
    elif command[:2] == ["admin", "drop"]:
        assert stdout.startswith(f"dropped {CLONE}\n")
        assert not clone_file.exists() and not clone_file.with_name(clone_file.name + ".wal").exists()
