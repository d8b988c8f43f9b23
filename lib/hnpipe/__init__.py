"""hnpipe: Hacker News datasets built by parameterised notebooks, promoted safely.

Notebooks import this package and stay thin: one module per concern, a folder per family of
parts. The module map is docs/development.md (tests/test_docs.py checks it against the tree).
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
