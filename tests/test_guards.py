"""The guard matrix and the promotion rehearsal, through plain papermill.

Every HNPIPE_ENV x params file pair runs items.ipynb exactly as a user would
(`papermill notebooks/items.ipynb out.ipynb -f params/<env>.yaml`), all on the embedded
engine (HNPIPE_WAREHOUSE=duckdb:<dir>). The 4 agreeing pairs must write only their own
database; the 12 others must be refused with every database file byte-for-byte unchanged.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hnpipe.environments import ENVIRONMENTS
from hnpipe.warehouse.duckdb_engine import DuckDBWarehouse

# Every test here starts kernels, servers or processes: `pytest -m "not slow"` skips them.
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
PR = "7"
DATABASE = {"local": "LOCAL", "staging": "STAGING", "production": "PRODUCTION",
            "branch": f"PRODUCTION_CLONE_{PR}"}
MISMATCHES = [(running, wanted) for running in ENVIRONMENTS for wanted in ENVIRONMENTS if running != wanted]


def fingerprint(directory: Path) -> dict[str, str]:
    """Each database file's digest; a database's stage (`<DB>.stage/`, its fetched Parquet files)
    counts as part of that database."""
    found = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(directory.glob("*")) if p.is_file()}
    for stage in sorted(directory.glob("*.stage")):
        files = sorted(str(f.relative_to(stage)) for f in stage.rglob("*") if f.is_file())
        found[stage.name.replace(".stage", ".duckdb")] = hashlib.sha256(
            (found.get(stage.name.replace(".stage", ".duckdb"), "") + repr(files)).encode()).hexdigest()
    return found


def papermill(running: str, wanted: str, warehouse: Path, out: Path, notebook: str = "items.ipynb"):
    env = {**os.environ, "HNPIPE_ENV": running, "HNPIPE_WAREHOUSE": f"duckdb:{warehouse}",
           "HNPIPE_PR_ID": PR, "HNPIPE_DEV_SCHEMA": "TESTER"}
    return subprocess.run(
        [sys.executable, "-m", "papermill", str(ROOT / "notebooks" / notebook), str(out),
         "-f", str(ROOT / "params" / f"{wanted}.yaml"),
         # offline: the staging/production/branch files name the live API
         "-p", "hn_api_url", "sample", "-p", "n_items", "60", "--cwd", str(ROOT / "notebooks")],
        env=env, capture_output=True, text=True, timeout=300,
    )


@pytest.fixture(scope="module")
def rehearsed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Promote through local, staging, production and (after cloning) branch, in that order."""
    warehouse = tmp_path_factory.mktemp("rehearsal")
    out = tmp_path_factory.mktemp("outputs")
    for env in ("local", "staging", "production", "branch"):
        if env == "branch":
            DuckDBWarehouse(str(warehouse)).clone_database("PRODUCTION", DATABASE["branch"])
        before = fingerprint(warehouse)
        result = papermill(env, env, warehouse, out / f"{env}.ipynb")
        assert result.returncode == 0, result.stderr[-2000:]
        after = fingerprint(warehouse)
        changed = {name for name in after if before.get(name) != after[name]}
        assert changed == {f"{DATABASE[env]}.duckdb"}, f"{env} changed {changed}"
    return warehouse


def test_rehearsal_writes_each_environment_only_to_its_own_database(rehearsed: Path) -> None:
    wh = DuckDBWarehouse(str(rehearsed))
    assert wh.list_databases() == sorted(DATABASE.values())
    from hnpipe.environments import Target

    for env, database in DATABASE.items():
        schema = "TESTER" if env == "local" else "HACKER_NEWS"
        assert set(wh.list_tables(Target(database, schema))) == {"ITEMS"}, env


@pytest.mark.parametrize("running,wanted", MISMATCHES)
def test_mismatched_pairs_are_refused_with_nothing_written(rehearsed: Path, tmp_path: Path,
                                                          running: str, wanted: str) -> None:
    before = fingerprint(rehearsed)
    result = papermill(running, wanted, rehearsed, tmp_path / "out.ipynb")
    assert result.returncode != 0
    assert (f"GuardError: refused: the parameters ask for environment '{wanted}' but this "
            f"process runs as HNPIPE_ENV={running}") in result.stderr
    assert fingerprint(rehearsed) == before


def test_branch_run_without_its_clone_says_to_clone_first(tmp_path: Path) -> None:
    result = papermill("branch", "branch", tmp_path / "empty", tmp_path / "out.ipynb")
    assert result.returncode != 0
    assert (f"refused branch run: PRODUCTION_CLONE_{PR} does not exist; run "
            f"`hnpipe admin clone --pr {PR}` first") in result.stderr
    assert not any((tmp_path / "empty").glob("*.duckdb"))
