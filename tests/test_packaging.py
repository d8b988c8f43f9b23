"""The project's own files: dependencies in sync, secrets and outputs never committed."""

from __future__ import annotations

import json
import re
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
# conda-forge names that differ from PyPI's
CONDA_TO_PYPI = {"python-duckdb": "duckdb"}


def _split(requirement: str) -> tuple[str, str]:
    name, spec = re.match(r"([A-Za-z0-9_.\-\[\]]+)\s*(.*)", requirement.strip()).groups()
    return name.lower(), spec.replace(" ", "")


def test_environment_yml_lists_the_same_packages_as_pyproject() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pypi = dict(_split(r) for r in project["dependencies"])
    dev = dict(_split(r) for r in project["optional-dependencies"]["dev"])
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    conda = dict(_split(d) for d in env["dependencies"] if isinstance(d, str))
    conda = {CONDA_TO_PYPI.get(name, name): spec for name, spec in conda.items()
             if name not in ("python", "pip")}
    assert {k: v for k, v in conda.items() if k in pypi} == pypi, "runtime dependencies differ"
    missing = set(pypi) - set(conda)
    assert not missing, f"in pyproject but not environment.yml: {missing}"
    extra = set(conda) - set(pypi) - set(dev)
    assert not extra, f"in environment.yml but not pyproject: {extra}"
    for name, spec in conda.items():
        if name in dev:
            assert dev[name] == spec, f"{name}: {spec} vs {dev[name]}"
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert pip_section == ["-e .[dev]"]
    assert "conda-forge" in env["channels"]


def test_generated_paths_and_secrets_are_git_ignored() -> None:
    for path in (".warehouse/LOCAL.duckdb", "runs/local/x/items.ipynb", ".env"):
        result = subprocess.run(["git", "check-ignore", "-q", path], cwd=ROOT)
        assert result.returncode == 0, f"{path} is not ignored"


def test_no_env_file_is_tracked() -> None:
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True).stdout
    assert not [f for f in tracked.splitlines() if Path(f).name == ".env"]


@pytest.mark.parametrize("notebook", sorted((ROOT / "notebooks").glob("*.ipynb")), ids=lambda p: p.name)
def test_notebooks_are_committed_without_outputs(notebook: Path) -> None:
    cells = json.loads(notebook.read_text())["cells"]
    code = [c for c in cells if c["cell_type"] == "code"]
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in code)
    assert sum("parameters" in c.get("metadata", {}).get("tags", []) for c in code) == 1
    assert cells[0]["cell_type"] == "markdown", "a notebook opens by saying what it does"
