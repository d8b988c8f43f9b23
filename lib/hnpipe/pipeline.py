"""What a notebook calls: check parameters and environment, fetch, publish, preview.

A pipeline notebook is a report around three calls:

    step = pipeline.start("ITEMS", globals())   # validate parameters, guard, open warehouse
    items = step.fetch_items()                    # ITEMS only: read the HN API
    step.publish(items)                           # or step.build() for SQL-defined datasets

`start` is where the environment is chosen, once: it refuses a run whose parameters and
process disagree before anything is fetched or written, and hands the warehouse a guard
that re-checks the connection's actual database.schema before every write.
"""

from __future__ import annotations

import functools
import logging
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping

import pandas as pd

from hnpipe import config, datasets, environments, params
from hnpipe.environments import Target
from hnpipe.errors import GuardError, HnpipeError
from hnpipe.warehouse import Check, Warehouse, open_warehouse

log = logging.getLogger("hnpipe.pipeline")


@dataclass
class Step:
    """One dataset's run in one environment, as a notebook sees it."""

    dataset: datasets.Dataset
    params: dict[str, Any]
    env: str
    target: Target
    run_id: str
    warehouse: Warehouse
    fetch_report: Any = field(default=None, repr=False)

    # -- ITEMS ---------------------------------------------------------------------------
    def fetch_items(self) -> pd.DataFrame:
        """The n_items most recent HN items as the ITEMS frame."""
        from hnpipe import hn

        builder = datasets.ItemsBuilder()
        with hn_base_url(self.params["hn_api_url"]) as base_url:
            client = hn.HttpHNClient(base_url, concurrency=self.params["concurrency"])
            self.fetch_report = hn.fetch_latest(client, self.params["n_items"], builder.add)
        report = self.fetch_report
        print(f"fetched {report.fetched:,} of {report.requested:,} ids in {report.seconds:.1f} s "
              f"({len(report.null_ids):,} answered null, {report.retries:,} retries)")
        return builder.to_frame()

    def publish(self, frame: pd.DataFrame) -> int:
        """Publish `frame` as this dataset: staging table, quality gates, atomic swap."""
        self.warehouse.ensure_schema(self.target)
        rows = self.warehouse.publish_frame(
            self.target, self.dataset.name, frame, self.run_id, checks=self.quality_checks()
        )
        print(f"published {rows:,} rows to {self.target}.{self.dataset.name}")
        return rows

    # -- datasets defined in SQL -----------------------------------------------------------
    def build(self) -> int:
        """Build a SQL-defined dataset inside the warehouse from its upstream tables."""
        if self.dataset.sql is None:
            raise HnpipeError(f"{self.dataset.name} is not defined in SQL; use fetch_items()")
        present = self.warehouse.list_tables(self.target)
        for upstream in self.dataset.upstream:
            if upstream not in present:
                notebook = datasets.get(upstream).notebook
                raise HnpipeError(
                    f"{upstream} is missing in {self.target}: run notebooks/{notebook} first "
                    f"(or `hnpipe run --env {self.env}`)"
                )
        self.warehouse.ensure_schema(self.target)
        rows = self.warehouse.publish_query(
            self.target, self.dataset.name, self.dataset.sql, self.run_id, checks=self.quality_checks()
        )
        print(f"built {rows:,} rows in {self.target}.{self.dataset.name}")
        return rows

    def quality_checks(self) -> tuple[Check, ...]:
        """The gates this publish must pass; ITEMS' row count comes from the fetch report."""
        report = self.fetch_report
        return datasets.quality_checks(
            self.dataset, n_items=self.params["n_items"],
            null_ids=None if report is None else len(report.null_ids),
        )

    # -- looking at the result -------------------------------------------------------------
    def read(self, name: str | None = None) -> pd.DataFrame:
        return self.warehouse.read_table(self.target, name or self.dataset.name)

    def counts_by_type(self, name: str | None = None) -> pd.DataFrame:
        """Rows per TYPE, counted inside the warehouse."""
        table = environments.check_identifier(name or self.dataset.name, "table")
        return self.warehouse.query(
            self.target, f'SELECT TYPE, COUNT(*) AS "ROWS" FROM {table} GROUP BY TYPE ORDER BY TYPE'
        )

    def preview(self, rows: int = 5) -> pd.DataFrame:
        """The first rows of the published table."""
        table = environments.check_identifier(self.dataset.name, "table")
        return self.warehouse.query(self.target, f"SELECT * FROM {table} ORDER BY ID LIMIT {int(rows)}")


@contextmanager
def hn_base_url(hn_api_url: str) -> Iterator[str]:
    """The API base to fetch from; 'sample' serves the bundled sample on loopback meanwhile."""
    if hn_api_url != "sample":
        yield hn_api_url.rstrip("/")
        return
    from hnpipe.sample import SampleServer

    with SampleServer() as server:
        yield server.base_url


def connect(env: str, values: Mapping[str, Any], notebook: str = "") -> Warehouse:
    """The warehouse for `env`, with the write guard and (on Snowflake) the query tag."""
    spec = environments.warehouse_spec(env)
    guard = functools.partial(environments.check_write, env)
    if spec == "snowflake":
        tag = {"env": env, "notebook": notebook, "run_id": config.current_run_id(),
               "git_sha": config.git_sha()}
        return open_warehouse(spec, write_guard=guard, env_names=values.get("snowflake_env") or None,
                              query_tag=tag)
    return open_warehouse(spec, write_guard=guard)


def start(dataset: str, namespace: Mapping[str, Any]) -> Step:
    """Begin a notebook's run: validate its parameters, guard the environment, connect.

    `namespace` is the notebook's `globals()`: the parameters cell and anything papermill
    injected after it.
    """
    started = time.perf_counter()
    config.load_env()
    definition = datasets.get(dataset)
    values = params.from_namespace(namespace)
    target = environments.resolve(values["environment"])
    env = values["environment"]
    warehouse = connect(env, values, definition.notebook)
    if env == "branch" and not warehouse.database_exists(target.database):
        pr = target.database.removeprefix(environments.CLONE_PREFIX)
        raise GuardError(
            f"refused branch run: {target.database} does not exist; run "
            f"`hnpipe admin clone --pr {pr}` first"
        )
    step = Step(definition, values, env, target, config.current_run_id(), warehouse)
    print(f"{definition.name}: environment {env} -> {target} on {warehouse.engine}, "
          f"run {step.run_id} ({time.perf_counter() - started:.2f} s)")
    return step
