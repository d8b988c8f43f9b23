"""hnpipe.datasets: the ITEMS frame built from raw API items, and the dataset definitions.

Expected frames are written out by hand; the SQL datasets run in a real DuckDB file.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest
import sqlglot
from hnpipe import datasets
from hnpipe.environments import Target
from hnpipe.errors import ParameterError, WarehouseError
from hnpipe.items import ITEMS_COLUMNS, ItemsBuilder, empty_items_frame, items_frame
from hnpipe.warehouse.duckdb_engine import DuckDBWarehouse
from registered import built_in_sql
from hypothesis import given, settings
from hypothesis import strategies as st

FIXTURES = Path(__file__).parent / "fixtures"
TARGET = Target("LOCAL", "TESTER")
LIST = pd.ArrowDtype(pa.list_(pa.int64()))
EXPECTED_DTYPES = {
    "ID": pd.Int64Dtype(), "DELETED": pd.BooleanDtype(), "TYPE": pd.StringDtype(),
    "USER_ID": pd.StringDtype(), "TIME": pd.DatetimeTZDtype("us", "UTC"),
    "TEXT": pd.StringDtype(), "DEAD": pd.BooleanDtype(), "PARENT": pd.Int64Dtype(),
    "POLL": pd.Int64Dtype(), "KIDS": LIST, "URL": pd.StringDtype(), "SCORE": pd.Int64Dtype(),
    "TITLE": pd.StringDtype(), "PARTS": LIST, "DESCENDANTS": pd.Int64Dtype(),
}

# The Dagster guide's two items: a comment by alice replying to a story by bob.
ALICE_COMMENT = {"id": 1, "type": "comment", "by": "alice", "time": 1700000000,
                 "text": "Nice post!", "parent": 2}
BOB_STORY = {"id": 2, "type": "story", "by": "bob", "time": 1699999000, "title": "Show HN: hnpipe",
             "url": "https://example.com/hnpipe", "score": 42, "descendants": 1, "kids": [1]}


def utc(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, tz=timezone.utc)


def docs_items() -> list[dict]:
    return list(json.loads((FIXTURES / "hn_api_docs_items.json").read_text()).values())


def test_two_items_give_exactly_the_frame_written_by_hand() -> None:
    # Added story first: the frame must still be sorted by ID.
    frame = items_frame([BOB_STORY, ALICE_COMMENT])

    expected = pd.DataFrame({
        "ID": pd.array([1, 2], dtype="Int64"),
        "DELETED": pd.array([False, False], dtype="boolean"),
        "TYPE": pd.array(["comment", "story"], dtype=pd.StringDtype()),
        "USER_ID": pd.array(["alice", "bob"], dtype=pd.StringDtype()),
        "TIME": pd.Series([utc(1700000000), utc(1699999000)]).astype("datetime64[us, UTC]"),
        "TEXT": pd.array(["Nice post!", None], dtype=pd.StringDtype()),
        "DEAD": pd.array([False, False], dtype="boolean"),
        "PARENT": pd.array([2, None], dtype="Int64"),
        "POLL": pd.array([None, None], dtype="Int64"),
        "KIDS": pd.array([None, [1]], dtype=LIST),
        "URL": pd.array([None, "https://example.com/hnpipe"], dtype=pd.StringDtype()),
        "SCORE": pd.array([None, 42], dtype="Int64"),
        "TITLE": pd.array([None, "Show HN: hnpipe"], dtype=pd.StringDtype()),
        "PARTS": pd.array([None, None], dtype=LIST),
        "DESCENDANTS": pd.array([None, 1], dtype="Int64"),
    })
    pd.testing.assert_frame_equal(frame, expected, check_exact=True)
    assert isinstance(frame.index, pd.RangeIndex)


def test_two_items_build_comments_and_stories_inside_duckdb(tmp_path: Path) -> None:
    warehouse = DuckDBWarehouse(tmp_path / "warehouse")
    items = items_frame([ALICE_COMMENT, BOB_STORY])
    for dataset in datasets.dependency_order():
        if dataset.sql is None:
            warehouse.publish_frame(TARGET, dataset.name, items, "run1", dataset.gates)
        else:
            warehouse.publish_query(TARGET, dataset.name, dataset.sql, "run1", dataset.gates)

    comments = warehouse.read_table(TARGET, "COMMENTS")
    stories = warehouse.read_table(TARGET, "STORIES")
    assert comments.ID.tolist() == [1]
    assert stories.ID.tolist() == [2]
    # Same columns and dtypes as ITEMS, row for row.
    pd.testing.assert_frame_equal(comments, items[items.TYPE == "comment"].reset_index(drop=True))
    pd.testing.assert_frame_equal(stories, items[items.TYPE == "story"].reset_index(drop=True))


@pytest.mark.parametrize("frame", [
    pytest.param(lambda: items_frame(docs_items()), id="docs-items"),
    pytest.param(empty_items_frame, id="empty"),
])
def test_dtypes_are_exact_and_columns_in_order(frame) -> None:
    frame = frame()
    assert tuple(frame.columns) == ITEMS_COLUMNS
    assert frame.dtypes.to_dict() == EXPECTED_DTYPES
    assert isinstance(frame.index, pd.RangeIndex) and frame.index.start == 0


def test_a_repeated_id_keeps_the_last_one_added() -> None:
    builder = ItemsBuilder()
    builder.add({"id": 7, "type": "story", "score": 1})
    builder.add({"id": 3, "type": "comment"})
    builder.add({"id": 7, "type": "story", "score": 5})
    assert len(builder) == 3  # every add counts; the frame has one row per id
    frame = builder.to_frame()
    assert frame.ID.tolist() == [3, 7]
    assert frame.SCORE.tolist() == [pd.NA, 5]
    # Adding after to_frame still lets the newest item win.
    builder.add({"id": 3, "type": "comment", "score": 9})
    builder.add({"id": 1, "type": "job"})
    assert builder.to_frame().SCORE.tolist() == [pd.NA, 9, 5]
    pd.testing.assert_frame_equal(frame, items_frame([{"id": 3, "type": "comment"},
                                                      {"id": 7, "type": "story", "score": 5}]))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 40), st.integers(0, 1000)), max_size=60),
       st.integers(1, 7))
def test_dedupe_and_sort_match_a_plain_dict_across_chunks(rows, chunk_rows) -> None:
    builder = ItemsBuilder()
    builder.CHUNK_ROWS = chunk_rows  # tiny chunks: duplicates straddle record batches
    last_score: dict[int, int] = {}
    for item_id, score in rows:
        builder.add({"id": item_id, "score": score})
        last_score[item_id] = score
    frame = builder.to_frame()
    assert frame.ID.tolist() == sorted(last_score)
    assert frame.SCORE.tolist() == [last_score[i] for i in sorted(last_score)]
    assert builder.to_frame().equals(frame)  # to_frame does not consume the builder


def test_deleted_item_without_by_has_null_user_and_false_dead() -> None:
    frame = items_frame([{"id": 9, "deleted": True, "type": "comment", "time": 1700000100,
                          "parent": 8}])
    row = frame.iloc[0]
    assert bool(row.DELETED) is True
    assert bool(row.DEAD) is False  # absent -> False, not null
    assert row.USER_ID is pd.NA
    assert row.TEXT is pd.NA
    assert row.PARENT == 8


def test_kids_and_parts_are_lists_of_ints_or_na() -> None:
    frame = items_frame(docs_items()).set_index("ID")
    poll = frame.loc[126809]
    assert poll.TYPE == "poll"
    assert poll.PARTS == [126810, 126811, 126812]
    assert all(type(part) is int for part in poll.PARTS)
    # The API docs' pollopt names its poll in `parent` (verbatim), so POLL stays null.
    assert frame.loc[160705].PARENT == 160704 and frame.loc[160705].POLL is pd.NA
    assert items_frame([{"id": 5, "type": "pollopt", "poll": 4}]).POLL[0] == 4
    assert frame.loc[160705].KIDS is pd.NA  # no kids in the API -> NA, not []
    assert frame.loc[8863].KIDS[:3] == [8952, 9224, 8917]  # API order kept
    assert items_frame([{"id": 1, "kids": []}]).KIDS[0] == []  # empty stays empty


def test_time_is_utc_microseconds_from_unix_seconds() -> None:
    frame = items_frame([{"id": 1, "time": 0}, {"id": 2, "time": 1175714200}])
    assert frame.TIME.dt.tz == timezone.utc or str(frame.TIME.dt.tz) == "UTC"
    assert frame.TIME[0] == pd.Timestamp("1970-01-01T00:00:00Z")
    assert frame.TIME[1] == pd.Timestamp(utc(1175714200))
    assert frame.TIME[1].hour == 19  # 2007-04-04 19:16:40 UTC, whatever the local zone


def test_unknown_keys_are_ignored() -> None:
    plain = items_frame([{"id": 1, "type": "job"}])
    extra = items_frame([{"id": 1, "type": "job", "flavour": "vanilla", "kids_count": 3}])
    pd.testing.assert_frame_equal(plain, extra)


@pytest.mark.parametrize("raw", [
    {"type": "story"}, {"id": "12", "type": "story"}, {"id": True}, {"id": 1.5}, {"id": None},
    {"id": 2**63},
])
def test_item_without_an_integer_id_is_refused_naming_it(raw) -> None:
    builder = ItemsBuilder()
    with pytest.raises(ValueError) as error:
        builder.add(raw)
    assert type(error.value) is ValueError  # a data error, not a fetch failure
    assert "integer 'id'" in str(error.value) and repr(raw) in str(error.value)
    assert "\n" not in str(error.value)
    assert len(builder) == 0


def test_a_non_dict_item_is_refused() -> None:
    with pytest.raises(ValueError, match="integer 'id': None"):
        ItemsBuilder().add(None)


@pytest.mark.parametrize("field,value", [
    ("kids", [1, "2"]), ("time", "2024-01-01"), ("time", 1.5), ("score", True), ("by", 5),
    ("deleted", "yes"), ("parts", 3),
])
def test_a_wrongly_typed_field_names_item_and_field_and_adds_nothing(field, value) -> None:
    builder = ItemsBuilder()
    builder.add({"id": 1, "type": "story"})
    with pytest.raises(ValueError, match=rf"HN item 42: '{field}' must be"):
        builder.add({"id": 42, field: value})
    assert len(builder) == 1
    assert builder.to_frame().ID.tolist() == [1]  # no half row left behind


def test_dependency_order_and_downstream() -> None:
    order = [d.name for d in datasets.dependency_order()]
    assert sorted(order) == sorted(datasets.DATASETS) and order[0] == "ITEMS"
    assert [d.name for d in datasets.dependency_order(["STORIES", "ITEMS"])] == ["ITEMS", "STORIES"]
    assert [d.name for d in datasets.dependency_order("COMMENTS")] == ["COMMENTS"]
    # Everything built from ITEMS is downstream of it, in dependency order; nothing is built from COMMENTS.
    assert datasets.downstream("ITEMS") == [name for name in order if name != "ITEMS"]
    assert datasets.downstream("COMMENTS") == []
    for dataset in datasets.dependency_order():
        position = [d.name for d in datasets.dependency_order()].index
        assert all(position(up) < position(dataset.name) for up in dataset.upstream)


@pytest.mark.parametrize("name", ["items", "USERS", "", None])
def test_unknown_dataset_is_refused_listing_the_valid_names(name) -> None:
    with pytest.raises(ParameterError) as error:
        datasets.get(name)
    assert str(error.value) == f"unknown dataset {name!r}: choose one of {', '.join(datasets.DATASETS)}"
    with pytest.raises(ParameterError):
        datasets.dependency_order([name])
    with pytest.raises(ParameterError):
        datasets.downstream(name)


@pytest.mark.parametrize("dialect", ["snowflake", "duckdb"])
@pytest.mark.parametrize("name,item_type", [(dataset.name, dataset.item_type) for dataset in built_in_sql()])
def test_dataset_sql_is_the_portable_subset(dialect, name, item_type) -> None:
    dataset = datasets.get(name)
    tree = sqlglot.parse_one(dataset.sql, read=dialect)
    assert [column.name for column in tree.expressions] == list(ITEMS_COLUMNS)  # no SELECT *
    (table,) = tree.find_all(sqlglot.exp.Table)
    assert (table.name, table.db, table.catalog) == ("ITEMS", "", "")  # unqualified
    assert tree.args["where"].sql(dialect=dialect) == f"WHERE TYPE = '{item_type}'"
    assert dataset.upstream == ("ITEMS",) and dataset.notebook == f"{name.lower()}.ipynb"
    assert dataset.columns == ITEMS_COLUMNS


def test_items_checks_refuse_duplicate_and_null_ids(tmp_path: Path) -> None:
    warehouse = DuckDBWarehouse(tmp_path / "warehouse")
    good = items_frame([ALICE_COMMENT, BOB_STORY])
    bad = pd.concat([good, good.iloc[[1]]], ignore_index=True)  # ID 2 twice
    bad.loc[0, "ID"] = pd.NA
    with pytest.raises(WarehouseError) as error:
        warehouse.publish_frame(TARGET, "ITEMS", bad, "run1", datasets.get("ITEMS").gates)
    assert "id_not_null (1 rows" in str(error.value)
    assert "id_unique (1 rows, e.g. ID 2)" in str(error.value)
    assert warehouse.list_tables(TARGET) == {}


@pytest.mark.parametrize("name,right,wrong", [("COMMENTS", "comment", "story"),
                                              ("STORIES", "story", "comment")])
def test_type_checks_refuse_other_types(tmp_path: Path, name, right, wrong) -> None:
    warehouse = DuckDBWarehouse(tmp_path / "warehouse")
    warehouse.publish_frame(TARGET, "ITEMS", items_frame([ALICE_COMMENT, BOB_STORY]), "run1")
    wrong_sql = datasets.get(name).sql.replace(f"'{right}'", f"'{wrong}'")
    assert wrong_sql != datasets.get(name).sql
    with pytest.raises(WarehouseError, match=rf"failed checks: only_{name.lower()}"):
        warehouse.publish_query(TARGET, name, wrong_sql, "run1", datasets.get(name).gates)
    assert set(warehouse.list_tables(TARGET)) == {"ITEMS"}
