"""`hnpipe freshness`: exit 1 and the failure alert when a dataset's last success is too old."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from hnpipe import cli, history
from hnpipe.environments import target_for
from hnpipe.ops.freshness import parse_duration
from hnpipe.warehouse import DuckDBWarehouse
from loopback_api import LoopbackAPI
from workflow_files import github, gitlab_jobs


def succeeded(warehouse, dataset: str, hours_ago: float, run_id: str) -> None:
    finished = datetime.now(timezone.utc) - timedelta(hours=hours_ago)
    history.record(warehouse, target_for("staging"), history.RunRecord(
        run_id, "run", dataset, "staging", started=finished - timedelta(seconds=30), finished=finished, rows=10))


def test_durations_are_parsed_or_refused_in_one_line() -> None:
    assert parse_duration("26h") == timedelta(hours=26)
    assert parse_duration("1d12h30m") == timedelta(days=1, hours=12, minutes=30)
    for bad in ("", "26", "h", "-3h", "1w", "0h"):
        with pytest.raises(Exception, match="--max-age"):
            parse_duration(bad)


def test_a_dataset_older_than_max_age_fails_the_check_and_alerts_naming_it(
        clean_env: Path, monkeypatch, capsys) -> None:
    warehouse = DuckDBWarehouse(str(clean_env))
    succeeded(warehouse, "ITEMS", 2, "r-new")
    succeeded(warehouse, "COMMENTS", 2, "r-new")
    succeeded(warehouse, "STORIES", 30, "r-old")  # STORIES failed since: its last success is old
    with LoopbackAPI() as slack:
        monkeypatch.setenv("HNPIPE_SLACK_WEBHOOK_URL", f"{slack.url}/services/T/B/secret")
        assert cli.main(["freshness", "--env", "staging", "--max-age", "26h"]) == 1
        out, err = capsys.readouterr()
        assert "ITEMS: last succeeded" in out and "(run r-new), 2 h" in out
        assert "STORIES: last succeeded" in out and "(run r-old), 30 h" in out
        assert err.strip() == ("hnpipe: error: stale in staging: STORIES (no successful run within 26h); "
                               "see above")
        (alert,) = [body for method, _, _, body in slack.requests if method == "POST"]
        assert "freshness check (STORIES) failed in staging" in alert["text"] and "r-old" in alert["text"]
        assert "ITEMS" not in alert["text"].split("failed in")[0]
        # Within the age: exit 0, no alert.
        assert cli.main(["freshness", "--env", "staging", "--max-age", "31h"]) == 0
        assert "fresh: every dataset of staging succeeded within 31h" in capsys.readouterr().out
        assert len(slack.requests) == 1


def test_a_dataset_never_run_is_stale(clean_env: Path, capsys) -> None:
    warehouse = DuckDBWarehouse(str(clean_env))
    succeeded(warehouse, "ITEMS", 1, "r1")
    assert cli.main(["freshness", "--env", "staging", "--max-age", "2h"]) == 1
    out, err = capsys.readouterr()
    assert "COMMENTS: no successful run recorded in STAGING.HACKER_NEWS" in out
    assert "stale in staging: COMMENTS, STORIES" in err


def test_production_runs_the_check_on_its_own_schedule() -> None:
    workflow = github("production.yml")
    crons = [entry["cron"] for entry in workflow[True]["schedule"]] if True in workflow else \
        [entry["cron"] for entry in workflow["on"]["schedule"]]
    assert len(crons) == 2
    own = crons[1]
    jobs = workflow["jobs"]
    assert f"github.event.schedule == '{own}'" in jobs["freshness"]["if"]
    assert all(f"github.event.schedule != '{own}'" in jobs[name]["if"] for name in ("run", "prune-clones"))
    assert jobs["freshness"]["steps"][-1]["run"] == "hnpipe freshness --env production --max-age 26h"
    gitlab = gitlab_jobs()
    assert gitlab["freshness"]["script"] == ["hnpipe freshness --env production --max-age 26h"]
    assert '$PIPELINE_SCHEDULE == "freshness"' in gitlab["freshness"]["rules"][0]["if"]
    for name in ("production-run", "prune-clones"):
        # on the default branch, as every rule of a job that logs in as production (test_logins)
        assert gitlab[name]["rules"][0] == {"if": '$CI_PIPELINE_SOURCE == "schedule" && $PIPELINE_SCHEDULE == "freshness"'
                                                  ' && $CI_COMMIT_BRANCH == $CI_DEFAULT_BRANCH', "when": "never"}
