"""The analyst's JupyterLab, in a real browser: Run All on items.ipynb and explore.ipynb, then
the habits of interactive work (edit a parameter and rerun, interrupt then publish, a typo in
the parameters cell). Kernel-level detail is in test_notebook_kernel.py; this checks what
the person sees. Skipped, saying why, without Chromium or Playwright.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

import browser
from browser import ROOT, Notebook, jupyter_lab, notebook_dir
from hnpipe.sample import SampleServer
from kernels import notebook_cells

# Every test here starts kernels, servers or processes: `pytest -m "not slow"` skips them.
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(browser.missing() is not None, reason=str(browser.missing()))]

ITEMS_CELLS = ["".join(cell["source"]) for cell in notebook_cells("items.ipynb")]
PARAMETERS, START, FETCH, PUBLISH = (
    next(i for i, source in enumerate(ITEMS_CELLS) if marker in source)
    for marker in ('environment = "local"', "pipeline.start", "step.fetch()", "step.publish(items)"))
TIMINGS: dict[str, float] = {}


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """JupyterLab over a copy of the notebooks, a private warehouse, and one browser page."""
    from playwright.sync_api import sync_playwright

    tmp = tmp_path_factory.mktemp("browser")
    env = {k: v for k, v in os.environ.items()
           if k not in ("CI", "HNPIPE_PROGRESS", "HNPIPE_RUN_ID", "HNPIPE_ENV", "HNPIPE_NOTEBOOK_OUTPUT")}
    env.update(HNPIPE_WAREHOUSE=f"duckdb:{tmp / 'warehouse'}", HNPIPE_RUNS_DIR=str(tmp / "runs"),
               HNPIPE_DEV_SCHEMA="TESTER", HNPIPE_ROOT=str(ROOT), JUPYTER_CONFIG_DIR=str(tmp / "config"),
               JUPYTERLAB_SETTINGS_DIR=str(tmp / "settings"), JUPYTERLAB_WORKSPACES_DIR=str(tmp / "workspaces"),
               JUPYTER_RUNTIME_DIR=str(tmp / "runtime"), HNPIPE_LOCK_TIMEOUT_S="3")
    browser.lab_settings(tmp / "settings")
    began = time.monotonic()
    with jupyter_lab(notebook_dir(tmp), env) as (base, token), sync_playwright() as playwright:
        chromium = playwright.chromium.launch_persistent_context(  # a fresh profile directory
            str(tmp / "chromium"), executable_path=browser.CHROMIUM, headless=True,
            args=browser.CHROMIUM_FLAGS, viewport={"width": 1400, "height": 1000})
        page = chromium.pages[0] if chromium.pages else chromium.new_page()
        page.set_default_timeout(60_000)
        yield page, base, token, began, tmp
        chromium.close()


@contextmanager
def screenshots_on_failure(page, name: str):
    try:
        yield
    except BaseException as error:
        where = Path(tempfile.mkdtemp(prefix=f"hnpipe-browser-{name}-"))
        try:
            page.screenshot(path=str(where / "page.png"), full_page=True)
            (where / "page.html").write_text(page.content())
        except Exception as shot_error:  # noqa: BLE001 - the test's own failure comes first
            (where / "screenshot-failed.txt").write_text(repr(shot_error))
        raise AssertionError(f"{error}\n(screenshots of the failing page: {where})") from error


def test_items_and_explore_run_all_cleanly_with_a_progress_bar_a_preview_and_charts(lab) -> None:
    page, base, token, began, _ = lab
    with screenshots_on_failure(page, "run-all"):
        items = Notebook(page, base, token, "items.ipynb")
        items.run_all()
        TIMINGS["jupyter lab to items.ipynb finished"] = time.monotonic() - began
        assert items.errors() == []
        bar = items.cell(FETCH).locator(".hnpipe-progress")
        assert bar.get_attribute("data-state") == "done"
        assert re.match(r"HN items: [\d,]+/1,000 \(100%\) in [\d.]+ s", bar.inner_text())
        assert items.cell(len(ITEMS_CELLS) - 1).locator("table").count() == 1  # the preview
        from hnpipe import pipeline  # explore charts STORIES too: build it as stories.ipynb would

        os.environ["HNPIPE_WAREHOUSE"], saved = f"duckdb:{lab[4] / 'warehouse'}", os.environ["HNPIPE_WAREHOUSE"]
        try:
            pipeline.start("STORIES", {"environment": "local"}).build()
        finally:
            os.environ["HNPIPE_WAREHOUSE"] = saved
        explore = Notebook(page, base, token, "explore.ipynb")
        explore.run_all()
        assert explore.errors() == []
        assert explore.panel.locator(".jp-OutputArea-output img").count() == 2
    print(f"\njupyter lab start to items.ipynb finished: {TIMINGS['jupyter lab to items.ipynb finished']:.1f} s")


def test_the_analysts_habits_edit_rerun_interrupt_publish_and_typo(lab) -> None:
    page, base, token, _, _ = lab
    with screenshots_on_failure(page, "habits"), SampleServer(latency_ms=40) as slow:
        items = Notebook(page, base, token, "items.ipynb")
        params = ITEMS_CELLS[PARAMETERS]
        items.run(PARAMETERS)
        items.run(START)
        # Edit a parameter and rerun only the fetch cell: the new value is what runs.
        items.edit(PARAMETERS, params.replace("n_items = 1000", "n_items = 300"))
        items.run(PARAMETERS)
        items.run(FETCH)
        assert "using the parameters as they are now: n_items=300" in items.output(FETCH)
        assert "HN items: 300/300 (100%)" in items.output(FETCH)

        # Interrupt a slow fetch, then run the publish cell: refused in two lines, bar red.
        items.edit(PARAMETERS, params.replace("n_items = 1000", "n_items = 2000")
                   .replace('hn_api_url = "sample"', f'hn_api_url = "{slow.base_url}"')
                   .replace("concurrency = 32", "concurrency = 4"))
        items.run(PARAMETERS)
        before = items.prompt(FETCH)
        items.run(FETCH, wait=False)
        items.cell(FETCH).locator(".hnpipe-progress[data-state='running']").wait_for()
        page.wait_for_function("""() => /HN items: [1-9][\\d,]*\\/2,000 \\(\\d+%\\), [\\d,]+ item\\/s, \\d+:\\d\\d left/
                                  .test(document.body.innerText)""")
        items.interrupt()
        items.wait_cell(FETCH, before)
        bar = items.cell(FETCH).locator(".hnpipe-progress")
        assert bar.get_attribute("data-state") == "failed"
        assert "interrupted at" in bar.inner_text()
        assert "KeyboardInterrupt" in items.output(FETCH)
        items.run(PUBLISH)
        refused = items.output(PUBLISH)
        assert "refused to publish: the last fetch did not complete; rerun the fetch cell" in refused
        assert "%tb" in refused and "site-packages" not in refused and len(refused.strip().splitlines()) <= 3

        # A typo in the parameters cell stops the start cell, naming it.
        items.edit(PARAMETERS, params + "\nn_item = 50")
        items.run(PARAMETERS)
        items.run(START)
        assert "unknown parameter 'n_item' (did you mean n_items?)" in items.output(START)

        # Another process holds the warehouse file: the publish cell says at once what it waits
        # for and who holds it, then fails once, in two lines (HNPIPE_LOCK_TIMEOUT_S=3 here).
        items.edit(PARAMETERS, params.replace("n_items = 1000", "n_items = 200"))
        items.run(PARAMETERS)
        items.run(START)
        items.run(FETCH)
        database = lab[4] / "warehouse" / "LOCAL.duckdb"
        holder = subprocess.Popen([sys.executable, "-c", f"import duckdb, sys; c = duckdb.connect({str(database)!r}); "
                                   "print('holding', flush=True); sys.stdin.read()"],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            assert holder.stdout.readline().strip() == "holding"
            items.run(PUBLISH)
            locked = items.output(PUBLISH)
        finally:
            holder.stdin.close()
            holder.wait(timeout=30)
        assert locked.count(f"waiting for {database}: PID {holder.pid} (") == 1
        assert f"WarehouseLockedError: {database} is locked by PID {holder.pid} (" in locked
        assert "waited 3 s" in locked and "%tb" in locked and "site-packages" not in locked
