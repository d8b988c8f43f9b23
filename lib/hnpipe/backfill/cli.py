"""`hnpipe backfill plan|run|status|merge --env ENV`: the command group (docs/backfill.md)."""

from __future__ import annotations

import json
from datetime import datetime, timezone

from hnpipe import config, environments, hn, params
from hnpipe.backfill import merge as merging
from hnpipe.backfill import plan as planning
from hnpipe.backfill import run as running
from hnpipe.backfill.ledger import DONE, FAILED, RUNNING, BackfillPlan, Ledger
from hnpipe.errors import ParameterError
from hnpipe.run_context import RunContext
from hnpipe.pipeline import hn_base_url
from hnpipe.warehouse import connect


def add_arguments(parser) -> None:
    actions = parser.add_subparsers(dest="backfill_action", required=True)
    plan = actions.add_parser("plan", help="freeze an id range and its shards in the ledger")
    run = actions.add_parser("run", help="run the shards not done yet (items.ipynb per shard)")
    status = actions.add_parser("status", help="shards done, pending, failed, running; rows, rate, time left")
    merge = actions.add_parser("merge", help="check every shard and merge them into ITEMS atomically")
    for sub in (plan, run, status, merge):
        sub.add_argument("--env", required=True, choices=environments.ENVIRONMENTS,
                         help="which environment's database to backfill; must match HNPIPE_ENV")
    for sub in (plan, run):
        sub.add_argument("-p", "--param", action="append", default=[], metavar="KEY=VALUE",
                         help="a parameter for every shard, e.g. -p concurrency=256 (the plan records them)")
    plan.add_argument("--from", dest="first", type=int, required=True, metavar="ID", help="the first id, inclusive")
    plan.add_argument("--to", dest="last", required=True, metavar="ID|maxitem",
                      help="the last id, inclusive, or maxitem (asked of the API now, then frozen)")
    plan.add_argument("--shard-size", type=int, required=True, metavar="N", help="ids per shard")
    plan.add_argument("--dry-run", action="store_true", help="print the shards; write nothing")
    plan.add_argument("--json", action="store_true",
                      help="print the shards not done as a CI matrix: {backfill_id, pending, include: [...]}")
    run.add_argument("--shard", type=int, action="append", default=[], metavar="K",
                     help="run just this shard (repeat for more); a done shard is never fetched again")
    run.add_argument("--workers", type=int, default=1, metavar="W", help="shards at once on this machine")
    status.add_argument("--json", action="store_true", help="the same as JSON")
    merge.add_argument("--keep-stage", action="store_true",
                       help="keep the shards' files in the stage after the merge (default: removed)")


def main(args) -> int:
    config.load_env()
    overrides = dict(params.parse_override(p) for p in getattr(args, "param", []))
    values = params.params_for(args.env, {k: v for k, v in overrides.items() if k not in planning.PLAN_SETS})
    target = environments.resolve(values["environment"])
    warehouse = connect(RunContext(args.env, values, target, config.new_run_id()))
    ledger = Ledger(warehouse, target)
    action = args.backfill_action
    if action == "plan":
        return _plan(args, values, overrides, ledger)
    if action == "run":
        outcomes = running.run(args.env, warehouse, ledger, overrides, args.shard, args.workers)
        print(f"{len(outcomes)} shard(s) done")
        print(status_text(ledger.load()))
        return 0
    if action == "status":
        plan = ledger.load()
        print(json.dumps(status_numbers(plan), default=str) if args.json else status_text(plan))
        return 0
    plan = ledger.load()
    merging.merge(args.env, warehouse, target, ledger, keep_stage=args.keep_stage)
    print(merging.rebuild_downstream(args.env, plan.parameters))
    return 0


def _plan(args, values, overrides, ledger: Ledger) -> int:
    if args.last == "maxitem":
        last = None
        with hn_base_url(values["hn_api_url"]) as base_url:
            client = hn.HttpHNClient(base_url, private_hosts=None if args.env == "local" or values["hn_api_url"] == "sample"
                                     else values["hn_api_private_hosts"])
            max_item = client.max_item()
    else:
        try:
            last = max_item = int(args.last)
        except ValueError:
            raise ParameterError(f"--to {args.last!r} is not allowed: use an id or maxitem") from None
    plan, new = planning.freeze(ledger, args.first, last, args.shard_size, values, overrides, max_item, args.dry_run)
    if args.dry_run and isinstance(plan, list):
        entries = [{"shard": n, "id_min": lo, "id_max": hi} for n, (lo, hi) in enumerate(plan, start=1)]
        if args.json:
            print(json.dumps({"backfill_id": None, "pending": len(entries), "include": entries}))
        else:
            print(f"dry run: {len(entries)} shards of {args.shard_size:,} ids over {args.first:,}..{plan[-1][1]:,}; "
                  "nothing written")
        return 0
    if args.json:
        print(json.dumps(planning.matrix(plan)))
    else:
        said = "planned" if new else "already planned (frozen; resuming it)"
        print(f"backfill {plan.backfill_id} {said}: ids {plan.id_min:,}..{plan.id_max:,} in {len(plan.shards)} "
              f"shards of {plan.shard_size:,}; {len(plan.pending())} not done")
    return 0


def status_numbers(plan: BackfillPlan, now: datetime | None = None) -> dict:
    now = now or datetime.now(timezone.utc)
    shards = list(plan.shards.values())
    count = {name: sum(1 for s in shards if s.status == name) for name in (DONE, FAILED, RUNNING)}
    count["pending"] = len(shards) - sum(count.values())
    done = [s for s in shards if s.status == DONE]
    rows = sum(s.rows or 0 for s in done)
    ids_done = sum(s.ids for s in done)
    ids_left = sum(s.ids for s in shards if s.status != DONE)
    starts = [s.started for s in shards if s.started is not None]
    elapsed = (max(s.at for s in done) - min(starts)).total_seconds() if done and starts else None
    rate = ids_done / elapsed if elapsed else None
    return {"backfill_id": plan.backfill_id, "range": [plan.id_min, plan.id_max], "shards": len(shards),
            **count, "merged": plan.merged, "rows": rows, "ids_done": ids_done, "ids_left": ids_left,
            "ids_per_s": rate, "seconds_left": ids_left / rate if rate else None,
            "failed_shards": {s.shard: s.error for s in shards if s.status == FAILED}}


def status_text(plan: BackfillPlan) -> str:
    n = status_numbers(plan)
    rate = f"{n['ids_per_s']:,.0f} ids/s" if n["ids_per_s"] else "rate unknown yet"
    left = (f", about {n['seconds_left'] / 60:,.1f} min left at that rate" if n["seconds_left"] else "")
    lines = [f"backfill {n['backfill_id']}: ids {plan.id_min:,}..{plan.id_max:,}, {n['shards']} shards of "
             f"{plan.shard_size:,}{' (merged)' if n['merged'] else ''}",
             f"  done {n['done']}, pending {n['pending']}, failed {n['failed']}, running {n['running']}",
             f"  {n['rows']:,} rows from {n['ids_done']:,} ids; {n['ids_left']:,} ids left; {rate}{left}"]
    lines += [f"  shard {k} failed: {error}" for k, error in list(n["failed_shards"].items())[:10]]
    return "\n".join(lines)

