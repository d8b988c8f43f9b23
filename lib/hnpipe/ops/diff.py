"""`hnpipe diff`: what a branch does to the data, table by table, computed in the warehouse.

Compares one schema (default HACKER_NEWS) in two databases, typically PRODUCTION and a
branch clone PRODUCTION_CLONE_<PR>. For every table in either:

* schema: columns added, removed, or whose type changed;
* row counts on both sides;
* ids added and removed (counts and the first few ids);
* rows changed: matched by ID, a row changed when any compared column IS DISTINCT FROM its
  counterpart (NULL-safe: NULL -> value counts, NULL -> NULL does not), with a short sample
  of (ID, column, base value, head value), values rendered as text.

Everything is counted by SQL through `Warehouse.query_across`, on DuckDB and Snowflake alike;
only counts and samples come back, so tables larger than memory are fine. Columns whose
type changed are reported, not compared value by value; a table without an ID column (on
either side) gets schema and row counts only. Rows whose ID is NULL or repeated are not
matched; a note says how many.

The warehouse is the process environment's (HNPIPE_ENV / HNPIPE_WAREHOUSE, as for a run),
opened so that any write is refused.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

import pandas as pd

from hnpipe import datasets, environments
from hnpipe.environments import (
    PUBLISHED_SCHEMA,
    Target,
    check_identifier,
    is_identifier,
)
from hnpipe.errors import GuardError, WarehouseError
from hnpipe.warehouse import reader
from hnpipe.warehouse.base import Warehouse, is_bookkeeping_table

SAMPLE_SIZE = 5  # ids added/removed and changed values shown per table
VALUE_CHARS = 200  # sample values are cut to this many characters, inside the warehouse


@dataclass
class Column:
    name: str
    type: str


@dataclass
class TypeChange:
    name: str
    base_type: str
    head_type: str


@dataclass
class ChangedValue:
    id: Any
    column: str
    base: str | None
    head: str | None


@dataclass
class TableDiff:
    """One table compared. status: identical, changed, added (head only), removed (base only)."""

    name: str
    status: str
    base_rows: int | None
    head_rows: int | None
    columns_added: list[Column] = field(default_factory=list)
    columns_removed: list[Column] = field(default_factory=list)
    types_changed: list[TypeChange] = field(default_factory=list)
    ids_added: int = 0
    ids_removed: int = 0
    rows_changed: int = 0
    added_sample: list[Any] = field(default_factory=list)
    removed_sample: list[Any] = field(default_factory=list)
    changed_by_column: dict[str, int] = field(default_factory=dict)
    changed_sample: list[ChangedValue] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def schema_changed(self) -> bool:
        return bool(self.columns_added or self.columns_removed or self.types_changed)


@dataclass
class DatabaseDiff:
    base: str
    head: str
    schema: str
    tables: list[TableDiff]

    @property
    def identical(self) -> bool:
        return all(table.status == "identical" for table in self.tables)

    def to_json(self) -> dict[str, Any]:
        return {"base": self.base, "head": self.head, "schema": self.schema,
                "identical": self.identical,
                "tables": {table.name: {key: value for key, value in asdict(table).items() if key != "name"}
                           for table in self.tables}}


# -- where the tables are ----------------------------------------------------------------
def _qualified(database: str, schema: str, table: str) -> str:
    return ".".join(f'"{check_identifier(name)}"' for name in (database, schema, table))


def table_columns(warehouse: Warehouse, database: str, schema: str) -> dict[str, list[Column]]:
    """The base tables of database.schema with their columns in order (not hnpipe's staging,
    version and history tables)."""
    catalog = warehouse.catalog(database)
    frame = warehouse.query_across([database], f"""
        SELECT C.TABLE_NAME, C.COLUMN_NAME, C.DATA_TYPE
        FROM {catalog}.COLUMNS AS C
        JOIN {catalog}.TABLES AS T
          ON T.TABLE_CATALOG = C.TABLE_CATALOG AND T.TABLE_SCHEMA = C.TABLE_SCHEMA
         AND T.TABLE_NAME = C.TABLE_NAME
        WHERE C.TABLE_CATALOG = ? AND C.TABLE_SCHEMA = ? AND T.TABLE_TYPE = 'BASE TABLE'
        ORDER BY C.TABLE_NAME, C.ORDINAL_POSITION""", [database, schema])
    tables: dict[str, list[Column]] = {}
    for table, column, data_type in frame.itertuples(index=False):
        if is_identifier(table) and not is_bookkeeping_table(table):  # hnpipe's own tables
            tables.setdefault(table, []).append(Column(column, str(data_type)))
    if not tables:
        present = warehouse.query_across([database], f"""
            SELECT SCHEMA_NAME FROM {catalog}.SCHEMATA
            WHERE CATALOG_NAME = ? AND SCHEMA_NAME = ?""", [database, schema])
        if present.empty:
            raise WarehouseError(f"no schema {database}.{schema}: pass the schema that holds the tables "
                                 f"with --schema (default {PUBLISHED_SCHEMA})")
    return tables


# -- comparing one table -----------------------------------------------------------------
def _count(value: Any) -> int:
    return 0 if value is None or pd.isna(value) else int(value)  # SUM may come back as a float


def _plain(value: Any) -> Any:
    """A sampled id as JSON can hold it."""
    if value is None or pd.isna(value):
        return None
    if hasattr(value, "item"):  # a numpy scalar
        return value.item()
    return value if isinstance(value, (int, str)) else str(value)


def compare_table(warehouse: Warehouse, base: str, head: str, schema: str, table: str,
                  base_columns: list[Column], head_columns: list[Column],
                  sample_size: int = SAMPLE_SIZE) -> TableDiff:
    """Compare base.schema.table with head.schema.table inside the warehouse."""
    databases = [base, head]
    base_table, head_table = _qualified(base, schema, table), _qualified(head, schema, table)
    base_types = {column.name: column.type for column in base_columns}
    head_types = {column.name: column.type for column in head_columns}
    for name in [*base_types, *head_types]:
        check_identifier(name, f"column of {table}")
    result = TableDiff(
        table, "identical", None, None,
        columns_added=[column for column in head_columns if column.name not in base_types],
        columns_removed=[column for column in base_columns if column.name not in head_types],
        types_changed=[TypeChange(name, base_types[name], head_types[name]) for name in head_types
                       if name in base_types and base_types[name] != head_types[name]],
    )
    matchable = "ID" in base_types and base_types.get("ID") == head_types.get("ID")
    distinct_ids = (f', (SELECT COUNT(DISTINCT "ID") FROM {base_table}) AS BASE_IDS'
                    f', (SELECT COUNT(DISTINCT "ID") FROM {head_table}) AS HEAD_IDS') if matchable else ""
    counts = warehouse.query_across(databases, f"""
        SELECT (SELECT COUNT(*) FROM {base_table}) AS BASE_ROWS,
               (SELECT COUNT(*) FROM {head_table}) AS HEAD_ROWS{distinct_ids}""").iloc[0]
    result.base_rows, result.head_rows = _count(counts.iloc[0]), _count(counts.iloc[1])
    if matchable:
        unmatched = {"base": result.base_rows - _count(counts.iloc[2]),
                     "head": result.head_rows - _count(counts.iloc[3])}
        for side, rows in unmatched.items():
            if rows:
                result.notes.append(f"{rows:,} {side} rows have a NULL or repeated ID and are not matched one to one")
        compared = [name for name in head_types
                    if name != "ID" and name in base_types and base_types[name] == head_types[name]]
        _match_rows(warehouse, databases, base_table, head_table, compared, result, sample_size)
    else:
        result.notes.append("no ID column of the same type on both sides: rows are not matched")
    if result.types_changed:
        result.notes.append("columns whose type changed are not compared value by value")
    differs = (result.schema_changed or result.base_rows != result.head_rows
               or result.ids_added or result.ids_removed or result.rows_changed)
    result.status = "changed" if differs else "identical"
    return result


def _match_rows(warehouse: Warehouse, databases: list[str], base_table: str, head_table: str,
                compared: list[str], result: TableDiff, sample_size: int) -> None:
    """Ids added and removed, and rows changed, by a full outer join on ID."""
    both = 'B."ID" IS NOT NULL AND H."ID" IS NOT NULL'
    differs = {name: f'B."{name}" IS DISTINCT FROM H."{name}"' for name in compared}
    any_differs = " OR ".join(differs.values()) or "FALSE"
    per_column = "".join(f",\n SUM(CASE WHEN {both} AND {test} THEN 1 ELSE 0 END) AS C_{i}"
                         for i, test in enumerate(differs.values()))
    row = warehouse.query_across(databases, f"""
        SELECT COUNT(DISTINCT CASE WHEN B."ID" IS NULL THEN H."ID" END) AS ADDED,
               COUNT(DISTINCT CASE WHEN H."ID" IS NULL THEN B."ID" END) AS REMOVED,
               COUNT(DISTINCT CASE WHEN {both} AND ({any_differs}) THEN B."ID" END) AS CHANGED{per_column}
        FROM {base_table} AS B FULL OUTER JOIN {head_table} AS H ON B."ID" = H."ID"
    """).iloc[0]
    result.ids_added, result.ids_removed, result.rows_changed = (_count(row.iloc[i]) for i in range(3))
    result.changed_by_column = {name: _count(row.iloc[3 + i]) for i, name in enumerate(compared)
                                if _count(row.iloc[3 + i])}
    if result.ids_added or result.ids_removed:
        samples = warehouse.query_across(databases, f"""
            SELECT * FROM (SELECT 'added' AS KIND, H."ID" AS ID FROM {head_table} AS H
                           WHERE H."ID" IS NOT NULL
                             AND NOT EXISTS (SELECT 1 FROM {base_table} AS B WHERE B."ID" = H."ID")
                           ORDER BY H."ID" LIMIT {int(sample_size)}) AS ADDED_IDS
            UNION ALL
            SELECT * FROM (SELECT 'removed' AS KIND, B."ID" AS ID FROM {base_table} AS B
                           WHERE B."ID" IS NOT NULL
                             AND NOT EXISTS (SELECT 1 FROM {head_table} AS H WHERE H."ID" = B."ID")
                           ORDER BY B."ID" LIMIT {int(sample_size)}) AS REMOVED_IDS""")
        for kind, item_id in samples.itertuples(index=False):
            (result.added_sample if kind == "added" else result.removed_sample).append(_plain(item_id))
        result.added_sample.sort()
        result.removed_sample.sort()
    if result.changed_by_column:
        result.changed_sample = _changed_values(warehouse, databases, base_table, head_table,
                                                list(result.changed_by_column), sample_size)


def _changed_values(warehouse: Warehouse, databases: list[str], base_table: str, head_table: str,
                    columns: list[str], sample_size: int) -> list[ChangedValue]:
    """The first changed (ID, column) pairs by ID, values as text (one branch per column)."""
    def text(value: str) -> str:
        return f"SUBSTR(CAST({value} AS VARCHAR), 1, {VALUE_CHARS})"

    pairs = ", ".join(f'B."{name}" AS B_{i}, H."{name}" AS H_{i}' for i, name in enumerate(columns))
    any_differs = " OR ".join(f'B."{name}" IS DISTINCT FROM H."{name}"' for name in columns)
    per_column = "\n            UNION ALL\n".join(
        f"SELECT ID, {i} AS COLUMN_POSITION, '{name}' AS COLUMN_NAME, {text(f'B_{i}')} AS BASE_VALUE, "
        f"{text(f'H_{i}')} AS HEAD_VALUE FROM CHANGED_ROWS WHERE B_{i} IS DISTINCT FROM H_{i}"
        for i, name in enumerate(columns))
    frame = warehouse.query_across(databases, f"""
        WITH CHANGED_ROWS AS (
            SELECT B."ID" AS ID, {pairs}
            FROM {base_table} AS B JOIN {head_table} AS H ON B."ID" = H."ID"
            WHERE {any_differs}
        )
        SELECT ID, COLUMN_NAME, BASE_VALUE, HEAD_VALUE FROM (
            {per_column}
        ) AS CHANGED_VALUES
        ORDER BY ID, COLUMN_POSITION LIMIT {int(sample_size)}""")
    return [ChangedValue(_plain(item_id), column, None if pd.isna(old) else old, None if pd.isna(new) else new)
            for item_id, column, old, new in frame.itertuples(index=False)]


# -- comparing databases -----------------------------------------------------------------
def diff_databases(warehouse: Warehouse, base: str, head: str, schema: str = PUBLISHED_SCHEMA,
                   sample_size: int = SAMPLE_SIZE) -> DatabaseDiff:
    """Compare every table of base.schema and head.schema; refuses bad or missing names first."""
    base = check_identifier(base, "base database")
    head = check_identifier(head, "head database")
    schema = check_identifier(schema, "schema")
    if not isinstance(sample_size, int) or isinstance(sample_size, bool) or not 0 <= sample_size <= 1000:
        raise WarehouseError(f"sample size {sample_size!r} is not allowed: use a whole number from 0 to 1000")
    present = warehouse.list_databases()
    for database in (base, head):
        if database not in present:
            raise WarehouseError(f"no database {database} in {warehouse!r}: choose one of "
                                 f"{', '.join(present) or '(none)'}")
    base_tables = table_columns(warehouse, base, schema)
    head_tables = table_columns(warehouse, head, schema)
    known = [dataset.name for dataset in datasets.dependency_order()]
    names = sorted(base_tables.keys() | head_tables.keys(),
                   key=lambda name: (known.index(name) if name in known else len(known), name))
    tables = []
    for name in names:
        if name not in base_tables:
            rows = warehouse.list_tables(Target(head, schema)).get(name)
            tables.append(TableDiff(name, "added", None, rows, columns_added=head_tables[name]))
        elif name not in head_tables:
            rows = warehouse.list_tables(Target(base, schema)).get(name)
            tables.append(TableDiff(name, "removed", rows, None, columns_removed=base_tables[name]))
        else:
            tables.append(compare_table(warehouse, base, head, schema, name,
                                        base_tables[name], head_tables[name], sample_size))
    return DatabaseDiff(base, head, schema, tables)


# -- reports -----------------------------------------------------------------------------
def _side(table: TableDiff) -> str:
    """Where a table that exists on one side only is."""
    return "head" if table.status == "added" else "base"


def _rows(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"


def _ids(sample: list[Any], total: int) -> str:
    shown = ", ".join(str(item) for item in sample)
    return shown + (", ..." if total > len(sample) else "")


def _schema_lines(table: TableDiff) -> list[str]:
    return ([f"column {c.name} added ({c.type})" for c in table.columns_added]
            + [f"column {c.name} removed ({c.type})" for c in table.columns_removed]
            + [f"column {c.name} type {c.base_type} -> {c.head_type}" for c in table.types_changed])


def _shown(value: str | None) -> str:
    return "NULL" if value is None else repr(value) if isinstance(value, str) else str(value)


def to_text(diff: DatabaseDiff) -> str:
    lines = [f"{diff.base}.{diff.schema} -> {diff.head}.{diff.schema}"]
    if not diff.tables:
        lines.append("no tables on either side")
    for table in diff.tables:
        if table.status == "identical":
            lines.append(f"{table.name}: no differences ({_rows(table.head_rows)} rows)")
            continue
        if table.status in ("added", "removed"):
            rows = table.head_rows if table.status == "added" else table.base_rows
            columns = len(table.columns_added or table.columns_removed)
            lines.append(f"{table.name}: only in {_side(table)} ({_rows(rows)} rows, {columns} columns)")
            continue
        lines.append(f"{table.name}: {_rows(table.base_rows)} -> {_rows(table.head_rows)} rows")
        lines.extend(f"  schema: {line}" for line in _schema_lines(table))
        if table.ids_added:
            lines.append(f"  ids added: {table.ids_added:,} (e.g. {_ids(table.added_sample, table.ids_added)})")
        if table.ids_removed:
            lines.append(f"  ids removed: {table.ids_removed:,} (e.g. {_ids(table.removed_sample, table.ids_removed)})")
        if table.rows_changed:
            by_column = ", ".join(f"{name} {count:,}" for name, count in table.changed_by_column.items())
            lines.append(f"  rows changed: {table.rows_changed:,} ({by_column})")
            lines.extend(f"    ID {value.id} {value.column}: {_shown(value.base)} -> {_shown(value.head)}"
                         for value in table.changed_sample)
        lines.extend(f"  note: {note}" for note in table.notes)
    return "\n".join(lines)


def _cell(value: Any) -> str:
    """A value inside a markdown table cell: one line, pipes escaped, code-formatted."""
    if value is None:
        return "NULL"
    text = " ".join(str(value).split()).replace("|", "\\|").replace("`", "'")
    return f"`{text}`" if text else "``"


def to_markdown(diff: DatabaseDiff) -> str:
    """For the pull request's job summary: an overview, then a table per dataset."""
    lines = [f"## Data diff: `{diff.base}` → `{diff.head}` (schema `{diff.schema}`)", ""]
    if not diff.tables:
        return "\n".join(lines + ["No tables on either side."])
    lines += ["| table | status | base rows | head rows | ids added | ids removed | rows changed | schema |",
              "|---|---|---:|---:|---:|---:|---:|---|"]
    for table in diff.tables:
        if table.status in ("added", "removed"):
            status = f"only in {_side(table)}"
            matched = "| - | - | - | - |"
        else:
            status = "no differences" if table.status == "identical" else "changed"
            matched = (f"| {table.ids_added:,} | {table.ids_removed:,} | {table.rows_changed:,} | "
                       f"{'changed' if table.schema_changed else 'same'} |")
        lines.append(f"| {table.name} | {status} | {_rows(table.base_rows)} | {_rows(table.head_rows)} {matched}")
    for table in diff.tables:
        if table.status == "identical":
            continue
        lines += ["", f"### {table.name}", "", "| what | count | sample |", "|---|---:|---|"]
        if table.status in ("added", "removed"):
            columns = table.columns_added or table.columns_removed
            rows = table.head_rows if table.status == "added" else table.base_rows
            lines.append(f"| only in {_side(table)} | {_rows(rows)} rows | "
                         f"{_cell(', '.join(f'{c.name} {c.type}' for c in columns))} |")
            continue
        for line in _schema_lines(table):
            lines.append(f"| schema | | {_cell(line)} |")
        if table.ids_added:
            lines.append(f"| ids added | {table.ids_added:,} | {_ids(table.added_sample, table.ids_added)} |")
        if table.ids_removed:
            lines.append(f"| ids removed | {table.ids_removed:,} | {_ids(table.removed_sample, table.ids_removed)} |")
        for name, count in table.changed_by_column.items():
            lines.append(f"| {name} changed | {count:,} | |")
        for note in table.notes:
            lines.append(f"| note | | {_cell(note)} |")
        if table.changed_sample:
            lines += ["", "| ID | column | base | head |", "|---:|---|---|---|"]
            lines += [f"| {value.id} | {value.column} | {_cell(value.base)} | {_cell(value.head)} |"
                      for value in table.changed_sample]
    return "\n".join(lines)


# -- the warehouse, read-only ------------------------------------------------------------
def connect() -> Warehouse:
    """The process environment's warehouse, opened as `hnpipe history` and `docs` open it:
    every write refused (and on the embedded engine PRODUCTION read-only)."""

    return reader(environments.process_environment(), "hnpipe diff")


# -- `hnpipe diff` -----------------------------------------------------------------------
def add_arguments(parser) -> None:
    parser.add_argument("--base", default="PRODUCTION", metavar="DATABASE",
                        help="the database to compare against (default PRODUCTION)")
    parser.add_argument("--head", metavar="DATABASE",
                        help="the database with the changes, e.g. PRODUCTION_CLONE_123 "
                             "(default: the clone of HNPIPE_PR_ID)")
    parser.add_argument("--schema", default=PUBLISHED_SCHEMA, help=f"default {PUBLISHED_SCHEMA}")
    parser.add_argument("--sample", type=int, default=SAMPLE_SIZE, metavar="N",
                        help=f"ids and changed values shown per table (default {SAMPLE_SIZE})")
    output = parser.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="machine-readable output")
    output.add_argument("--markdown", action="store_true", help="for a pull request's job summary")


def main(args) -> int:
    head = args.head
    if head is None:
        pr = environments.pr_id()
        if pr is None:
            raise GuardError("no --head: pass --head PRODUCTION_CLONE_<PR> or set HNPIPE_PR_ID")
        head = environments.clone_database(pr)
    for name, what in ((args.base, "--base"), (head, "--head"), (args.schema, "--schema")):
        check_identifier(name, what)  # before connecting
    with connect() as warehouse:
        diff = diff_databases(warehouse, args.base, head, args.schema, args.sample)
    if args.json:
        print(json.dumps(diff.to_json(), indent=2, default=str))
    elif args.markdown:
        print(to_markdown(diff))
    else:
        print(to_text(diff))
    return 0
