"""ITEMS: its columns and types, and the builder that turns raw HN API items into its frame.

Every frame of items has the same columns and dtypes, whoever made it (the builder, or a
warehouse read): integers Int64, DELETED/DEAD boolean, text pandas "string", TIME
datetime64[us, UTC], KIDS/PARTS Arrow lists of int64. The dataset itself (its SQL-free
definition, checks, lineage) is registered in hnpipe.datasets.
"""

from __future__ import annotations

from typing import Callable, Iterable, Mapping

import numpy as np
import pandas as pd
import pyarrow as pa

from hnpipe.datasets import ITEMS_COLUMNS
from hnpipe.display import readable
from hnpipe.warehouse.frames import frame_from_arrow

ITEMS_SCHEMA = pa.schema([
    ("ID", pa.int64()),
    ("DELETED", pa.bool_()),
    ("TYPE", pa.string()),
    ("USER_ID", pa.string()),
    ("TIME", pa.timestamp("us", tz="UTC")),
    ("TEXT", pa.string()),
    ("DEAD", pa.bool_()),
    ("PARENT", pa.int64()),
    ("POLL", pa.int64()),
    ("KIDS", pa.list_(pa.int64())),
    ("URL", pa.string()),
    ("SCORE", pa.int64()),
    ("TITLE", pa.string()),
    ("PARTS", pa.list_(pa.int64())),
    ("DESCENDANTS", pa.int64()),
])
assert tuple(ITEMS_SCHEMA.names) == ITEMS_COLUMNS



# API field -> (column, kind). `id` is handled apart: it is required.
_FIELDS: dict[str, tuple[str, str]] = {
    "deleted": ("DELETED", "flag"),
    "type": ("TYPE", "text"),
    "by": ("USER_ID", "text"),
    "time": ("TIME", "time"),
    "text": ("TEXT", "text"),
    "dead": ("DEAD", "flag"),
    "parent": ("PARENT", "int"),
    "poll": ("POLL", "int"),
    "kids": ("KIDS", "ids"),
    "url": ("URL", "text"),
    "score": ("SCORE", "int"),
    "title": ("TITLE", "text"),
    "parts": ("PARTS", "ids"),
    "descendants": ("DESCENDANTS", "int"),
}
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_MAX_UNIX_SECONDS = _INT64_MAX // 1_000_000  # TIME is stored in microseconds


def _is_int64(value: object) -> bool:
    # bool is an int in Python, but `"score": true` is not a score.
    return isinstance(value, int) and not isinstance(value, bool) and _INT64_MIN <= value <= _INT64_MAX


class ItemsBuilder:
    """Collects raw HN API items (dicts) into the ITEMS frame.

    Rows are streamed into per-column lists and, every `CHUNK_ROWS` rows, into an Arrow
    record batch, so memory holds compact columns rather than the raw dicts.
    """

    CHUNK_ROWS = 10_000

    def __init__(self, on_batch: Callable[[pa.RecordBatch], None] | None = None) -> None:
        # on_batch: each full batch leaves the builder there (the stage's Parquet files)
        # instead of staying in memory; to_frame/to_arrow then see only what is left.
        self._on_batch = on_batch
        self._pending: dict[str, list] = {column: [] for column in ITEMS_COLUMNS}
        self._batches: list[pa.RecordBatch] = []
        self._rows = 0

    def __len__(self) -> int:
        """Items added so far (a repeated id counts each time)."""
        return self._rows

    def add(self, raw: Mapping[str, object]) -> None:
        """Append one item as the live API returns it; unknown keys are ignored."""
        item_id = raw.get("id") if isinstance(raw, Mapping) else None
        if not _is_int64(item_id):
            raise ValueError(f"HN item without an integer 'id': {raw!r:.200}")
        # Check every field before appending any, so a bad item leaves no half row behind.
        row = {"ID": item_id}
        for field, (column, kind) in _FIELDS.items():
            row[column] = _convert(item_id, field, kind, raw.get(field))
        for column, value in row.items():
            self._pending[column].append(value)
        self._rows += 1
        if len(self._pending["ID"]) >= self.CHUNK_ROWS:
            self._flush()

    def to_frame(self) -> pd.DataFrame:
        """One row per ID (the last one added wins), sorted by ID, ITEMS dtypes."""
        self._flush()
        table = pa.Table.from_batches(self._batches, schema=ITEMS_SCHEMA)
        keep = _sorted_last_of_each_id(table.column("ID").to_numpy())
        if keep is not None:
            table = table.take(keep)  # only copy when not already sorted and unique
            # Keep the sorted copy instead of the batches: the frame shares its buffers, so
            # the builder and the frame together hold the items once, not twice.
            self._batches = table.to_batches()
        return frame_from_arrow(table)

    def to_arrow(self) -> pa.Table:
        """The items as one Arrow table over the builder's own record batches, one row per
        ID (the last one added wins), in the order they arrived: no sorted copy and no
        pandas. The warehouse sorts it by ID as it loads it (Warehouse.publish_arrow)."""
        self._flush()
        table = pa.Table.from_batches(self._batches, schema=ITEMS_SCHEMA)
        ids = table.column("ID").to_numpy()
        keep = _sorted_last_of_each_id(ids)
        if keep is not None and len(keep) != len(ids):  # a repeated id (rare): copy once
            table = table.take(np.sort(keep))  # arrival order, like the rest
            self._batches = table.to_batches()
        return table

    def finish(self) -> None:
        """Hand the last, partly filled batch on (with on_batch)."""
        self._flush()

    def _flush(self) -> None:
        if not self._pending["ID"]:
            return
        batch = pa.record_batch(
            [pa.array(self._pending[field.name], type=field.type) for field in ITEMS_SCHEMA],
            schema=ITEMS_SCHEMA,
        )
        if self._on_batch is not None:
            self._on_batch(batch)
        else:
            self._batches.append(batch)
        for values in self._pending.values():
            values.clear()


def _sorted_last_of_each_id(ids: np.ndarray) -> np.ndarray | None:
    """Positions of the last row of each id, in id order; None when the ids are unique and
    sorted already (nothing to copy)."""
    order = np.argsort(ids, kind="stable")  # equal ids keep the order they were added in
    sorted_ids = ids[order]
    last_of_run = np.ones(len(ids), dtype=bool)
    last_of_run[:-1] = sorted_ids[1:] != sorted_ids[:-1]
    keep = order[last_of_run]
    if len(keep) == len(ids) and np.array_equal(keep, np.arange(len(ids))):
        return None
    return keep


class FetchedItems:
    """What `Step.fetch()` returns: the fetched items as Arrow record batches, which publish
    streams into the warehouse's staging table as they are (sorted by ID there), without a
    whole pandas frame on the way.

    It still gives a DataFrame where one is asked for: `head(n)` converts just the n lowest
    ids, `to_frame()` all of them (sorted by ID; the frame shares the batches' string
    buffers, so asking for it does not double what the notebook holds).
    """

    def __init__(self, table: pa.Table):
        if not table.schema.equals(ITEMS_SCHEMA):
            raise ValueError(f"not the ITEMS columns and types: {table.schema}")
        self.table = table

    def __len__(self) -> int:
        return self.table.num_rows

    def __repr__(self) -> str:
        return (f"<{len(self):,} fetched ITEMS rows ({self.table.nbytes / 2**20:.1f} MiB in Arrow "
                "batches): .head() or .to_frame() for a DataFrame>")

    def head(self, rows: int = 5) -> pd.DataFrame:
        """The `rows` lowest ids as an ITEMS frame, shown readably (hnpipe.display)."""
        import pyarrow.compute as pc

        rows = max(0, min(int(rows), len(self)))
        if rows == 0:
            return readable(frame_from_arrow(self.table.slice(0, 0)))
        lowest = self.table.take(pc.select_k_unstable(self.table, k=rows, sort_keys=[("ID", "ascending")]))
        return readable(frame_from_arrow(lowest.take(pc.sort_indices(lowest, sort_keys=[("ID", "ascending")]))))

    def to_frame(self) -> pd.DataFrame:
        """Every row as the ITEMS frame, sorted by ID: what `Step.fetch_items()` returns."""
        keep = _sorted_last_of_each_id(self.table.column("ID").to_numpy())
        return frame_from_arrow(self.table if keep is None else self.table.take(keep))


def _convert(item_id: int, field: str, kind: str, value: object) -> object:
    """One API value as its column stores it; refuses a wrong type naming item and field."""
    if kind == "flag":
        if value is None:
            return False  # the API omits deleted/dead unless they are true
        if isinstance(value, bool):
            return value
        expected = "true or false"
    elif value is None:
        return None
    elif kind == "text":
        if isinstance(value, str):
            return value
        expected = "a string"
    elif kind == "int":
        if _is_int64(value):
            return value
        expected = "an integer"
    elif kind == "time":
        if _is_int64(value) and abs(value) <= _MAX_UNIX_SECONDS:
            return value * 1_000_000
        expected = "unix seconds (an integer)"
    else:  # ids
        if isinstance(value, (list, tuple)) and all(_is_int64(v) for v in value):
            return value
        expected = "a list of integers"
    raise ValueError(f"HN item {item_id}: {field!r} must be {expected}, got {value!r:.80}")


def items_frame(raw_items: Iterable[Mapping[str, object]]) -> pd.DataFrame:
    """The ITEMS frame of raw API items (see `ItemsBuilder`)."""
    builder = ItemsBuilder()
    for raw in raw_items:
        builder.add(raw)
    return builder.to_frame()


def empty_items_frame() -> pd.DataFrame:
    """An ITEMS frame with no rows, but the right columns and dtypes."""
    return ItemsBuilder().to_frame()


