"""Test-wide setup: every test (and every notebook nbval runs) gets a throwaway warehouse.

nbval starts notebook kernels that inherit this process's environment, so pointing
HNPIPE_WAREHOUSE and HNPIPE_RUNS_DIR at temporary directories here keeps the suite away
from the developer's own .warehouse/ and runs/.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from hnpipe import datasets

ROOT = Path(__file__).resolve().parent
# The order nbval must run the notebooks in: each dataset's after its upstream ones (the
# registry's order), then the notebooks that build nothing (explore reads every dataset).
NOTEBOOK_ORDER = [dataset.notebook for dataset in datasets.dependency_order()]
NOTEBOOK_ORDER += sorted({path.name for path in (ROOT / "notebooks").glob("*.ipynb")} - set(NOTEBOOK_ORDER),
                         key=lambda name: (name != "explore.ipynb", name))
_SCRATCH = Path(tempfile.mkdtemp(prefix="hnpipe-tests-"))
# The Snowflake stand-ins' fixtures (fake_snowflake, snowflake_process, recorded_write_pandas),
# for every test; tests/ is on sys.path through pyproject's `pythonpath`.
pytest_plugins = ["snowflake_fakes"]


def pytest_configure(config: pytest.Config) -> None:
    for key in ("HNPIPE_ENV", "HNPIPE_PR_ID", "HNPIPE_RUN_ID", "HNPIPE_WAREHOUSE", "HNPIPE_ROOT",
                "GITHUB_REF", "CI_MERGE_REQUEST_IID"):
        os.environ.pop(key, None)
    os.environ["HNPIPE_WAREHOUSE"] = f"duckdb:{_SCRATCH / 'warehouse'}"
    os.environ["HNPIPE_RUNS_DIR"] = str(_SCRATCH / "runs")
    os.environ["HNPIPE_DEV_SCHEMA"] = "TESTER"
    os.environ["HNPIPE_PROGRESS"] = "0"


def pytest_unconfigure(config: pytest.Config) -> None:
    shutil.rmtree(_SCRATCH, ignore_errors=True)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def notebook_rank(item: pytest.Item) -> int:
        name = Path(str(item.fspath)).name
        return NOTEBOOK_ORDER.index(name) if name in NOTEBOOK_ORDER else -1

    items.sort(key=notebook_rank)  # stable: tests keep their order, notebooks follow in order
    for item in items:
        if Path(str(item.fspath)).suffix == ".ipynb":  # nbval runs every notebook in a kernel
            item.add_marker(pytest.mark.slow)


_SEEDED: set[str] = set()


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Let a notebook run on its own (`pytest notebooks/comments.ipynb`): before its first
    cell, publish the datasets it reads that this session has not built, through the library
    with the default parameters, as running their notebooks first would. When the whole suite
    runs, the notebooks run in NOTEBOOK_ORDER and build them themselves."""
    name = Path(str(item.fspath)).name
    if name not in NOTEBOOK_ORDER or name in _SEEDED:
        return
    _SEEDED.add(name)
    # Imported on use: pipeline imports pandas, which collecting the tests does not need.
    from hnpipe import params, pipeline

    built_by_earlier = {nb for nb in NOTEBOOK_ORDER[:NOTEBOOK_ORDER.index(name)] if nb in _SEEDED}
    needs = [d for d in datasets.dependency_order()
             if d.notebook != name and d.notebook not in built_by_earlier
             and (name == "explore.ipynb"
                  or d.name in _upstream_closure(name))]
    defaults = {key: parameter.default for key, parameter in params.PARAMETERS.items()}
    for dataset in needs:
        step = pipeline.start(dataset.name, dict(defaults))
        step.publish(step.fetch_items()) if dataset.sql is None else step.build()


def _upstream_closure(notebook: str) -> set[str]:
    wanted = {d.name for d in datasets.dependency_order() if d.notebook == notebook}
    found: set[str] = set()
    while wanted:
        name = wanted.pop()
        for upstream in datasets.get(name).upstream:
            if upstream not in found:
                found.add(upstream)
                wanted.add(upstream)
    return found


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """A private warehouse and runs directory for one test; returns the warehouse dir."""
    warehouse = tmp_path / "warehouse"
    monkeypatch.setenv("HNPIPE_WAREHOUSE", f"duckdb:{warehouse}")
    monkeypatch.setenv("HNPIPE_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.delenv("HNPIPE_ENV", raising=False)
    monkeypatch.delenv("HNPIPE_PR_ID", raising=False)
    return warehouse
