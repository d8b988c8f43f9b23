"""The project's own files: dependencies in sync, secrets and outputs never committed."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from hnpipe import notebook_filter
from hnpipe.notebook_filter import FIX_COMMAND

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
def test_notebooks_are_committed_as_the_nbstripout_filter_leaves_them(notebook: Path) -> None:
    """What `git add` stores through the filter is what is committed: no outputs, no counts, no
    run-time metadata; and the notebook metadata is what the kernel writes, so opening a
    notebook in JupyterLab changes nothing (tests/test_browser.py checks the tab stays clean)."""
    import nbformat
    from ipykernel.ipkernel import IPythonKernel
    from nbstripout import strip_output

    fix = f"run `{FIX_COMMAND.format(path=notebook.relative_to(ROOT))}` and commit it"
    committed = nbformat.reads(notebook.read_text(), as_version=nbformat.NO_CONVERT)
    stripped = strip_output(nbformat.reads(notebook.read_text(), as_version=nbformat.NO_CONVERT),
                            keep_output=False, keep_count=False, keep_id=False)
    assert committed == stripped, f"{notebook.name} is committed with outputs or run-time metadata: {fix}"
    language = {k: v for k, v in IPythonKernel.language_info.items() if k != "version"}
    written = {k: v for k, v in committed.metadata.get("language_info", {}).items() if k != "version"}
    assert written == language, (f"{notebook.name}: language_info differs from what the kernel writes "
                                 f"({written} vs {language}), so JupyterLab marks it modified on opening")
    code = [c for c in committed.cells if c["cell_type"] == "code"]
    assert sum("parameters" in c.get("metadata", {}).get("tags", []) for c in code) == 1, notebook.name
    assert committed.cells[0]["cell_type"] == "markdown", "a notebook opens by saying what it does"


def test_git_attributes_send_notebooks_through_the_filter_hnpipe_sets_up() -> None:
    result = subprocess.run(["git", "check-attr", "filter", "diff", "--", "notebooks/items.ipynb"], cwd=ROOT,
                            capture_output=True, text=True)
    assert "filter: nbstripout" in result.stdout and "diff: ipynb" in result.stdout
    hook = yaml.safe_load((ROOT / ".pre-commit-config.yaml").read_text())["repos"]
    assert [h["id"] for repo in hook for h in repo["hooks"]] == ["nbstripout"]


@pytest.mark.slow  # a git clone and an `hnpipe run` subprocess
def test_run_sets_up_the_filter_in_a_fresh_clone_so_an_executed_notebook_adds_nothing_to_git(
        tmp_path: Path) -> None:
    """A fresh clone, `hnpipe run`'s filter setup, then the executed notebook saved over the
    committed one (as JupyterLab's autosave does): `git status` stays clean; and again
    idempotently (nothing said the second time)."""
    import nbformat

    clone = tmp_path / "clone"
    subprocess.run(["git", "init", "-q", str(clone)], check=True)
    (clone / ".gitattributes").write_text((ROOT / ".gitattributes").read_text())
    (clone / "nb.ipynb").write_text((ROOT / "notebooks" / "explore.ipynb").read_text())
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "add", "."], cwd=clone, check=True)
    subprocess.run([*git, "commit", "-qm", "x"], cwd=clone, check=True)
    assert notebook_filter.ensure_installed(clone).startswith("git: notebook outputs are stripped")
    assert notebook_filter.ensure_installed(clone) is None
    executed = nbformat.read(clone / "nb.ipynb", as_version=4)
    for number, cell in enumerate(c for c in executed.cells if c.cell_type == "code"):
        cell.execution_count = number + 1
        cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text="/home/me/.warehouse PID 4242\n")]
        cell.metadata["execution"] = {"iopub.status.busy": "2026-12-07T01:00:00Z"}
    nbformat.write(executed, clone / "nb.ipynb")
    # Through the filter nothing differs: no diff, and adding it stages nothing. (git status
    # lists a file whose size changed until it is added, whatever the filter says: that is why
    # the project's JupyterLab also saves notebooks/ stripped, tests/test_records.py.)
    assert subprocess.run(["git", "diff"], cwd=clone, capture_output=True, text=True).stdout == ""
    subprocess.run(["git", "add", "nb.ipynb"], cwd=clone, check=True)
    status = subprocess.run(["git", "status", "--porcelain"], cwd=clone, capture_output=True, text=True)
    assert status.stdout == ""
    assert notebook_filter.changed_files(clone) == []


def test_the_hnpipe_process_ends_without_collecting_its_whole_heap() -> None:
    # The entry point freezes the heap at exit (its last atexit handler), so the interpreter's
    # teardown skips it (docs/performance.md); a test calling cli.main(argv) leaves it alone.
    probe = ("import atexit, gc, sys\n"
             "from hnpipe import cli\n"
             "atexit.register(lambda: print('frozen at exit:', gc.get_freeze_count() > 0))\n"
             "sys.argv = ['hnpipe', '--help']\n"
             "cli.main() if sys.argv[-1:] == ['entry'] else cli.main(['--help'])\n")
    for how, frozen in (("entry", True), ("called", False)):
        out = subprocess.run([sys.executable, "-c", probe.replace("sys.argv[-1:] == ['entry']", repr(how == "entry"))],
                             capture_output=True, text=True, timeout=60).stdout
        assert f"frozen at exit: {frozen}" in out, (how, out)
