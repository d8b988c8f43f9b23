"""ITEMS streamed: fetched items go from the builder's Arrow record batches into the staging
table, sorted by ID inside the warehouse, without a pandas frame on the way; the result is
the same table, rows and types as publishing the frame, behind the same gates and swap."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pyarrow as pa
import pytest

from hnpipe import datasets
from hnpipe.environments import Target
from hnpipe.errors import GuardError, WarehouseError
from hnpipe.items import FetchedItems, ItemsBuilder, items_frame
from hnpipe.warehouse import duckdb_engine
from hnpipe.warehouse.duckdb_engine import DuckDBWarehouse

TARGET = Target("LOCAL", "TESTER")
GATES = datasets.quality_gates(datasets.get("ITEMS"))


def raw_items(n: int, seed: int = 1) -> list[dict[str, Any]]:
    """n API-shaped items with every kind of field, ids 1..n, in a shuffled arrival order
    (as 32 concurrent requests finish)."""
    rng = random.Random(seed)
    items = []
    for item_id in range(1, n + 1):
        item: dict[str, Any] = {"id": item_id, "type": rng.choice(["story", "comment", "job"]),
                                "by": f"user{item_id % 7}", "time": 1_700_000_000 + item_id}
        if item["type"] == "story":
            item.update(title=f"title {item_id}", url=f"https://example.com/{item_id}", score=item_id % 50,
                        descendants=item_id % 9, kids=[item_id + 1000, item_id + 2000])
        else:
            item.update(text=f"text <p>{item_id}", parent=max(1, item_id - 1))
        if item_id % 11 == 0:
            item["deleted"] = True
        if item_id % 13 == 0:
            item["dead"] = True
        items.append(item)
    rng.shuffle(items)
    return items


def builder_of(items: list[dict[str, Any]], chunk_rows: int = 7) -> ItemsBuilder:
    builder = ItemsBuilder()
    builder.CHUNK_ROWS = chunk_rows  # several record batches, as a large fetch makes
    for item in items:
        builder.add(item)
    return builder


def physical_ids(path: Path, table: str = "ITEMS") -> list[int]:
    """ID in storage order (rowid), not ORDER BY ID: 'sorted inside the warehouse'."""
    with duckdb.connect(str(path), read_only=True) as con:
        return [row[0] for row in con.execute(f'SELECT "ID" FROM "TESTER"."{table}" ORDER BY rowid').fetchall()]


def column_types(path: Path, table: str = "ITEMS") -> list[tuple[str, str]]:
    with duckdb.connect(str(path), read_only=True) as con:
        return con.execute("SELECT column_name, data_type FROM information_schema.columns "
                           "WHERE table_schema = 'TESTER' AND table_name = ? ORDER BY ordinal_position",
                           [table]).fetchall()


def test_streamed_items_publish_the_same_rows_and_types_as_the_frame(tmp_path: Path) -> None:
    items = raw_items(100)
    via_frame = DuckDBWarehouse(tmp_path / "frame")
    via_frame.publish_frame(TARGET, "ITEMS", items_frame(items), "20261127T000000_000001", gates=GATES)
    streamed = DuckDBWarehouse(tmp_path / "stream")
    table = builder_of(items).to_arrow()
    assert table.num_rows == 100 and table.column("ID").num_chunks > 1
    rows = streamed.publish_arrow(TARGET, "ITEMS", table, "20261127T000000_000001", gates=GATES)
    assert rows == 100
    assert column_types(tmp_path / "stream" / "LOCAL.duckdb") == column_types(tmp_path / "frame" / "LOCAL.duckdb")
    pd.testing.assert_frame_equal(streamed.read_table(TARGET, "ITEMS"), via_frame.read_table(TARGET, "ITEMS"))
    assert physical_ids(tmp_path / "stream" / "LOCAL.duckdb") == list(range(1, 101))


def test_to_arrow_keeps_the_builder_batches_without_a_sorted_copy() -> None:
    builder = builder_of(raw_items(30))
    table = builder.to_arrow()
    ids = table.column("ID").to_pylist()
    assert sorted(ids) == list(range(1, 31)) and ids != sorted(ids)  # arrival order: not sorted here
    # The table wraps the builder's own record batches: the same buffers, not copies.
    assert [chunk.buffers()[1].address for chunk in table.column("ID").chunks] == \
        [batch.column(0).buffers()[1].address for batch in builder._batches]


def test_a_repeated_id_keeps_its_last_answer_in_the_stream_as_in_the_frame(tmp_path: Path) -> None:
    items = raw_items(20)
    again = dict(items[0], score=999, title="edited later", type="story")
    builder = builder_of(items + [again])
    table = builder.to_arrow()
    assert table.num_rows == 20
    frame = items_frame(items + [again])
    warehouse = DuckDBWarehouse(tmp_path / "wh")
    warehouse.publish_arrow(TARGET, "ITEMS", table, "20261127T000000_000001", gates=GATES)
    pd.testing.assert_frame_equal(warehouse.read_table(TARGET, "ITEMS"), frame)


def test_a_stream_failing_a_gate_is_refused_and_leaves_items_whole(tmp_path: Path) -> None:
    warehouse = DuckDBWarehouse(tmp_path / "wh")
    first = builder_of(raw_items(10)).to_arrow()
    warehouse.publish_arrow(TARGET, "ITEMS", first, "20261127T000000_000001", gates=GATES)
    before = warehouse.read_table(TARGET, "ITEMS")
    # Two rows with one ID get past no builder; a hand-made table can carry them to the gate.
    twice = pa.concat_tables([first, first.slice(0, 1)])
    with pytest.raises(WarehouseError, match=r"^refused to publish LOCAL.TESTER.ITEMS: failed checks"):
        warehouse.publish_arrow(TARGET, "ITEMS", twice, "20261127T000000_000002", gates=GATES)
    pd.testing.assert_frame_equal(warehouse.read_table(TARGET, "ITEMS"), before)
    assert list(warehouse.list_tables(TARGET, bookkeeping=True)) == ["ITEMS"]  # no staging left


def test_an_interrupt_between_staging_and_swap_leaves_items_whole(tmp_path: Path, monkeypatch) -> None:
    warehouse = DuckDBWarehouse(tmp_path / "wh")
    warehouse.publish_arrow(TARGET, "ITEMS", builder_of(raw_items(10)).to_arrow(), "20261127T000000_000001")
    before = warehouse.read_table(TARGET, "ITEMS")

    def interrupted(*args: Any) -> None:
        raise KeyboardInterrupt  # Ctrl-C in the notebook while the gates run on the staging table

    monkeypatch.setattr(duckdb_engine, "run_gates", interrupted)
    with pytest.raises(KeyboardInterrupt):
        warehouse.publish_arrow(TARGET, "ITEMS", builder_of(raw_items(40)).to_arrow(), "20261127T000000_000002",
                                gates=GATES)
    monkeypatch.undo()
    pd.testing.assert_frame_equal(warehouse.read_table(TARGET, "ITEMS"), before)
    assert not [name for name in warehouse.list_tables(TARGET, bookkeeping=True) if "STAGING" in name]


def test_a_stream_interrupted_while_it_loads_leaves_items_whole(tmp_path: Path) -> None:
    warehouse = DuckDBWarehouse(tmp_path / "wh")
    warehouse.publish_arrow(TARGET, "ITEMS", builder_of(raw_items(10)).to_arrow(), "20261127T000000_000001")
    before = warehouse.read_table(TARGET, "ITEMS")
    batches = builder_of(raw_items(40)).to_arrow().to_batches()

    def stream():
        yield batches[0]
        raise KeyboardInterrupt  # the source stops half-way through the load

    reader = pa.RecordBatchReader.from_batches(batches[0].schema, stream())
    with pytest.raises((KeyboardInterrupt, WarehouseError)):
        warehouse.publish_arrow(TARGET, "ITEMS", reader, "20261127T000000_000002", gates=GATES)
    pd.testing.assert_frame_equal(warehouse.read_table(TARGET, "ITEMS"), before)
    assert not [name for name in warehouse.list_tables(TARGET, bookkeeping=True) if "STAGING" in name]


def test_publish_arrow_refuses_columns_that_are_not_identifiers_before_writing(tmp_path: Path) -> None:
    warehouse = DuckDBWarehouse(tmp_path / "wh")
    table = pa.table({"ID": [1], "bad name": ["x"]})
    with pytest.raises(GuardError, match=r"refused column of LOCAL.TESTER.ITEMS 'bad name'"):
        warehouse.publish_arrow(TARGET, "ITEMS", table, "20261127T000000_000001")
    assert not (tmp_path / "wh").exists()


def test_fetched_items_give_a_frame_only_when_asked() -> None:
    items = raw_items(25)
    fetched = FetchedItems(builder_of(items).to_arrow())
    assert len(fetched) == 25
    head = fetched.head(3)
    assert isinstance(head, pd.DataFrame) and list(head.ID) == [1, 2, 3]
    pd.testing.assert_frame_equal(fetched.to_frame(), items_frame(items))
    pd.testing.assert_frame_equal(fetched.head(3), items_frame(items).head(3))


def test_a_step_publishes_only_its_latest_fetch_result_and_the_same_rows_as_the_frame(clean_env: Path) -> None:
    from hnpipe import pipeline
    from hnpipe.errors import HnpipeError

    step = pipeline.start("ITEMS", {"environment": "local", "n_items": 60})
    first = step.fetch()
    assert isinstance(first, FetchedItems) and len(first) == len(step.fetch_items())
    latest = step.fetch()
    with pytest.raises(HnpipeError, match=r"^refused to publish: this fetch result \(\d+ rows\) is not what the last"):
        step.publish(first)  # an earlier fetch's result
    assert step.publish(latest) == len(latest)
    published = step.read()
    pd.testing.assert_frame_equal(published, latest.to_frame())
    again = step.fetch()
    assert step.publish(again.to_frame()) == len(again)  # its frame, unchanged, is the same fetch
