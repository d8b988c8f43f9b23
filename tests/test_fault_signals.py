"""SIGTERM and SIGINT to `hnpipe run` (issue 18 rows 5, 6): the kernels stop before it exits, so
nothing is published after it has gone; the history says "terminated by SIG..." with what was
published before; exit 143 or 130 with one line and no traceback; no socket folders left."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import duckdb
import pytest
from hnpipe.sample import Faults, SampleServer, generate_sample

from helpers_faults import hnpipe_process, log_trial
from kernels import alive, kernel_processes
from registered import DATASET_TABLES


@pytest.mark.slow  # hnpipe run in its own process, its kernels, a sample server
@pytest.mark.parametrize("signum, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_stops_the_kernels_records_the_run_and_leaves_nothing(
        clean_env: Path, tmp_path: Path, signum: int, code: int) -> None:
    temp = tmp_path / "tmp"
    temp.mkdir()
    stale = temp / "hnpipe-kernel-999999999-abc"  # a SIGKILLed run's socket folder: removed at start
    stale.mkdir()
    # Every answer takes 3 s: ITEMS is still fetching when the signal comes.
    slow = Faults(timeout=1.0, timeout_sleep_s=3.0)
    with SampleServer(items=generate_sample(400, seed=2), faults=slow) as server:
        process = hnpipe_process("run", "--env", "local", "-p", f"hn_api_url={server.base_url}",
                                 "-p", "n_items=400", env={"TMPDIR": str(temp), "HNPIPE_PROGRESS": "1"})
        try:
            for line in process.stdout:
                if "items.ipynb: running" in line:
                    break
            run_id = next((clean_env.parent / "runs" / "local").iterdir()).name
            time.sleep(4)  # the fetch cell is under way
            kernels = kernel_processes(process.pid)
            assert len(kernels) >= 3, kernels  # one per notebook, started ahead
            sent = time.monotonic()
            # Ctrl-C reaches the terminal's foreground group: the runner, not the kernels' sessions.
            os.killpg(process.pid, signum) if signum == signal.SIGINT else process.send_signal(signum)
            out, err = process.communicate(timeout=60)
            took = time.monotonic() - sent
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == code, (out, err)
    assert took < 15, took  # bounded: interrupt, terminate, kill
    assert "Traceback" not in err and "DeadKernelError" not in err, err
    name = signal.Signals(signum).name
    assert err.strip().count("\n") == 0 and err.startswith(
        f"hnpipe: error: run {run_id} terminated by {name}: its notebooks were stopped; published before: "
        f"nothing; not published: {', '.join(DATASET_TABLES)}"), err
    assert [pid for pid in kernels if alive(pid)] == []  # no kernel lives on to publish after the runner
    time.sleep(2)
    with duckdb.connect(str(clean_env / "LOCAL.duckdb"), read_only=True) as con:
        tables = {t for (t,) in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
        rows = con.execute('SELECT DATASET, STATUS, ERROR FROM "TESTER"."PIPELINE_RUNS" WHERE RUN_ID = ? '
                           "AND STATUS = 'failed' AND ERROR = ? ORDER BY DATASET",
                           [run_id, f"terminated by {name}"]).fetchall()
    assert "ITEMS" not in tables
    assert [row[0] for row in rows] == sorted(DATASET_TABLES)
    assert sorted(p.name for p in temp.iterdir()) == []  # its own socket folders and the stale one
    assert not list((clean_env.parent / "runs").rglob("*.tmp"))
    log_trial(test="signal", signal=name, exit=process.returncode, stop_s=round(took, 2))
