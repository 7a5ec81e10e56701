"""The ``jaxembed`` command: ``prove`` and ``bench`` (more subcommands join as they land)."""

from __future__ import annotations

import argparse
import importlib
import inspect
import sys

# `jaxembed bench NAME` runs jaxembed.bench.<module>.run(); each benchmark owns its module.
BENCHMARKS = {
    "lookup": "jaxembed.bench.lookup",
}


def _prove(args: argparse.Namespace) -> int:
    from jaxembed.prove import run

    return run(profile=args.profile, pattern=args.k)


def _bench(args: argparse.Namespace) -> int:
    module = importlib.import_module(BENCHMARKS[args.name])
    accepted = inspect.signature(module.run).parameters
    options = {key: value for key, value in vars(args).items()
               if key in accepted and value is not None}
    module.run(**options)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="jaxembed", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    prove = commands.add_parser("prove", help="run the hypothesis proofs, print a summary")
    prove.add_argument("--profile", default="ci", choices=("ci", "thorough"),
                       help="hypothesis profile: ci (fast) or thorough (many examples)")
    prove.add_argument("-k", default=None, help="only proofs matching this pytest -k pattern")
    prove.set_defaults(handler=_prove)

    bench = commands.add_parser("bench", help="benchmarks against a peer, as ratios")
    bench.add_argument("name", choices=sorted(BENCHMARKS))
    bench.add_argument("--vocab", type=int, help="table rows V")
    bench.add_argument("--features", type=int, help="embedding size K")
    bench.add_argument("--batch", type=int, help="bags per batch B")
    bench.add_argument("--width", type=int, help="ids per bag L")
    bench.add_argument("--repeats", type=int, help="timed repetitions (median reported)")
    bench.set_defaults(handler=_bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
