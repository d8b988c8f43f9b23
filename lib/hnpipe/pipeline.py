"""What a notebook calls: check parameters and environment, fetch, publish, preview.

A pipeline notebook is a report around three calls:

    step = pipeline.start("ITEMS", globals())   # validate parameters, guard, open warehouse
    items = step.fetch()                          # ITEMS only: read the HN API (Arrow batches)
    step.publish(items)                           # or step.build() for SQL-defined datasets

With `refresh="incremental"` the same two calls fetch only the new ids and a window below
them and merge them into the published ITEMS (hnpipe.refresh); COMMENTS and STORIES are
built from ITEMS the same way either way.

`start` is where the environment is chosen, once: it refuses a run whose parameters and
process disagree before anything is fetched or written, and hands the warehouse a guard
that re-checks the connection's actual database.schema before every write.

Every publish passes the dataset's quality gates (`datasets.quality_gates`) on the staging
table first, keeps the table it replaces as a version (`keep_versions`, see hnpipe.versions)
and is followed by the table and column comments of the dataset's definition.

The Step records its outcome in the run history (hnpipe.history): `succeeded` once the table
is published, `failed` when fetch, publish or build raises, and alerts outside `hnpipe run`
(which alerts once for the whole run). Recording in the Step's own methods works however the
notebook runs (hnpipe run, papermill, JupyterLab, a script). An IPython post-run-cell hook was
considered and left out: it would also catch cells that only explore (explore.ipynb starts a
Step to read) and record a second row for a failure the Step already recorded. Failures
elsewhere in a notebook are recorded by `hnpipe run`, which sees papermill fail.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping, TypeVar

import pandas as pd

from hnpipe import alerts, budget, config, consistency, datasets, environments, history, params, reachability, refresh
from hnpipe.backfill import shard as backfill_shard
from hnpipe.environments import Target
from hnpipe.display import readable
from hnpipe.errors import GuardError, HnpipeError, WarehouseLockedError
from hnpipe.items import FetchedItems, ItemsBuilder
from hnpipe.run_context import RunContext
from hnpipe.sample import SampleServer
from hnpipe.runner import records
from hnpipe.stage import StagedItems, StagedPreview, open_stage
from hnpipe.warehouse import connect, reader
from hnpipe.warehouse.base import Gate, Warehouse

if TYPE_CHECKING:
    from hnpipe.refresh import Plan

log = logging.getLogger("hnpipe.pipeline")


# What a fetch depends on: a change to any of these after fetch_items makes its frame stale.
FETCH_PARAMETERS = ("environment", "n_items", "hn_api_url", "refresh", "refresh_window", "id_min", "id_max",
                    "backfill_id", "backfill_shard")
# What start() connected with: changing these needs a new start.
CONNECTION_PARAMETERS = ("environment", "snowflake_env")
T = TypeVar("T")
START_CELL = "the start cell (`step = pipeline.start(...)`)"
FETCH_CELL = "the fetch cell (`items = step.fetch()`)"


@dataclass
class _Fetch:
    """The latest complete fetch_items of a Step: what may be published."""

    fingerprint: str | None  # of the frame fetch_items returned; None after fetch()
    rows: int
    params: dict[str, Any]
    items: FetchedItems | None = None  # what fetch() returned: only that object may be published
    claim: Any = None  # a backfill shard's claim (hnpipe.backfill.shard), committed by publish


def _closes_session(method):
    """Close the warehouse's session when a Step method returns or raises: a Snowflake session
    lives for one step (the next step logs in again), so none is left open by a notebook or a
    run that stopped halfway."""
    @functools.wraps(method)
    def closing(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        finally:
            self.close()
    return closing


@dataclass
class Step:
    """One dataset's run in one environment, as a notebook sees it.

    In a notebook every step (fetch, publish, build, preview) re-reads the parameters from
    the notebook's globals (`namespace`) and validates them again, so what the notebook
    holds when the cell runs is what runs. Each run (a start, then after every published or
    failed step the next one) has its own run id, unless `hnpipe run` fixed it
    (HNPIPE_RUN_ID); its history row's duration is the time spent working, not idle time.
    """

    dataset: datasets.Dataset
    run: RunContext  # this run's environment, parameters, target and id (a new one per run)
    warehouse: Warehouse
    fetch_report: Any = field(default=None, repr=False)  # of the last complete fetch_items
    refresh: Plan | None = field(default=None, repr=False)  # the plan of the last complete fetch_items
    started: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    notebook: str = ""  # where the executed notebook is kept (history.notebook_location)
    failure_recorded: bool = field(default=False, repr=False)
    namespace: Mapping[str, Any] | None = field(default=None, repr=False)  # the notebook's globals
    declared: Mapping[str, params.Parameter] = field(default_factory=lambda: params.PARAMETERS, repr=False)
    _fetched: _Fetch | None = field(default=None, repr=False)
    _published_before: int | None = field(default=None, repr=False)  # ITEMS' rows before this publish
    _fetch_incomplete: bool = field(default=False, repr=False)  # a fetch began and did not finish
    _working: bool = field(default=False, repr=False)  # this run has begun its work
    _ended: bool = field(default=False, repr=False)  # this run published or failed
    _busy: float = field(default=0.0, repr=False)  # seconds of work in this run
    _shard_items: Any = field(default=None, repr=False)  # a committed backfill shard's files

    @property
    def env(self) -> str:
        return self.run.env

    @property
    def target(self) -> Target:
        return self.run.target

    @property
    def run_id(self) -> str:
        return self.run.run_id

    @run_id.setter
    def run_id(self, value: str) -> None:
        self.run = self.run.replace(run_id=value)

    @property
    def params(self) -> dict[str, Any]:
        return self.run.parameters

    @params.setter
    def params(self, values: Mapping[str, Any]) -> None:
        self.run = self.run.replace(values=values)

    def close(self) -> None:
        """End the warehouse session (Snowflake); the next step opens a new one."""
        self.warehouse.close()

    # -- what the notebook holds now -------------------------------------------------------
    def current_params(self) -> dict[str, Any]:
        """The parameters as the notebook holds them now, validated again (the same rules as
        at start); a change of environment or credentials needs a new start."""
        if self.namespace is None:
            return self.params
        values = params.from_namespace(self.namespace, self.declared)
        moved = [name for name in CONNECTION_PARAMETERS if values.get(name) != self.params.get(name)]
        if moved:
            change = ", ".join(f"{name} {self.params.get(name)!r} -> {values.get(name)!r}" for name in moved)
            raise GuardError(f"parameters changed since start ({change}): rerun {START_CELL}")
        changed = [name for name in values if values[name] != self.params.get(name)]
        if changed:
            print("using the parameters as they are now: "
                  + ", ".join(f"{name}={values[name]!r}" for name in changed))
        self.params = values
        return values

    def _begin(self) -> None:
        """Start this step's work: a new run id once the previous run has ended (notebooks
        only: `hnpipe run` fixes one id for the whole run)."""
        if self._ended and not config.run_id_is_given():
            self.run_id = config.start_run()
            self.failure_recorded = False
            print(f"{self.dataset.name}: new run {self.run_id}")
        if self._ended or not self._working:
            self._ended, self._working, self._busy = False, True, 0.0
            self.started = datetime.now(timezone.utc)
            self.warehouse.begin_run()  # a locked file may be waited for again, once

    @contextmanager
    def _work(self) -> Iterator[None]:
        """Time this step's work and record its first failure."""
        self._begin()
        began = time.perf_counter()
        try:
            yield
        except BaseException as exc:
            self._busy += time.perf_counter() - began
            consistency.unmark(getattr(self, "_replacing", None))  # even when the failure is not recorded
            self._record_failure(exc)
            raise
        else:
            self._busy += time.perf_counter() - began

    # -- ITEMS ---------------------------------------------------------------------------
    @_closes_session
    def fetch(self) -> FetchedItems:
        """The HN items this run fetches, streamed: Arrow record batches that `publish` loads
        into the staging table as they are (sorted by ID inside the warehouse), with no pandas
        frame on the way. `.head()` and `.to_frame()` give DataFrames when asked. The n_items
        most recent ids, or with `refresh="incremental"` only the new ids and the window
        (hnpipe.refresh); the plan is kept for `publish`, which then merges them."""
        values, (items, claim) = self._fetch_as(None, staged=True)
        self._fetched = _Fetch(None, len(items), {name: values[name] for name in FETCH_PARAMETERS}, items, claim)
        self._fetch_incomplete = False
        return items

    @_closes_session
    def fetch_items(self) -> pd.DataFrame:
        """Like `fetch`, as one ITEMS frame sorted by ID (for exploring: `fetch` publishes
        with less memory); `publish` takes the frame as it is or edited on purpose."""
        values, frame = self._fetch_as(ItemsBuilder.to_frame)
        if values["backfill_id"]:
            raise HnpipeError("a backfill shard fetches with step.fetch() (to the stage), not fetch_items()")
        self._fetched = _Fetch(frame_fingerprint(frame), len(frame),
                               {name: values[name] for name in FETCH_PARAMETERS})
        self._fetch_incomplete = False
        return frame

    def _fetch_as(self, result: Callable[[ItemsBuilder], T] | None, staged: bool = False) -> tuple[dict[str, Any], T]:
        """Fetch into an ItemsBuilder; the parameters used, and `result(builder)`. `staged`:
        the builder's batches go to Parquet files in the stage as they fill (memory stays
        flat) and the result is (StagedItems, the backfill shard's claim or None)."""
        values = self.current_params()
        previous, self._fetched, self._fetch_incomplete = self._fetched, None, True
        with self._work():
            if not _under_runner():  # others reading ITEMS meanwhile are told (hnpipe.consistency)
                self._replacing = consistency.mark_replacing(self.warehouse, self.target, self.dataset.name,
                                                             self.run_id)
            claim, writer = None, None
            if previous is not None and isinstance(previous.items, StagedItems):
                previous.items.discard()  # the previous fetch's files: only the latest may be published
            if staged:
                if values["backfill_id"]:
                    claim = backfill_shard.claim(self.warehouse, self.target, values, self.run_id)
                    stage, prefix = claim.stage, claim.prefix
                else:
                    stage, prefix = open_stage(self.warehouse, self.target), f"runs/{self.run_id}"
                    stage.prune("runs", older_than_s=24 * 3600)  # notebooks closed since, runs killed
                writer = stage.writer(prefix)
            builder = ItemsBuilder(on_batch=writer)
            # Imported here: the HN client (aiohttp, requests: ~0.2 s) is ITEMS' alone, and every
            # other notebook's kernel imports this module at start-up (hnpipe.runner.kernels).
            from hnpipe import hn

            with hn_base_url(values["hn_api_url"]) as base_url:
                bucket = budget.TokenBucket(values["max_requests_per_s"]) if values["max_requests_per_s"] else None
                client = hn.HttpHNClient(  # outside local runs only listed private hosts (not the sample: ours)
                    base_url, concurrency=values["concurrency"], request_deadline=values["request_deadline_s"],
                    max_answer_bytes=values["max_answer_mb"] << 20,
                    on_throttled=None if bucket is None else bucket.penalize,  # 429/5xx halve the budget
                    private_hosts=None if self.env == "local" or values["hn_api_url"] == "sample"
                    else values["hn_api_private_hosts"])
                with reachability.watch(base_url, values["request_deadline_s"]) as watcher:
                    max_item = client.max_item()
                    watcher.touch()
                    plan = refresh.plan(
                        self.warehouse, self.target, max_item=max_item, n_items=values["n_items"],
                        # A shard fetches its whole range: the merge, not the shard, replaces ITEMS.
                        mode=refresh.FULL if values["backfill_id"] else values["refresh"],
                        window=values["refresh_window"], table=self.dataset.name,
                        id_min=values["id_min"], id_max=values["id_max"],
                    )
                    print(plan.summary())
                    watcher.touch()

                    def add(*batch) -> None:
                        watcher.touch()
                        builder.add(*batch)

                    ids = plan.ids() if bucket is None else budget.Paced(plan.ids(), bucket)
                    report = client.fetch_items(ids, add)
            if staged:
                builder.finish()
                fetched = (StagedItems(writer.close(), writer.rows, stage, prefix), claim)
            else:
                fetched = result(builder)
        self.refresh, self.fetch_report = plan, report
        print(f"fetched {report.fetched:,} of {report.requested:,} ids in {report.seconds:.1f} s "
              f"({len(report.null_ids):,} answered null, {report.retries:,} retries)")
        return values, fetched

    def _check_publishable(self, frame: pd.DataFrame | FetchedItems, values: Mapping[str, Any],
                           edited: bool) -> None:
        """Refuse, in one line saying what to rerun, items this step did not just fetch."""
        if not isinstance(frame, (pd.DataFrame, FetchedItems)):
            raise HnpipeError(f"publish takes what fetch() or fetch_items() returned, not a {type(frame).__name__}")
        if self._fetch_incomplete:
            raise HnpipeError(f"refused to publish: the last fetch did not complete; rerun {FETCH_CELL}, "
                              "then this cell")
        fetched = self._fetched
        if fetched is None:
            if edited and isinstance(frame, pd.DataFrame):
                return
            raise HnpipeError(f"refused to publish: nothing fetched yet; run {FETCH_CELL} first (a frame "
                              "built elsewhere: step.publish(frame, edited=True))")
        changed = [name for name in FETCH_PARAMETERS if values[name] != fetched.params[name]]
        if changed:
            change = ", ".join(f"{name} {fetched.params[name]!r} -> {values[name]!r}" for name in changed)
            raise HnpipeError(f"refused to publish: parameters changed since the fetch ({change}); "
                              f"rerun {FETCH_CELL}, then this cell")
        if isinstance(frame, FetchedItems):
            stale = frame is not fetched.items  # Arrow batches cannot be edited: only the latest fetch
        else:  # after fetch(), its items.to_frame() unchanged may be published too
            stale = not edited and frame_fingerprint(frame) != self._fetched_fingerprint()
        if stale:
            raise HnpipeError(
                f"refused to publish: this {'frame' if isinstance(frame, pd.DataFrame) else 'fetch result'} "
                f"({len(frame):,} rows) is not what the last fetch returned "
                f"({fetched.rows:,} rows); rerun {FETCH_CELL}, or publish an edited frame on purpose "
                "with step.publish(frame, edited=True)")

    def _fetched_fingerprint(self) -> str | None:
        fetched = self._fetched
        if fetched is not None and fetched.fingerprint is None and fetched.items is not None:
            fetched.fingerprint = frame_fingerprint(fetched.items.to_frame())
        return fetched.fingerprint if fetched is not None else None

    @_closes_session
    def publish(self, frame: pd.DataFrame | FetchedItems, *, edited: bool = False) -> int:
        """Publish what fetch() (streamed, as Arrow batches) or fetch_items() (a frame)
        returned as this dataset: staging table, quality gates, atomic swap. After an
        incremental fetch, the fetched items are merged with the rows of the published table
        the plan keeps, inside the warehouse.

        It must be what this step's latest complete fetch returned, with the parameters
        unchanged since; `edited=True` allows a frame changed by hand (or built elsewhere),
        which the history row then says."""
        values = self.current_params()
        self._check_publishable(frame, values, edited)
        plan = self.refresh
        if self._fetched is not None and self._fetched.claim is not None:
            return self._commit_shard(frame)
        with self._work():
            self.warehouse.ensure_schema(self.target)
            if self.dataset.name == "ITEMS":  # what the shrink gate (or its allow_shrink note) compares with
                self._published_before = self.warehouse.list_tables(self.target).get(self.dataset.name)
            if plan is not None and plan.merges:
                # An incremental fetch is the window and the new ids: small, a frame is fine.
                rows = self.warehouse.publish_merge(
                    self.target, self.dataset.name,
                    frame.to_frame() if isinstance(frame, FetchedItems) else frame, self.run_id, plan.keep_ids,
                    gates=self.quality_gates(), keep_versions=values["keep_versions"],
                )
            elif isinstance(frame, StagedItems):
                try:
                    rows = frame.stage.publish(self.warehouse, self.dataset.name, frame.files, self.run_id,
                                               gates=self.quality_gates(), keep_versions=values["keep_versions"])
                finally:
                    if _under_runner():  # nothing reads them after the publish; in a notebook
                        frame.discard()  # `items` stays readable until the next fetch
            elif isinstance(frame, FetchedItems):
                rows = self.warehouse.publish_arrow(
                    self.target, self.dataset.name, frame.table, self.run_id, gates=self.quality_gates(),
                    keep_versions=values["keep_versions"],
                )
            else:
                rows = self.warehouse.publish_frame(
                    self.target, self.dataset.name, frame, self.run_id, gates=self.quality_gates(),
                    keep_versions=values["keep_versions"],
                )
            merged = f" ({plan.kept_rows:,} kept, {len(frame):,} fetched)" if plan is not None and plan.merges else ""
            print(f"published {rows:,} rows to {self.target}.{self.dataset.name}{merged}")
            self._document()
        notes = [f"published a frame edited by hand ({len(frame):,} rows)"
                 if edited and isinstance(frame, pd.DataFrame) and self._fetched is not None
                 and frame_fingerprint(frame) != self._fetched_fingerprint() else None, self._shrink_note(rows)]
        self._record_success(rows, detail="; ".join(note for note in notes if note) or None)
        return rows

    def _commit_shard(self, items: FetchedItems) -> int:
        """A backfill shard's publish: its manifest and `done` row (hnpipe.backfill.shard);
        ITEMS is left alone until `hnpipe backfill merge`."""
        # The lock-wait budget of a run starts at its first conflict (hnpipe.warehouse.duckdb_locks):
        # the shards of `backfill run --workers W` touch the ledger briefly at claim and commit, a
        # whole fetch apart, so the commit gets a budget of its own rather than the claim's leftover.
        self.warehouse.begin_run()
        # A shared stage's commit removes the local files: the preview cells' rows are read first.
        shown = StagedPreview(items) if isinstance(items, StagedItems) and items.stage.shared else items
        with self._work():
            line = backfill_shard.commit(self._fetched.claim, items.files, len(items), len(self.fetch_report.null_ids))
            print(line)
        self._record(history.SUCCEEDED, rows=len(items), detail=line, action="backfill-shard")
        self._fetched = None  # committed: a second publish would commit nothing new
        self._shard_items = shown  # what the preview cells show: ITEMS is not touched
        return len(items)

    # -- datasets defined in SQL -----------------------------------------------------------
    @_closes_session
    def build(self) -> int:
        """Build a SQL-defined dataset inside the warehouse from its upstream tables."""
        if self.dataset.sql is None:
            raise HnpipeError(f"{self.dataset.name} is not defined in SQL; use fetch_items()")
        values = self.current_params()
        with self._work():
            present = self.warehouse.list_tables(self.target)
            for upstream in self.dataset.upstream:
                if upstream not in present:
                    notebook = datasets.get(upstream).notebook
                    raise HnpipeError(
                        f"{upstream} is missing in {self.target}: run notebooks/{notebook} first "
                        f"(or `hnpipe run --env {self.env}`)"
                    )
            for upstream in self.dataset.upstream:  # which version it reads, and if it is changing
                print(f"from {consistency.version(self.warehouse, self.target, upstream).line()}")
                note = consistency.replacing_note(self.warehouse, self.target, upstream, self.run_id)
                if note:
                    print(note)
            self.warehouse.ensure_schema(self.target)
            rows = self.warehouse.publish_query(
                self.target, self.dataset.name, self.dataset.sql, self.run_id, gates=self.quality_gates(),
                keep_versions=values["keep_versions"],
            )
            print(f"built {rows:,} rows in {self.target}.{self.dataset.name}")
            self._document()
        self._record_success(rows)
        return rows

    def _document(self) -> None:
        """Table and column comments from the dataset's definition, after every publish.

        The data is published already: a failure here is a warning, and the next publish
        writes the comments again."""
        try:
            self.warehouse.comment_table(self.target, self.dataset.name, self.dataset.table_comment,
                                         self.dataset.column_descriptions)
        except HnpipeError as exc:
            log.warning("published %s but could not write its comments: %s", self.dataset.name, exc)
            print(f"warning: published, but could not write the comments of {self.target}.{self.dataset.name}")

    # -- the run history -------------------------------------------------------------------
    def _record(self, status: str, rows: int | None = None, error: str | None = None,
                detail: str | None = None, action: str | None = None) -> None:
        self._ended = True
        consistency.unmark(getattr(self, "_replacing", None))  # replaced, or failed to
        action = action or ("backfill-shard" if self.params.get("backfill_id") else "run")
        entry = history.RunRecord(
            self.run_id, action, self.dataset.name, self.env, status, started=self.started,
            finished=datetime.now(timezone.utc), rows=rows, parameters=self.params,
            notebook=self.notebook, error=error, detail=detail, seconds=self._busy,
        )
        if not history.record(self.warehouse, self.target, entry):
            print(f"warning: this run could not be recorded in {self.target}.{history.TABLE} (see the log)")

    def _record_success(self, rows: int, detail: str | None = None) -> None:
        self._record(history.SUCCEEDED, rows=rows, detail=detail)
        if not _under_runner():  # `hnpipe run` announces the whole run instead
            alerts.notify_success(self.env, self.dataset.name, self.run_id, f"{rows:,} rows")

    def _record_failure(self, exc: BaseException) -> None:
        """Record the first failure of this run's work (and alert, unless `hnpipe run` will)."""
        if not self.failure_recorded:
            self.failure_recorded = True
            error = history.error_line(exc)
            if isinstance(exc, WarehouseLockedError):
                # The file stayed locked for the whole wait: recording there would wait as long
                # again and repeat the lock sentence (as `hnpipe run` does, hnpipe.runner).
                log.info("the failure of %s is not in the run history: the warehouse file is locked",
                         self.dataset.name)
            else:
                self._record(history.FAILED, error=error)
            if not _under_runner():
                alerts.notify_failure(self.env, self.dataset.name, error, self.run_id, self.notebook)

    def quality_gates(self) -> tuple[Gate, ...]:
        """The gates this publish must pass; ITEMS' row count and id range come from the fetch
        report and the refresh plan (rows kept by an incremental run count too)."""
        report, plan = self.fetch_report, self.refresh
        n_items = self.params["n_items"]
        if plan is not None and self.params["id_min"] is not None:  # an id range: its span bounds the rows
            n_items = plan.max_item - plan.first_id + 1
        return datasets.quality_gates(
            self.dataset, n_items=n_items,
            null_ids=None if report is None else len(report.null_ids),
            fetched_ids=None if plan is None else plan.fetched_ids,
            kept_rows=plan.kept_rows if plan is not None and plan.merges else 0,
            id_range=None if plan is None else plan.id_range,
            previous_rows=self._previous_rows(), max_shrink=self.params["max_shrink"],
            largest_rows=None if self._previous_rows() is None else self._largest_of_late(),
            window_days=self.params["shrink_window_days"],
        )

    def _largest_of_late(self) -> int | None:
        """ITEMS' most rows over its kept versions and the last shrink_window_days of history,
        since the latest shrink allow_shrink let through (None: no gate)."""
        days = self.params["shrink_window_days"]
        if self.dataset.name != "ITEMS" or not self._published_before or not days:
            return None
        since = pd.Timestamp.now(tz="UTC") - pd.Timedelta(days=days)
        runs = history.read(self.warehouse, self.target, dataset="ITEMS", status=history.SUCCEEDED, limit=10_000)
        sizes: list[int] = []
        if {"STARTED_AT", "PARAMETERS", "ROWS_WRITTEN"} <= set(runs.columns):  # a reader may return none
            # As UTC whatever the engine returns (Snowflake may hand back naive timestamps).
            runs = runs.assign(STARTED_AT=pd.to_datetime(runs.STARTED_AT, utc=True))
            runs = runs[runs.STARTED_AT >= since]
            allowed = runs[runs.PARAMETERS.fillna("{}").map(lambda text: json.loads(text).get("allow_shrink") is True)]
            if len(allowed):  # a shrink made on purpose: its size is the new baseline
                since = max(since, allowed.STARTED_AT.max())
                runs = runs[runs.STARTED_AT >= since]
            sizes = [int(rows) for rows in runs.ROWS_WRITTEN.dropna()]
        sizes += [version.rows for version in self.warehouse.list_versions(self.target, "ITEMS")
                  if version.replaced_at is not None and version.replaced_at > since]
        return max(sizes, default=None)

    def _previous_rows(self) -> int | None:
        """ITEMS' rows as published now, for the shrink gate (None: no gate). COMMENTS and
        STORIES are gated to be exactly ITEMS' rows of their type, so ITEMS alone is compared."""
        if self.dataset.name != "ITEMS" or self.params["allow_shrink"]:
            return None
        return self._published_before

    def _shrink_note(self, rows: int) -> str | None:
        """For the history: a shrink past max_shrink that allow_shrink let through."""
        if self.dataset.name != "ITEMS" or not self.params["allow_shrink"]:
            return None
        before, largest = self._published_before, self._largest_of_late()
        if before and rows < before * (1 - self.params["max_shrink"]):
            return f"allow_shrink: ITEMS shrank from {before:,} to {rows:,} rows"
        if largest and rows < largest * (1 - self.params["max_shrink"]):
            return f"allow_shrink: ITEMS shrank to {rows:,} rows, from up to {largest:,} of late"
        return None

    # -- looking at the result -------------------------------------------------------------
    @_closes_session
    def read(self, name: str | None = None) -> pd.DataFrame:
        self.current_params()
        return read_published(self.warehouse, self.target, self.env, name or self.dataset.name)

    @_closes_session
    def counts_by_type(self, name: str | None = None) -> pd.DataFrame:
        """Rows per TYPE, counted inside the warehouse (a backfill shard: in its files)."""
        self.current_params()
        if self._shard_items is not None and name is None:
            return self._shard_items.counts_by_type()
        table = environments.check_identifier(name or self.dataset.name, "table")
        return self.warehouse.query(
            self.target, f'SELECT TYPE, COUNT(*) AS "ROWS" FROM {table} GROUP BY TYPE ORDER BY TYPE'
        )

    @_closes_session
    def preview(self, rows: int = 5) -> pd.DataFrame:
        """The first rows of the published table (a backfill shard: of its files), shown
        readably (hnpipe.display: the values are as stored)."""
        self.current_params()
        if self._shard_items is not None:
            return self._shard_items.head(rows)
        table = environments.check_identifier(self.dataset.name, "table")
        note = consistency.replacing_note(self.warehouse, self.target, self.dataset.name, self.run_id)
        if note:
            print(note)
        return readable(self.warehouse.query(self.target, f"SELECT * FROM {table} ORDER BY ID LIMIT {int(rows)}"))


def read_published(warehouse: Warehouse, target: Target, env: str, name: str) -> pd.DataFrame:
    """A published table; when it is not there yet, one line saying which notebook makes it."""
    if environments.check_identifier(name, "table") not in warehouse.list_tables(target):
        maker = datasets.get(name).notebook if name in datasets.DATASETS else None
        run = f"run notebooks/{maker} first, or " if maker else "run "
        raise HnpipeError(f"no {name} in {target} yet: {run}`hnpipe run --env {env}`")
    return warehouse.read_table(target, name)


@dataclass
class Explorer:
    """What explore.ipynb reads: an environment's published tables, through a reader that
    refuses every write (no guarded, writable Step just to look)."""

    env: str
    target: Target
    warehouse: Warehouse
    seen: dict = field(default_factory=dict)  # table -> consistency.Version read

    def read(self, name: str) -> pd.DataFrame:
        """A published table, saying which run published it and when, and warning when the
        tables read so far come from different runs or another run is replacing this one."""
        frame = read_published(self.warehouse, self.target, self.env, name)
        self.seen[name] = consistency.version(self.warehouse, self.target, name, len(frame))
        print(self.seen[name].line())
        for note in (consistency.replacing_note(self.warehouse, self.target, name),
                     consistency.mixed_runs_warning(self.seen)):
            if note:
                print(note)
        return frame


def explore(namespace: Mapping[str, Any]) -> Explorer:
    """Read-only access for exploring: the parameters cell (environment, snowflake_env) is
    validated and the environment guarded as at start, then only a reader is opened."""
    config.load_env()
    values = params.from_namespace(namespace)
    target = environments.resolve(values["environment"])
    warehouse = reader(values["environment"], "explore.ipynb", values)
    print(f"reading {target} on {warehouse.engine}, read-only")
    return Explorer(values["environment"], target, warehouse)


def frame_fingerprint(frame: pd.DataFrame) -> str:
    """A digest of a frame's columns, index and values (lists included): an edit anywhere
    changes it. About 0.1 s per 200,000 ITEMS rows."""
    import hashlib

    import pyarrow as pa
    import pyarrow.compute as pc

    digest = hashlib.blake2b(digest_size=16)
    digest.update(repr((list(frame.columns), len(frame))).encode())
    for name in frame.columns:
        column = frame[name]
        if isinstance(column.dtype, pd.ArrowDtype) and pa.types.is_list(column.dtype.pyarrow_dtype):
            array = pa.chunked_array(column.array._pa_array).combine_chunks()
            for part in (pc.list_value_length(array).fill_null(-1), array.flatten()):
                digest.update(part.to_numpy(zero_copy_only=False).tobytes())
        else:
            digest.update(pd.util.hash_pandas_object(column, index=False).to_numpy().tobytes())
    digest.update(pd.util.hash_pandas_object(frame.index.to_series(), index=False).to_numpy().tobytes())
    return digest.hexdigest()


@contextmanager
def hn_base_url(hn_api_url: str) -> Iterator[str]:
    """The API base to fetch from; 'sample' serves the bundled sample on loopback meanwhile."""
    if hn_api_url != "sample":
        yield hn_api_url.rstrip("/")
        return

    with SampleServer() as server:
        yield server.base_url


def _under_runner() -> bool:
    """Whether `hnpipe run` runs this notebook (it sets HNPIPE_NOTEBOOK_OUTPUT for each)."""
    return bool(os.environ.get("HNPIPE_NOTEBOOK_OUTPUT"))


def start(dataset: str, namespace: Mapping[str, Any]) -> Step:
    """Begin a notebook's run: validate its parameters, guard the environment, connect.

    `namespace` is the notebook's `globals()`: the parameters cell and anything papermill
    injected after it.
    """
    started = time.perf_counter()
    began = datetime.now(timezone.utc)
    config.load_env()
    records.refuse_rerun(os.environ.get("JPY_SESSION_NAME"))  # a kept record never runs again
    definition = datasets.get(dataset)
    # Each start is a run (under `hnpipe run`: the run's own id, for every notebook).
    run = RunContext.for_notebook(params.from_namespace(namespace))
    # The session ends with the check; each later step logs in again (a Snowflake session
    # lives for one step).
    with connect(run, definition.notebook) as warehouse:
        if run.env == "branch" and not warehouse.database_exists(run.target.database):
            pr = run.target.database.removeprefix(environments.CLONE_PREFIX)
            raise GuardError(
                f"refused branch run: {run.target.database} does not exist; run "
                f"`hnpipe admin clone --pr {pr}` first"
            )
    step = Step(definition, run, warehouse, started=began, notebook=history.notebook_location(namespace),
                namespace=namespace)
    print(f"{definition.name}: environment {run.env} -> {run.target} on {warehouse.engine}, "
          f"run {step.run_id} ({time.perf_counter() - started:.2f} s)")
    return step
