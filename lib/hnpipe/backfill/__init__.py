"""`hnpipe backfill`: any id range of the HN history, fetched in resumable shards and merged
into ITEMS atomically. See docs/backfill.md.

ledger  the BACKFILL_LEDGER table: the frozen plan and every shard's state
plan    `backfill plan`: freeze the range and its shards
shard   what items.ipynb does as a shard: claim, fetch to the stage, commit
run     `backfill run`: execute the pending shards' notebooks with papermill, W at once
merge   `backfill merge`: check the shards, load them into ITEMS, rebuild COMMENTS and STORIES
cli     the command group, and `backfill status`
"""
