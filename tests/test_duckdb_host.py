"""The embedded engine's one DuckDB instance per process (hnpipe.warehouse.duckdb_host): files
attached for one operation and let go after it, however it ends; this process's threads share or
wait; a forked child makes its own instance; damaged files are said as before."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import duckdb
import pandas as pd
import pytest
from hnpipe.environments import Target
from hnpipe.errors import WarehouseError, WarehouseLockedError
from hnpipe.warehouse import duckdb_engine
from hnpipe.warehouse.duckdb_engine import DuckDBWarehouse
from hnpipe.warehouse.duckdb_host import current_host
from duckdb_holders import hold_lock, opens_for_writing_elsewhere, release

TARGET = Target("LOCAL", "TESTER")
ROWS = pd.DataFrame({"ID": pd.array([1, 2, 3], dtype="Int64"), "TITLE": pd.array(["a", "b", "c"], dtype="string")})


@pytest.fixture
def wh(tmp_path: Path) -> DuckDBWarehouse:
    warehouse = DuckDBWarehouse(tmp_path / "warehouse", lock_timeout_s=5)
    warehouse.publish_frame(TARGET, "ITEMS", ROWS, "run1")
    return warehouse


def held(wh: DuckDBWarehouse) -> dict:
    return current_host(wh.path("LOCAL")).attached()


def instances_opened(monkeypatch) -> list[str]:
    """Every duckdb.connect from here on (the host's own, or a stray per-operation one)."""
    opened, connect = [], duckdb.connect
    monkeypatch.setattr(duckdb, "connect", lambda *a, **k: opened.append(str(a[:1])) or connect(*a, **k))
    return opened


def in_thread(work) -> tuple[threading.Thread, dict]:
    outcome: dict = {}

    def run() -> None:
        began = time.monotonic()
        try:
            outcome["value"] = work()
        except BaseException as exc:  # handed to the test
            outcome["error"] = exc
        outcome["seconds"] = time.monotonic() - began

    thread = threading.Thread(target=run)
    thread.start()
    return thread, outcome


# -- one instance, files let go after each operation ---------------------------------------------
def test_operations_reuse_the_process_instance_and_let_the_file_go_after_each(wh, monkeypatch) -> None:
    opened = instances_opened(monkeypatch)
    host = current_host(wh.path("LOCAL"))
    for _ in range(3):
        assert wh.list_tables(TARGET)["ITEMS"] == 3
        wh.append_records(TARGET, "LOG", {"ID": "Int64"}, [{"ID": 1}])
    assert wh.query(TARGET, "SELECT COUNT(*) AS N FROM LOG").N.tolist() == [3]
    assert opened == [] and current_host(wh.path("LOCAL")) is host and held(wh) == {}
    assert opens_for_writing_elsewhere(wh.path("LOCAL")) == ""


def test_an_operation_holds_the_file_lock_while_it_runs_like_a_connection_did(wh) -> None:
    with wh._writing(TARGET):
        assert "Could not set lock" in opens_for_writing_elsewhere(wh.path("LOCAL"))
    with wh._reading("LOCAL"):
        assert "Could not set lock" in opens_for_writing_elsewhere(wh.path("LOCAL"))
    assert opens_for_writing_elsewhere(wh.path("LOCAL")) == ""


# -- however an operation ends, the host is clean ------------------------------------------------
def test_a_failed_operation_leaves_nothing_attached_and_the_file_free(wh) -> None:
    with pytest.raises(WarehouseError, match="cannot load"):
        wh.publish_query(TARGET, "ITEMS", "SELECT * FROM NO_SUCH_TABLE", "run2")
    with pytest.raises(WarehouseError, match="query in LOCAL.TESTER failed"):
        wh.query(TARGET, "SELECT * FROM NO_SUCH_TABLE")
    assert held(wh) == {}
    assert opens_for_writing_elsewhere(wh.path("LOCAL")) == ""
    assert wh.list_tables(TARGET) == {"ITEMS": 3}


def test_keyboard_interrupt_inside_an_operation_leaves_nothing_attached(wh, monkeypatch) -> None:
    def interrupted(*args) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(duckdb_engine, "check_length", interrupted)  # just after the ATTACH
    with pytest.raises(KeyboardInterrupt):
        wh.list_tables(TARGET)
    monkeypatch.undo()
    monkeypatch.setattr(duckdb_engine, "run_gates", interrupted)  # staging loaded, not swapped in
    with pytest.raises(KeyboardInterrupt):
        wh.publish_frame(TARGET, "ITEMS", ROWS, "run2")
    assert held(wh) == {}
    assert opens_for_writing_elsewhere(wh.path("LOCAL")) == ""
    assert wh.list_tables(TARGET, bookkeeping=True) == {"ITEMS": 3}  # staging dropped


@pytest.mark.slow
def test_a_file_another_process_holds_leaves_nothing_attached_after_the_wait(wh) -> None:
    holder = hold_lock(wh.path("LOCAL"))
    try:
        with pytest.raises(WarehouseLockedError, match=f"is locked by PID {holder.pid}"):
            DuckDBWarehouse(wh.directory, lock_timeout_s=0.2).list_tables(TARGET)
        assert held(wh) == {}
    finally:
        release(holder)
    assert wh.list_tables(TARGET) == {"ITEMS": 3}


# -- damaged files are said as before the host ---------------------------------------------------
def damage(path: Path, how: str) -> None:
    with path.open("r+b") as file:
        if how == "not DuckDB":
            file.write(b"hello, not a database" * 100)
        elif how == "header":
            file.seek(4096)
            file.write(b"\xff" * 64)
        else:
            file.truncate(5000)


@pytest.mark.parametrize("how, said", [
    ("not DuckDB", r"is damaged \(it does not open: IO Error: The file .* is not a valid DuckDB database file"),
    ("header", r"is damaged \(it does not open: .*Corrupt database file: computed checksum"),
    ("cut short", r"cannot open .*LOCAL.duckdb: IO Error: Could not read enough bytes"),
])
def test_a_damaged_file_is_refused_as_before_and_leaves_nothing_attached(wh, how, said) -> None:
    path = wh.path("LOCAL")
    damage(path, how)
    before = path.read_bytes()
    for operation in (lambda: wh.list_tables(TARGET), lambda: wh.publish_frame(TARGET, "ITEMS", ROWS, "run2")):
        with pytest.raises(WarehouseError, match=said):
            operation()
        assert held(wh) == {}
    assert path.read_bytes() == before and not (path.parent / "LOCAL.duckdb.wal").exists()


def test_a_file_cut_short_after_its_header_is_truncated(wh) -> None:
    path = wh.path("LOCAL")
    with path.open("r+b") as file:  # what opening reads is whole, the last block partly gone
        file.truncate(path.stat().st_size - 1000)
    with pytest.raises(WarehouseError, match=r"is damaged \(.* bytes on disk, but its blocks need .*: truncated\)"):
        wh.list_tables(TARGET)
    assert held(wh) == {}


def test_a_crash_log_is_read_by_a_reader_and_folded_in_by_a_writer(wh) -> None:
    path = wh.path("LOCAL")
    subprocess.run([sys.executable, "-c", f"import duckdb; con = duckdb.connect({str(path)!r}); "
                    "con.execute('PRAGMA disable_checkpoint_on_shutdown'); "
                    "con.execute('INSERT INTO TESTER.ITEMS VALUES (4, ?)', ['d']); con.close()"], check=True)
    wal = path.with_name("LOCAL.duckdb.wal")
    assert wal.exists()
    assert wh.list_tables(TARGET) == {"ITEMS": 4} and wal.exists()  # read-only leaves it
    wh.ensure_schema(TARGET)
    assert not wal.exists() and wh.list_tables(TARGET) == {"ITEMS": 4}


# -- threads of one process ----------------------------------------------------------------------
def test_readers_in_two_threads_share_one_attachment(wh) -> None:
    def read() -> tuple:
        with wh._reading("LOCAL") as con:
            return con.execute('SELECT COUNT(*) FROM TESTER.ITEMS').fetchall(), held(wh)

    with wh._reading("LOCAL"):
        thread, outcome = in_thread(read)
        thread.join(10)
    rows, during = outcome["value"]
    assert rows == [(3,)]
    assert list(during.values()) == [(str(wh.path("LOCAL")), "read", 2)]
    assert held(wh) == {}


def test_a_writer_waits_for_this_process_s_readers_then_writes(wh) -> None:
    with wh._reading("LOCAL"):
        thread, outcome = in_thread(lambda: wh.publish_frame(TARGET, "ITEMS", ROWS.iloc[:1], "run2"))
        time.sleep(0.3)
        assert thread.is_alive()  # waiting, not sharing a read-only attachment, not failing
    thread.join(10)
    assert outcome.get("error") is None and outcome["value"] == 1 and outcome["seconds"] >= 0.25
    assert wh.list_tables(TARGET) == {"ITEMS": 1} and held(wh) == {}


def test_a_reader_waits_for_this_process_s_writer(wh) -> None:
    with wh._writing(TARGET):
        thread, outcome = in_thread(lambda: wh.query(TARGET, "SELECT COUNT(*) AS N FROM ITEMS"))
        time.sleep(0.3)
        assert thread.is_alive()  # never handed the read-write attachment
    thread.join(10)
    assert outcome["value"].N.tolist() == [3] and outcome["seconds"] >= 0.25


def test_a_wait_for_another_thread_times_out_as_a_lock_wait_does(wh) -> None:
    impatient = DuckDBWarehouse(wh.directory, lock_timeout_s=0.2)
    with wh._reading("LOCAL"):
        thread, outcome = in_thread(lambda: impatient.ensure_schema(TARGET))
        thread.join(10)
    error = outcome["error"]
    assert isinstance(error, WarehouseLockedError)
    assert str(error).startswith(f"{wh.path('LOCAL')} is locked by another thread of this process (PID {os.getpid()}")
    assert "waited 0.2 s" in str(error) and 0.2 <= outcome["seconds"] < 2
    assert impatient.lock_failure is error and held(wh) == {}


def test_a_long_wait_for_another_thread_is_announced_once(wh) -> None:
    said: list[str] = []
    patient = DuckDBWarehouse(wh.directory, lock_timeout_s=10, on_lock_wait=said.append)
    with wh._reading("LOCAL"):
        thread, outcome = in_thread(lambda: patient.ensure_schema(TARGET))
        time.sleep(0.8)
    thread.join(10)
    assert outcome.get("error") is None and 0.75 <= outcome["seconds"] < 5
    assert said == [f"waiting for {wh.path('LOCAL')}: another thread of this process (PID {os.getpid()}, read) "
                    "holds it; this run waits up to 10 s in all (HNPIPE_LOCK_TIMEOUT_S)"]


def test_writers_in_several_threads_share_the_file(wh) -> None:
    def append(n: int) -> None:
        for i in range(5):
            wh.append_records(TARGET, "LOG", {"ID": "Int64"}, [{"ID": n * 10 + i}])
            wh.list_tables(TARGET)

    wh.append_records(TARGET, "LOG", {"ID": "Int64"}, [{"ID": -1}])
    threads = [in_thread(lambda n=n: append(n)) for n in range(4)]
    for thread, outcome in threads:
        thread.join(60)
        assert outcome.get("error") is None, outcome
    assert wh.list_tables(TARGET) == {"ITEMS": 3, "LOG": 21} and held(wh) == {}


def test_a_request_the_same_thread_blocks_is_refused_at_once(wh, tmp_path) -> None:
    other = DuckDBWarehouse(tmp_path / "other", lock_timeout_s=30)
    other.publish_frame(TARGET, "ITEMS", ROWS, "run1")
    began = time.monotonic()
    with wh._reading("LOCAL"):
        with pytest.raises(WarehouseError, match="this thread holds .*LOCAL.duckdb as LOCAL .read. already"):
            wh.ensure_schema(TARGET)
        # Another directory's LOCAL.duckdb: the name is taken, by this thread.
        with pytest.raises(WarehouseError, match="would wait for itself"):
            other.list_tables(TARGET)
        assert wh.list_tables(TARGET) == {"ITEMS": 3}  # the same file and mode is shared
    assert time.monotonic() - began < 5 and held(wh) == {}


def test_two_directories_databases_of_one_name_take_turns(wh, tmp_path) -> None:
    other = DuckDBWarehouse(tmp_path / "other")
    other.publish_frame(TARGET, "ITEMS", ROWS.iloc[:2], "run1")
    with wh._reading("LOCAL"):
        thread, outcome = in_thread(lambda: other.list_tables(TARGET))
        time.sleep(0.3)
        assert thread.is_alive()
    thread.join(10)
    assert outcome["value"] == {"ITEMS": 2} and wh.list_tables(TARGET) == {"ITEMS": 3}


# -- cross-database reads and clones on the shared instance --------------------------------------
def test_query_across_and_clone_attach_nothing_that_outlasts_them(wh) -> None:
    wh.publish_frame(Target("PRODUCTION", "TESTER"), "ITEMS", ROWS.iloc[:2], "run1")
    added = wh.query_across(["LOCAL", "PRODUCTION"], 'SELECT ID FROM "LOCAL"."TESTER"."ITEMS" EXCEPT '
                            'SELECT ID FROM "PRODUCTION"."TESTER"."ITEMS"')
    assert added.ID.tolist() == [3]
    with wh._reading("PRODUCTION"):  # a reader of the source in this thread shares it
        wh.clone_database("PRODUCTION", "PRODUCTION_CLONE_1")
    assert wh.list_tables(Target("PRODUCTION_CLONE_1", "TESTER")) == {"ITEMS": 2}
    assert held(wh) == {}
    for database in ("LOCAL", "PRODUCTION", "PRODUCTION_CLONE_1"):
        assert opens_for_writing_elsewhere(wh.path(database)) == ""
    assert sorted(path.name for path in wh.directory.iterdir()) == [
        "LOCAL.duckdb", "PRODUCTION.duckdb", "PRODUCTION_CLONE_1.duckdb"]


@pytest.mark.parametrize("sql", ["ATTACH ':memory:' AS STRAY", "SET threads = 1",
                                 "CREATE TABLE memory.main.STRAY AS SELECT 1 AS A",
                                 "EXPLAIN ANALYZE CREATE TABLE memory.main.STRAY AS SELECT 1 AS A",
                                 "PRAGMA enable_profiling", "SELECT 1; SET threads = 1"])
def test_queries_cannot_change_the_shared_instance(wh, sql) -> None:
    def settings() -> list:
        with wh._reading("LOCAL") as con:
            return con.execute("SELECT name, value FROM duckdb_settings() ORDER BY name").fetchall()

    before = settings()
    with pytest.raises(WarehouseError, match="query in LOCAL.TESTER failed: it runs SELECTs only"):
        wh.query(TARGET, sql)
    with pytest.raises(WarehouseError, match="query across LOCAL failed: it runs SELECTs only"):
        wh.query_across(["LOCAL"], sql)
    con = current_host(wh.path("LOCAL")).cursor()
    try:
        assert con.execute("SELECT database_name FROM duckdb_databases() WHERE NOT internal").fetchall() == [("memory",)]
        assert con.execute("SELECT COUNT(*) FROM duckdb_tables()").fetchall() == [(0,)]
    finally:
        con.close()
    assert settings() == before


@pytest.mark.parametrize("sql, column", [
    ("EXPLAIN SELECT * FROM ITEMS", "explain_key"),
    ("explain analyze SELECT * FROM ITEMS", "explain_key"),
    ("PRAGMA table_info('ITEMS')", "name"),
    ("DESCRIBE ITEMS", "column_name"),
    ("PIVOT ITEMS ON TITLE IN ('a', 'b') USING count(*)", "a"),
])
def test_queries_that_only_read_pass(wh, sql: str, column: str) -> None:
    assert column in wh.query(TARGET, sql).columns


def test_a_pivot_without_its_in_list_is_refused_with_what_to_write_instead(wh) -> None:
    # DuckDB runs it as two statements (the IN list is queried first): MULTI, not a SELECT
    with pytest.raises(WarehouseError, match=r"not MULTI \(a PIVOT needs its IN list here\)$"):
        wh.query(TARGET, "PIVOT ITEMS ON TITLE USING count(*)")


# -- a forked child ------------------------------------------------------------------------------
def test_a_forked_child_builds_its_own_instance(wh) -> None:
    parent = current_host(wh.path("LOCAL"))
    assert wh.list_tables(TARGET) == {"ITEMS": 3}
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report, then leave without running the parent's cleanup
        try:
            tables = wh.list_tables(TARGET)
            mine = current_host(wh.path("LOCAL"))
            answer = f"{tables == {'ITEMS': 3}} {mine is not parent} {mine.pid == os.getpid()}"
        except BaseException as exc:
            answer = repr(exc)
        os.write(write, answer.encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        answer = pipe.read()
    os.waitpid(pid, 0)
    assert answer == "True True True"
    assert current_host(wh.path("LOCAL")) is parent and wh.list_tables(TARGET) == {"ITEMS": 3}


# The child leaves through the interpreter's teardown (sys.exit), which the test above avoids:
# the parent's instance, inherited without its threads, must not be destroyed there.
CHILD_EXITS = """
import os, sys
from pathlib import Path
from hnpipe.environments import Target
from hnpipe.warehouse.duckdb_engine import DuckDBWarehouse
from hnpipe.warehouse.duckdb_host import current_host

wh = DuckDBWarehouse(Path(sys.argv[1]))
path = wh.path("LOCAL")
held = sys.argv[2] == "held"
if held:  # the parent is writing the file when it forks
    current_host(path).attach(path, "write", 5)
    current_host(path).cursor("LOCAL").execute('INSERT INTO "LOCAL"."TESTER"."ITEMS" ("ID") SELECT 9')
else:
    wh.list_tables(Target("LOCAL", "TESTER"))
size = path.stat().st_size
pid = os.fork()
if pid == 0:
    sys.exit(0)
_, status = os.waitpid(pid, 0)
print(os.waitstatus_to_exitcode(status), path.stat().st_size == size)
if held:
    current_host(path).detach(path)
"""


@pytest.mark.slow
@pytest.mark.parametrize("parent", ["idle", "held"])
def test_a_forked_child_exits_normally_and_leaves_the_parents_file_alone(wh, parent: str) -> None:
    result = subprocess.run([sys.executable, "-c", CHILD_EXITS, str(wh.directory), parent],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["0", "True"]  # exit status 0 (was SIGSEGV), file untouched
    assert wh.list_tables(TARGET) == {"ITEMS": 4 if parent == "held" else 3}
