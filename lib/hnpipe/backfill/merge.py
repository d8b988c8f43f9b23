"""`hnpipe backfill merge`: every shard's files into ITEMS, atomically, then COMMENTS and STORIES.

It refuses, naming what is missing, unless every shard is done, the shards' ranges tile the
plan's range without gap or overlap, and each done shard's manifest is in the stage (the one
of the run the ledger's `done` row names: files of a killed attempt are never read), names
the files the ledger names (each one of that shard's run's parts, by name: nothing else in
the stage is loaded), says its files hold today's ITEMS columns (Snowflake's COPY ..
MATCH_BY_COLUMN_NAME would load a column older files lack as NULLs), and adds up (rows per
file summing to the ledger's rows, each file in the stage with the size written and, where the file is on this machine, its sha256).
On Snowflake the manifests are read with GET and the files listed with LIST from
HNPIPE_STAGE, so shards that ran on other CI runners merge (hnpipe.warehouse.snowflake_stage). Then the files are loaded into ITEMS' staging table inside the
warehouse (hnpipe.stage), ITEMS' gates run (every id within the plan's range, none twice,
exactly the rows the shards committed), the replaced ITEMS is kept as a version, the staging
table is swapped in, COMMENTS and STORIES are rebuilt by their notebooks (hnpipe.runner),
and the merge is recorded in the run history and closes the plan in the ledger.

Ids newer than the plan come afterwards with `refresh = "incremental"` and `id_min` set to
the plan's first id (its target set is then id_min..maxitem, see hnpipe.refresh).
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping

from hnpipe import config, datasets, history, runner
from hnpipe.backfill.ledger import DONE, MERGED, BackfillPlan, Ledger
from hnpipe.backfill.shard import backfill_prefix, combined_checksum, shard_prefix
from hnpipe.environments import Target
from hnpipe.errors import HnpipeError
from hnpipe.stage import Stage, file_digest, open_stage, schema_columns
from hnpipe.warehouse.base import Warehouse

MAX_NAMED = 10  # how many missing shards an error names before "and N more"
RUN_ID = re.compile(r"(?!\.{1,2}$)[A-Za-z0-9_.-]{1,128}")  # one plain stage folder name


def problems(plan: BackfillPlan, stage: Stage, verify_files: bool = True) -> list[str]:
    """What stops the merge, one phrase each; empty when it may go ahead."""
    found: list[str] = []
    not_done = [s for s in plan.shards.values() if s.status != DONE]
    if not_done:
        named = _named([f"{s.shard} ({s.status}{': ' + s.error if s.error else ''})" for s in not_done])
        found.append(f"{len(not_done)} of {len(plan.shards)} shards not done: {named}")
    expected = plan.id_min
    for shard in sorted(plan.shards.values(), key=lambda s: s.id_min):
        if shard.id_min != expected:
            kind = "gap" if shard.id_min > expected else "overlap"
            found.append(f"the shards do not tile {plan.id_min:,}..{plan.id_max:,}: {kind} at id {expected:,} "
                         f"(shard {shard.shard} starts at {shard.id_min:,})")
            break
        expected = shard.id_max + 1
    else:
        if expected != plan.id_max + 1:
            found.append(f"the shards end at {expected - 1:,}, the plan at {plan.id_max:,}")
    folder = backfill_prefix(plan.backfill_id)
    listed = stage.listing(folder)  # what the stage holds (on Snowflake: LIST, from any machine)
    other_schema: list[int] = []
    for shard in sorted(plan.shards.values(), key=lambda s: s.shard):
        if shard.status != DONE:
            continue
        where = f"shard {shard.shard} (run {shard.run_id})"
        if not RUN_ID.fullmatch(shard.run_id or ""):
            found.append(f"{where}: the ledger's run id {shard.run_id!r} is not a run id (letters, digits, _ . -)")
            continue
        manifest = stage.read_manifest(shard_prefix(plan.backfill_id, shard.shard, shard.run_id))
        if manifest is None:
            found.append(f"{where}: no manifest in the stage")
            continue
        if manifest.get("schema") != schema_columns():
            other_schema.append(shard.shard)
            continue
        entries = manifest.get("files", [])
        # The names go into the load (Snowflake's FILES list, DuckDB's paths): each must be one of
        # this shard's run's parts (hnpipe.stage's layout), nothing else in the stage.
        allowed = re.compile(rf"shard-{shard.shard:06d}/{re.escape(shard.run_id)}/part-\d{{6}}\.parquet")
        bad = next((name for name in [*shard.files, *(e.get("file") for e in entries)]
                    if not isinstance(name, str) or not allowed.fullmatch(name)), None)
        if bad is not None:
            found.append(f"{where}: file name {bad!r} is not shard-{shard.shard:06d}/{shard.run_id}/part-NNNNNN.parquet")
        elif [e["file"] for e in entries] != shard.files:
            found.append(f"{where}: the manifest names other files than the ledger")
        elif sum(e["rows"] for e in entries) != shard.rows or manifest.get("rows") != shard.rows:
            found.append(f"{where}: the manifest's rows do not add up to the ledger's {shard.rows:,}")
        elif combined_checksum(e["sha256"] for e in entries) != shard.checksum:
            found.append(f"{where}: the manifest's checksum is not the ledger's")
        elif manifest.get("null_ids") != shard.null_ids:
            found.append(f"{where}: the manifest's null ids are not the ledger's")
        else:
            for entry in entries:
                size = listed.get(entry["file"])
                local = stage.local_copy(folder, entry["file"]) if verify_files and size is not None else None
                if size is None:
                    found.append(f"{where}: file {entry['file']} is missing from the stage")
                elif size != entry["bytes"]:
                    found.append(f"{where}: file {entry['file']} changed since it was written ({size:,} bytes, "
                                 f"the manifest says {entry['bytes']:,})")
                elif local is not None and file_digest(local) != entry["sha256"]:
                    found.append(f"{where}: file {entry['file']} changed since it was written (sha256)")
    if other_schema:  # e.g. shards written before and after a column change: COPY would fill NULLs
        found.append(f"shard(s) {_named([str(n) for n in other_schema])} hold files whose columns are not "
                     "today's ITEMS columns (or their manifest does not say): plan the backfill again "
                     "(hnpipe backfill plan)")
    return found


def _named(names: list[str]) -> str:
    more = f" and {len(names) - MAX_NAMED} more" if len(names) > MAX_NAMED else ""
    return ", ".join(names[:MAX_NAMED]) + more


def merge(env: str, warehouse: Warehouse, target: Target, ledger: Ledger, keep_stage: bool = False,
          say=print) -> int:
    plan = ledger.load()
    if plan.merged:
        raise HnpipeError(f"backfill {plan.backfill_id} is merged already; plan a new one to backfill again")
    stage = open_stage(warehouse, target)
    found = problems(plan, stage)
    if found:
        raise HnpipeError(f"refused to merge backfill {plan.backfill_id}: " + "; ".join(found))
    folder = stage.path(backfill_prefix(plan.backfill_id))
    files = [folder / name for shard in sorted(plan.shards.values(), key=lambda s: s.id_min) for name in shard.files]
    rows = sum(shard.rows for shard in plan.shards.values())
    nulls = sum(shard.null_ids for shard in plan.shards.values())
    span = plan.id_max - plan.id_min + 1
    values: Mapping[str, Any] = plan.parameters
    dataset = datasets.get("ITEMS")
    previous = warehouse.list_tables(target).get("ITEMS")
    gates = datasets.quality_gates(
        dataset, n_items=span, null_ids=nulls, fetched_ids=span, id_range=(plan.id_min, plan.id_max),
        previous_rows=None if values.get("allow_shrink") else previous, max_shrink=values.get("max_shrink", 1.0))
    run_id = config.new_run_id()
    started = datetime.now(timezone.utc)
    say(f"merging backfill {plan.backfill_id}: {len(plan.shards)} shards, {rows:,} rows from {len(files)} files "
        f"into {target}.ITEMS")
    try:
        published = stage.publish(warehouse, "ITEMS", files, run_id, gates, values.get("keep_versions", 5))
    except HnpipeError as error:
        history.record(warehouse, target, history.RunRecord(
            run_id, "backfill", "ITEMS", env, history.FAILED, started=started, parameters=values,
            error=history.error_line(error), detail=f"merge of backfill {plan.backfill_id}"))
        raise
    warehouse.comment_table(target, "ITEMS", dataset.table_comment, dataset.column_descriptions)
    detail = (f"backfill {plan.backfill_id}: ids {plan.id_min:,}..{plan.id_max:,} in {len(plan.shards)} shards, "
              f"{nulls:,} ids answered null")
    history.record(warehouse, target, history.RunRecord(
        run_id, "backfill", "ITEMS", env, history.SUCCEEDED, started=started,
        finished=datetime.now(timezone.utc), rows=published, parameters=values, detail=detail))
    ledger.append({"BACKFILL_ID": plan.backfill_id, "SHARD": 0, "ID_MIN": plan.id_min, "ID_MAX": plan.id_max,
                   "STATUS": MERGED, "ROWS": published, "NULL_IDS": nulls, "RUN_ID": run_id,
                   "GIT_SHA": config.git_sha(), "RECORDED_AT": datetime.now(timezone.utc)})
    say(f"published {published:,} rows to {target}.ITEMS (the replaced ITEMS kept as a version)")
    if not keep_stage:  # every attempt's files, committed or not (killed attempts' too)
        stage.remove(backfill_prefix(plan.backfill_id))
    return published


def rebuild_downstream(env: str, plan_parameters: Mapping[str, Any], root: Path | None = None) -> str:
    """COMMENTS and STORIES from the merged ITEMS, by their notebooks (as `hnpipe run --only`)."""
    overrides = {k: v for k, v in plan_parameters.get("overrides", {}).items()
                 if k in ("keep_versions", "max_shrink", "allow_shrink", "snowflake_env")}
    downstream = [name for name in datasets.downstream("ITEMS")]
    return runner.run(env, overrides, root=root, only=downstream).summary()
