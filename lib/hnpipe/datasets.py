"""The datasets hnpipe builds, registered once: SQL, checks, notebooks and dependencies.

* ITEMS is built in Python from the HN API (hnpipe.items, see items.ipynb).
* COMMENTS and STORIES are computed inside the warehouse from ITEMS by their `sql`, a
  portable SELECT that DuckDB and Snowflake both accept.

Quality gates (`quality_gates`) run inside the warehouse on the staging table, before it
replaces the published one; any failure publishes nothing. Every dataset must have a unique,
non-null ID, a TYPE from the HN set and no TIME in the future (beyond `CLOCK_SKEW`); ITEMS
must hold between 1 and n_items rows, no fewer than the ids that answered (plus, after an
incremental refresh, the rows it kept) and only ids of the target set; COMMENTS and STORIES
must hold exactly the ITEMS rows of their TYPE, nothing else.
"""

from __future__ import annotations

import math

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Iterable

from hnpipe.errors import ParameterError
from hnpipe.warehouse.base import Gate

ITEMS_COLUMNS: tuple[str, ...] = (
    "ID", "DELETED", "TYPE", "USER_ID", "TIME", "TEXT", "DEAD", "PARENT", "POLL", "KIDS",
    "URL", "SCORE", "TITLE", "PARTS", "DESCENDANTS",
)

# From the HN API documentation (github.com/HackerNews/API), for table and column comments
# and the data catalog. No apostrophes: some SQL tools mangle quotes in comments.
COLUMN_DESCRIPTIONS: dict[str, str] = {
    "ID": "The unique id of the item (API field id).",
    "DELETED": "True if the item is deleted (false when the API omits it).",
    "TYPE": "One of story, comment, job, poll or pollopt.",
    "USER_ID": "The username of the author (API field by).",
    "TIME": "When the item was created, UTC.",
    "TEXT": "The comment, story or poll text, as HTML.",
    "DEAD": "True if the item is dead (false when the API omits it).",
    "PARENT": "For a comment: its parent, another comment or the story.",
    "POLL": "For a pollopt: the poll it belongs to.",
    "KIDS": "The ids of the comments on the item, in ranked display order.",
    "URL": "The URL of the story.",
    "SCORE": "The score of a story, or the votes for a pollopt.",
    "TITLE": "The title of the story, poll or job, as HTML.",
    "PARTS": "For a poll: its pollopts, in display order.",
    "DESCENDANTS": "For a story or poll: the total comment count.",
}
assert tuple(COLUMN_DESCRIPTIONS) == ITEMS_COLUMNS

HN_TYPES = ("story", "comment", "job", "poll", "pollopt")
# How far in the future a TIME may be before the gate refuses it: HN and runner clocks differ.
CLOCK_SKEW = timedelta(minutes=5)
SOURCE = "HN API"  # what ITEMS is built from, for the lineage


# -- datasets ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Dataset:
    """A table the pipeline publishes, and how it is built and checked."""

    name: str
    description: str
    upstream: tuple[str, ...]
    notebook: str  # file name in notebooks/
    sql: str | None  # SELECT computing it in the warehouse; None when built in Python
    gates: tuple[Gate, ...]  # the dataset's own checks; `quality_gates` adds the shared gates
    columns: tuple[str, ...] = ITEMS_COLUMNS
    item_type: str | None = None  # a dataset of ITEMS rows of one TYPE: which

    @property
    def column_descriptions(self) -> dict[str, str]:
        return {column: COLUMN_DESCRIPTIONS[column] for column in self.columns}

    @property
    def table_comment(self) -> str:
        """The description, where it comes from and what builds it: the table's COMMENT."""
        return (f"{self.description} Built from {', '.join(self.upstream) or SOURCE} "
                f"by notebooks/{self.notebook} (hnpipe).")


def _items_of_type(item_type: str) -> str:
    # Portable on purpose: explicit columns, unqualified ITEMS (it resolves in the target
    # schema), no ORDER BY (a table has no order; reads sort by ID).
    return f"SELECT {', '.join(ITEMS_COLUMNS)} FROM ITEMS WHERE TYPE = '{item_type}'"


def _only_type(item_type: str, check_name: str) -> Gate:
    return Gate(check_name, f"SELECT ID FROM {{table}} WHERE TYPE <> '{item_type}' OR TYPE IS NULL")


_ID_CHECKS = (
    Gate("id_not_null", "SELECT ID FROM {table} WHERE ID IS NULL"),
    Gate("id_unique", "SELECT ID FROM {table} GROUP BY ID HAVING COUNT(*) > 1"),
)

DATASETS: dict[str, Dataset] = {
    dataset.name: dataset
    for dataset in (
        Dataset(
            name="ITEMS",
            description="The N most recent HN items (ids maxitem-N+1 .. maxitem), one row per id.",
            upstream=(),
            notebook="items.ipynb",
            sql=None,
            gates=_ID_CHECKS,
        ),
        Dataset(
            name="COMMENTS",
            description="The comments among ITEMS: the rows whose TYPE is comment, same columns.",
            upstream=("ITEMS",),
            notebook="comments.ipynb",
            sql=_items_of_type("comment"),
            gates=(_only_type("comment", "only_comments"),),
            item_type="comment",
        ),
        Dataset(
            name="STORIES",
            description="The stories among ITEMS: the rows whose TYPE is story, same columns.",
            upstream=("ITEMS",),
            notebook="stories.ipynb",
            sql=_items_of_type("story"),
            gates=(_only_type("story", "only_stories"),),
            item_type="story",
        ),
    )
}


def quality_gates(
    dataset: Dataset, *, now: datetime | None = None, n_items: int | None = None,
    null_ids: int | None = None, fetched_ids: int | None = None, kept_rows: int = 0,
    id_range: tuple[int, int] | None = None, previous_rows: int | None = None, max_shrink: float = 1.0,
    largest_rows: int | None = None, window_days: int = 0,
) -> tuple[Gate, ...]:
    """Every gate `dataset` must pass on its staging table before it is published.

    The dataset's own checks first, then the shared ones, then its row count: for ITEMS
    between max(1, kept_rows + fetched_ids - null_ids) and n_items rows (`fetched_ids`: ids
    asked of the API, n_items unless given; `null_ids`: how many of them answered null, from
    the fetch report, when unknown the low end is max(1, kept_rows); `kept_rows`: rows an
    incremental refresh keeps from the published ITEMS, see hnpipe.refresh); with `id_range`
    (first, last), every ID within it; for a dataset of one TYPE, exactly the ids of ITEMS with
    that TYPE. `now` (UTC) bounds TIME, plus CLOCK_SKEW.
    """
    now = now or datetime.now(timezone.utc)
    latest = (now.astimezone(timezone.utc) + CLOCK_SKEW).replace(tzinfo=None, microsecond=0)
    types = ", ".join(f"'{kind}'" for kind in HN_TYPES)
    gates = [
        *dataset.gates,
        *_ID_CHECKS,
        Gate("type_known", f"SELECT ID FROM {{table}} WHERE TYPE IS NULL OR TYPE NOT IN ({types})",
              explain=f"TYPE must be one of {', '.join(HN_TYPES)}"),
        # Stored TIME is UTC wall time; the bound is written the same way.
        Gate("time_not_in_future",
              f"SELECT ID FROM {{table}} WHERE TIME > CAST('{latest:%Y-%m-%d %H:%M:%S}' AS TIMESTAMP)",
              explain=f"TIME must not be after {latest:%Y-%m-%d %H:%M:%S} UTC (now + {CLOCK_SKEW})"),
    ]
    if dataset.name == "ITEMS" and n_items is not None:
        high = int(n_items)
        asked = high if fetched_ids is None else int(fetched_ids)
        kept = int(kept_rows)
        low = max(1, kept) if null_ids is None else max(1, kept + asked - int(null_ids))
        answered_null = "unknown" if null_ids is None else f"{int(null_ids):,}"
        merged = f", {kept:,} rows kept from ITEMS, {asked:,} ids fetched" if kept else ""
        gates.append(Gate(
            "row_count",
            f"SELECT COUNT(*) AS ROWS_STAGED FROM {{table}} HAVING COUNT(*) < {low} OR COUNT(*) > {high}",
            explain=f"expected {low:,} to {high:,} rows: n_items {high:,}{merged}, ids answered null {answered_null}",
        ))
    if previous_rows and max_shrink < 1:
        # Against the table this publish replaces: a maxitem that dropped (a bad deploy, a wrong
        # URL) would otherwise pass every other gate with a fraction of the rows.
        minimum = math.ceil(int(previous_rows) * (1 - float(max_shrink)))
        gates.append(Gate(
            "no_shrink", f"SELECT COUNT(*) AS ROWS_STAGED FROM {{table}} HAVING COUNT(*) < {minimum}",
            explain=(f"{dataset.name} holds {int(previous_rows):,} rows and may shrink by at most "
                     f"{float(max_shrink):.0%} (max_shrink), to {minimum:,}; run with allow_shrink=true "
                     "if the shrink is meant"),
        ))
    if largest_rows and max_shrink < 1 and int(largest_rows) > int(previous_rows or 0):
        # Against its largest size of late: runs that each shrink it by less than max_shrink
        # would otherwise take ITEMS from 100 rows to 1 in seven steps.
        floor = math.ceil(int(largest_rows) * (1 - float(max_shrink)))
        gates.append(Gate(
            "no_shrink_over_time", f"SELECT COUNT(*) AS ROWS_STAGED FROM {{table}} HAVING COUNT(*) < {floor}",
            explain=(f"{dataset.name} held up to {int(largest_rows):,} rows (its kept versions and the last "
                     f"{int(window_days)} days of history, shrink_window_days) and may not fall below "
                     f"{1 - float(max_shrink):.0%} of that (1 - max_shrink), {floor:,}; run with "
                     "allow_shrink=true if the shrink is meant"),
        ))
    if dataset.name == "ITEMS" and id_range is not None:
        first, last = (int(value) for value in id_range)
        gates.append(Gate(
            "id_in_range", f"SELECT ID FROM {{table}} WHERE ID < {first} OR ID > {last}",
            explain=f"ID must be within {first}..{last}, the ids this run is about",
        ))
    if dataset.item_type is not None:
        of_type = f"SELECT ID FROM ITEMS WHERE TYPE = '{dataset.item_type}'"
        # ids staged but not in ITEMS with that TYPE, and ids of that TYPE missing from staging
        gates.append(Gate(
            "rows_match_items",
            f"(SELECT ID FROM {{table}} EXCEPT {of_type}) UNION ALL ({of_type} EXCEPT SELECT ID FROM {{table}})",
        ))
    unique: dict[str, Gate] = {}
    for gate in gates:
        unique.setdefault(gate.name, gate)
    return tuple(unique.values())


def lineage() -> list[tuple[str, str]]:
    """(upstream, dataset) edges, the HN API first: HN API -> ITEMS -> COMMENTS, STORIES."""
    edges = []
    for dataset in dependency_order():
        for upstream in dataset.upstream or (SOURCE,):
            edges.append((upstream, dataset.name))
    return edges


def get(name: object) -> Dataset:
    """The dataset called `name` (upper case, e.g. 'ITEMS')."""
    if not isinstance(name, str) or name not in DATASETS:
        raise ParameterError(f"unknown dataset {name!r}: choose one of {', '.join(DATASETS)}")
    return DATASETS[name]


def dependency_order(names: Iterable[str] | None = None) -> list[Dataset]:
    """The datasets (all, or just `names`) with every one after its upstream ones.

    Ties keep the order of DATASETS, so the order is stable. Upstream datasets are not
    added: `dependency_order(["STORIES"])` is just STORIES.
    """
    if isinstance(names, str):
        names = [names]
    wanted = list(DATASETS) if names is None else [get(name).name for name in names]
    done: list[str] = []
    remaining = [name for name in DATASETS if name in wanted]
    while remaining:
        # The first dataset whose (wanted) upstream are all done; DATASETS is acyclic.
        ready = next(
            name for name in remaining
            if all(up in done or up not in wanted for up in DATASETS[name].upstream)
        )
        done.append(ready)
        remaining.remove(ready)
    return [DATASETS[name] for name in done]


def downstream(name: str) -> list[str]:
    """Names of every dataset built from `name`, directly or not, in dependency order."""
    found = {get(name).name}
    for dataset in dependency_order():
        if found.intersection(dataset.upstream):
            found.add(dataset.name)
    found.discard(name)
    return [dataset.name for dataset in dependency_order() if dataset.name in found]
