"""hnpipe: Hacker News datasets built by parameterised notebooks, promoted safely.

Notebooks import this package and stay thin. Flat where a module is one concern, a folder
per family of parts (imports only point down this list; tests/test_structure.py checks it):

    errors               the errors hnpipe raises on purpose, and `one_line`
    config               project root, .env loading, default paths, the run-id format
    environments         which environment runs, where it may write, the guards, identifiers
    credentials          secrets from the environment or .env, and their redaction
    params               notebook parameters: validation, params/<env>.yaml (`params_for`)
    hn_url               where the HN client may go: API URL and host policy, URLs shown safely
    datasets             the registry: ITEMS, COMMENTS, STORIES, their columns, SQL, gates, graph
    items                the ITEMS frame builder (raw HN items -> Arrow -> pandas)
    hn                   the HN API client (real over HTTP, and a stub for tests)
    sample/              the bundled HN sample (data), its loopback server, `hnpipe serve-sample`
    warehouse/           the interface and shared rules (base), pandas <-> Arrow (frames),
                         the DuckDB and Snowflake engines; `connect` / `reader` for an environment
    alerts               Slack alerts when a run fails
    history              PIPELINE_RUNS, the run history (`hnpipe history`)
    refresh              incremental refresh: which ids to re-fetch, and the merge
    progress             progress bars: HTML in notebooks, tqdm in terminals, lines in logs
    pipeline             what a notebook calls: validate, guard, fetch, publish, preview
    notebook_errors      inside a notebook kernel: hnpipe errors shown short
    runner/              `hnpipe run`: the notebooks with papermill, in dependency order
                         (__init__), its kernels started ahead of need (kernels), and
                         `--dry-run`'s checklist (preflight)
    ops/                 commands around the pipeline that build no data: admin (branch
                         clones, handover), changes, diff, catalog (`hnpipe docs`), handover
                         (`hnpipe sql`), versions (`hnpipe versions`, `hnpipe restore`)
    cli                  the `hnpipe` command
"""

from hnpipe.errors import HnpipeError

__all__ = ["HnpipeError"]
__version__ = "0.1.0"


def _in_a_kernel() -> None:
    """In a Jupyter kernel, show hnpipe errors short (hnpipe.notebook_errors); elsewhere nothing."""
    import sys

    if "ipykernel" in sys.modules:
        # Imported only inside a kernel: elsewhere (the CLI, scripts) it has nothing to do.
        from hnpipe import notebook_errors

        notebook_errors.install()


_in_a_kernel()
