"""The peer for benchmarks/peer.py: Dagster's development_to_production example, on DuckDB.

Runs inside the Dagster virtual environment that benchmarks/peer.py makes (never the project's).
Modelled on dagster-io/dagster examples/development_to_production (assets/hacker_news_assets.py,
resources.py, definitions.py): the same three assets (items fetched from the HN API, comments and
stories filtered from them with pandas) and the same client calls, written here in our own words.
What differs, and why:

* A DuckDB IO manager (dagster-duckdb-pandas) in place of the Snowflake one: both sides of the
  benchmark write an embedded DuckDB file (PEER_DUCKDB), schema HACKER_NEWS.
* The API base is configurable (PEER_HN_URL), so both sides read the same `hnpipe serve-sample`.
* Ids that answer `null` are skipped: the example's `pd.DataFrame(rows, ...)` raises on a None
  row, and hnpipe skips them too, so both sides publish the same ids.
* PEER_FETCH=pooled fetches with 32 threads and one pooled requests.Session (the best
  hand-written variant); PEER_FETCH=sequential (default) is the example's loop, one
  `requests.get` per item.

    dagster asset materialize -f peer_dagster.py --select '*' --config-json '{"ops": {"items": {"config": {"N": 1000}}}}'
    python peer_dagster.py 1000      # the same assets through in-process dagster.materialize()
"""

from __future__ import annotations

import os
import sys
from concurrent.futures import ThreadPoolExecutor

import pandas as pd
import requests
from dagster import ConfigurableResource, Definitions, asset, materialize
from dagster_duckdb_pandas import DuckDBPandasIOManager

FIELDS = ["id", "parent", "time", "type", "by", "text", "kids", "score", "title", "descendants", "url"]
THREADS = 32


class HNAPIClient(ConfigurableResource):
    """The example's client (one requests.get per call), with the base URL configurable."""

    base_url: str

    def fetch_item_by_id(self, item_id: int):
        return requests.get(f"{self.base_url}/item/{item_id}.json", timeout=5).json()

    def fetch_max_item_id(self) -> int:
        return requests.get(f"{self.base_url}/maxitem.json", timeout=5).json()


def _pooled_session() -> requests.Session:
    # One session for all threads, its connection pool as large as the thread pool, so every
    # worker keeps its connection alive (what hnpipe's client does too).
    session = requests.Session()
    adapter = requests.adapters.HTTPAdapter(pool_connections=1, pool_maxsize=THREADS)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


@asset(config_schema={"N": int}, io_manager_key="warehouse_io_manager")
def items(context, hn_client: HNAPIClient) -> pd.DataFrame:
    """Items from the Hacker News API: each is a story or a comment on a story."""
    max_id = hn_client.fetch_max_item_id()
    ids = range(max_id - context.op_config["N"] + 1, max_id + 1)
    if os.environ.get("PEER_FETCH", "sequential") == "pooled":
        session = _pooled_session()

        def get(item_id: int):
            return session.get(f"{hn_client.base_url}/item/{item_id}.json", timeout=5).json()

        with session, ThreadPoolExecutor(THREADS) as pool:
            rows = list(pool.map(get, ids))
    else:
        rows = []
        for count, item_id in enumerate(ids, 1):
            rows.append(hn_client.fetch_item_by_id(item_id))
            if count % 50 == 0:
                context.log.info("Fetched 50 items.")
    rows = [row for row in rows if row is not None]
    result = pd.DataFrame(rows, columns=FIELDS).drop_duplicates(subset=["id"])
    return result.rename(columns={"by": "user_id"})


@asset(io_manager_key="warehouse_io_manager")
def comments(items: pd.DataFrame) -> pd.DataFrame:
    """Comments from the Hacker News API."""
    return items[items["type"] == "comment"]


@asset(io_manager_key="warehouse_io_manager")
def stories(items: pd.DataFrame) -> pd.DataFrame:
    """Stories from the Hacker News API."""
    return items[items["type"] == "story"]


RESOURCES = {
    "hn_client": HNAPIClient(base_url=os.environ.get("PEER_HN_URL", "http://127.0.0.1:8765/v0")),
    "warehouse_io_manager": DuckDBPandasIOManager(
        database=os.environ.get("PEER_DUCKDB", "peer.duckdb"), schema="HACKER_NEWS"),
}

defs = Definitions(assets=[items, comments, stories], resources=RESOURCES)


if __name__ == "__main__":
    result = materialize([items, comments, stories], resources=RESOURCES,
                         run_config={"ops": {"items": {"config": {"N": int(sys.argv[1])}}}})
    sys.exit(0 if result.success else 1)
