"""Frames to and from Snowflake: column types for staged DDL, values for binding, and
cursor results back to hnpipe's dtypes (the same as DuckDB reads give, via frames.py)."""

from __future__ import annotations

import json
from typing import Any

import pandas as pd
import pyarrow as pa
from snowflake.connector.constants import FIELD_ID_TO_NAME

from hnpipe.environments import quote_identifier as _q
from hnpipe.errors import WarehouseError
from hnpipe.warehouse.base import check_comment_text
from hnpipe.warehouse.frames import check_publishable, frame_from_arrow


# -- frames out --------------------------------------------------------------------------
def _column_type(column: str, series: pd.Series, destination: str) -> str:
    """The Snowflake type a frame column is staged as; refuses what hnpipe cannot read back."""
    dtype = series.dtype
    if isinstance(dtype, pd.ArrowDtype) and pa.types.is_list(dtype.pyarrow_dtype):
        return "ARRAY"
    if pd.api.types.is_bool_dtype(dtype):
        return "BOOLEAN"
    if pd.api.types.is_integer_dtype(dtype):
        return "NUMBER(38,0)"
    if pd.api.types.is_float_dtype(dtype):
        return "FLOAT"
    if pd.api.types.is_datetime64_any_dtype(dtype):
        return "TIMESTAMP_NTZ"  # UTC wall time, as the embedded engine stores it
    if pd.api.types.is_object_dtype(dtype):
        values = series.dropna()
        if values.map(lambda v: isinstance(v, (list, tuple))).all() and len(values):
            return "ARRAY"
        if values.map(lambda v: isinstance(v, str)).all():
            return "VARCHAR"
    elif pd.api.types.is_string_dtype(dtype):
        return "VARCHAR"
    raise WarehouseError(
        f"cannot publish {destination}: column {column} has dtype {dtype}; use Int64, Float64, "
        "boolean, string, datetime64 or list<int64>"
    )


def _prepare_frame(frame: pd.DataFrame, destination: str) -> tuple[str, pd.DataFrame]:
    """Column DDL for the staging table, and the frame as write_pandas should load it."""
    check_publishable(frame, destination)
    if frame.columns.empty:
        raise WarehouseError(f"cannot publish {destination}: the frame has no columns")
    types = {column: _column_type(column, frame[column], destination) for column in frame.columns}
    prepared = frame.reset_index(drop=True).copy()
    for column, kind in types.items():
        if kind == "TIMESTAMP_NTZ" and getattr(prepared[column].dtype, "tz", None) is not None:
            # NTZ holds UTC wall time: convert instants to UTC, then drop the label.
            prepared[column] = prepared[column].dt.tz_convert("UTC").dt.tz_localize(None)
    # Quoted because a checked name may still be a reserved word (ORDER); upper case, so
    # the column is the same as if unquoted and plain SQL can name it without quotes.
    ddl = ", ".join(f"{_q(column)} {kind}" for column, kind in types.items())
    return ddl, prepared


def _literal(text: str) -> str:
    """A Snowflake string literal: backslash and quote escaped (backslash is an escape there)."""
    text = check_comment_text(text, "a table or column")
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _bind_value(value: Any) -> Any:
    """A frame cell as the connector binds it: None for missing, plain Python scalars."""
    if value is None or (not isinstance(value, (list, tuple)) and pd.isna(value)):
        return None
    if isinstance(value, pd.Timestamp):
        return value.to_pydatetime()  # naive UTC wall time: _prepare_frame dropped the zone
    return value.item() if hasattr(value, "item") else value  # numpy scalars


# -- frames in ---------------------------------------------------------------------------
def _json_values(values: list[Any]) -> tuple[list[Any], pa.DataType | None]:
    """ARRAY/VARIANT cells arrive as JSON text: parse them, typed list<int64> when they fit."""
    parsed = [json.loads(v) if isinstance(v, str) else v for v in values]
    present = [v for v in parsed if v is not None]
    if all(isinstance(v, list) and all(type(i) is int for i in v) for v in present):
        return parsed, pa.list_(pa.int64())
    return [v if v is None else json.dumps(v) for v in parsed], pa.string()


def _arrow_column(values: list[Any], type_name: str, scale: int | None) -> pa.Array:
    if type_name == "FIXED":
        kind = pa.int64() if not scale else pa.float64()
        return pa.array([v if v is None or not scale else float(v) for v in values], type=kind)
    if type_name == "REAL":
        return pa.array(values, type=pa.float64())
    if type_name == "TEXT":
        return pa.array(values, type=pa.string())
    if type_name == "BOOLEAN":
        return pa.array(values, type=pa.bool_())
    if type_name == "TIMESTAMP_NTZ":
        return pa.array(values, type=pa.timestamp("us"))  # UTC wall time; labelled UTC later
    if type_name in ("TIMESTAMP_LTZ", "TIMESTAMP_TZ"):
        return pa.array(values, type=pa.timestamp("us", tz="UTC"))
    if type_name == "DATE":
        return pa.array(values, type=pa.date32())
    if type_name in ("ARRAY", "VARIANT", "OBJECT"):
        parsed, kind = _json_values(values)
        return pa.array(parsed, type=kind)
    return pa.array(values)


def _frame(cursor: Any) -> pd.DataFrame:
    """A cursor's result with hnpipe's dtypes (the same mapping as the DuckDB engine)."""
    # DB-API description rows: (name, type_code, display_size, internal_size, precision, scale, ...)
    description = list(cursor.description or [])
    names = [column[0] for column in description]
    rows = cursor.fetchall() if description else []
    columns = list(zip(*rows)) if rows else [() for _ in names]
    arrays = [
        _arrow_column(list(values), FIELD_ID_TO_NAME.get(column[1], ""), column[5])
        for column, values in zip(description, columns)
    ]
    return frame_from_arrow(pa.table(arrays, names=names))
