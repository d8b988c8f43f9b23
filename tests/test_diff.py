"""`hnpipe diff`: hand-built ITEMS in PRODUCTION and a branch database, compared inside the
warehouse on real DuckDB files and on fakesnow (which cannot clone: both databases are
created and published directly there), then through the command line.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pytest
from hnpipe import cli
from hnpipe.environments import Target
from hnpipe.errors import GuardError, WarehouseError
from hnpipe.items import _FIELDS, items_frame
from hnpipe.ops import diff
from hnpipe.warehouse.base import Warehouse
from hnpipe.warehouse.duckdb_engine import DuckDBWarehouse

pytestmark = pytest.mark.filterwarnings("ignore:Arrow output on a DB-API result:UserWarning")

BASE, HEAD, SCHEMA = "PRODUCTION", "PRODUCTION_CLONE_7", "HACKER_NEWS"

BASE_ITEMS = [
    {"id": id_, "type": "story" if id_ % 3 else "comment", "by": f"user{id_}", "time": 1_700_000_000 + id_,
     "kids": [id_ * 10], "score": id_, "title": f"title {id_}"}
    for id_ in range(1, 13)
]
REMOVED = [1, 2]
ADDED = [{"id": 40, "type": "job", "by": "hirer", "time": 1_700_000_040}, {"id": 41, "type": "story"}]
# id -> the API fields the head changes, covering value -> value, NULL -> value, value -> NULL
# and list changes (a list -> another, a list -> an empty list, NULL -> a list).
CHANGES = {
    3: {"score": 300},
    4: {"text": "now with text"},
    5: {"by": None},
    6: {"kids": [60, 61]},
    7: {"kids": []},
    8: {"parts": [1, 2], "score": 800},
}


def head_items() -> list[dict[str, Any]]:
    items = []
    for raw in BASE_ITEMS:
        if raw["id"] not in REMOVED:
            items.append({**raw, **CHANGES.get(raw["id"], {})})
    return items + ADDED


def column_of(field: str) -> str:
    return "ID" if field == "id" else _FIELDS[field][0]


def publish(warehouse: Warehouse, database: str, table: str, frame: pd.DataFrame) -> None:
    target = Target(database, SCHEMA)
    if database == HEAD and isinstance(warehouse, DuckDBWarehouse) and not warehouse.path(HEAD).exists():
        # Only `admin clone` makes a clone's file (a write into a missing one is refused): the
        # hand-built head starts as an empty file, as fakesnow's databases start empty.
        warehouse.path(HEAD).parent.mkdir(parents=True, exist_ok=True)
        duckdb.connect(str(warehouse.path(HEAD))).close()
    warehouse.ensure_schema(target)
    warehouse.publish_frame(target, table, frame, "t1")


# -- the two engines ---------------------------------------------------------------------
@pytest.fixture
def duckdb_warehouse(tmp_path: Path) -> DuckDBWarehouse:
    return DuckDBWarehouse(tmp_path / "warehouse")


@pytest.fixture
def fake_account(fake_snowflake):
    """fakesnow holding both databases (it cannot clone: each is published directly)."""
    return fake_snowflake.create_databases(BASE, HEAD)


@pytest.fixture(params=["duckdb", "snowflake"])
def warehouse(request, tmp_path: Path) -> Warehouse:
    if request.param == "duckdb":
        return DuckDBWarehouse(tmp_path / "warehouse")
    return request.getfixturevalue("fake_account").warehouse()


# -- the comparison, on both engines -----------------------------------------------------
def test_added_removed_and_changed_rows(warehouse: Warehouse) -> None:
    publish(warehouse, BASE, "ITEMS", items_frame(BASE_ITEMS))
    publish(warehouse, HEAD, "ITEMS", items_frame(head_items()))
    result = diff.diff_databases(warehouse, BASE, HEAD, sample_size=20)
    [items] = result.tables
    assert items.name == "ITEMS" and items.status == "changed" and not result.identical
    assert (items.base_rows, items.head_rows) == (len(BASE_ITEMS), len(head_items()))
    assert items.ids_added == len(ADDED) and items.added_sample == [raw["id"] for raw in ADDED]
    assert items.ids_removed == len(REMOVED) and items.removed_sample == REMOVED
    assert items.rows_changed == len(CHANGES)
    expected_pairs = sorted((id_, column_of(field)) for id_, fields in CHANGES.items() for field in fields)
    assert sorted((value.id, value.column) for value in items.changed_sample) == expected_pairs
    per_column: dict[str, int] = {}
    for column in (pair[1] for pair in expected_pairs):
        per_column[column] = per_column.get(column, 0) + 1
    assert items.changed_by_column == per_column
    values = {(value.id, value.column): (value.base, value.head) for value in items.changed_sample}
    assert values[(3, "SCORE")] == ("3", "300")
    assert values[(4, "TEXT")] == (None, "now with text")  # NULL -> value
    assert values[(5, "USER_ID")] == ("user5", None)  # value -> NULL
    assert values[(8, "PARTS")][0] is None and "2" in values[(8, "PARTS")][1]
    assert "61" in values[(6, "KIDS")][1] and "70" in values[(7, "KIDS")][0]
    assert not items.schema_changed and items.notes == []


def test_identical_tables_and_tables_on_one_side_only(warehouse: Warehouse) -> None:
    frame = items_frame(BASE_ITEMS)
    for database in (BASE, HEAD):
        publish(warehouse, database, "ITEMS", frame)
    publish(warehouse, BASE, "STORIES", frame[frame.TYPE == "story"])
    publish(warehouse, HEAD, "JOBS", frame.head(2))
    result = diff.diff_databases(warehouse, BASE, HEAD)
    statuses = {table.name: table.status for table in result.tables}
    assert statuses == {"ITEMS": "identical", "STORIES": "removed", "JOBS": "added"}
    assert [table.name for table in result.tables] == ["ITEMS", "STORIES", "JOBS"]  # datasets first
    stories, jobs = result.tables[1], result.tables[2]
    assert stories.base_rows == int((frame.TYPE == "story").sum()) and stories.head_rows is None
    assert jobs.head_rows == 2 and [c.name for c in jobs.columns_added] == list(frame.columns)
    text = diff.to_text(result).splitlines()
    assert f"ITEMS: no differences ({len(frame)} rows)" in text


def test_schema_changes_are_reported_and_other_columns_still_compared(warehouse: Warehouse) -> None:
    publish(warehouse, BASE, "ITEMS", items_frame(BASE_ITEMS))
    head = items_frame([{**raw, "score": raw["score"] + 1} if raw["id"] == 9 else raw for raw in BASE_ITEMS])
    head = head.drop(columns=["URL"]).assign(LANGUAGE=pd.array(["en"] * len(head), dtype="string"))
    head["DESCENDANTS"] = head["DESCENDANTS"].astype("string")  # a type change
    publish(warehouse, HEAD, "ITEMS", head)
    [items] = diff.diff_databases(warehouse, BASE, HEAD).tables
    assert [c.name for c in items.columns_added] == ["LANGUAGE"]
    assert [c.name for c in items.columns_removed] == ["URL"]
    assert [(t.name, t.base_type != t.head_type) for t in items.types_changed] == [("DESCENDANTS", True)]
    assert items.status == "changed" and items.rows_changed == 1 and items.changed_by_column == {"SCORE": 1}
    assert any("type changed" in note for note in items.notes)
    assert "  schema: column URL removed" in "\n".join(diff.to_text(diff.DatabaseDiff(BASE, HEAD, SCHEMA, [items])).splitlines())


def test_missing_database_and_bad_names_are_one_line_errors(warehouse: Warehouse) -> None:
    publish(warehouse, BASE, "ITEMS", items_frame(BASE_ITEMS))
    with pytest.raises(WarehouseError, match="no database PRODUCTION_CLONE_8") as raised:
        diff.diff_databases(warehouse, BASE, "PRODUCTION_CLONE_8")
    assert "\n" not in str(raised.value) and "PRODUCTION" in str(raised.value).split("choose one of")[1]
    with pytest.raises(GuardError, match="refused schema 'hacker_news'"):
        diff.diff_databases(warehouse, BASE, HEAD, schema="hacker_news")
    with pytest.raises(GuardError, match="refused head database"):
        diff.diff_databases(warehouse, BASE, 'X"; DROP DATABASE PRODUCTION; --')
    publish(warehouse, HEAD, "ITEMS", items_frame(BASE_ITEMS))
    with pytest.raises(WarehouseError, match="no schema PRODUCTION.ELSEWHERE"):
        diff.diff_databases(warehouse, BASE, HEAD, schema="ELSEWHERE")


# -- DuckDB specifics --------------------------------------------------------------------
def test_a_real_clone_compares_identical_then_shows_the_branch_run(duckdb_warehouse: DuckDBWarehouse) -> None:
    publish(duckdb_warehouse, BASE, "ITEMS", items_frame(BASE_ITEMS))
    duckdb_warehouse.clone_database(BASE, HEAD)
    assert diff.diff_databases(duckdb_warehouse, BASE, HEAD).identical
    publish(duckdb_warehouse, HEAD, "ITEMS", items_frame(head_items()))
    before = hashlib.sha256(duckdb_warehouse.path(BASE).read_bytes()).hexdigest()
    [items] = diff.diff_databases(duckdb_warehouse, BASE, HEAD, sample_size=2).tables
    assert hashlib.sha256(duckdb_warehouse.path(BASE).read_bytes()).hexdigest() == before
    assert items.rows_changed == len(CHANGES)
    first_changed = sorted(CHANGES)[:2]
    assert [value.id for value in items.changed_sample] == [first_changed[0]] * len(CHANGES[first_changed[0]]) + \
        [first_changed[1]] * (2 - len(CHANGES[first_changed[0]]))
    assert len(items.added_sample) == 2 and len(items.removed_sample) == 2


def test_tables_without_a_unique_id_get_counts_and_a_note(duckdb_warehouse: DuckDBWarehouse) -> None:
    counts = pd.DataFrame({"TYPE": pd.array(["story", "job"], dtype="string"), "N": pd.array([3, 1], dtype="Int64")})
    publish(duckdb_warehouse, BASE, "TYPE_COUNTS", counts)
    publish(duckdb_warehouse, HEAD, "TYPE_COUNTS", counts.head(1))
    frame = items_frame(BASE_ITEMS)
    publish(duckdb_warehouse, BASE, "ITEMS", frame)
    publish(duckdb_warehouse, HEAD, "ITEMS", pd.concat([frame, frame.head(1)], ignore_index=True))
    tables = {table.name: table for table in diff.diff_databases(duckdb_warehouse, BASE, HEAD).tables}
    assert (tables["TYPE_COUNTS"].base_rows, tables["TYPE_COUNTS"].head_rows) == (2, 1)
    assert tables["TYPE_COUNTS"].status == "changed" and "rows are not matched" in tables["TYPE_COUNTS"].notes[0]
    assert tables["ITEMS"].ids_added == 0 and tables["ITEMS"].rows_changed == 0
    assert tables["ITEMS"].notes == ["1 head rows have a NULL or repeated ID and are not matched one to one"]


def test_markdown_has_an_overview_and_a_table_per_changed_dataset(duckdb_warehouse: DuckDBWarehouse) -> None:
    frame = items_frame(BASE_ITEMS)
    publish(duckdb_warehouse, BASE, "ITEMS", frame)
    publish(duckdb_warehouse, BASE, "STORIES", frame[frame.TYPE == "story"])
    publish(duckdb_warehouse, HEAD, "STORIES", frame[frame.TYPE == "story"])
    piped = [{**raw, "title": "a | b\nc"} if raw["id"] == 4 else raw for raw in BASE_ITEMS]
    publish(duckdb_warehouse, HEAD, "ITEMS", items_frame(piped))
    markdown = diff.to_markdown(diff.diff_databases(duckdb_warehouse, BASE, HEAD))
    lines = markdown.splitlines()
    assert lines[0] == f"## Data diff: `{BASE}` → `{HEAD}` (schema `{SCHEMA}`)"
    assert any(line.startswith("| STORIES | no differences |") for line in lines)
    assert "### ITEMS" in lines and "### STORIES" not in lines
    assert "| 4 | TITLE | `title 4` | `a \\| b c` |" in lines  # one line, pipe escaped
    # every table row has the same number of cells as its header
    for block in markdown.split("\n\n"):
        rows = [line for line in block.splitlines() if line.startswith("|")]
        widths = {len(row.replace("\\|", "").split("|")) for row in rows}
        assert len(widths) <= 1, block


# -- the command -------------------------------------------------------------------------
def test_cli_formats_and_exit_codes(clean_env: Path, capsys, monkeypatch: pytest.MonkeyPatch) -> None:
    warehouse = DuckDBWarehouse(clean_env)
    publish(warehouse, BASE, "ITEMS", items_frame(BASE_ITEMS))
    publish(warehouse, HEAD, "ITEMS", items_frame(head_items()))
    files = {path.name: path.read_bytes() for path in clean_env.iterdir()}

    assert cli.main(["diff", "--base", BASE, "--head", HEAD, "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["base"] == BASE and payload["head"] == HEAD and payload["identical"] is False
    assert payload["tables"]["ITEMS"]["rows_changed"] == len(CHANGES)
    assert payload["tables"]["ITEMS"]["added_sample"] == [raw["id"] for raw in ADDED]

    monkeypatch.setenv("HNPIPE_PR_ID", HEAD.rsplit("_", 1)[1])  # --head defaults to the PR's clone
    assert cli.main(["diff", "--markdown"]) == 0
    assert "### ITEMS" in capsys.readouterr().out
    assert cli.main(["diff", "--base", BASE, "--head", HEAD]) == 0
    assert capsys.readouterr().out.splitlines()[1] == f"ITEMS: {len(BASE_ITEMS)} -> {len(head_items())} rows"
    assert {path.name: path.read_bytes() for path in clean_env.iterdir()} == files  # nothing written

    for argv, named in ((["diff", "--head", "PRODUCTION_CLONE_99"], "PRODUCTION_CLONE_99"),
                        (["diff", "--head", "clone-7"], "'clone-7'"),
                        (["diff", "--schema", "NOPE"], "NOPE")):
        assert cli.main(argv) == 1
        captured = capsys.readouterr()
        assert captured.out == "" and captured.err.count("\n") == 1 and named in captured.err
    monkeypatch.delenv("HNPIPE_PR_ID")
    assert cli.main(["diff"]) == 1 and "--head" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["diff", "--head", HEAD, "--json", "--markdown"])


def test_cli_reads_snowflake_with_the_environments_credentials_and_refuses_writes(
        fake_account, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.delenv("HNPIPE_WAREHOUSE")
    monkeypatch.setenv("HNPIPE_ENV", "branch")
    monkeypatch.setenv("HNPIPE_PR_ID", HEAD.rsplit("_", 1)[1])
    # params/branch.yaml names the branch's own variables for user, key and role; CI logs in
    # with workload identity (the job's OIDC token), as here
    for name, value in {"SNOWFLAKE_ACCOUNT": "xy12345", "SNOWFLAKE_WAREHOUSE": "WH",
                        "SNOWFLAKE_BRANCH_USER": "SVC_BRANCH", "SNOWFLAKE_AUTHENTICATOR": "WORKLOAD_IDENTITY",
                        "SNOWFLAKE_TOKEN": "br4nch-oidc-token", "SNOWFLAKE_BRANCH_ROLE": "BRANCH"}.items():
        monkeypatch.setenv(name, value)
    writer = fake_account.warehouse()
    publish(writer, BASE, "ITEMS", items_frame(BASE_ITEMS))
    publish(writer, HEAD, "ITEMS", items_frame(BASE_ITEMS[:-1]))

    reader = diff.connect()
    assert reader.engine == "snowflake"
    with pytest.raises(GuardError, match="hnpipe diff only reads"):
        reader.publish_frame(Target(HEAD, SCHEMA), "ITEMS", items_frame(BASE_ITEMS), "t2")
    assert cli.main(["diff", "--json"]) == 0
    items = json.loads(capsys.readouterr().out)["tables"]["ITEMS"]
    assert items["ids_removed"] == 1 and items["removed_sample"] == [BASE_ITEMS[-1]["id"]]


def test_hnpipe_bookkeeping_tables_are_not_diffed(duckdb_warehouse: DuckDBWarehouse) -> None:
    from hnpipe import history

    publish(duckdb_warehouse, BASE, "ITEMS", items_frame(BASE_ITEMS))
    duckdb_warehouse.clone_database(BASE, HEAD)
    head = Target(HEAD, SCHEMA)
    # A branch run keeps the replaced table as a version and writes its history.
    duckdb_warehouse.publish_frame(head, "ITEMS", items_frame(head_items()), "t2", keep_versions=2)
    history.record(duckdb_warehouse, head, history.RunRecord("t2", "run", "ITEMS", "branch", history.SUCCEEDED))
    assert any("__VERSION_" in name for name in duckdb_warehouse.list_tables(head, bookkeeping=True))
    assert [table.name for table in diff.diff_databases(duckdb_warehouse, BASE, HEAD).tables] == ["ITEMS"]
