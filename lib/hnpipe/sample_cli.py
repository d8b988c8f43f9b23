"""`hnpipe serve-sample`: the bundled HN sample on loopback, for tests and benchmarks."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--latency-ms", type=float, default=0.0, help="delay added to each answer")
    parser.add_argument("--error-rate", type=float, default=0.0, help="share of HTTP 500 answers")


def main(args: argparse.Namespace) -> int:
    from hnpipe import sample

    sample.serve(port=args.port, latency_ms=args.latency_ms, error_rate=args.error_rate)
    return 0
