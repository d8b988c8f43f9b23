"""Adding a dataset touches the registry, one notebook and the README (issue 16).

A throwaway JOBS (the job rows of ITEMS) is registered here as a line in hnpipe.datasets would
register it, its notebook written into a temporary copy of the project from stories.ipynb. It is
built by running its notebook's cells, published, gated, checked by the dry run, scheduled by
the runner and described by the catalog like the three real datasets, with no other change:
every test helper reads the datasets from the registry (tests/registered.py, conftest's
notebook order), so none names JOBS.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
from hnpipe import datasets, history, pipeline, runner
from hnpipe.datasets import Dataset
from hnpipe.environments import Target
from hnpipe.errors import WarehouseError
from hnpipe.ops import catalog
from hnpipe.runner import preflight
from hnpipe.warehouse import open_warehouse, spec_for
from registered import dataset_tables, expected_tables

pytestmark = pytest.mark.filterwarnings("ignore:Arrow output on a DB-API result:UserWarning")

ROOT = Path(__file__).resolve().parents[1]
TARGET = Target("LOCAL", "TESTER")  # conftest sets HNPIPE_DEV_SCHEMA=TESTER
# What a developer would add to DATASETS, with the registry's own helpers.
JOBS = Dataset(
    name="JOBS",
    description="The jobs among ITEMS: the rows whose TYPE is job, same columns.",
    upstream=("ITEMS",),
    notebook="jobs.ipynb",
    sql=datasets._items_of_type("job"),
    gates=(datasets._only_type("job", "only_jobs"),),
    item_type="job",
)
VALUES = {"environment": "local", "n_items": 400}  # the bundled sample has a few jobs among these


def jobs_notebook(stories: Path) -> dict:
    """jobs.ipynb as a developer writes it: stories.ipynb with the names changed."""
    notebook = json.loads(stories.read_text())
    for cell in notebook["cells"]:
        cell["source"] = ["".join(cell["source"]).replace("STORIES", "JOBS").replace("stories", "jobs")
                          .replace("story", "job")]
    return notebook


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, clean_env: Path) -> Path:
    """A copy of the project with JOBS registered and notebooks/jobs.ipynb written."""
    root = tmp_path / "project"
    root.mkdir()
    (root / "pyproject.toml").write_bytes((ROOT / "pyproject.toml").read_bytes())
    shutil.copytree(ROOT / "params", root / "params")
    shutil.copytree(ROOT / "notebooks", root / "notebooks")
    (root / "notebooks" / "jobs.ipynb").write_text(json.dumps(jobs_notebook(ROOT / "notebooks" / "stories.ipynb")))
    monkeypatch.setitem(datasets.DATASETS, "JOBS", JOBS)
    monkeypatch.setenv("HNPIPE_ROOT", str(root))
    return root


def run_notebook(path: Path, parameters: dict) -> dict:
    """The notebook's code cells in order, in one namespace, as a kernel runs them; its
    parameters cell's values replaced by `parameters`, as papermill injects them."""
    namespace: dict = {}
    for cell in json.loads(path.read_text())["cells"]:
        if cell["cell_type"] == "code":
            exec("".join(cell["source"]), namespace)
            if "parameters" in cell.get("metadata", {}).get("tags", []):
                namespace.update(parameters)
    return namespace


@pytest.mark.slow  # whole pipelines or backfills, several over (the full suite runs it)
def test_jobs_is_built_by_its_notebook_published_and_recorded_like_the_others(project: Path) -> None:
    step = pipeline.start("ITEMS", VALUES)
    step.publish(step.fetch_items())
    items = step.read()
    namespace = run_notebook(project / "notebooks" / "jobs.ipynb", VALUES)

    assert namespace["step"].dataset is JOBS
    expected = expected_tables(items)  # the registry's datasets, JOBS among them
    assert list(expected) == list(dataset_tables()) == ["ITEMS", "COMMENTS", "STORIES", "JOBS"]
    assert len(expected["JOBS"]) > 0, "the sample should hold a job among the newest items"
    with open_warehouse(spec_for("local")) as warehouse:
        pd.testing.assert_frame_equal(warehouse.read_table(TARGET, "JOBS"), expected["JOBS"])
        assert warehouse.describe_table(TARGET, "JOBS").comment == JOBS.table_comment
        assert "Built from ITEMS by notebooks/jobs.ipynb" in JOBS.table_comment
        recorded = history.read(warehouse, TARGET, "JOBS")
    assert recorded.STATUS.tolist() == [history.SUCCEEDED] and recorded.ROWS_WRITTEN.tolist() == [len(expected["JOBS"])]


def test_jobs_is_gated_like_the_others(project: Path) -> None:
    step = pipeline.start("ITEMS", VALUES)
    step.publish(step.fetch_items())
    pipeline.start("JOBS", VALUES).build()
    gates = datasets.quality_gates(JOBS)
    assert {"only_jobs", "rows_match_items", "id_unique", "type_known"} <= {gate.name for gate in gates}
    with open_warehouse(spec_for("local")) as warehouse:
        before = warehouse.read_table(TARGET, "JOBS")
        # The stories instead of the jobs: refused by JOBS' own gate and the shared one.
        with pytest.raises(WarehouseError, match=r"refused to publish LOCAL\.TESTER\.JOBS: failed checks: "
                                                 r"only_jobs .*rows_match_items"):
            warehouse.publish_query(TARGET, "JOBS", datasets.get("STORIES").sql, "run2", gates)
        pd.testing.assert_frame_equal(warehouse.read_table(TARGET, "JOBS"), before)


def test_the_dry_run_the_runner_and_the_catalog_take_jobs_from_the_registry(project: Path) -> None:
    checks = preflight.dry_run("local", root=project)
    notebooks = [check for check in checks if check.name == "notebook"]
    assert [check.ok for check in notebooks] == [True] * 4
    assert notebooks[-1].detail.startswith("jobs.ipynb parses and declares ")
    assert [[d.name for d in wave] for wave in runner._waves(datasets.dependency_order())] == [
        ["ITEMS"], ["COMMENTS", "STORIES", "JOBS"]]
    assert ("ITEMS", "JOBS") in datasets.lineage()
    assert catalog.lineage_text() == "HN API -> ITEMS -> COMMENTS, STORIES, JOBS"
    assert datasets.downstream("ITEMS") == ["COMMENTS", "STORIES", "JOBS"]


def test_without_its_notebook_the_dry_run_names_the_missing_file(project: Path) -> None:
    (project / "notebooks" / "jobs.ipynb").unlink()
    failed = [check for check in preflight.dry_run("local", root=project) if check.ok is False]
    assert [check.name for check in failed] == ["notebook"]
    assert failed[0].detail.endswith("jobs.ipynb does not exist")
