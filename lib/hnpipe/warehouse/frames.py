"""How frames travel: pandas <-> Arrow, the same way for both engines.

One mapping from Arrow to pandas, used by the ITEMS builder and by warehouse reads, so a
published frame reads back identical.
"""

from __future__ import annotations

import pandas as pd
import pyarrow as pa

from hnpipe.environments import check_identifier
from hnpipe.errors import WarehouseError, one_line

# How frames travel: pandas <-> Arrow <-> DuckDB. One mapping from Arrow to pandas, used by
# both the ItemsBuilder and warehouse reads, so a published frame reads back identical.

_NULLABLE_INTS = {
    pa.int8(): pd.Int8Dtype(), pa.int16(): pd.Int16Dtype(),
    pa.int32(): pd.Int32Dtype(), pa.int64(): pd.Int64Dtype(),
    pa.uint8(): pd.UInt8Dtype(), pa.uint16(): pd.UInt16Dtype(),
    pa.uint32(): pd.UInt32Dtype(), pa.uint64(): pd.UInt64Dtype(),
}


def _pandas_dtype(arrow_type: pa.DataType):
    """types_mapper for Table.to_pandas: nullable pandas dtypes instead of float/object."""
    if arrow_type in _NULLABLE_INTS:
        return _NULLABLE_INTS[arrow_type]
    if pa.types.is_boolean(arrow_type):
        return pd.BooleanDtype()
    if pa.types.is_string(arrow_type):
        return pd.StringDtype()  # Arrow-backed: wraps the Arrow buffers, no Python strings
    if pa.types.is_list(arrow_type):
        return pd.ArrowDtype(arrow_type)  # a cell reads as a Python list, or NA
    return None  # the default, e.g. timestamp[us, UTC] -> datetime64[us, UTC]


def frame_from_arrow(table: pa.Table) -> pd.DataFrame:
    """An Arrow table as a frame with hnpipe's dtypes (Int64, boolean, string, UTC, lists).

    Naive timestamps are UTC wall time (how the warehouses store them) and come back UTC.
    """
    columns = []
    for field, column in zip(table.schema, table.columns):
        kind = field.type
        if pa.types.is_timestamp(kind) and kind.tz is None:
            column = column.cast(pa.timestamp(kind.unit, tz="UTC"))  # same values, labelled UTC
        elif pa.types.is_large_string(kind) or pa.types.is_string_view(kind):
            column = column.cast(pa.string())
        elif pa.types.is_list(kind) or pa.types.is_large_list(kind):
            column = column.cast(pa.list_(kind.value_type))  # DuckDB names the item field "l"
        columns.append(column)
    return pa.table(columns, names=table.column_names).to_pandas(types_mapper=_pandas_dtype)


# Here rather than in base.py: frames imports nothing of the warehouse package, so base's
# publish_arrow can use it without an import cycle.
def check_publishable(frame: object, destination: str) -> None:
    """Refuse, in one line, a frame neither engine can publish: not a DataFrame, column names
    that are not identifiers, duplicate columns."""
    if not isinstance(frame, pd.DataFrame):
        raise WarehouseError(f"cannot publish {destination}: expected a pandas DataFrame, got {type(frame).__name__}")
    for column in frame.columns:
        check_identifier(column, f"column of {destination}")
    if frame.columns.has_duplicates:
        duplicated = sorted(set(frame.columns[frame.columns.duplicated()]))
        raise WarehouseError(f"cannot publish {destination}: duplicate columns {duplicated}")


def frame_to_arrow(frame: pd.DataFrame, destination: str) -> pa.Table:
    """The frame as the Arrow table DuckDB loads; refuses what cannot be stored, in one line.

    Timestamps become naive UTC wall time in microseconds (DuckDB TIMESTAMP, like Snowflake
    TIMESTAMP_NTZ); naive ones are taken to be UTC already. Converted in Arrow so the
    session time zone never shifts them.
    """
    check_publishable(frame, destination)
    try:
        table = pa.Table.from_pandas(frame, preserve_index=False)
        columns = []
        for field, column in zip(table.schema, table.columns):
            if pa.types.is_timestamp(field.type):
                # A tz-aware column holds UTC instants; dropping the label keeps them UTC.
                # safe=True: refuse sub-microsecond values rather than truncating silently.
                column = column.cast(pa.timestamp("us"), safe=True)
            columns.append(column)
        return pa.table(columns, names=table.column_names)
    except (pa.ArrowException, TypeError, ValueError) as exc:
        raise WarehouseError(f"cannot publish {destination}: {one_line(exc)}") from exc


def arrow_to_store(data: pa.Table | pa.RecordBatchReader, destination: str) -> pa.Table | pa.RecordBatchReader:
    """An Arrow table or batch stream as the warehouse stores it, refused in one line when it
    cannot be: column names must be identifiers, once each. Timestamps become naive UTC wall
    time in microseconds, as in frame_to_arrow; a stream is converted batch by batch as it is
    read, a table column by column (the other columns are shared, not copied)."""
    if not isinstance(data, (pa.Table, pa.RecordBatchReader)):
        raise WarehouseError(f"cannot publish {destination}: expected an Arrow table or record batch "
                             f"reader, got {type(data).__name__}")
    names = data.schema.names
    for name in names:
        check_identifier(name, f"column of {destination}")
    duplicated = sorted({name for name in names if names.count(name) > 1})
    if duplicated:
        raise WarehouseError(f"cannot publish {destination}: duplicate columns {duplicated}")
    stored = pa.schema([
        field.with_type(pa.timestamp("us")) if pa.types.is_timestamp(field.type) else field
        for field in data.schema
    ])
    if stored.equals(data.schema):
        return data
    try:
        if isinstance(data, pa.Table):
            # safe=True: refuse sub-microsecond values rather than truncating silently; a
            # tz-aware column holds UTC instants, and dropping the label keeps them UTC.
            return data.cast(stored, safe=True)
        source = data
        return pa.RecordBatchReader.from_batches(stored, (batch.cast(stored, safe=True) for batch in source))
    except (pa.ArrowException, TypeError, ValueError) as exc:
        raise WarehouseError(f"cannot publish {destination}: {one_line(exc)}") from exc
