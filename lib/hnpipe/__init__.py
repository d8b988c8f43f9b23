"""hnpipe: Hacker News datasets built by parameterised notebooks, promoted safely.

Notebooks import this package and stay thin; every step lives in one module per concern:

    config        project root, .env loading, default paths
    environments  which environment runs, where it may write, the guards
    params        notebook parameter validation and params/*.yaml loading
    hn            the HN API client (real over HTTP, and a stub for tests)
    sample        the bundled HN sample and the HTTP server that serves it
    datasets      ITEMS, COMMENTS, STORIES: columns, SQL, dependency graph
    warehouse     the warehouse interface and the embedded DuckDB engine
    pipeline      what a notebook calls: validate, guard, fetch, publish, preview
    runner        runs the notebooks with papermill, in dependency order
    cli           the `hnpipe` command
"""

from hnpipe.errors import HnpipeError

__all__ = ["HnpipeError"]
__version__ = "0.1.0"
