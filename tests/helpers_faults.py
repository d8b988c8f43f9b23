"""What the fault tests share (test_faults.py, test_fault_crash.py, test_fault_inputs.py):
the drill's settings, the expected tables for a sample, and ways to run `hnpipe` in a process
of its own. Not a test file, so no test module imports another.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Mapping

import duckdb
import pandas as pd
import pytest
from hnpipe.environments import Target
from hnpipe.hn import latest_ids
from hnpipe.items import items_frame
from hnpipe.warehouse.base import STAGING_MARKER
from registered import DATASET_TABLES, expected_tables, of_type  # noqa: F401  (the fault tests import them from here)

ROOT = Path(__file__).resolve().parents[1]
TARGET = Target("LOCAL", "TESTER")  # conftest sets HNPIPE_DEV_SCHEMA=TESTER

LONG = os.environ.get("HNPIPE_FAULT_DRILL") == "long"
long_only = pytest.mark.skipif(not LONG, reason="long fault drill: python benchmarks/faults.py")
# SIGKILL trials and repeated runs; the long drill raises it.
TRIALS = int(os.environ.get("HNPIPE_FAULT_TRIALS") or (25 if LONG else 4))
SEED = int(os.environ.get("HNPIPE_FAULT_SEED") or 20261121)

# The fault mix: a quarter of all requests fail one way or another.
DRILL_RATES = {"http_500": 0.10, "http_429": 0.05, "timeout": 0.05, "drop": 0.025, "truncate": 0.025}


def expected_items(items: Mapping[int, dict | None], n: int) -> tuple[pd.DataFrame, list[int]]:
    """What ITEMS must hold after fetching the `n` newest of `items`, and the null ids."""
    ids = latest_ids(max(items), n)
    frame = items_frame(items[i] for i in ids if items.get(i) is not None)
    return frame, [i for i in ids if items.get(i) is None]


def same_frame(left: pd.DataFrame, right: pd.DataFrame) -> bool:
    try:
        pd.testing.assert_frame_equal(left, right, check_exact=True)
    except AssertionError:
        return False
    return True


def which_version(actual: pd.DataFrame, versions: Mapping[str, pd.DataFrame]) -> str:
    """The name of the version `actual` equals exactly; fails if it is none of them."""
    for name, frame in versions.items():
        if same_frame(actual, frame):
            return name
    raise AssertionError(f"table matches none of {list(versions)}: {len(actual)} rows, "
                         f"ids {actual['ID'].min()}..{actual['ID'].max()}")


def all_tables(path: Path) -> list[str]:
    """Every table in a database file, staging included; opening it for writing also proves
    the file (and any WAL left by a crash) is readable."""
    with duckdb.connect(str(path)) as con:
        return sorted(row[0] for row in con.execute("SELECT table_name FROM duckdb_tables()").fetchall())


def staging_tables(path: Path) -> list[str]:
    return [name for name in all_tables(path) if STAGING_MARKER in name]


def hnpipe(*args: str, env: Mapping[str, str] | None = None, timeout: float = 600
           ) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hnpipe.cli", *args], cwd=ROOT,
                          capture_output=True, text=True, env={**os.environ, **(env or {})},
                          timeout=timeout)


def hnpipe_process(*args: str, env: Mapping[str, str] | None = None) -> subprocess.Popen:
    """`hnpipe ...` started in a session of its own, so a test can kill it and its kernels."""
    return subprocess.Popen([sys.executable, "-m", "hnpipe.cli", *args], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **(env or {})}, start_new_session=True)


def log_trial(**fields: object) -> None:
    """Append one trial's outcome to HNPIPE_FAULT_LOG (the long drill summarises them)."""
    path = os.environ.get("HNPIPE_FAULT_LOG")
    if path:
        with open(path, "a", encoding="utf-8") as log:
            log.write(json.dumps(fields) + "\n")


@contextmanager
def serve_sample_process(*flags: str) -> Iterator[tuple[str, list[str]]]:
    """`hnpipe serve-sample --port 0 ...` as its own process; yields (base URL, output lines),
    the lines filled in once it has stopped (SIGTERM: it prints what it served and injected)."""
    process = subprocess.Popen([sys.executable, "-m", "hnpipe.cli", "serve-sample", "--port", "0",
                                *flags], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    lines: list[str] = []
    try:
        banner = process.stdout.readline()
        match = re.search(r"http://127\.0\.0\.1:\d+/v0", banner)
        assert match, f"serve-sample did not start: {banner!r} {process.stderr.read()!r}"
        yield match.group(0), lines
    finally:
        process.send_signal(signal.SIGTERM)
        out, _ = process.communicate(timeout=20)
        lines.extend([banner.strip(), *out.splitlines()])


def faults_injected(lines: list[str]) -> dict[str, int]:
    """serve-sample's closing line, e.g. 'faults injected: http_500=3, ...', as a dict."""
    summary = next(line for line in lines if "faults injected:" in line)
    return {kind: int(count) for kind, count in re.findall(r"(\w+)=(\d+)", summary.split(":", 1)[1])}


def scribble_over(database: Path, table: str) -> None:
    """Overwrite one of `table`'s data blocks (`SCHEMA.TABLE`) with garbage, as a bad disk or an
    interrupted copy would: the file opens, the table cannot be read whole."""
    with duckdb.connect(str(database), read_only=True) as con:
        blocks = con.execute(f"SELECT DISTINCT block_id FROM pragma_storage_info('{table}') "
                             "WHERE block_id >= 0").fetchall()
    with database.open("r+b") as file:
        file.seek(3 * 4096 + max(blocks)[0] * 262144 + 1000)
        file.write(b"\xff" * 4096)
