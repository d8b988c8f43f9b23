"""The `hnpipe` command. Exit 0 on success; otherwise one line on stderr and exit 1."""

from __future__ import annotations

import argparse
import logging
import sys

from hnpipe.environments import ENVIRONMENTS
from hnpipe.errors import HnpipeError


def _run(args: argparse.Namespace) -> int:
    from hnpipe import params, runner

    overrides = dict(params.parse_override(p) for p in args.param)
    result = runner.run(args.env, overrides)
    print(result.summary())
    return 0


def _serve_sample(args: argparse.Namespace) -> int:
    from hnpipe import sample

    sample.serve(port=args.port, latency_ms=args.latency_ms, error_rate=args.error_rate)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hnpipe", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run the pipeline notebooks for an environment")
    run.add_argument("--env", required=True, choices=ENVIRONMENTS,
                     help="which params/<env>.yaml to run; must match HNPIPE_ENV")
    run.add_argument("-p", "--param", action="append", default=[], metavar="KEY=VALUE",
                     help="override a parameter, e.g. -p n_items=500")
    run.set_defaults(handler=_run)

    serve = commands.add_parser("serve-sample", help="serve the bundled HN sample over HTTP")
    serve.add_argument("--port", type=int, default=8765)
    serve.add_argument("--latency-ms", type=float, default=0.0, help="delay added to each answer")
    serve.add_argument("--error-rate", type=float, default=0.0, help="share of HTTP 500 answers")
    serve.set_defaults(handler=_serve_sample)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        from hnpipe.credentials import install_log_redaction

        install_log_redaction()
        return args.handler(args)
    except HnpipeError as error:
        print(f"hnpipe: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("hnpipe: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
