"""`hnpipe backfill run`: execute the pending shards, each as items.ipynb under papermill with
its id range, W at once, each kept under runs/<env>/<run id>/ like any run's notebook.

Which shards: those named by `--shard`, else every shard that is not done, except one
`running` in a process that still lives on this host, or (on another host, e.g. another CI
job) that started less than `stale_after_s` ago. A shard whose runner was killed (SIGKILL, a
lost CI runner) is therefore fetched again by the next `run`; a done shard never is (the
notebook refuses it too).

The notebook execution is the runner's (hnpipe.runner: a started kernel per notebook and
papermill), so a shard behaves exactly like `hnpipe run`'s items.ipynb.
"""

from __future__ import annotations

import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping, Sequence

from hnpipe import config, datasets, params
from hnpipe.backfill.ledger import DONE, FAILED, RUNNING, BackfillPlan, Ledger, Shard
from hnpipe.backfill.plan import PLAN_SETS
from hnpipe.errors import HnpipeError
from hnpipe.history import error_line
from hnpipe.run_context import RunContext
from hnpipe.runner import NotebookResult, _execute, kernels, keep_record
from hnpipe.warehouse.base import Warehouse

STALE_AFTER_S = 6 * 3600  # GitHub's job limit: a shard running longer elsewhere is lost


@dataclass
class ShardOutcome:
    shard: Shard
    run_id: str
    output: Path
    seconds: float
    error: str | None = None


def choose(plan: BackfillPlan, wanted: Sequence[int] = (), stale_after_s: float = STALE_AFTER_S,
           now: datetime | None = None) -> tuple[list[Shard], list[str]]:
    """(shards to run, notes on the ones skipped)."""
    now = now or datetime.now(timezone.utc)
    notes: list[str] = []
    if wanted:
        unknown = [k for k in wanted if k not in plan.shards]
        if unknown:
            raise HnpipeError(f"backfill {plan.backfill_id} has no shard {unknown[0]}: it has 1..{len(plan.shards)}")
        candidates = [plan.shards[k] for k in dict.fromkeys(wanted)]
    else:
        candidates = list(plan.shards.values())
    chosen = []
    for shard in candidates:
        if shard.status == DONE:
            notes.append(f"shard {shard.shard} is done already ({shard.rows:,} rows): not fetched again")
            continue
        if shard.status == RUNNING and not wanted:
            alive = shard.process_alive()
            started = shard.started or shard.at
            fresh = started is not None and (now - started.to_pydatetime() if hasattr(started, "to_pydatetime")
                                             else now - started).total_seconds() < stale_after_s
            if alive or (alive is None and fresh):
                notes.append(f"shard {shard.shard} is running (run {shard.run_id} on {shard.host}): left to it")
                continue
        chosen.append(shard)
    return chosen, notes


def shard_values(plan: BackfillPlan, overrides: Mapping[str, Any]) -> dict[str, Any]:
    """The frozen parameters of the plan, with this run's -p on top (never the range)."""
    refused = [k for k in overrides if k in PLAN_SETS]
    if refused:
        raise HnpipeError(f"-p {refused[0]} is set by the plan for each shard; plan another range instead")
    frozen = {k: v for k, v in plan.parameters.items() if k in params.PARAMETERS}
    return params.validate({**frozen, **overrides})


def run(env: str, warehouse: Warehouse, ledger: Ledger, overrides: Mapping[str, Any] = (),
        wanted: Sequence[int] = (), workers: int = 1, root: Path | None = None,
        say=print) -> list[ShardOutcome]:
    if not 1 <= workers <= 64:
        raise HnpipeError(f"--workers {workers} is not allowed: use 1 to 64 shards at once")
    root = root or config.project_root()
    plan = ledger.load()
    if plan.merged:
        say(f"backfill {plan.backfill_id} is merged already: nothing to run")
        return []
    values = shard_values(plan, dict(overrides))
    chosen, notes = choose(plan, wanted)
    for note in notes:
        say(note)
    say(f"backfill {plan.backfill_id}: running {len(chosen)} of {len(plan.shards)} shards, {workers} at once")
    lock = threading.Lock()
    counter = iter(range(1, len(chosen) + 1))

    def one(shard: Shard) -> ShardOutcome:
        with lock:
            number = next(counter)
        return _run_shard(env, ledger, plan, shard, values, root, f"[{number}/{len(chosen)}] shard {shard.shard}")

    if workers == 1 or len(chosen) <= 1:
        outcomes = [one(shard) for shard in chosen]
    else:
        with ThreadPoolExecutor(workers, thread_name_prefix="hnpipe-shard") as pool:
            outcomes = list(pool.map(one, chosen))
    failed = [o for o in outcomes if o.error]
    if failed:
        first = failed[0]
        raise HnpipeError(f"{len(failed)} of {len(outcomes)} shards failed, e.g. shard {first.shard.shard}: "
                          f"{first.error} (executed notebook kept at {first.output}); run `hnpipe backfill run "
                          f"--env {env}` again to retry them")
    return outcomes


def _run_shard(env: str, ledger: Ledger, plan: BackfillPlan, shard: Shard, values: Mapping[str, Any],
               root: Path, counter: str) -> ShardOutcome:
    run_id = config.new_run_id()
    directory = config.runs_dir(root) / env / run_id
    directory.mkdir(parents=True, exist_ok=True)
    dataset = datasets.get("ITEMS")
    shard_params = {**values, "id_min": shard.id_min, "id_max": shard.id_max,
                    "backfill_id": plan.backfill_id, "backfill_shard": shard.shard}
    kernel = kernels.Kernel(config.notebooks_dir(root), {
        **os.environ, "HNPIPE_RUN_ID": run_id, "HNPIPE_PROGRESS": "0",
        "HNPIPE_NOTEBOOK_OUTPUT": str(directory / dataset.notebook)}, warm=kernels.SOURCE_WARM_MODULES)
    started = time.perf_counter()
    context = RunContext(env, shard_params, ledger.target, run_id)
    outcome = _execute(dataset, kernel, root, directory, context, lambda output: keep_record(output, run_id), counter)
    seconds = time.perf_counter() - started
    if isinstance(outcome, NotebookResult):
        return ShardOutcome(shard, run_id, outcome.output, seconds)
    error = _error_line(outcome[0])
    try:  # the notebook may have died before it could say so: the ledger says it failed
        ledger.warehouse.begin_run()  # a lock-wait budget of its own (see Step._commit_shard)
        latest = ledger.shard(plan.backfill_id, shard.shard)
        if latest.status == RUNNING and latest.run_id == run_id:
            ledger.event(latest, FAILED, ATTEMPT=latest.attempts, RUN_ID=run_id, ERROR=error)
    except Exception as exc:  # noqa: BLE001 - the shard's own error is the one to report
        error += f" (and recording it failed: {_error_line(exc)})"
    return ShardOutcome(shard, run_id, directory / dataset.notebook, seconds, error)


def _error_line(error: BaseException) -> str:
    ename, evalue = getattr(error, "ename", None), getattr(error, "evalue", None)
    if ename:
        return error_line(f"{ename}: {str(evalue).splitlines()[0] if evalue else ''}")
    return error_line(error)
