"""`hnpipe restore TABLE --run RUN_ID`: put back a kept version (see hnpipe.versions)."""

from __future__ import annotations

from hnpipe import versions


def add_arguments(parser) -> None:
    parser.add_argument("table", help="a dataset, e.g. ITEMS")
    parser.add_argument("--run", required=True, metavar="RUN_ID",
                        help="the run whose replacement to undo: the RUN column of `hnpipe versions TABLE`")


def main(args) -> int:
    print(versions.restore(args.table, args.run).to_text())
    return 0
