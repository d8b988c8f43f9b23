"""Other processes holding a DuckDB file, as a JupyterLab kernel might (lock tests)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def hold_lock(path: Path, seconds: float | None = None) -> subprocess.Popen:
    """Another process holding `path` open for writing, as a JupyterLab kernel might.

    Holds it until its stdin closes, or for `seconds`; returns once the lock is held.
    """
    release = f"time.sleep({seconds})" if seconds is not None else "sys.stdin.read()"
    code = (f"import duckdb, sys, time\ncon = duckdb.connect({str(path)!r})\n"
            f"print('holding', flush=True)\n{release}\ncon.close()\n")
    process = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "holding"
    return process


def release(process: subprocess.Popen) -> None:
    process.stdin.close()
    process.wait(timeout=10)


def opens_for_writing_elsewhere(path: Path) -> str:
    """'' when another process can open `path` for writing now, else its error line."""
    done = subprocess.run([sys.executable, "-c", f"import duckdb; duckdb.connect({str(path)!r}).close()"],
                          capture_output=True, text=True, timeout=60)
    return "" if done.returncode == 0 else (done.stderr.strip().splitlines() or ["failed"])[-1]
