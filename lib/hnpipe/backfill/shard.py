"""One shard of a backfill, as items.ipynb runs it (`backfill_id` and `backfill_shard` set):
claim it in the ledger, fetch its id range into the stage, then commit it.

    step.fetch()    -> claim(): the ledger says which range; a done shard is refused (never
                       fetched again); a `running` row with this run's id and process is added;
                       the items go to backfill/<ID>/shard-<K>/<RUN_ID>/part-*.parquet
    step.publish()  -> commit(): manifest.json beside the files (with their columns: the merge
                       refuses files of another schema), then the `done` row (the commit
                       point). Refused when another run took the shard over meanwhile. On a
                       shared stage (Snowflake) the run's local copies are then removed.

On Snowflake each part is sent to HNPIPE_STAGE (PUT) as it is complete and the manifest last,
so a shard killed between its uploads and its `done` row leaves files no ledger row names:
the next attempt (a new run id, a new folder) removes them and fetches the range again, and
the merge reads only the manifest of the run the `done` row names.

Nothing is written to ITEMS: `hnpipe backfill merge` does that once, for every shard.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq

from hnpipe import config
from hnpipe.backfill.ledger import DONE, RUNNING, Ledger, Shard
from hnpipe.environments import Target
from hnpipe.errors import HnpipeError
from hnpipe.stage import STAGE_SCHEMA, Stage, file_digest, open_stage, schema_columns
from hnpipe.warehouse.base import Warehouse


def backfill_prefix(backfill_id: str) -> str:
    return f"backfill/{backfill_id}"


def shard_prefix(backfill_id: str, shard: int, run_id: str) -> str:
    return f"{backfill_prefix(backfill_id)}/shard-{shard:06d}/{run_id}"


@dataclass
class Claim:
    ledger: Ledger
    shard: Shard
    stage: Stage
    prefix: str
    run_id: str
    attempt: int


def claim(warehouse: Warehouse, target: Target, values: dict, run_id: str) -> Claim:
    """Take the shard for this run (see the module doc)."""
    ledger = Ledger(warehouse, target)
    backfill_id, number = values["backfill_id"], values["backfill_shard"]
    shard = ledger.shard(backfill_id, number)
    if (shard.id_min, shard.id_max) != (values["id_min"], values["id_max"]):
        raise HnpipeError(f"shard {number} of {backfill_id} is ids {shard.id_min}..{shard.id_max}, "
                          f"not id_min={values['id_min']} id_max={values['id_max']}")
    if shard.status == DONE:
        raise HnpipeError(f"shard {number} of {backfill_id} is done already ({shard.rows:,} rows, run "
                          f"{shard.run_id}): a done shard is never fetched again")
    stage = open_stage(warehouse, target)  # guarded like the tables
    if shard.run_id:  # an attempt killed or failed before its `done` row: its files are never read
        with contextlib.suppress(HnpipeError):  # best effort; the merge removes them too
            stage.remove(shard_prefix(backfill_id, number, shard.run_id))
    attempt = shard.attempts + 1
    ledger.event(shard, RUNNING, ATTEMPT=attempt, RUN_ID=run_id, HOST=socket.gethostname(), PID=os.getpid(),
                 GIT_SHA=config.git_sha())
    return Claim(ledger, shard, stage, shard_prefix(backfill_id, number, run_id), run_id, attempt)


def commit(claim: Claim, files: list[Path], rows: int, null_ids: int) -> str:
    """Manifest, then the `done` row; one line saying what was committed."""
    shard = claim.shard
    folder = claim.stage.path(backfill_prefix(shard.backfill_id))
    described = []
    for path in files:
        found = pq.ParquetFile(path)
        if not found.schema_arrow.equals(STAGE_SCHEMA):  # the manifest vouches for today's columns
            raise HnpipeError(f"shard {shard.shard}: {Path(path).name} holds other columns than ITEMS' files "
                              f"({found.schema_arrow.names}): not committed")
        meta = found.metadata
        ids = [meta.row_group(g).column(0).statistics for g in range(meta.num_row_groups)]
        described.append({"file": str(Path(path).relative_to(folder)), "rows": meta.num_rows,
                          "bytes": Path(path).stat().st_size, "sha256": file_digest(path),
                          "min_id": min((s.min for s in ids if s is not None), default=None),
                          "max_id": max((s.max for s in ids if s is not None), default=None)})
    if sum(entry["rows"] for entry in described) != rows:
        raise HnpipeError(f"shard {shard.shard}: the files hold {sum(e['rows'] for e in described):,} rows, "
                          f"the fetch gave {rows:,}")
    checksum = combined_checksum(entry["sha256"] for entry in described)
    manifest = {"backfill_id": shard.backfill_id, "shard": shard.shard, "id_min": shard.id_min,
                "id_max": shard.id_max, "rows": rows, "null_ids": null_ids, "files": described,
                "checksum": checksum, "run_id": claim.run_id, "git_sha": config.git_sha(),
                "schema": schema_columns()}
    claim.stage.write_manifest(claim.prefix, manifest)
    latest = claim.ledger.shard(shard.backfill_id, shard.shard)
    if latest.status != RUNNING or latest.run_id != claim.run_id:
        raise HnpipeError(f"shard {shard.shard} of {shard.backfill_id} was taken over by run {latest.run_id} "
                          f"({latest.status}) while this run {claim.run_id} fetched it: not committed")
    claim.ledger.event(shard, DONE, ATTEMPT=claim.attempt, ROWS=rows, NULL_IDS=null_ids,
                       FILES=json.dumps([entry["file"] for entry in described]),
                       BYTES=sum(entry["bytes"] for entry in described), CHECKSUM=checksum,
                       RUN_ID=claim.run_id, HOST=socket.gethostname(), PID=os.getpid(), GIT_SHA=config.git_sha())
    # Committed: the warehouse's stage has the files (shared), so the local copies go, this run's
    # only (else `backfill run --workers` keeps the whole backfill twice on the machine).
    claim.stage.drop_local(claim.prefix)
    return (f"committed shard {shard.shard} of {shard.backfill_id}: ids {shard.id_min:,}..{shard.id_max:,}, "
            f"{rows:,} rows ({null_ids:,} ids answered null) in {len(files)} file(s)")


def combined_checksum(digests) -> str:
    return hashlib.sha256("".join(digests).encode()).hexdigest()
