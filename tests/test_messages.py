"""What a user reads when something is wrong: the value that is wrong and what is allowed,
never a secret, never a terminal escape sequence, never a bare exception."""

from __future__ import annotations

import json
import threading
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from hnpipe.items import ItemsBuilder
from hnpipe import cli, environments, history, params
from hnpipe.environments import Target
from hnpipe.errors import GuardError, ParameterError
from hnpipe.hn import HttpHNClient, fetch_latest
from hnpipe.warehouse.duckdb_engine import DuckDBWarehouse

ROOT = Path(__file__).resolve().parents[1]


def test_a_password_given_as_a_snowflake_env_value_is_never_echoed(capsys) -> None:
    with pytest.raises(ParameterError) as refused:
        params.validate({"snowflake_env": {"user": "SNOWFLAKE_USER", "password": "hunter2-canary"}})
    assert "hunter2-canary" not in str(refused.value) and "'password'" in str(refused.value)
    assert cli.main(["run", "--env", "local", "-p", "snowflake_env={password: hunter2-canary}"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("hnpipe: error: ") and "hunter2-canary" not in err


def test_an_environment_override_is_blamed_on_the_override_not_the_params_file(capsys) -> None:
    assert cli.main(["run", "--env", "local", "-p", "environment=production"]) == 1
    err = capsys.readouterr().err
    assert "-p environment=production contradicts --env local" in err and "params/local.yaml" not in err


@pytest.mark.parametrize("pr", ["12345678901", "99999999999999"])
def test_a_pull_request_id_too_long_is_refused_saying_the_limit(pr: str) -> None:
    with pytest.raises(GuardError, match="1 to 10 digits"):
        environments.check_pr_id(pr)
    with pytest.raises(ParameterError, match="1 to 10 digits"):
        params.validate({"pr_id": int(pr)}, declared={**params.PARAMETERS, **params.ADMIN_PARAMETERS})


def test_a_lone_surrogate_in_an_item_is_stored_replaced_and_named_in_the_log(tmp_path: Path, caplog) -> None:
    items = {1: {"id": 1, "type": "comment", "by": "x", "time": 1_700_000_000, "text": "broken \ud83d here"},
             2: {"id": 2, "type": "story", "by": "y", "time": 1_700_000_000, "title": "fine"}}
    bodies = {f"/v0/item/{i}.json": json.dumps(item).encode() for i, item in items.items()}  # \ud83d escaped
    bodies["/v0/maxitem.json"] = b"2"

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            self.send_response(200)
            self.send_header("Content-Length", str(len(bodies[self.path])))
            self.end_headers()
            self.wfile.write(bodies[self.path])

        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True).start()
    builder = ItemsBuilder()
    try:
        with HttpHNClient(f"http://127.0.0.1:{httpd.server_address[1]}/v0", progress=False) as client:
            fetch_latest(client, 2, builder.add)
    finally:
        httpd.shutdown()
        httpd.server_close()
    warehouse = DuckDBWarehouse(tmp_path / "warehouse")
    target = Target("LOCAL", "TESTER")
    warehouse.ensure_schema(target)
    assert warehouse.publish_frame(target, "ITEMS", builder.to_frame(), "20261121T000000_000000") == 2
    stored = warehouse.read_table(target, "ITEMS").set_index("ID")["TEXT"]
    assert stored[1] == "broken \ufffd here"
    assert "item 1: field text held a lone surrogate" in caplog.text


def test_control_characters_from_the_api_reach_neither_stderr_nor_history_unescaped(tmp_path: Path, capsys) -> None:
    hostile = "item 7: \x1b[2J\x1b[31mred\x07 and\nmore"
    assert cli._error(hostile) == 1
    err = capsys.readouterr().err
    assert "\x1b" not in err and "\x07" not in err and err.count("\n") == 1 and "\\x1b[2J" in err
    warehouse = DuckDBWarehouse(tmp_path / "warehouse")
    target = Target("LOCAL", "TESTER")
    history.append(warehouse, target, history.RunRecord(
        "20261121T000000_000000", "run", "ITEMS", "local", history.FAILED,
        started=datetime.now(timezone.utc), error="FetchError: \x1b]0;owned\x07 title \x1b[2J"))
    text = history.to_text(history.read(warehouse, target))
    assert "\x1b" not in text and "\x07" not in text and "\\x1b]0;owned" in text


@pytest.mark.slow
def test_a_held_lock_is_said_once_without_a_see_the_log_warning(clean_env: Path, monkeypatch, capsys, caplog) -> None:
    """The publish waits, says so once, then fails in one sentence; the failure is not
    recorded into the locked file (that would wait again and repeat the sentence)."""
    import subprocess
    import sys

    from hnpipe import pipeline, progress
    from hnpipe.errors import WarehouseLockedError

    monkeypatch.setenv("HNPIPE_LOCK_TIMEOUT_S", "2")
    said: list[str] = []
    monkeypatch.setattr(progress, "say", said.append)
    values = {"environment": "local", "n_items": 30}
    first = pipeline.start("ITEMS", values)
    first.publish(first.fetch())
    step = pipeline.start("ITEMS", values)
    items = step.fetch()
    database = clean_env / "LOCAL.duckdb"
    holder = subprocess.Popen([sys.executable, "-c", f"import duckdb, sys; c = duckdb.connect({str(database)!r}); "
                               "print('holding', flush=True); sys.stdin.read()"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "holding"
        capsys.readouterr()
        with pytest.raises(WarehouseLockedError, match=f"is locked by PID {holder.pid}"):
            step.publish(items)
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
    shown = capsys.readouterr()
    assert [line for line in said if line.startswith("waiting for")] == [
        line for line in said if str(database) in line] and len(said) == 1
    assert "see the log" not in shown.out + shown.err and "could not record" not in caplog.text
