"""Run history: PIPELINE_RUNS rows for every run, appended atomically, never secret.

Real DuckDB files and the pipeline's own steps in-process (fast); the runner's record of a
failed notebook; the Snowflake INSERT through recorded SQL and fakesnow.
"""

from __future__ import annotations

import hashlib
import os
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pandas as pd
import pytest
import snowflake.connector
import snowflake.connector.errors
from hnpipe import cli, config, history, params, pipeline, runner
from hnpipe.environments import Target
from hnpipe.errors import GuardError, HnpipeError, WarehouseError
from hnpipe.warehouse import connect
from hnpipe.warehouse.duckdb_engine import DuckDBWarehouse
from helpers_faults import scribble_over
from registered import DATASET_TABLES, build_in_sql
from snowflake_fakes import Recorder

pytestmark = pytest.mark.filterwarnings("ignore:Arrow output on a DB-API result:UserWarning")

TARGET = Target("LOCAL", "TESTER")
T0 = datetime(2026, 11, 21, 10, 0, tzinfo=timezone.utc)
SECRET = "hunter2-canary-9f8e"


def entry(run_id: str = "20261121T100000_aaaaaa", dataset: str | None = "ITEMS", **fields) -> history.RunRecord:
    fields = {"status": history.SUCCEEDED, "started": T0, "finished": T0 + timedelta(seconds=3), "rows": 5,
              **fields}
    return history.RunRecord(run_id, "run", dataset, "local", **fields)


def namespace(**overrides) -> dict:
    return {"environment": "local", "n_items": 120, **overrides}


def fingerprint(directory: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(directory.iterdir())}


# -- append_rows -------------------------------------------------------------------------
def test_append_rows_creates_then_appends_all_or_nothing(tmp_path: Path) -> None:
    wh = DuckDBWarehouse(tmp_path / "wh")
    first = history.to_frame([entry()])
    assert wh.append_rows(TARGET, "PIPELINE_RUNS", first) == 1
    assert wh.append_rows(TARGET, "PIPELINE_RUNS", history.to_frame([entry("r2"), entry("r3")])) == 2
    stored = wh.read_table(TARGET, "PIPELINE_RUNS")
    assert stored.RUN_ID.tolist() == ["20261121T100000_aaaaaa", "r2", "r3"]
    pd.testing.assert_frame_equal(stored.iloc[:1], first)  # every column and dtype round-trips

    before = fingerprint(tmp_path / "wh")
    wrong = history.to_frame([entry("r4"), entry("r5")]).assign(SURPRISE="x")
    with pytest.raises(WarehouseError, match=r"^cannot append to LOCAL\.TESTER\.PIPELINE_RUNS: .*SURPRISE"):
        wh.append_rows(TARGET, "PIPELINE_RUNS", wrong)
    assert len(wh.read_table(TARGET, "PIPELINE_RUNS")) == 3
    assert fingerprint(tmp_path / "wh") == before


def test_append_rows_is_guarded_and_writes_nothing_when_refused(tmp_path: Path) -> None:
    DuckDBWarehouse(tmp_path / "wh").append_rows(TARGET, "PIPELINE_RUNS", history.to_frame([entry()]))
    before = fingerprint(tmp_path / "wh")
    seen = []

    def refuse(actual: Target) -> None:
        seen.append(actual)
        raise GuardError(f"refused write to {actual}")

    with pytest.raises(GuardError):
        DuckDBWarehouse(tmp_path / "wh", write_guard=refuse).append_rows(TARGET, "PIPELINE_RUNS",
                                                                         history.to_frame([entry("r2")]))
    assert seen == [TARGET] and fingerprint(tmp_path / "wh") == before
    with pytest.raises(WarehouseError, match="read-only"):
        DuckDBWarehouse(tmp_path / "wh", read_only_databases=["LOCAL"]).append_rows(
            TARGET, "PIPELINE_RUNS", history.to_frame([entry("r2")]))


def test_history_is_bookkeeping_hidden_from_list_tables(tmp_path: Path) -> None:
    wh = DuckDBWarehouse(tmp_path / "wh")
    history.append(wh, TARGET, entry())
    assert wh.list_tables(TARGET) == {}
    assert wh.list_tables(TARGET, bookkeeping=True) == {"PIPELINE_RUNS": 1}


def test_snowflake_append_is_one_insert_in_a_transaction() -> None:
    recorder = Recorder(schemas=["HACKER_NEWS"])
    seen: list[Target] = []
    staging = Target("STAGING", "HACKER_NEWS")
    frame = pd.DataFrame({"RUN_ID": pd.array(["a", "b"], dtype="string"),
                          "ROWS_WRITTEN": pd.array([3, None], dtype="Int64"),
                          "FINISHED_AT": pd.to_datetime(["2026-11-21 10:00:03", None]).tz_localize("UTC"),
                          "GIT_DIRTY": pd.array([True, None], dtype="boolean")})

    assert recorder.warehouse(seen.append).append_rows(staging, "PIPELINE_RUNS", frame) == 2

    sent = recorder.statements[-4:]
    assert sent == [
        ('CREATE TABLE IF NOT EXISTS "PIPELINE_RUNS" ("RUN_ID" VARCHAR, "ROWS_WRITTEN" NUMBER(38,0), '
         '"FINISHED_AT" TIMESTAMP_NTZ, "GIT_DIRTY" BOOLEAN)', None),
        ("BEGIN TRANSACTION", None),
        ('INSERT INTO "PIPELINE_RUNS" ("RUN_ID", "ROWS_WRITTEN", "FINISHED_AT", "GIT_DIRTY") '
         "VALUES (?, ?, ?, ?), (?, ?, ?, ?)",
         ["a", 3, datetime(2026, 11, 21, 10, 0, 3), True, "b", None, None, None]),
        ("COMMIT", None),
    ]
    assert seen == [staging]  # guarded with where the session is, before anything was written
    assert recorder.statements.index(('USE SCHEMA "STAGING"."HACKER_NEWS"', None)) < len(recorder.statements) - 4


def test_snowflake_append_rolls_back_a_failed_insert() -> None:
    recorder = Recorder(schemas=["HACKER_NEWS"], failing={
        "INSERT INTO": snowflake.connector.errors.ProgrammingError(msg="insufficient privileges")})
    with pytest.raises(WarehouseError, match=r"^append to STAGING\.HACKER_NEWS\.PIPELINE_RUNS failed: "):
        recorder.warehouse().append_rows(Target("STAGING", "HACKER_NEWS"), "PIPELINE_RUNS",
                                         history.to_frame([entry()]))
    assert [sql for sql, _ in recorder.statements[-3:]][0::2] == ["BEGIN TRANSACTION", "ROLLBACK"]


def test_history_round_trips_on_fakesnow(fake_snowflake) -> None:
    staging = Target("STAGING", "HACKER_NEWS")
    with fake_snowflake.create_databases("STAGING").warehouse() as wh:
        history.append(wh, staging, entry("r1", rows=7), entry("r2", status=history.FAILED, rows=None, error="boom"))
        back = history.read(wh, staging)
        assert back.RUN_ID.tolist() == ["r2", "r1"]  # same start and finish: by run id, newest first
        assert dict(zip(back.RUN_ID, back.STATUS)) == {"r1": "succeeded", "r2": "failed"}
        assert dict(zip(back.RUN_ID, back.ROWS_WRITTEN.astype(object))) == {"r1": 7, "r2": pd.NA}
        assert back.STARTED_AT.tolist() == [pd.Timestamp(T0)] * 2
        assert wh.list_tables(staging) == {}
        wh.close()


# -- what the pipeline records -------------------------------------------------------------
def test_each_dataset_of_a_run_records_one_succeeded_row(clean_env, monkeypatch) -> None:
    monkeypatch.setenv("GITHUB_ACTOR", "octocat")
    monkeypatch.setenv("HNPIPE_RUN_ID", "20261121T101010_abcdef")
    items_step = pipeline.start("ITEMS", namespace())
    items = items_step.fetch_items()
    items_step.publish(items)
    built = build_in_sql(namespace())

    rows = history.read(items_step.warehouse, TARGET)
    assert rows.DATASET.tolist() == ["ITEMS", *built][::-1]  # newest first
    assert set(rows.RUN_ID) == {"20261121T101010_abcdef"} and set(rows.STATUS) == {"succeeded"}
    assert dict(zip(rows.DATASET, rows.ROWS_WRITTEN)) == {"ITEMS": len(items), **built}
    assert set(rows.RUN_BY) == {"github:octocat"} and set(rows.ENVIRONMENT) == {"local"}
    assert set(rows.GIT_SHA) == {config.git_sha()}
    assert (rows.FINISHED_AT >= rows.STARTED_AT).all()
    span = (rows.FINISHED_AT - rows.STARTED_AT).dt.total_seconds()
    assert ((rows.DURATION_S > 0) & (rows.DURATION_S <= span + 0.001)).all()  # the work, not the wait
    assert json.loads(rows.PARAMETERS.iloc[0])["n_items"] == 120
    assert rows.ERROR.isna().all()
    assert set(rows.NOTEBOOK) == {"not a notebook (no executed notebook kept)"}


def test_a_failed_publish_keeps_its_row_and_records_once(clean_env, monkeypatch) -> None:
    monkeypatch.setenv("HNPIPE_RUN_ID", "20261121T101010_abcdef")  # one run, as under hnpipe run
    step = pipeline.start("ITEMS", namespace(n_items=3))
    step.publish(step.fetch_items())
    published = step.read()
    duplicated = published.iloc[[0, 0, 1]].reset_index(drop=True)  # as many rows, one id twice
    for _ in range(2):  # a second failure of the same Step adds no second row
        with pytest.raises(WarehouseError, match="failed checks: id_unique"):
            step.publish(duplicated, edited=True)
    rows = history.read(step.warehouse, TARGET)
    assert rows.STATUS.tolist() == ["failed", "succeeded"]
    failed = rows.iloc[0]
    assert failed.ERROR.startswith("WarehouseError: refused to publish LOCAL.TESTER.ITEMS: failed checks: id_unique")
    assert pd.isna(failed.ROWS_WRITTEN)
    pd.testing.assert_frame_equal(step.read(), published)  # the publish rolled back, the row stayed


def test_parameters_and_errors_are_stored_without_secrets(clean_env, monkeypatch) -> None:
    monkeypatch.setenv("SNOWFLAKE_PASSWORD", SECRET)
    values = {"environment": "local", "n_items": 5, "api_token": "tok-123456",
              "nested": {"password": "pw-654321", "role": "R"}, "note": f"had {SECRET} in it"}
    stored = json.loads(history.safe_parameters(values))
    assert stored == {"environment": "local", "n_items": 5, "nested": {"role": "R"}, "note": "had *** in it"}
    # One line: later lines are joined on (Snowflake puts the useful part there), redacted.
    assert history.error_line(RuntimeError(f"login failed for {SECRET}\nsecond line")) == \
        "RuntimeError: login failed for *** second line"
    wh = DuckDBWarehouse(clean_env)
    history.append(wh, TARGET, entry(error=f"bad {SECRET}", parameters=values, status=history.FAILED))
    assert SECRET.encode() not in (clean_env / "LOCAL.duckdb").read_bytes()
    assert history.read(wh, TARGET).ERROR.tolist() == ["bad ***"]


def test_run_by_prefers_the_ci_actor() -> None:
    assert history.run_by({"GITHUB_ACTOR": "octocat", "USER": "runner"}) == "github:octocat"
    assert history.run_by({"GITLAB_USER_LOGIN": "tanuki", "USER": "runner"}) == "gitlab:tanuki"
    assert history.run_by({"USER": "jane"}) == "jane"


def test_notebook_location_says_what_is_known() -> None:
    assert history.notebook_location({}, {"HNPIPE_NOTEBOOK_OUTPUT": "/r/runs/x/items.ipynb"}) == "/r/runs/x/items.ipynb"
    assert history.notebook_location({"__session__": "/home/j/items.ipynb"}, {}).startswith(
        "jupyter: /home/j/items.ipynb")
    injected = {"In": ["", "# Parameters\nn_items = 5\n"], "n_items": 5}
    assert history.notebook_location(injected, {}).startswith("papermill: ")


def test_the_runner_records_a_failure_the_notebook_did_not(clean_env, tmp_path) -> None:
    values = params.params_for("local")
    step = pipeline.start("ITEMS", namespace(n_items=3))
    step.publish(step.fetch_items())
    output = tmp_path / "runs" / "comments.ipynb"
    # ITEMS recorded its own outcome: the runner adds nothing for it; COMMENTS recorded none.
    run = runner.RunContext("local", values, TARGET, step.run_id)
    with connect(run) as warehouse:  # the run's one warehouse, as `hnpipe run` opens it
        runner._failed(run, warehouse, "ITEMS", T0, "KeyError: 'x'", output)
        runner._failed(run, warehouse, "COMMENTS", T0, "DeadKernelError: died", output)
    rows = history.read(step.warehouse, TARGET)
    assert sorted(zip(rows.DATASET, rows.STATUS)) == [("COMMENTS", "failed"), ("ITEMS", "succeeded")]
    failed = rows[rows.DATASET == "COMMENTS"].iloc[0]
    assert (failed.ERROR, failed.NOTEBOOK, failed.RUN_ID) == ("DeadKernelError: died", str(output), step.run_id)


def test_recording_never_hides_the_outcome(clean_env, caplog) -> None:
    class Broken(DuckDBWarehouse):
        def append_records(self, *args, **kwargs):  # what history writes with
            raise WarehouseError("disk full")

    assert history.record(Broken(clean_env), TARGET, entry()) is False
    assert "could not record run 20261121T100000_aaaaaa in LOCAL.TESTER.PIPELINE_RUNS: WarehouseError: disk full" in caplog.text
    with pytest.raises(ZeroDivisionError):
        with history.recording(Broken(clean_env), TARGET, action="restore", env="local", dataset="ITEMS"):
            1 / 0


def test_recording_records_success_or_failure_of_an_action(clean_env) -> None:
    wh = DuckDBWarehouse(clean_env)
    with history.recording(wh, TARGET, action="restore", env="local", dataset="ITEMS",
                           parameters={"run": "r1"}, run_id="20261121T120000_000001") as done:
        done.rows, done.detail = 4, "restored ITEMS as before run r1"
    with pytest.raises(HnpipeError):
        with history.recording(wh, TARGET, action="restore", env="local", dataset="ITEMS",
                               run_id="20261121T120000_000002"):
            raise HnpipeError("no version of ITEMS from run r9")
    rows = history.read(wh, TARGET).sort_values("RUN_ID")
    assert rows[["ACTION", "STATUS", "ROWS_WRITTEN", "DETAIL", "ERROR"]].astype(object).where(
        rows[["ACTION", "STATUS", "ROWS_WRITTEN", "DETAIL", "ERROR"]].notna(), None).values.tolist() == [
        ["restore", "succeeded", 4, "restored ITEMS as before run r1", None],
        ["restore", "failed", None, None, "HnpipeError: no version of ITEMS from run r9"],
    ]


def test_record_action_for_admin_writes_to_the_environments_own_target(clean_env) -> None:
    assert history.record_action("admin clone", "local", ok=True, message="cloned PRODUCTION into PRODUCTION_CLONE_7",
                                 parameters={"action": "clone", "pr_id": 7}, started=T0)
    assert not history.record_action("admin drop", "branch", ok=False, message="x", parameters={}, started=T0)
    rows = history.read(DuckDBWarehouse(clean_env), TARGET)
    assert rows[["ACTION", "DATASET", "STATUS", "DETAIL"]].values.tolist() == [
        ["admin clone", pd.NA, "succeeded", "cloned PRODUCTION into PRODUCTION_CLONE_7"]]
    assert sorted(p.name for p in clean_env.iterdir()) == ["LOCAL.duckdb"]  # no clone was made to record in


def test_hnpipe_history_prints_newest_first_and_filters(clean_env, capsys) -> None:
    wh = DuckDBWarehouse(clean_env)
    history.append(wh, TARGET, entry("20261121T100000_000001", "ITEMS"),
                   entry("20261121T110000_000002", "STORIES", started=T0 + timedelta(hours=1),
                         finished=T0 + timedelta(hours=1, seconds=2)),
                   entry("20261121T120000_000003", "ITEMS", started=T0 + timedelta(hours=2),
                         finished=T0 + timedelta(hours=2, seconds=2), status=history.FAILED, error="FetchError: down"))
    assert cli.main(["history"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "run history of local (LOCAL.TESTER.PIPELINE_RUNS), newest first"
    assert [line.split()[2] for line in lines[2:]] == ["20261121T120000_000003", "20261121T110000_000002",
                                                      "20261121T100000_000001"]
    assert "FetchError: down" in lines[2]
    assert cli.main(["history", "--dataset", "ITEMS", "--limit", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 and "20261121T120000_000003" in lines[2]
    assert cli.main(["history", "--dataset", "items"]) == 1
    assert f"unknown dataset 'items': choose one of {', '.join(DATASET_TABLES)}" in capsys.readouterr().err
    assert cli.main(["history", "--env", "staging"]) == 0
    assert capsys.readouterr().out.splitlines()[1] == "(no runs recorded)"


def test_a_failing_gate_in_production_keeps_the_previous_tables_and_records_the_failure(
        clean_env, monkeypatch) -> None:
    monkeypatch.setenv("HNPIPE_ENV", "production")
    production = Target("PRODUCTION", "HACKER_NEWS")
    step = pipeline.start("ITEMS", namespace(environment="production", n_items=40))
    step.publish(step.fetch_items())
    comments = pipeline.start("COMMENTS", namespace(environment="production", n_items=40))
    comments.build()
    before = {name: step.warehouse.read_table(production, name) for name in ("ITEMS", "COMMENTS")}
    bad = before["ITEMS"].copy()
    bad.loc[0, "TYPE"] = "advert"  # not an HN type: the type_known gate refuses it
    with pytest.raises(WarehouseError, match="failed checks: type_known"):
        step.publish(bad, edited=True)
    for name, frame in before.items():
        pd.testing.assert_frame_equal(step.warehouse.read_table(production, name), frame)
    rows = history.read(step.warehouse, production, dataset="ITEMS")
    assert rows.STATUS.tolist() == ["failed", "succeeded"]
    assert rows.ENVIRONMENT.tolist() == ["production", "production"]
    assert "type_known" in rows.ERROR.tolist()[0]


# -- runs that never finished -------------------------------------------------------------------
def marker(run_id: str, pid: int, host: str | None = None, started: datetime | None = None) -> history.RunRecord:
    import socket

    return history.RunRecord(run_id, "run", None, "local", history.RUNNING,
                             started=started or datetime.now(timezone.utc) - timedelta(minutes=5),
                             detail=json.dumps({"pid": pid, "host": host or socket.gethostname(),
                                                "datasets": list(DATASET_TABLES)}))


def test_runs_that_never_finished_are_shown_abandoned_with_their_start_and_what_they_published(tmp_path) -> None:
    import subprocess

    gone = subprocess.Popen(["true"])
    gone.wait()  # a pid that no longer runs
    wh = DuckDBWarehouse(tmp_path / "warehouse")
    killed, alive, done, elsewhere = ("20261121T100000_aaaaaa", "20261121T110000_bbbbbb",
                                      "20261121T120000_cccccc", "20261120T100000_dddddd")
    long_ago = datetime.now(timezone.utc) - timedelta(hours=30)
    history.append(wh, TARGET, marker(killed, gone.pid), entry(killed, "ITEMS", rows=5),
                   marker(alive, os.getpid()),  # this very process: still running
                   marker(done, gone.pid), *(entry(done, name, rows=1) for name in DATASET_TABLES),
                   marker(elsewhere, 1, host="another-machine", started=long_ago))
    rows = history.read(wh, TARGET)
    assert history.RUNNING not in set(rows.STATUS)  # markers are bookkeeping
    abandoned = rows[rows.STATUS == history.ABANDONED].set_index("RUN_ID")
    assert sorted(abandoned.index) == [elsewhere, killed]
    assert "published before it stopped: ITEMS (5 rows)" in abandoned.loc[killed, "DETAIL"]
    assert f"process {gone.pid}" in abandoned.loc[killed, "ERROR"] and "24 h" in abandoned.loc[elsewhere, "ERROR"]
    assert abs(abandoned.loc[elsewhere, "STARTED_AT"] - pd.Timestamp(long_ago)) < pd.Timedelta(milliseconds=1)
    assert " abandoned " in history.to_text(rows)
    # The next run records them, once.
    assert sorted(entry.run_id for entry in history.mark_abandoned(wh, TARGET)) == [elsewhere, killed]
    assert history.mark_abandoned(wh, TARGET) == []
    assert len(history.read(wh, TARGET, status=history.ABANDONED)) == 2


@pytest.mark.slow  # damages and reopens a DuckDB file several times (~2.5 s)
def test_a_damaged_history_block_gets_the_one_line_damaged_message_and_leaves_no_wal(tmp_path: Path) -> None:
    """Issue 18 row 8: appending to a PIPELINE_RUNS whose block is garbage used to fail with a raw
    `FatalException ... Failed to create checkpoint` and leave a .wal beside the file."""
    wh = DuckDBWarehouse(tmp_path / "wh")
    records = [history.RunRecord(f"20261121T000000_{n:06d}", "run", "ITEMS", "local", history.SUCCEEDED,
                                 rows=n, detail="x" * 200) for n in range(3000)]
    history.append(wh, TARGET, *records)
    database = wh.path("LOCAL")
    scribble_over(database, "TESTER.PIPELINE_RUNS")
    before = database.read_bytes()
    with pytest.raises(WarehouseError) as refused:
        history.append(wh, TARGET, records[0])
    message = str(refused.value)
    assert message.startswith(f"{database} is damaged (LOCAL.TESTER.PIPELINE_RUNS cannot be read whole"), message
    assert "\n" not in message and "nothing was written to it" in message
    assert database.read_bytes() == before and not database.with_name("LOCAL.duckdb.wal").exists()


def test_a_dirty_checkouts_code_version_names_the_files_that_differ() -> None:
    assert history.code_version_note([]) is None
    assert history.code_version_note(["notebooks/items.ipynb", "lib/hnpipe/hn.py"]) == (
        "uncommitted changes: notebooks/items.ipynb, lib/hnpipe/hn.py")
    many = [f"f{i}.py" for i in range(8)]
    assert history.code_version_note(many).endswith("f4.py and 3 more")
    sha, dirty, changed = history.git_state()
    assert dirty == bool(changed)
