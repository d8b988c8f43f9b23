"""`hnpipe serve-sample`: HN items on loopback, for tests, benchmarks and fault drills.

    hnpipe serve-sample                               # the bundled sample on :8765
    hnpipe serve-sample --ids 20000 --latency-ms 25   # 20,000 generated ids, 25 ms per answer
    hnpipe serve-sample --port 0 --http-500 0.1 --http-429 0.05 --timeouts 0.05 \\
        --drops 0.02 --truncations 0.02 --timeout-sleep-s 12    # a flaky API
    hnpipe serve-sample --port 0 --trickles 1 --trickle-interval-s 5  # 200, then a byte every 5 s
    hnpipe serve-sample --port 0 --endless 1          # hostile: a body that never ends
    hnpipe serve-sample --port 0 --gzip-bombs 1 --bomb-mb 1024  # 2 KB that gunzip twice to 1 GiB

Fault rates are shares of requests (0..1, drawn from --fault-seed); `--port 0` picks a free
port. The first line printed names the base URL to pass as `-p hn_api_url=...`.
"""

from __future__ import annotations

import argparse

from hnpipe import sample
from hnpipe.sample.server import check_latency, check_port
from hnpipe.errors import ParameterError

MAX_GENERATED_IDS = 5_000_000  # the most n_items a run may ask for (params.MAX_ITEMS)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--port", type=int, default=8765, help="0 picks a free port")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--ids", type=int, metavar="N",
                        help="serve N generated ids (sample.generate_sample) instead of the "
                             "bundled sample")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="delay added to each answer")
    faults = parser.add_argument_group("injected faults (share of requests, 0..1)")
    faults.add_argument("--http-500", "--error-rate", dest="http_500", type=float, default=0.0,
                        metavar="RATE", help="answer 500 Internal Server Error")
    faults.add_argument("--http-429", type=float, default=0.0, metavar="RATE",
                        help="answer 429 Too Many Requests with Retry-After")
    faults.add_argument("--timeouts", type=float, default=0.0, metavar="RATE",
                        help="answer only after --timeout-sleep-s (beyond the client's read timeout)")
    faults.add_argument("--drops", type=float, default=0.0, metavar="RATE",
                        help="close the connection without answering")
    faults.add_argument("--truncations", type=float, default=0.0, metavar="RATE",
                        help="send half the promised body, then close")
    faults.add_argument("--trickles", type=float, default=0.0, metavar="RATE",
                        help="answer 200 at once, then the body one byte every --trickle-interval-s")
    faults.add_argument("--endless", type=float, default=0.0, metavar="RATE",
                        help="answer 200 without a length, then a body that never ends")
    faults.add_argument("--huge-lengths", type=float, default=0.0, metavar="RATE",
                        help="answer 200 with Content-Length 2 GiB, then a body as fast as it is read")
    faults.add_argument("--gzip-bombs", type=float, default=0.0, metavar="RATE",
                        help="answer an item gzipped twice that expands to --bomb-mb MiB")
    faults.add_argument("--deep", type=float, default=0.0, metavar="RATE",
                        help="answer an item whose kids are nested --deep-levels lists deep")
    faults.add_argument("--bomb-mb", type=int, default=1024, metavar="MB",
                        help="what a gzip bomb expands to, in MiB (default 1024)")
    faults.add_argument("--deep-levels", type=int, default=100_000, metavar="N",
                        help="how deep a deep item nests (default 100,000)")
    faults.add_argument("--trickle-interval-s", type=float, default=5.0, metavar="S",
                        help="seconds between the bytes of a trickled answer (default 5)")
    faults.add_argument("--retry-after-s", type=int, default=1, metavar="S",
                        help="the Retry-After of 429 answers (default 1)")
    faults.add_argument("--timeout-sleep-s", type=float, default=12.0, metavar="S",
                        help="how long a timeout answer waits (default 12, past the client's 10 s)")
    faults.add_argument("--fault-seed", type=int, default=0, metavar="N",
                        help="seed for which requests fail (default 0)")


def main(args: argparse.Namespace) -> int:
    # Everything is checked before generating items, which takes a while for large N.
    faults = sample.Faults(
        http_500=args.http_500, http_429=args.http_429, timeout=args.timeouts, drop=args.drops,
        truncate=args.truncations, trickle=args.trickles, endless=args.endless,
        huge_length=args.huge_lengths, gzip_bomb=args.gzip_bombs, deep=args.deep, bomb_mb=args.bomb_mb,
        deep_levels=args.deep_levels, retry_after_s=args.retry_after_s,
        timeout_sleep_s=args.timeout_sleep_s, trickle_interval_s=args.trickle_interval_s, seed=args.fault_seed)
    check_port(args.port)
    check_latency(args.latency_ms)
    if args.ids is not None and not 1 <= args.ids <= MAX_GENERATED_IDS:
        raise ParameterError(f"--ids {args.ids} is out of range: use 1..{MAX_GENERATED_IDS:,}")
    items = None if args.ids is None else sample.generate_sample(n_ids=args.ids)
    sample.serve(port=args.port, latency_ms=args.latency_ms, host=args.host, items=items,
                 faults=faults)
    return 0
