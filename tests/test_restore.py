"""Kept versions and `hnpipe restore`: publish, then restore gives back exactly the earlier rows.

DuckDB for real; Snowflake through the exact recorded SQL. Publish-then-restore on fakesnow is
in the warehouse contract suite (test_warehouse_contract.py), which runs it on both engines.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pandas as pd
import pytest
from hnpipe import cli, datasets, history, pipeline
from hnpipe.environments import Target
from hnpipe.errors import HnpipeError, WarehouseError
from hnpipe.items import items_frame
from hnpipe.ops import versions
from hnpipe.warehouse.duckdb_engine import DuckDBWarehouse
from helpers_faults import scribble_over
from registered import build_in_sql
from snowflake_fakes import Recorder

pytestmark = pytest.mark.filterwarnings("ignore:Arrow output on a DB-API result:UserWarning")

TARGET = Target("LOCAL", "TESTER")
STAGING = Target("STAGING", "HACKER_NEWS")


def frame(*ids: int) -> pd.DataFrame:
    return items_frame([{"id": i, "type": "story" if i % 2 else "comment", "by": f"u{i}",
                         "time": 1_700_000_000 + i, "kids": [i + 100]} for i in ids])


def fingerprint(directory: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(directory.iterdir())}


def all_tables(wh: DuckDBWarehouse, target: Target = TARGET) -> list[str]:
    return sorted(wh.list_tables(target, bookkeeping=True))


# -- DuckDB --------------------------------------------------------------------------------
def test_publish_keeps_the_replaced_table_and_restore_puts_it_back_exactly(tmp_path: Path) -> None:
    wh = DuckDBWarehouse(tmp_path / "wh")
    first, second = frame(1, 2, 3), frame(4, 5)
    wh.publish_frame(TARGET, "ITEMS", first, "20261121T100000_aaaaaa", keep_versions=5)
    wh.publish_frame(TARGET, "ITEMS", second, "20261121T110000_bbbbbb", keep_versions=5)
    assert wh.list_tables(TARGET) == {"ITEMS": 2}  # versions are bookkeeping
    (kept,) = wh.list_versions(TARGET, "ITEMS")
    assert (kept.name, kept.run_id, kept.rows) == ("ITEMS__VERSION_20261121T110000_BBBBBB", "20261121T110000_bbbbbb", 3)
    assert kept.replaced_at.isoformat() == "2026-11-21T11:00:00+00:00"

    assert wh.restore_version(TARGET, "ITEMS", "20261121T110000_bbbbbb", "20261121T120000_cccccc", 5) == 3
    pd.testing.assert_frame_equal(wh.read_table(TARGET, "ITEMS"), first)
    # The replaced table is a version of the restore: restoring it undoes the restore.
    assert [v.run_id for v in wh.list_versions(TARGET, "ITEMS")] == ["20261121T120000_cccccc"]
    wh.restore_version(TARGET, "ITEMS", "20261121T120000_cccccc", "20261121T130000_dddddd", 5)
    pd.testing.assert_frame_equal(wh.read_table(TARGET, "ITEMS"), second)
    assert all_tables(wh) == ["ITEMS", "ITEMS__VERSION_20261121T130000_DDDDDD"]


def test_only_the_newest_versions_are_kept(tmp_path: Path) -> None:
    wh = DuckDBWarehouse(tmp_path / "wh")
    for n in range(1, 6):
        wh.publish_frame(TARGET, "ITEMS", frame(*range(n)), f"20261121T10000{n}_00000{n}", keep_versions=2)
    assert [(v.run_id, v.rows) for v in wh.list_versions(TARGET, "ITEMS")] == [
        ("20261121T100005_000005", 4), ("20261121T100004_000004", 3)]  # what runs 4 and 5 replaced
    wh.publish_frame(TARGET, "ITEMS", frame(9), "20261121T100006_000006", keep_versions=0)
    assert all_tables(wh) == ["ITEMS"]


def test_a_run_replacing_a_table_twice_keeps_the_version_from_before_it(tmp_path: Path) -> None:
    wh = DuckDBWarehouse(tmp_path / "wh")
    before = frame(1, 2)
    wh.publish_frame(TARGET, "ITEMS", before, "run1", keep_versions=5)
    wh.publish_frame(TARGET, "ITEMS", frame(3), "run2", keep_versions=5)
    wh.publish_frame(TARGET, "ITEMS", frame(4), "run2", keep_versions=5)  # e.g. a cell run again
    assert all_tables(wh) == ["ITEMS", "ITEMS__VERSION_RUN2"]
    wh.restore_version(TARGET, "ITEMS", "run2", "run3", 5)
    pd.testing.assert_frame_equal(wh.read_table(TARGET, "ITEMS"), before)


def test_publish_query_keeps_versions_too(tmp_path: Path) -> None:
    wh = DuckDBWarehouse(tmp_path / "wh")
    stories = datasets.get("STORIES")
    wh.publish_frame(TARGET, "ITEMS", frame(1, 2, 3), "run1")
    wh.publish_query(TARGET, "STORIES", stories.sql, "run1", keep_versions=5)
    old = wh.read_table(TARGET, "STORIES")
    wh.publish_frame(TARGET, "ITEMS", frame(5), "run2")
    wh.publish_query(TARGET, "STORIES", stories.sql, "run2", keep_versions=5)
    wh.restore_version(TARGET, "STORIES", "run2", "run3", 5)
    pd.testing.assert_frame_equal(wh.read_table(TARGET, "STORIES"), old)


@pytest.mark.parametrize("run,restore_run,message", [
    ("run9", "run3", r"^no kept version of LOCAL\.TESTER\.ITEMS from run run9: kept are runs RUN2 "
                     r"\(see `hnpipe versions ITEMS`\)$"),
    ("run-2", "run3", r"^invalid run id 'run-2': use ASCII letters, digits and _ only$"),
    ("run2", "run2; DROP", r"^invalid run id 'run2; DROP'"),
    ("run2", "run2", r"^refused to restore LOCAL\.TESTER\.ITEMS: ITEMS__VERSION_RUN2 exists already"),
])
def test_bad_restores_are_refused_with_nothing_written(tmp_path: Path, run, restore_run, message) -> None:
    wh = DuckDBWarehouse(tmp_path / "wh")
    wh.publish_frame(TARGET, "ITEMS", frame(1), "run1", keep_versions=5)
    wh.publish_frame(TARGET, "ITEMS", frame(2), "run2", keep_versions=5)
    before = fingerprint(tmp_path / "wh")
    with pytest.raises(WarehouseError, match=message):
        wh.restore_version(TARGET, "ITEMS", run, restore_run, 5)
    assert fingerprint(tmp_path / "wh") == before


def test_restore_in_a_missing_database_creates_nothing(tmp_path: Path) -> None:
    with pytest.raises(WarehouseError, match="none is kept"):
        DuckDBWarehouse(tmp_path / "wh").restore_version(TARGET, "ITEMS", "run1", "run2", 5)
    assert not (tmp_path / "wh").exists()


def test_restore_is_guarded(tmp_path: Path) -> None:
    wh = DuckDBWarehouse(tmp_path / "wh")
    wh.publish_frame(TARGET, "ITEMS", frame(1), "run1", keep_versions=5)
    wh.publish_frame(TARGET, "ITEMS", frame(2), "run2", keep_versions=5)
    before = fingerprint(tmp_path / "wh")

    def refuse(actual: Target) -> None:
        raise WarehouseError(f"refused write to {actual}")

    with pytest.raises(WarehouseError, match="refused write to LOCAL.TESTER"):
        DuckDBWarehouse(tmp_path / "wh", write_guard=refuse).restore_version(TARGET, "ITEMS", "run2", "run3", 5)
    assert fingerprint(tmp_path / "wh") == before


# -- the pipeline and the commands ---------------------------------------------------------
@pytest.mark.slow  # several whole pipeline runs (or 100k ids): seconds even on a quiet machine
def test_hnpipe_restore_undoes_a_run_and_is_recorded(clean_env, capsys, monkeypatch) -> None:
    values = {"environment": "local", "n_items": 150}
    monkeypatch.setenv("HNPIPE_RUN_ID", "20261121T100000_000001")
    first = pipeline.start("ITEMS", values)
    first.publish(first.fetch_items())
    pipeline.start("STORIES", values).build()  # built once: it has a version from run 2
    before = first.read()
    monkeypatch.setenv("HNPIPE_RUN_ID", "20261121T110000_000002")
    second = pipeline.start("ITEMS", {**values, "n_items": 40, "allow_shrink": True})  # 150 -> 40 on purpose
    second.publish(second.fetch_items())
    built = build_in_sql({**values, "n_items": 40})
    monkeypatch.delenv("HNPIPE_RUN_ID")
    capsys.readouterr()

    assert cli.main(["versions", "ITEMS"]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert listed[0] == "kept versions of LOCAL.TESTER.ITEMS, newest first"
    assert listed[2].split() == ["20261121T110000_000002", "2026-11-21", "11:00:00", f"{len(before):,}"]

    assert cli.main(["restore", "ITEMS", "--run", "20261121T110000_000002"]) == 0
    out = capsys.readouterr().out
    pd.testing.assert_frame_equal(first.read(), before)
    assert out.startswith(f"restored LOCAL.TESTER.ITEMS as it was before run 20261121T110000_000002: "
                          f"{len(before):,} rows")
    assert (f"built from ITEMS and not restored: {', '.join(built)}; restore STORIES with --run "
            "20261121T110000_000002 too, or rebuild them with `hnpipe run --env local`") in out

    last = history.read(first.warehouse, TARGET, limit=1).iloc[0]
    assert (last.ACTION, last.DATASET, last.STATUS, last.ROWS_WRITTEN) == ("restore", "ITEMS", "succeeded", len(before))
    assert f"hnpipe restore ITEMS --run {last.RUN_ID}" in out  # the undo names the restore's run

    assert cli.main(["restore", "ITEMS", "--run", "20261121T000000_999999"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("hnpipe: error: no kept version of LOCAL.TESTER.ITEMS from run 20261121T000000_999999: "
                          f"kept are {last.RUN_ID}") and err.count("\n") == 1
    assert history.read(first.warehouse, TARGET, limit=1).iloc[0].RUN_ID == last.RUN_ID  # refusal not recorded
    assert cli.main(["restore", "items", "--run", "x"]) == 1
    assert "unknown dataset 'items'" in capsys.readouterr().err


# -- Snowflake -----------------------------------------------------------------------------
def test_snowflake_publish_renames_the_swapped_out_table_to_its_version(recorded_write_pandas) -> None:
    recorder = Recorder(tables={"ITEMS": 4, "ITEMS__VERSION_RUN1": 4, "ITEMS__VERSION_RUN2": 4})
    recorder.warehouse().publish_frame(STAGING, "ITEMS", frame(1, 2), "run3", keep_versions=2)
    swap_at = recorder.statements.index(
        ('ALTER TABLE "ITEMS" SWAP WITH "ITEMS__STAGING_RUN3"', None))
    assert recorder.statements[swap_at + 1:] == [
        ('ALTER TABLE "ITEMS__STAGING_RUN3" RENAME TO "ITEMS__VERSION_RUN3"', None),
        ('DROP TABLE IF EXISTS "ITEMS__VERSION_RUN1"', None),
    ]
    assert not any((" CLONE " in sql or sql.startswith("INSERT")) for sql, _ in recorder.statements)


def test_snowflake_restore_swaps_the_version_back_and_renames_the_replaced_table() -> None:
    recorder = Recorder(tables={"ITEMS": 2, "ITEMS__VERSION_RUN2": 3, "ITEMS__VERSION_RUN1": 1}, staged_rows=3)
    seen: list[Target] = []
    assert recorder.warehouse(seen.append).restore_version(STAGING, "ITEMS", "run2", "run3", 1) == 3
    assert seen == [STAGING]
    assert recorder.statements[-5:] == [
        ('SELECT TABLE_NAME, ROW_COUNT FROM "STAGING".INFORMATION_SCHEMA.TABLES '
         "WHERE TABLE_SCHEMA = ? AND TABLE_TYPE = 'BASE TABLE' ORDER BY TABLE_NAME", ["HACKER_NEWS"]),
        ('SELECT COUNT(*) FROM "ITEMS__VERSION_RUN2"', None),
        ('ALTER TABLE "ITEMS" SWAP WITH "ITEMS__VERSION_RUN2"', None),
        ('ALTER TABLE "ITEMS__VERSION_RUN2" RENAME TO "ITEMS__VERSION_RUN3"', None),
        ('DROP TABLE IF EXISTS "ITEMS__VERSION_RUN1"', None),
    ]


def test_snowflake_restore_of_a_missing_version_writes_nothing() -> None:
    recorder = Recorder(tables={"ITEMS": 2, "ITEMS__VERSION_RUN2": 3})
    with pytest.raises(WarehouseError, match=r"^no kept version of STAGING\.HACKER_NEWS\.ITEMS from run run7: kept are runs RUN2"):
        recorder.warehouse().restore_version(STAGING, "ITEMS", "run7", "run8", 5)
    assert not any(sql.startswith(("ALTER", "DROP")) for sql, _ in recorder.statements)


def test_versions_command_on_an_unpublished_table(clean_env, capsys) -> None:
    assert cli.main(["versions", "STORIES"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "kept versions of LOCAL.TESTER.STORIES, newest first",
        "(none: a version is kept each time a publish replaces STORIES)"]
    with pytest.raises(HnpipeError, match="unknown dataset"):
        versions.restore("NOPE", "run1")


# -- a damaged kept version (issue 18 row 3) -------------------------------------------------
def _big_frame(seed: int) -> pd.DataFrame:
    from hnpipe.sample import generate_sample  # only here: enough rows to fill whole blocks

    return items_frame([item for item in generate_sample(3000, seed=seed).values() if item is not None])


def test_restore_of_a_damaged_version_is_refused_and_the_live_table_untouched(tmp_path: Path) -> None:
    """It used to say "restored" and swap the unreadable version in as the live ITEMS."""
    wh = DuckDBWarehouse(tmp_path / "wh")
    wh.publish_frame(TARGET, "ITEMS", _big_frame(4), "20261121T100000_aaaaaa", keep_versions=5)
    live = frame(1, 2)
    wh.publish_frame(TARGET, "ITEMS", live, "20261121T110000_bbbbbb", keep_versions=5, gates=())
    database = wh.path("LOCAL")
    scribble_over(database, "TESTER.ITEMS__VERSION_20261121T110000_BBBBBB")
    before = database.read_bytes()
    with pytest.raises(WarehouseError, match=r"is damaged \(LOCAL.TESTER.ITEMS__VERSION_20261121T110000_BBBBBB "
                                             r"cannot be read whole"):
        wh.restore_version(TARGET, "ITEMS", "20261121T110000_bbbbbb", "20261121T120000_cccccc", 5)
    assert database.read_bytes() == before and not database.with_name("LOCAL.duckdb.wal").exists()
    pd.testing.assert_frame_equal(wh.read_table(TARGET, "ITEMS"), live)
