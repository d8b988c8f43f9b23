"""Notebooks that know about each other (hnpipe.consistency): a build or preview reading ITEMS
while another run replaces it says so and which version it used; explore says which run
published each table it reads and warns when they come from different runs."""

from __future__ import annotations

import re

import pytest

from hnpipe.run_context import RunContext
from hnpipe import consistency, history, pipeline, runner
from hnpipe.environments import Target
from hnpipe.warehouse.duckdb_engine import DuckDBWarehouse

TARGET = Target("LOCAL", "TESTER")
VALUES = {"environment": "local", "n_items": 80}


def published_items() -> str:
    step = pipeline.start("ITEMS", VALUES)
    step.publish(step.fetch())
    return step.run_id


@pytest.mark.slow  # whole pipelines or backfills, several over (the full suite runs it)
def test_a_build_while_another_run_replaces_items_says_so_and_which_items_it_used(clean_env, capsys) -> None:
    old = published_items()
    # Another notebook starts fetching ITEMS (its marker: this process, alive) and has not published.
    fetching = pipeline.start("ITEMS", VALUES)
    with DuckDBWarehouse(str(clean_env)) as warehouse:
        history.record(warehouse, TARGET, runner.marker(RunContext("local", VALUES, TARGET, fetching.run_id), ["ITEMS"]))
    capsys.readouterr()
    comments = pipeline.start("COMMENTS", VALUES)
    comments.build()
    out = capsys.readouterr().out
    assert f"from ITEMS: published by run {old} at " in out
    assert re.search(rf"warning: run {fetching.run_id} \(started \d\d:\d\d:\d\d UTC\) is replacing ITEMS right now; "
                     rf"this used ITEMS of run {old} \(published \d\d:\d\d:\d\d UTC\): run this cell again", out), out
    # The same when previewing ITEMS from another notebook.
    pipeline.start("ITEMS", VALUES).preview()
    assert f"is replacing ITEMS right now; this used ITEMS of run {old}" in capsys.readouterr().out
    # Once it has published, nothing is said.
    fetching.publish(fetching.fetch())
    capsys.readouterr()
    pipeline.start("COMMENTS", VALUES).build()
    assert "warning" not in capsys.readouterr().out


def test_an_interactive_fetch_marks_itself_as_replacing_items_until_it_publishes(clean_env, capsys) -> None:
    published_items()
    step = pipeline.start("ITEMS", VALUES)
    step.fetch()
    wh = DuckDBWarehouse(str(clean_env))
    assert [run for run, _ in consistency.replacing(wh, TARGET, "ITEMS")] == [step.run_id]
    step.publish(step._fetched.items)
    assert consistency.replacing(wh, TARGET, "ITEMS") == []


@pytest.mark.slow  # whole pipelines or backfills, several over (the full suite runs it)
def test_explore_names_each_tables_run_and_warns_when_they_differ(clean_env, capsys) -> None:
    published_items()
    stories = pipeline.start("STORIES", VALUES)
    stories.build()
    newer = published_items()  # ITEMS replaced after STORIES was built
    capsys.readouterr()
    published = pipeline.explore({"environment": "local"})
    items = published.read("ITEMS")
    published.read("STORIES")
    out = capsys.readouterr().out
    assert f"ITEMS: {len(items):,} rows, published by run {newer} at " in out
    assert f"STORIES: " in out and f"published by run {stories.run_id} at " in out
    assert "warning: these tables come from different runs: ITEMS from run" in out
    assert ("STORIES was built before the current ITEMS: rerun notebooks/stories.ipynb (or `hnpipe run`)"
            in out), out
