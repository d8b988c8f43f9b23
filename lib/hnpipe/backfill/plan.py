"""`hnpipe backfill plan`: freeze an id range and its shards in the ledger.

The plan is frozen once written: `run` and `merge` read it, never recompute it (dbt's
microbatch retry that re-planned picked the wrong batches). Planning the same range again
while it is not merged returns the frozen plan (`--to maxitem` matches whatever maxitem was
then), so re-running a CI workflow resumes instead of starting over; a different range is
refused until the open backfill is merged.
"""

from __future__ import annotations

import json
import math
from datetime import datetime, timezone
from typing import Any, Mapping

from hnpipe import config
from hnpipe.backfill.ledger import PLANNED, BackfillPlan, Ledger
from hnpipe.errors import HnpipeError, ParameterError
from hnpipe.params import MAX_ITEM_ID, MAX_ITEMS

MAX_SHARDS = 100_000
# Parameters a plan does not take from -p: the plan itself sets them for each shard.
PLAN_SETS = ("id_min", "id_max", "backfill_id", "backfill_shard")


def shard_ranges(first: int, last: int, size: int) -> list[tuple[int, int]]:
    """first..last (inclusive) cut into consecutive ranges of `size` ids (the last may be shorter)."""
    return [(low, min(low + size - 1, last)) for low in range(first, last + 1, size)]


def check_range(first: int, last: int, size: int) -> None:
    if not 1 <= first <= MAX_ITEM_ID:
        raise ParameterError(f"--from {first} is not allowed: use an HN item id from 1")
    if last < first:
        raise ParameterError(f"--to {last:,} is below --from {first:,}")
    if not 1 <= size <= MAX_ITEMS:
        raise ParameterError(f"--shard-size {size} is not allowed: use 1 to {MAX_ITEMS:,} ids per shard")
    count = math.ceil((last - first + 1) / size)
    if count > MAX_SHARDS:
        raise ParameterError(f"--shard-size {size:,} makes {count:,} shards of {first:,}..{last:,}: at most "
                             f"{MAX_SHARDS:,}; use bigger shards")


def new_backfill_id(now: datetime | None = None) -> str:
    return f"BF_{(now or datetime.now(timezone.utc)):%Y%m%dT%H%M%S}"


def freeze(ledger: Ledger, first: int, last: int | None, size: int, values: Mapping[str, Any],
           overrides: Mapping[str, Any], max_item: int | None, dry_run: bool = False) -> tuple[BackfillPlan | list, bool]:
    """(the plan, whether it is new). `last` None means maxitem (`max_item`, asked of the API
    by the caller). With `dry_run` nothing is written and the plan is a list of ranges."""
    existing = ledger.latest_id()
    if existing is not None:
        plan = ledger.load(existing)
        if not plan.merged:
            same = plan.id_min == first and plan.shard_size == size and (last is None or last == plan.id_max)
            if same:
                return plan, False
            raise HnpipeError(
                f"backfill {existing} (ids {plan.id_min:,}..{plan.id_max:,}, shards of {plan.shard_size:,}) is "
                f"not merged yet: finish it (`hnpipe backfill run`, then `merge`), or plan exactly its range to resume it")
    last = max_item if last is None else last
    check_range(first, last, size)
    ranges = shard_ranges(first, last, size)
    if dry_run:
        return ranges, True
    backfill_id = new_backfill_id()
    frozen = {**{k: v for k, v in values.items() if k not in PLAN_SETS}, "shard_size": size,
              "max_item_at_plan": max_item, "overrides": {k: v for k, v in overrides.items() if k not in PLAN_SETS}}
    sha = config.git_sha()
    at = datetime.now(timezone.utc)
    rows = [{"BACKFILL_ID": backfill_id, "SHARD": 0, "ID_MIN": first, "ID_MAX": last, "STATUS": PLANNED,
             "PARAMETERS": json.dumps(frozen, sort_keys=True, default=str), "GIT_SHA": sha, "RECORDED_AT": at}]
    rows += [{"BACKFILL_ID": backfill_id, "SHARD": number, "ID_MIN": low, "ID_MAX": high, "STATUS": PLANNED,
              "ATTEMPT": 0, "GIT_SHA": sha, "RECORDED_AT": at} for number, (low, high) in enumerate(ranges, start=1)]
    ledger.append(*rows)  # one transaction: the whole plan or nothing
    return ledger.load(backfill_id), True


def matrix(plan: BackfillPlan) -> dict[str, Any]:
    """The shards not done, as a CI matrix (`fromJSON` in GitHub Actions)."""
    pending = [shard.matrix_entry() for shard in plan.pending()]
    return {"backfill_id": plan.backfill_id, "pending": len(pending), "include": pending}
