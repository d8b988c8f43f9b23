"""Failure alerts, against a local HTTP server standing in for Slack's incoming webhook.

The server records every message it receives; it can answer slowly or with an error. Runs
fail for real (the HN API on a dead loopback port) in staging and production, on the embedded
engine, through `hnpipe run` and through plain papermill.
"""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hnpipe import alerts, params
from loopback_api import LoopbackAPI

ROOT = Path(__file__).resolve().parents[1]
FAKE_SECRETS = {
    "SNOWFLAKE_PASSWORD": "alert-canary-password-1a2b",
    "SNOWFLAKE_STAGING_PASSWORD": "alert-canary-staging-3c4d",
    "HNPIPE_API_TOKEN": "alert-canary-token-5e6f",
}
DEAD_HN = "http://127.0.0.1:9/v0"  # port 9 (discard) refuses connections on loopback


class Webhook:
    """A local stand-in for Slack (tests/loopback_api.py): records each POSTed JSON body,
    optionally slowly or failing."""

    # The URL's path is the secret part of a real webhook: it must never show.
    PATH = "/services/T0/B0/webhook-secret-7g8h"

    def __init__(self, delay_s: float = 0.0, status: int = 200) -> None:
        self.messages: list[dict] = []

        def answer(body: dict | None) -> tuple[int, str]:
            self.messages.append(body)
            time.sleep(delay_s)
            return status, "ok"

        self.api = LoopbackAPI({("POST", self.PATH): answer})
        self.url = self.api.url + self.PATH

    def close(self) -> None:
        self.api.__exit__()


@pytest.fixture
def webhook():
    hook = Webhook()
    yield hook
    hook.close()


@pytest.fixture
def slow_webhook():
    hook = Webhook(delay_s=5.0)
    yield hook
    hook.close()


def secrets(hook: Webhook) -> list[str]:
    return [*FAKE_SECRETS.values(), hook.url, "webhook-secret-7g8h"]


def environ(hook: Webhook, **extra: str) -> dict[str, str]:
    return {**FAKE_SECRETS, alerts.WEBHOOK_VARIABLE: hook.url, **extra}


# -- the alerts module -----------------------------------------------------------------------
def test_a_failure_posts_one_message_with_what_happened_and_no_secret(webhook) -> None:
    error = f"WarehouseError: login failed with {FAKE_SECRETS['SNOWFLAKE_PASSWORD']} <&>"
    assert alerts.notify_failure("production", "ITEMS", error, "20261121T020000_abcdef",
                                 "runs/production/20261121T020000_abcdef/items.ipynb", environ(webhook))
    (message,) = webhook.messages
    assert message == {"text": "\n".join([
        ":rotating_light: hnpipe ITEMS failed in production",
        "error: WarehouseError: login failed with *** &lt;&amp;&gt;",
        "run: 20261121T020000_abcdef",
        "executed notebook: runs/production/20261121T020000_abcdef/items.ipynb",
    ])}


def test_local_never_alerts_and_success_only_when_asked(webhook) -> None:
    assert not alerts.notify_failure("local", "ITEMS", "boom", "r1", None, environ(webhook))
    assert not alerts.notify_success("staging", "run", "r1", "", environ(webhook))
    assert alerts.notify_success("staging", "run", "r1", "ITEMS 5 rows",
                                 environ(webhook, HNPIPE_SLACK_NOTIFY_SUCCESS="1"))
    assert not alerts.notify_success("local", "run", "r1", "", environ(webhook, HNPIPE_SLACK_NOTIFY_SUCCESS="1"))
    assert webhook.messages == [{"text": ":white_check_mark: hnpipe run succeeded in staging\nrun: r1\nITEMS 5 rows"}]
    assert not alerts.notify_failure("staging", "ITEMS", "boom", "r1", None, {})  # no webhook set: nothing sent


@pytest.mark.parametrize("hook_kind", ["dead", "slow", "error"])
def test_a_failing_webhook_is_logged_without_its_url_and_never_raises(hook_kind, caplog) -> None:
    hook = Webhook(delay_s=5.0 if hook_kind == "slow" else 0.0, status=500 if hook_kind == "error" else 200)
    if hook_kind == "dead":
        hook.close()
    try:
        started = time.monotonic()
        with caplog.at_level(logging.WARNING, logger="hnpipe.alerts"):
            sent = alerts.notify_failure("staging", "ITEMS", "boom", "r1", None,
                                         environ(hook, HNPIPE_SLACK_TIMEOUT_S="0.5"))
        assert sent is False
        assert time.monotonic() - started < 3  # the short timeout, not the slow server
        (record,) = caplog.records
        assert record.getMessage().startswith("Slack alert not delivered")
        assert not [s for s in secrets(hook) if s in caplog.text]
    finally:
        if hook_kind != "dead":
            hook.close()


# -- real failing runs -------------------------------------------------------------------------
def run(args: list[str], env: dict[str, str], cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=cwd, env={**os.environ, **env}, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_hnpipe_run_failing_in_staging_alerts_once_and_keeps_its_error(clean_env, tmp_path, webhook) -> None:
    env = environ(webhook, HNPIPE_ENV="staging")
    result = run([sys.executable, "-m", "hnpipe.cli", "run", "--env", "staging",
                  "-p", f"hn_api_url={DEAD_HN}", "-p", "hn_api_private_hosts=[127.0.0.1]", "-p", "n_items=3"], env)

    assert result.returncode == 1
    (run_dir,) = (tmp_path / "runs" / "staging").iterdir()
    kept = run_dir / "items.ipynb"
    line = result.stderr.strip()
    assert re.fullmatch(rf"hnpipe: error: items\.ipynb failed: (FetchError: .+) \(executed notebook kept at "
                        rf"{re.escape(str(kept))}\)", line), result.stderr
    error = re.search(r"failed: (FetchError: .+) \(executed", line).group(1)
    assert webhook.messages == [{"text": "\n".join([
        ":rotating_light: hnpipe ITEMS failed in staging", f"error: {error}", f"run: {run_dir.name}",
        f"executed notebook: {kept}"])}]
    leaked = [s for s in secrets(webhook) if s in json.dumps(webhook.messages) + result.stdout + result.stderr]
    assert not leaked


@pytest.mark.slow
def test_plain_papermill_failing_in_production_alerts_once_from_its_kernel(clean_env, tmp_path, slow_webhook) -> None:
    # A slow webhook (5 s, 1 s timeout): the notebook still fails with its own error, promptly.
    env = environ(slow_webhook, HNPIPE_ENV="production", HNPIPE_SLACK_TIMEOUT_S="1",
                  HNPIPE_RUN_ID="20261121T020000_0a1b2c")
    out = tmp_path / "out.ipynb"
    started = time.monotonic()
    result = run([sys.executable, "-m", "papermill", "notebooks/items.ipynb", str(out), "-f",
                  "params/production.yaml", "-p", "hn_api_url", DEAD_HN, "-y", "hn_api_private_hosts: [127.0.0.1]",
                  "-p", "n_items", "3",
                  "--cwd", "notebooks"], env)
    elapsed = time.monotonic() - started

    assert result.returncode != 0
    assert "FetchError" in result.stderr and "PapermillExecutionError" in result.stderr
    (message,) = slow_webhook.messages
    text = message["text"].splitlines()
    assert text[0] == ":rotating_light: hnpipe ITEMS failed in production"
    assert text[1].startswith("error: FetchError: ") and text[2] == "run: 20261121T020000_0a1b2c"
    assert text[3].startswith("executed notebook: papermill: ")
    assert elapsed < 60
    executed = out.read_text()
    assert not [s for s in secrets(slow_webhook) if s in executed + result.stderr + json.dumps(message)]
    assert "Slack alert not delivered (ReadTimeout" in executed  # logged in the kernel, without the URL


def test_the_runner_folds_a_failed_alert_or_record_into_its_one_line(clean_env, tmp_path, monkeypatch, caplog) -> None:
    from datetime import datetime, timezone

    from hnpipe import runner
    from hnpipe.environments import Target
    from hnpipe.warehouse import connect

    dead = Webhook()
    dead.close()
    monkeypatch.setenv("HNPIPE_ENV", "staging")
    monkeypatch.setenv(alerts.WEBHOOK_VARIABLE, dead.url)
    values = params.params_for("staging")
    with caplog.at_level(logging.DEBUG):
        run = runner.RunContext("staging", values, Target("STAGING", "HACKER_NEWS"), "20261121T020000_000001")
        with connect(run) as warehouse:
            notes = runner._failed(run, warehouse, "ITEMS", datetime.now(timezone.utc), "FetchError: down",
                                   tmp_path / "items.ipynb")
    assert notes == ["Slack alert not delivered (ConnectionError from the HNPIPE_SLACK_WEBHOOK_URL webhook)"]
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]  # nothing printed besides
