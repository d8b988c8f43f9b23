"""Progress where people wait: a bar with a total in terminals, plain lines in logs and under
`hnpipe run` (on its stdout, never in the executed notebooks; stderr keeps the one-line error)."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hnpipe import progress
from hnpipe.hn import HttpHNClient
from hnpipe.refresh import full_plan
from hnpipe.sample import SampleServer

ROOT = Path(__file__).resolve().parents[1]


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def on_screen(monkeypatch) -> Terminal:
    """stderr as a terminal (set inside the test: pytest restores its capture after fixtures)."""
    screen = Terminal()
    monkeypatch.setattr(sys, "stderr", screen)
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.delenv("HNPIPE_PROGRESS", raising=False)
    return screen


def test_a_fetch_in_a_terminal_shows_its_total_percentage_and_time_left(monkeypatch) -> None:
    screen = on_screen(monkeypatch)
    with SampleServer() as server, HttpHNClient(server.base_url) as client:
        client.fetch_items(full_plan(client.max_item(), 120).ids(), lambda item: None)
    drawn = screen.getvalue()
    assert "HN items: 100%" in drawn and "120/120 [" in drawn
    assert "/120 [00:00<" in drawn  # elapsed<remaining: the ETA is there from the start


def test_a_bar_stopped_early_turns_red_and_says_why(monkeypatch) -> None:
    screen = on_screen(monkeypatch)
    bar = progress.Progress(10, "HN items", "item")
    bar.update(4)
    assert bar.close("interrupted") == f"HN items: interrupted at 4/10 (40%) after {bar.text('x').split()[-2]} s"
    drawn = screen.getvalue()
    assert "\x1b[31m" in drawn and "4/10" in drawn and "interrupted" in drawn


def test_a_log_gets_plain_lines_not_redrawn_bars(monkeypatch) -> None:
    log = io.StringIO()
    monkeypatch.setenv("HNPIPE_PROGRESS", "stdout")
    monkeypatch.setenv("CI", "true")
    monkeypatch.setattr(progress, "_OUTPUT", log)
    monkeypatch.setattr(progress, "LINE_EVERY_S", 0.0)
    bar = progress.Progress(3, "HN items", "item")
    for _ in range(3):
        bar.update()
    bar.close()
    lines = log.getvalue().splitlines()
    assert "\r" not in log.getvalue()
    assert lines[0] == "HN items: fetching 3 items"
    assert lines[1].startswith("HN items: 1/3 (33%), ") and lines[1].endswith(" left")
    assert lines[-1].startswith("HN items: 3/3 (100%) in ")


@pytest.mark.slow
def test_hnpipe_run_says_what_it_does_while_it_runs(tmp_path) -> None:
    env = {**os.environ, "CI": "true", "HNPIPE_WAREHOUSE": f"duckdb:{tmp_path / 'wh'}",
           "HNPIPE_RUNS_DIR": str(tmp_path / "runs")}
    env.pop("HNPIPE_PROGRESS")
    done = subprocess.run([sys.executable, "-m", "hnpipe.cli", "run", "--env", "local", "--only", "ITEMS",
                           "-p", "n_items=200"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    lines = done.stdout.splitlines()
    assert lines[0] == "[1/1] items.ipynb: running (ITEMS)"
    assert lines[1] == "HN items: fetching 200 items"
    assert lines[2].startswith("HN items: 200/200 (100%) in ")
    assert lines[3].startswith("[1/1] items.ipynb: done in ")
    [executed] = (tmp_path / "runs" / "local").glob("*/items.ipynb")
    outputs = json.dumps([cell.get("outputs") for cell in json.loads(executed.read_text())["cells"]])
    assert "HN items:" not in outputs  # progress is for the person waiting, not the record
