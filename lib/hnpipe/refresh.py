"""Incremental refresh of ITEMS: fetch what is new or may still change, keep the rest.

The `refresh` parameter says how items.ipynb rebuilds ITEMS; the target set is the same
either way, the N most recent ids `maxitem-N+1 .. maxitem` (N = n_items):

* full (the default): fetch every id of the target set and replace ITEMS with what answered.
* incremental: fetch only the ids above ITEMS' newest id plus the `refresh_window` ids just
  below it, whose items may still change (scores, comment counts, kids, dead/deleted); keep
  ITEMS' other rows of the target set as they are; merge both inside the warehouse:

      first = maxitem-N+1        fetch_from = max(first, newest+1-window)          maxitem
      |------ kept: ITEMS' rows, unchanged ------|------ fetched: what the API says now ------|

  Rows below `first` drop out, as in a full run. In the fetched range the fetch decides: a
  changed item replaces its row, an id that now answers null disappears. Ids of the target set
  below ITEMS' oldest id (n_items grew, or the first ids answered null last time) are
  fetched too, so nothing of the target set is missed.

The merge (`Warehouse.publish_merge`) builds the new ITEMS in its staging table with one
`CREATE TABLE .. AS SELECT` (kept rows UNION ALL fetched rows) and then passes the same
quality gates, version keeping and atomic swap as every publish: a failure leaves ITEMS whole.
The gates bound the rows by n_items and by the kept rows plus the ids that answered, and
refuse any id outside the target set. COMMENTS and STORIES are then rebuilt from the merged
ITEMS exactly as after a full run.

An incremental run therefore equals a full run over the same ids whenever no item below
`fetch_from` changed since it was last fetched (tests/test_refresh.py checks both that and
the documented staleness). Its cost is the new ids plus the window, not N: with 1% new ids
and the default window, a fraction of the full fetch (benchmarks/refresh.py).

An incremental run falls back to full, and says so, when ITEMS is missing or empty, when
its columns are not `ITEMS_COLUMNS` (a changed definition must be fetched whole),
when its newest id is above the API's maxitem (it came from another source), or when none of
its rows lies in the target set below the window (nothing to keep). Rows kept are what an
earlier run made of them: after changing how items are read (`ItemsBuilder`), run
full once.

When to use which: full for scheduled runs whose N is mostly new or still changing (the daily
production run: in a day most of its 50,000 ids are new or still collecting votes and
comments, so a window covering that would save little and anything shorter leaves them
stale), and for branch runs, which rehearse a change on the whole target set. Incremental for
frequent refreshes (hourly, with a window covering the hours items keep changing) and for
re-running the pipeline while developing.
"""

from __future__ import annotations

import functools
import itertools
from dataclasses import dataclass
from typing import Iterator

from hnpipe.hn_api import latest_ids
from hnpipe.datasets import ITEMS_COLUMNS
from hnpipe.environments import Target, check_identifier
from hnpipe.errors import ParameterError
from hnpipe.params import REFRESH_MODES
from hnpipe.warehouse.base import Warehouse

FULL, INCREMENTAL = REFRESH_MODES


@dataclass(frozen=True)
class Ids:
    """The ids to fetch, in order, with a length: the fetch's progress bar needs its total."""

    parts: tuple[range, ...]

    def __len__(self) -> int:
        return sum(len(part) for part in self.parts)

    def __iter__(self) -> Iterator[int]:
        return itertools.chain.from_iterable(self.parts)


@dataclass(frozen=True)
class Plan:
    """Which ids one ITEMS run fetches, and which rows of the published ITEMS it keeps."""

    mode: str  # what runs: FULL or INCREMENTAL (after any fallback)
    max_item: int  # the API's maxitem when the run began
    first_id: int  # the target set is first_id .. max_item
    fetch: tuple[range, ...]  # ascending, disjoint
    keep_ids: tuple[int, int] | None = None  # incremental: (first, last) ids of ITEMS kept
    kept_rows: int = 0  # rows of ITEMS within keep_ids
    newest: int | None = None  # incremental: ITEMS' newest id before the run
    note: str = ""  # why a requested incremental run is full

    def ids(self) -> Ids:
        return Ids(self.fetch)

    @property
    def fetched_ids(self) -> int:
        return sum(len(part) for part in self.fetch)

    @property
    def merges(self) -> bool:
        """Whether the publish merges into the published ITEMS instead of replacing it."""
        return self.mode == INCREMENTAL

    @property
    def id_range(self) -> tuple[int, int]:
        return self.first_id, self.max_item

    def summary(self) -> str:
        """One line for the notebook: which mode runs, what is fetched and what is kept."""
        if self.mode == FULL:
            because = f" ({self.note})" if self.note else ""
            return (f"refresh full{because}: fetching all {self.fetched_ids:,} ids "
                    f"{self.first_id:,}..{self.max_item:,}")
        first_kept, last_kept = self.keep_ids
        new = self.max_item - self.newest
        below = first_kept - self.first_id
        parts = [f"{new:,} new above ITEMS' newest {self.newest:,}",
                 f"{self.fetched_ids - new - below:,} again in the window"]
        if below:
            parts.append(f"{below:,} below ITEMS' oldest")
        return (f"refresh incremental: fetching {self.fetched_ids:,} ids ({', '.join(parts)}), "
                f"keeping {self.kept_rows:,} rows of ITEMS (ids {first_kept:,}..{last_kept:,})")


def target_ids(max_item: int, n_items: int, id_min: int | None = None, id_max: int | None = None) -> range:
    """The ids a run is about: the n_items newest, or with `id_min` the range id_min..id_max
    (inclusive; id_max None: up to maxitem, and never above it: ids beyond maxitem do not
    exist yet). An empty range is refused."""
    if id_min is None:
        return latest_ids(max_item, n_items)
    latest_ids(max_item, 1)  # refuses a bad max_item
    last = max_item if id_max is None else min(id_max, max_item)
    if last < id_min:
        raise ParameterError(f"id_min {id_min:,} is above the API's maxitem {max_item:,}: no such ids yet")
    return range(id_min, last + 1)


def full_plan(max_item: int, n_items: int, note: str = "", id_min: int | None = None,
              id_max: int | None = None) -> Plan:
    ids = target_ids(max_item, n_items, id_min, id_max)
    return Plan(FULL, ids[-1], ids.start, (ids,), note=note)


def plan(warehouse: Warehouse, target: Target, *, max_item: int, n_items: int, mode: str,
         window: int, table: str = "ITEMS", id_min: int | None = None, id_max: int | None = None) -> Plan:
    """The plan for a run of `mode` (a `refresh` value) when the API's maxitem is `max_item`.

    Full asks nothing of the warehouse. Incremental reads ITEMS' id range and the rows it
    would keep (a few small queries), or falls back to full saying why (see the module doc).
    """
    if mode not in REFRESH_MODES:
        raise ParameterError(f"refresh {mode!r} is not allowed: choose one of {', '.join(REFRESH_MODES)}")
    if isinstance(window, bool) or not isinstance(window, int) or window < 0:
        raise ParameterError(f"refresh_window {window!r} is not allowed: use a whole number of ids >= 0")
    ids = target_ids(max_item, n_items, id_min, id_max)  # refuses a bad max_item, n_items or range
    # The target set is ids.start .. max_item: an id range ending below maxitem ends there.
    max_item = ids[-1]
    full = functools.partial(full_plan, id_min=id_min, id_max=id_max)
    if mode == FULL:
        return full(max_item, n_items)
    table = check_identifier(table, "table")
    first = ids.start

    tables = warehouse.list_tables(target)
    if table not in tables:
        return full(max_item, n_items, f"incremental asked, but there is no {table} in {target} yet")
    if tables[table] == 0:
        return full(max_item, n_items, f"incremental asked, but {target}.{table} is empty")
    columns = [column.name for column in warehouse.describe_table(target, table).columns]
    if sorted(columns) != sorted(ITEMS_COLUMNS):
        return full(max_item, n_items, f"incremental asked, but {table} has columns {', '.join(columns)}, "
                                            f"not {', '.join(ITEMS_COLUMNS)}")
    bounds = warehouse.query(target, f'SELECT MIN(ID) AS OLDEST, MAX(ID) AS NEWEST FROM "{table}"')
    oldest, newest = (int(value) for value in bounds.iloc[0])
    held = f"{table} (ids {oldest:,}..{newest:,})"
    if newest > max_item:
        return full(max_item, n_items, f"incremental asked, but {held} reaches above the API's maxitem "
                                            f"{max_item:,}: another source?")
    if newest < first:
        return full(max_item, n_items, f"incremental asked, but {held} is older than the target set "
                                            f"{first:,}..{max_item:,}: nothing to keep")
    fetch_from = max(first, newest + 1 - window)
    if fetch_from == first:
        return full(max_item, n_items, f"incremental asked, but refresh_window {window:,} reaches below the "
                                            f"target set {first:,}..{max_item:,}: nothing to keep")
    keep_ids = (max(first, oldest), fetch_from - 1)
    kept_rows = 0
    if keep_ids[0] <= keep_ids[1]:
        counted = warehouse.query(target, f'SELECT COUNT(*) AS KEPT FROM "{table}" WHERE ID BETWEEN ? AND ?',
                                  list(keep_ids))
        kept_rows = int(counted.iloc[0, 0])
    if kept_rows == 0:
        return full(max_item, n_items, f"incremental asked, but no row of {held} lies below the window, "
                                            f"in {first:,}..{fetch_from - 1:,}: nothing to keep")
    below_oldest = range(first, keep_ids[0])  # the target set reaches below what ITEMS holds
    recent = range(fetch_from, max_item + 1)
    return Plan(INCREMENTAL, max_item, first, tuple(part for part in (below_oldest, recent) if part),
                keep_ids=keep_ids, kept_rows=kept_rows, newest=newest)
