"""What the tests know about the datasets, read from the registry (hnpipe.datasets), so that
a new dataset is covered by the suite without naming it in a test.

    DATASET_TABLES      every dataset's table, in dependency order
    built_in_sql()      the datasets computed inside the warehouse from others
    expected_tables()   what every dataset must hold for a given ITEMS frame
    build_in_sql()      build those datasets in-process, as their notebooks would
"""

from __future__ import annotations

from typing import Any, Mapping

import pandas as pd
from hnpipe import datasets


def dataset_tables() -> tuple[str, ...]:
    return tuple(dataset.name for dataset in datasets.dependency_order())


DATASET_TABLES = dataset_tables()


def built_in_sql() -> list[datasets.Dataset]:
    return [dataset for dataset in datasets.dependency_order() if dataset.sql is not None]


def of_type(items: pd.DataFrame, item_type: str) -> pd.DataFrame:
    """A dataset of one TYPE as it must be for a given ITEMS."""
    return items[items["TYPE"] == item_type].reset_index(drop=True)


def expected_tables(items: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Every dataset for a given ITEMS: ITEMS itself, the others by their item_type."""
    expected = {"ITEMS": items}
    for dataset in built_in_sql():
        assert dataset.item_type is not None, f"say here what {dataset.name} must hold"
        expected[dataset.name] = of_type(items, dataset.item_type)
    return expected


def build_in_sql(values: Mapping[str, Any]) -> dict[str, Any]:
    """Build every dataset computed in the warehouse, in dependency order, as their notebooks
    do (`pipeline.start(NAME, parameters).build()`); returns each step's result."""
    from hnpipe import pipeline  # pandas and the warehouse: only the tests that build need them

    return {dataset.name: pipeline.start(dataset.name, dict(values)).build() for dataset in built_in_sql()}
