"""Canary: recognisable fake secrets are set for every run; none may surface anywhere.

Runs the pipeline command, plain papermill on every notebook, and refused and failing
commands, with fake credentials in the environment and in a .env file, then searches
every byte they left (executed notebooks and their metadata, the warehouse files, stdout
and stderr) for the canary values.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

# Every test here starts kernels, servers or processes: `pytest -m "not slow"` skips them.
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
CANARIES = {
    "SNOWFLAKE_ACCOUNT": "canaryacct-5f1d",
    "SNOWFLAKE_USER": "canary-user-9c2e",
    "SNOWFLAKE_PASSWORD": "canary-password-3b7a91",
    "SNOWFLAKE_PROD_PASSWORD": "canary-prod-password-77e0",
    "SNOWFLAKE_TOKEN": "canary-oidc-token-61d0",
    "SNOWFLAKE_ROLE": "CANARY_ROLE_1A2B",
    "SNOWFLAKE_WAREHOUSE": "CANARY_WH_3C4D",
    "HNPIPE_SLACK_WEBHOOK_URL": "http://127.0.0.1:9/canary-webhook-c0ffee",
}
DOTENV_CANARY = "canary-dotenv-token-4e4e"


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A copy of the project with a .env holding a further canary."""
    copy = tmp_path / "project"
    shutil.copytree(ROOT, copy, ignore=shutil.ignore_patterns(".venv", ".git", ".warehouse", "runs",
                                                              "__pycache__", "*.egg-info", "benchmarks"))
    (copy / ".env").write_text(f"HNPIPE_API_TOKEN={DOTENV_CANARY}\nSNOWFLAKE_PASSWORD=from-dotenv-ignored\n")
    return copy


def test_no_secret_reaches_outputs_logs_or_warehouse(project: Path, tmp_path: Path) -> None:
    warehouse, runs, outputs = tmp_path / "warehouse", tmp_path / "runs", tmp_path / "outputs"
    outputs.mkdir()
    env = {**os.environ, **CANARIES, "HNPIPE_ROOT": str(project), "HNPIPE_WAREHOUSE": f"duckdb:{warehouse}",
           "HNPIPE_RUNS_DIR": str(runs)}
    logs: list[str] = []

    def run(*args: str) -> subprocess.CompletedProcess:
        result = subprocess.run(args, cwd=project, env=env, capture_output=True, text=True, timeout=600)
        logs.extend([result.stdout, result.stderr])
        return result

    hnpipe = [sys.executable, "-m", "hnpipe.cli", "-v"]
    assert run(*hnpipe, "run", "--env", "local", "-p", "n_items=150").returncode == 0, logs[-1]
    for notebook in ("items", "comments", "stories", "explore"):
        result = run(sys.executable, "-m", "papermill", f"notebooks/{notebook}.ipynb",
                     str(outputs / f"{notebook}.ipynb"), "-f", "params/local.yaml", "-p", "n_items", "150",
                     "--cwd", "notebooks")
        assert result.returncode == 0, result.stderr[-1500:]
    assert run(*hnpipe, "run", "--env", "production").returncode == 1  # refused
    assert run(*hnpipe, "run", "--env", "local", "-p", "snowflake_password=x").returncode == 1
    assert run(*hnpipe, "run", "--env", "local", "-p", "hn_api_url=http://127.0.0.1:9/v0",
               "-p", "n_items=2").returncode == 1  # a failing notebook, kept in runs/

    secrets = [*CANARIES.values(), DOTENV_CANARY]
    files = [p for d in (warehouse, runs, outputs) for p in d.rglob("*") if p.is_file()]
    assert len(files) >= 8 and any(p.suffix == ".duckdb" for p in files)
    for path in files:
        data = path.read_bytes()
        leaked = [s for s in secrets if s.encode() in data]
        assert not leaked, f"{leaked} found in {path}"
    for text in logs:
        assert not [s for s in secrets if s in text]
