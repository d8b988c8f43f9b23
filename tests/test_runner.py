"""`hnpipe run` end to end: real notebooks, real papermill kernels, a real DuckDB warehouse."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import duckdb
import nbformat
import pytest
from hnpipe import datasets
from registered import DATASET_TABLES, built_in_sql

# Every test here starts kernels, servers or processes: `pytest -m "not slow"` skips them.
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]


def hnpipe(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "hnpipe.cli", *args], cwd=ROOT, capture_output=True, text=True,
        env={**os.environ, **(env or {})}, timeout=600,
    )


def test_run_local_builds_the_three_datasets(clean_env: Path, tmp_path: Path) -> None:
    result = hnpipe("run", "--env", "local", "-p", "n_items=400")
    assert result.returncode == 0, result.stderr
    database = clean_env / "LOCAL.duckdb"
    assert database.is_file()
    with duckdb.connect(str(database), read_only=True) as con:
        tables = {name for (name,) in con.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'TESTER'").fetchall()}
        assert tables == {*DATASET_TABLES, "PIPELINE_RUNS"}
        items = con.execute('SELECT COUNT(*), MIN(ID), MAX(ID) FROM "TESTER"."ITEMS"').fetchone()
        # The 400 newest ids minus those that answer null, nothing else.
        assert 0 < items[0] <= 400 and items[2] - items[1] < 400
        for table, kind in ((dataset.name, dataset.item_type) for dataset in built_in_sql()):
            missing = con.execute(f"""SELECT COUNT(*) FROM (SELECT * FROM "TESTER"."ITEMS" WHERE TYPE = '{kind}'
                                      EXCEPT SELECT * FROM "TESTER"."{table}")""").fetchone()[0]
            extra = con.execute(f"""SELECT COUNT(*) FROM (SELECT * FROM "TESTER"."{table}"
                                    EXCEPT SELECT * FROM "TESTER"."ITEMS" WHERE TYPE = '{kind}')""").fetchone()[0]
            count = con.execute(f'SELECT COUNT(*) FROM "TESTER"."{table}"').fetchone()[0]
            assert (missing, extra) == (0, 0) and count > 0, table
        counts = {name: con.execute(f'SELECT COUNT(*) FROM "TESTER"."{name}"').fetchone()[0] for name in DATASET_TABLES}
    # The summary reports the rows each dataset holds, and where the executed notebooks are.
    for name, rows in counts.items():
        assert any(line.split()[:2] == [name, f"{rows:,}"] for line in result.stdout.splitlines()), result.stdout
    run_dirs = list((tmp_path / "runs" / "local").iterdir())
    assert len(run_dirs) == 1
    kept = sorted(p.name for p in run_dirs[0].iterdir())
    assert kept == sorted(f"{Path(dataset.notebook).stem}.{kind}" for dataset in datasets.dependency_order()
                          for kind in ("html", "ipynb"))
    executed = nbformat.read(run_dirs[0] / "items.ipynb", as_version=4)
    assert executed.metadata.papermill.parameters["n_items"] == 400
    assert all(c.get("execution_count") for c in executed.cells if c.cell_type == "code")
    # The history holds one succeeded row per dataset, with the run's id and kept notebook.
    with duckdb.connect(str(database), read_only=True) as con:
        runs = con.execute('SELECT DATASET, RUN_ID, STATUS, ROWS_WRITTEN, NOTEBOOK FROM "TESTER"."PIPELINE_RUNS" '
                           "WHERE STATUS <> 'running' ORDER BY STARTED_AT").fetchall()  # not the run's marker
        (marker,) = con.execute('SELECT RUN_ID, DATASET FROM "TESTER"."PIPELINE_RUNS" WHERE STATUS = \'running\'').fetchall()
    assert marker == (run_dirs[0].name, None)
    # ITEMS first; the datasets built from it run at once, so any may start first.
    assert runs[0][0] == "ITEMS"
    assert sorted(runs) == [(name, run_dirs[0].name, "succeeded", counts[name], str(run_dirs[0] / f"{name.lower()}.ipynb"))
                            for name in sorted(DATASET_TABLES)]


def test_run_refuses_a_mismatched_environment_before_anything_runs(clean_env: Path, tmp_path: Path) -> None:
    result = hnpipe("run", "--env", "production")  # HNPIPE_ENV is unset: this process is local
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1
    assert ("refused: --env production asks for environment 'production' but this process runs as "
            "HNPIPE_ENV=local; use --env local here, or run where HNPIPE_ENV=production is set") in result.stderr
    assert not clean_env.exists() and not (tmp_path / "runs").exists()


@pytest.mark.parametrize("override,message", [
    ("n_items=0", "n_items=0 is not allowed"),
    ("colour=red", "unknown parameter 'colour'"),
    ("n_items=ten", "n_items='ten' (str) is not a whole number"),
])
def test_run_refuses_bad_parameters_before_anything_runs(clean_env: Path, tmp_path: Path,
                                                         override: str, message: str) -> None:
    result = hnpipe("run", "--env", "local", "-p", override)
    assert result.returncode == 1
    assert message in result.stderr and result.stderr.count("\n") == 1
    assert not clean_env.exists() and not (tmp_path / "runs").exists()


def test_a_failing_notebook_is_named_with_its_kept_output(clean_env: Path, tmp_path: Path) -> None:
    # Port 9 on loopback (discard) refuses connections: the fetch fails after its retries.
    result = hnpipe("run", "--env", "local", "-p", "hn_api_url=http://127.0.0.1:9/v0", "-p", "n_items=3")
    assert result.returncode == 1
    line = result.stderr.strip()
    assert line.startswith("hnpipe: error: items.ipynb failed: FetchError")
    kept = next((tmp_path / "runs" / "local").iterdir()) / "items.ipynb"
    assert f"executed notebook kept at {kept}" in line and kept.is_file()
    with duckdb.connect(str(clean_env / "LOCAL.duckdb"), read_only=True) as con:
        assert "ITEMS" not in str(con.execute("SELECT table_name FROM information_schema.tables").fetchall())
        # One failed row: the notebook recorded it, so the runner did not add another.
        runs = con.execute('SELECT DATASET, STATUS, ERROR, NOTEBOOK FROM "TESTER"."PIPELINE_RUNS" '
                           "WHERE STATUS <> 'running'").fetchall()  # not the run's marker
    assert len(runs) == 1 and runs[0][:2] == ("ITEMS", "failed") and runs[0][3] == str(kept)
    assert runs[0][2].startswith("FetchError: ") and runs[0][2] in line


def test_run_only_some_datasets(clean_env: Path, tmp_path: Path) -> None:
    assert hnpipe("run", "--env", "local", "-p", "n_items=200").returncode == 0
    result = hnpipe("run", "--env", "local", "--only", "STORIES", "--only", "COMMENTS")
    assert result.returncode == 0, result.stderr
    newest = max((tmp_path / "runs" / "local").iterdir())
    assert sorted(p.name for p in newest.glob("*.ipynb")) == ["comments.ipynb", "stories.ipynb"]
    refused = hnpipe("run", "--env", "local", "--only", "stories")
    assert refused.returncode == 1 and "unknown dataset 'stories'" in refused.stderr
