"""jaxembed: embeddings in JAX with the math proven.

'jaxembed COMMAND --help' shows a command's options, each with its default, and a sample
input to try it on. Every command checks its options and input files before any work; a
user error exits with status 2 and one line 'jaxembed COMMAND: what is wrong'. --debug (or
JAXEMBED_DEBUG=1) shows the traceback instead. docs/cli.md states the whole contract.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import os
import sys
from pathlib import Path

from jaxembed._cache import use_compilation_cache
from jaxembed.commands import _args
from jaxembed.commands.ctr import add_ctr_parsers
from jaxembed.commands.graph_text import add_node2vec_parser, add_word2vec_parser
from jaxembed.commands.join import add_join_parser
from jaxembed.commands.search import add_index_parser, add_search_parser
from jaxembed.commands.serving import add_export_parser
from jaxembed.commands.update import add_update_parser

# `jaxembed bench NAME` runs jaxembed.bench.<module>.run(); each benchmark owns its module.
BENCHMARKS = {
    "encoding": "jaxembed.bench.encoding",
    "encoding-csv": "jaxembed.bench.encoding_csv",
    "fit-mesh": "jaxembed.bench.fit_mesh",
    "graph": "jaxembed.bench.graph",
    "job": "jaxembed.bench.job",
    "join": "jaxembed.bench.join",
    "lookup": "jaxembed.bench.lookup",
    "models": "jaxembed.bench.models",
    "online": "jaxembed.bench.online",
    "retrieval": "jaxembed.bench.retrieval",
    "serving": "jaxembed.bench.serving",
    "sharding": "jaxembed.bench.sharding",
    "sparse-step": "jaxembed.bench.sparse_step",
    "train": "jaxembed.bench.train",
    "word2vec": "jaxembed.bench.word2vec",
}


def _prove(args: argparse.Namespace) -> int:
    from jaxembed.prove import run

    return run(profile=args.profile, pattern=args.k)


def _check_prove(args: argparse.Namespace) -> None:
    from jaxembed.prove import matching_proofs, proofs_dir

    proofs_dir()  # raises FileNotFoundError (one line) outside a source checkout
    if args.k is not None and not matching_proofs(args.k):
        raise _args.UsageError(f"-k {args.k!r} matches no proof file or proof name "
                               "(e.g. -k lookup, -k 'ftrl or bags')")


# ---------------------------------------------------------------------------- train
TRAIN_SIZES = ("train_size", "eval_size", "online_size")
MESH_OPTIONS = {"shard_kind": "row", "shard_strategy": "mod", "route": "all_gather"}


def _check_train(args: argparse.Namespace) -> None:
    """The ``train`` checks argparse cannot express: option combinations, the --data files'
    format, the checkpoint --resume needs, and the devices --mesh needs."""
    defaults = _job_defaults()
    if args.data:
        given = [f"--{name.replace('_', '-')}" for name in TRAIN_SIZES
                 if getattr(args, name) is not None]
        if given:
            raise _args.UsageError(f"{', '.join(given)} sizes the generated data; with --data "
                                   "the files decide the sizes (drop one or the other)")
        if len(args.data) > 2:
            raise _args.UsageError(f"--data takes one log (split by time) or two (offline, "
                                   f"online), got {len(args.data)} files")
        for path in args.data:
            _check_search_log(path)
    for name in TRAIN_SIZES:
        if getattr(args, name) is None:
            setattr(args, name, defaults[name])
    if args.mesh is None:
        given = [f"--{name.replace('_', '-')}" for name in MESH_OPTIONS
                 if getattr(args, name) is not None]
        if given:
            raise _args.UsageError(f"{', '.join(given)} only applies with --mesh")
    for name, default in MESH_OPTIONS.items():
        if getattr(args, name) is None:
            setattr(args, name, default)
    folder = Path(args.out) / "offline" / "checkpoints"
    saved = sorted(p.name for p in folder.iterdir() if p.name.isdigit()) if (
        folder.is_dir()) else []
    if args.resume and not saved:
        raise _args.UsageError(f"--resume: no checkpoint in {str(folder)!r} to continue "
                               "from (drop --resume to start a new run there)")
    if not args.resume and (Path(args.out) / "offline" / "model.json").is_file():
        # a fresh run would not replace them (orbax keeps the newer steps) yet report them
        raise _args.UsageError(
            f"--out {args.out!r} holds the offline run of an earlier job ({len(saved)} "
            f"checkpoints); add --resume to continue it, or give another --out")
    if args.mesh:
        _check_mesh_devices(args.mesh)


def _check_search_log(path: str) -> None:
    """Sniff a --data file: a CSV's header row, a Parquet file's magic bytes."""
    if path.endswith(".csv"):
        import csv

        from jaxembed.data.search_log_io import CSV_COLUMNS, _header_message

        _args.text_file(path)
        with open(path, newline="", encoding="utf-8", errors="replace") as handle:
            header = next(csv.reader(handle), None)
        if header != list(CSV_COLUMNS):
            raise _args.UsageError(f"--data {_header_message(path, header)}")
    elif path.endswith(".parquet"):
        with open(path, "rb") as handle:
            magic = handle.read(4)
        if magic != b"PAR1":
            raise _args.UsageError(f"--data {path!r} is not a Parquet file (it does not start "
                                   "with the bytes PAR1)")
    else:
        raise _args.UsageError(f"--data {path!r}: expected a .csv or .parquet search log")


def _check_mesh_devices(shape: str) -> None:
    """Give the CPU backend as many (virtual) devices as ``--mesh`` needs, then check that
    the backend has them (a GPU host has as many as it has)."""
    import numpy as np

    needed = int(np.prod([int(part) for part in shape.split("x")]))
    flag = "--xla_force_host_platform_device_count"
    flags = os.environ.get("XLA_FLAGS", "")
    if flag not in flags:
        # only the host platform reads the flag; it must be set before jax starts a backend
        os.environ["XLA_FLAGS"] = f"{flags} {flag}={needed}".strip()
    import jax

    devices = jax.devices()
    if needed > len(devices):
        raise _args.UsageError(f"--mesh {shape} needs {needed} devices, the "
                               f"{devices[0].platform} backend has {len(devices)}")


def _train(args: argparse.Namespace) -> int:
    from jaxembed.stream.replay import StreamConfig
    from jaxembed.train import job

    defaults = job.JobConfig()
    mesh = None
    if args.mesh:
        from jaxembed.train.field_sharding import MeshSpec

        mesh = MeshSpec(args.mesh, kind=args.shard_kind, strategy=args.shard_strategy,
                        route=args.route)
    config = job.JobConfig(
        mesh=mesh,
        train_size=args.train_size, eval_size=args.eval_size, online_size=args.online_size,
        seed=args.seed, out_dir=args.out, resume=args.resume, data_paths=tuple(args.data),
        epochs=args.epochs, batch_size=args.batch_size, fit={"accumulate": args.accumulate},
        online={**defaults.online, "accumulate": args.accumulate},
        stream=StreamConfig(negative_rate=args.negative_rate, seed=args.seed),
    )
    job.run(config)
    return 0


# ---------------------------------------------------------------------------- bench
BENCH_OPTIONS = ("vocab", "features", "batch", "width", "repeats", "nodes", "seeds")
OWN = " (default: the benchmark's own, see its module)"


def _check_bench(args: argparse.Namespace) -> None:
    """An option the chosen benchmark does not take is an error, not ignored."""
    module = importlib.import_module(BENCHMARKS[args.name])
    accepted = inspect.signature(module.run).parameters
    refused = [f"--{name}" for name in BENCH_OPTIONS
               if getattr(args, name) is not None and name not in accepted]
    if refused:
        takes = [f"--{name}" for name in BENCH_OPTIONS if name in accepted]
        raise _args.UsageError(
            f"bench {args.name} does not take {', '.join(refused)} (it takes "
            f"{', '.join(takes) if takes else 'none of the size options'}; its sizes are "
            f"in jaxembed/bench/{BENCHMARKS[args.name].rsplit('.', 1)[-1]}.py)")


def _bench(args: argparse.Namespace) -> int:
    module = importlib.import_module(BENCHMARKS[args.name])
    accepted = inspect.signature(module.run).parameters
    options = {key: value for key, value in vars(args).items()
               if key in accepted and key in BENCH_OPTIONS and value is not None}
    module.run(**options)
    print("wrote no files (the figures above are the output)", file=sys.stderr)
    return 0


# ---------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    from jaxembed import __version__

    parser = _args.Parser(prog="jaxembed", description=__doc__)
    parser.add_argument("--version", action="version", version=f"jaxembed {__version__}")
    parser.add_argument("--debug", action="store_true",
                        help="show the Python traceback of an error (also JAXEMBED_DEBUG=1); "
                             "may be given anywhere on the line")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    prove = commands.add_parser(
        "prove", help="run the hypothesis proofs, print a summary",
        description="Run the hypothesis proofs in proofs/ (shipped with the source checkout) "
        "and print one row per equation family.",
        epilog="try: jaxembed prove -k bags")
    prove.add_argument("--profile", default="ci", choices=("ci", "thorough"),
                       help="hypothesis profile: ci (fast) or thorough (many examples)")
    prove.add_argument("-k", default=None, type=_args.nonempty_text, metavar="PATTERN",
                       help="only proofs matching this pytest -k pattern (default: all)")
    prove.set_defaults(handler=_prove, check=_check_prove)

    train = commands.add_parser(
        "train", help="the main job: train SearchCTR offline, then online on a click stream",
        description="Generate a search log (or read --data), train SearchCTR offline, run the "
        "online phase on a drifted click stream, print AUC against the Bayes-optimal AUC, and "
        "write checkpoints and training_curves.png under --out.",
        epilog="try: jaxembed train --train-size 20000 --eval-size 5000 --online-size 10000 "
        "--epochs 1   (built-in generated data, smaller than the defaults)")
    defaults = _job_defaults()
    train.add_argument("--train-size", type=_args.positive_int, default=None, metavar="N",
                       help="generated training impressions, rows "
                            f"(default: {defaults['train_size']}; not with --data)")
    train.add_argument("--eval-size", type=_args.positive_int, default=None, metavar="N",
                       help="generated evaluation impressions per period, rows "
                            f"(default: {defaults['eval_size']}; not with --data)")
    train.add_argument("--online-size", type=_args.positive_int, default=None, metavar="N",
                       help="generated impressions streamed in the online phase, rows "
                            f"(default: {defaults['online_size']}; not with --data)")
    train.add_argument("--epochs", type=_args.positive_int, default=defaults["epochs"],
                       metavar="N", help="offline passes over the training data")
    train.add_argument("--batch-size", type=_args.positive_int, metavar="N",
                       default=defaults["batch_size"], help="impressions per mini-batch")
    train.add_argument("--accumulate", type=_args.positive_int, default=1, metavar="N",
                       help="mini-batches accumulated per update (optax.MultiSteps)")
    train.add_argument("--negative-rate", type=_args.probability, default=1.0, metavar="P",
                       help="online phase: keep each negative with this probability, in (0, 1] "
                            "(positives always; served logits are calibrated with it)")
    train.add_argument("--seed", type=_args.nonneg_int, default=0, help="random seed")
    train.add_argument("--out", default="jaxembed-run", type=_args.output_dir, metavar="DIR",
                       help="folder for the offline run, the updated run and "
                            "training_curves.png")
    train.add_argument("--resume", action="store_true",
                       help="continue from the newest checkpoint in --out (an error if there "
                            "is none)")
    train.add_argument("--data", nargs="+", default=[], type=_args.existing_file,
                       metavar="FILE",
                       help="search log CSV/Parquet file(s) with the documented columns: one "
                            "(split by time) or two (offline, online) (default: generated)")
    train.add_argument("--mesh", default=None, metavar="SHAPE", type=_args.mesh_shape,
                       help="shard the tables over a device mesh: '8' (tables and batch over 8 "
                            "devices) or '2x4' (data x model); on CPU, virtual devices "
                            "(default: one device)")
    train.add_argument("--shard-kind", default=None, choices=("row", "column", "table"),
                       help="with --mesh: how the tables are split (default: row)")
    train.add_argument("--shard-strategy", default=None, choices=("mod", "div"),
                       help="with --mesh and row sharding: TF's id placement (default: mod)")
    train.add_argument("--route", default=None, choices=("all_gather", "all_to_all"),
                       help="with --mesh and row sharding: how ids reach their rows "
                            "(default: all_gather)")
    train.set_defaults(handler=_train, check=_check_train)

    add_ctr_parsers(commands)
    add_update_parser(commands)
    add_join_parser(commands)
    add_export_parser(commands)
    add_node2vec_parser(commands)
    add_word2vec_parser(commands)
    add_search_parser(commands)
    add_index_parser(commands)

    bench = commands.add_parser(
        "bench", help="benchmarks against a peer, as ratios",
        description="Time jaxembed against a peer (PyTorch, gensim, PecanPy, numpy) in the "
        "same run and print ratios with the machine. Each benchmark takes only the size "
        "options it can honour; the others are refused.",
        epilog="try: jaxembed bench lookup --vocab 10000 --repeats 3   (built-in generated "
        "data)")
    bench.add_argument("name", choices=sorted(BENCHMARKS), metavar="NAME",
                       help=f"the benchmark: {', '.join(sorted(BENCHMARKS))}")
    bench.add_argument("--vocab", type=_args.positive_int, metavar="V",
                       help="table rows (lookup, sharding)" + OWN)
    bench.add_argument("--features", type=_args.positive_int, metavar="K",
                       help="embedding size, floats per row (lookup, sharding, sparse-step)"
                       + OWN)
    bench.add_argument("--batch", type=_args.positive_int, metavar="B",
                       help="bags, queries or examples per batch (lookup, sharding, "
                            "sparse-step, retrieval, train)" + OWN)
    bench.add_argument("--width", type=_args.positive_int, metavar="L",
                       help="ids per bag (lookup, sharding)" + OWN)
    bench.add_argument("--repeats", type=_args.positive_int, metavar="N",
                       help="timed repetitions (lookup, sharding, retrieval, encoding)" + OWN)
    bench.add_argument("--nodes", type=_args.positive_int, metavar="N",
                       help="nodes of the generated graph (graph)" + OWN)
    bench.add_argument("--seeds", type=_args.positive_int, metavar="S",
                       help="also macro-F1 on the same walks over this many seeds (graph)" + OWN)
    bench.set_defaults(handler=_bench, check=_check_bench)
    return parser


JOB_DEFAULTS = {"train_size": 300_000, "eval_size": 60_000, "online_size": 150_000,
                "epochs": 3, "batch_size": 1024}
"""The defaults of :class:`jaxembed.train.job.JobConfig` that ``train``
shows, written out so that building the parser does not import the trainer (flax, orbax);
tests/test_cli_contract.py checks that they agree."""


def _job_defaults() -> dict:
    return dict(JOB_DEFAULTS)


# ---------------------------------------------------------------------------- the contract
USER_ERRORS = (ValueError, FileNotFoundError, PermissionError, IsADirectoryError,
               NotADirectoryError, FileExistsError, UnicodeDecodeError)
"""Exceptions that mean bad input (house rule: ValueError names the offending value):
exit status 2 and one line. UsageError is a ValueError."""


def _command_of(argv: list[str], parser: argparse.ArgumentParser) -> str | None:
    """The command word on the line (the first word that names a command), if any."""
    names = set()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            names |= set(action.choices)
    return next((word for word in argv if word in names), None)


def _one_line(err: BaseException) -> str:
    """An exception as one line: an OSError as 'strerror: filename', others as str()."""
    if isinstance(err, OSError) and err.strerror:
        text = err.strerror + (f": {err.filename!r}" if err.filename is not None else "")
    elif isinstance(err, UnicodeDecodeError):
        text = (f"not UTF-8 text (byte {err.object[err.start]:#04x} at offset {err.start})")
    else:
        text = str(err) or type(err).__name__
        if isinstance(err, KeyError):
            text = f"KeyError {text}"
    return " ".join(text.split())


def main(argv: list[str] | None = None) -> int:
    """Run ``jaxembed`` on ``argv``: parse, run the command's checks, then its handler.

    The contract (docs/cli.md), kept here once for every command: a user error (a bad
    option, a missing or malformed input, :class:`~jaxembed.commands._args.UsageError`,
    ValueError, a file that cannot be read) exits with status 2 and prints one line
    ``jaxembed COMMAND: message`` on stderr; any other failure exits with status 1 and one
    line naming the exception; ``--debug`` or ``JAXEMBED_DEBUG=1`` re-raises instead.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = os.environ.get("JAXEMBED_DEBUG", "").lower() in ("1", "true", "yes", "on")
    if "--debug" in argv:
        debug = True
        argv = [word for word in argv if word != "--debug"]
    use_compilation_cache()  # before JAX starts: compiled programs persist across runs
    parser = build_parser()
    command = _command_of(argv, parser)
    prefix = f"jaxembed {command}" if command else "jaxembed"
    try:
        args = parser.parse_args(argv)
        check = getattr(args, "check", None)
        if check is not None:
            check(args)
        return int(args.handler(args) or 0)
    except KeyboardInterrupt:
        if debug:
            raise
        print(f"{prefix}: interrupted", file=sys.stderr)
        return 130
    except Exception as err:
        if debug:
            raise
        prog = getattr(err, "prog", None)
        where = prog if prog and prog != "jaxembed" else prefix  # the top parser: the command
        if isinstance(err, USER_ERRORS):
            hint = f" (see '{where} --help')" if getattr(err, "from_argparse", False) else ""
            print(f"{where}: {_one_line(err)}{hint}", file=sys.stderr)
            return 2
        first = _one_line(err)[:300]
        print(f"{where}: failed: {type(err).__name__}: {first} (run again with --debug for "
              "the traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
