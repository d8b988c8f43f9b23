"""The local pipeline once more, on the Snowflake adapter, with fakesnow standing in.

The same steps the notebooks call (start, fetch_items, publish, build), in-process because
fakesnow patches the connector in this process only. HNPIPE_WAREHOUSE=snowflake puts the
local environment on Snowflake, as a developer with their own credentials would.
"""

from __future__ import annotations

import pandas as pd
import pytest
from hnpipe import pipeline
from hnpipe.environments import Target
from registered import build_in_sql, expected_tables



@pytest.fixture
def on_fakesnow(snowflake_process, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("HNPIPE_ENV", raising=False)
    snowflake_process.create_databases("LOCAL")  # made by admins


def namespace(**overrides) -> dict:
    return {"environment": "local", "n_items": 300, "hn_api_url": "sample", **overrides}


@pytest.mark.slow  # whole pipelines or backfills, several over (the full suite runs it)
def test_local_pipeline_runs_on_the_snowflake_adapter(on_fakesnow) -> None:
    items_step = pipeline.start("ITEMS", namespace())
    assert items_step.warehouse.engine == "snowflake"
    assert items_step.target == Target("LOCAL", "TESTER")
    items = items_step.fetch_items()
    assert items_step.publish(items) == len(items) > 0

    built = build_in_sql(namespace())
    stored = items_step.read("ITEMS")
    pd.testing.assert_frame_equal(stored, items)  # lists, UTC times and nullable types survive
    for name, expected in expected_tables(items).items():
        if name == "ITEMS":
            continue
        pd.testing.assert_frame_equal(items_step.read(name), expected)
        assert built[name] == len(expected) > 0
    counts = items_step.counts_by_type()
    assert dict(zip(counts.TYPE, counts.ROWS)) == items.TYPE.value_counts().to_dict()
