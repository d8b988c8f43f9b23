"""hnpipe: Hacker News datasets built by parameterised notebooks, promoted safely.

Notebooks import this package and stay thin; every step lives in one module per concern:

    config               project root, .env loading, default paths, run ids
    environments         which environment runs, where it may write, the guards
    params               notebook parameter validation and params/*.yaml loading
    credentials          secrets from the environment or .env, and their redaction
    hn                   the HN API client (real over HTTP, and a stub for tests)
    sample, sample_cli   the bundled HN sample, the HTTP server that serves it
    datasets             ITEMS, COMMENTS, STORIES: columns, SQL, checks, dependency graph
    warehouse            the warehouse interface and the embedded DuckDB engine
    snowflake_warehouse  the same interface on Snowflake
    pipeline             what a notebook calls: validate, guard, fetch, publish, preview
    kernel, progress     in a notebook kernel: short errors; progress bars everywhere
    refresh              incremental refresh: which ids to re-fetch, and the merge
    runner               `hnpipe run`: the notebooks with papermill, in dependency order
    admin                `hnpipe admin`: per-pull-request clones of PRODUCTION
    changes, diff        `hnpipe changes` and `hnpipe diff`: what a branch changes
    history              PIPELINE_RUNS, the run history (`hnpipe history`)
    versions, restore    kept table versions (`hnpipe versions`, `hnpipe restore`)
    alerts               Slack alerts when a run fails
    catalog              `hnpipe docs`: the HTML data catalog
    handover             `hnpipe sql` and the production lockdown for IT
    cli                  the `hnpipe` command
"""

from hnpipe.errors import HnpipeError

__all__ = ["HnpipeError"]
__version__ = "0.1.0"


def _in_a_kernel() -> None:
    """In a Jupyter kernel, show hnpipe errors short (hnpipe.kernel); elsewhere nothing."""
    import sys

    if "ipykernel" in sys.modules:
        from hnpipe import kernel

        kernel.install()


_in_a_kernel()
