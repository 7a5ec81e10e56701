"""The ``jaxembed`` command: ``train`` (the main job), ``prove``, ``node2vec``, ``word2vec``,
``search``, ``index`` and ``bench``."""

from __future__ import annotations

import argparse
import importlib
import inspect
import sys

from jaxembed.commands.graph_text import add_node2vec_parser, add_word2vec_parser
from jaxembed.commands.search import add_index_parser, add_search_parser

# `jaxembed bench NAME` runs jaxembed.bench.<module>.run(); each benchmark owns its module.
BENCHMARKS = {
    "encoding": "jaxembed.bench.encoding",
    "graph": "jaxembed.bench.graph",
    "lookup": "jaxembed.bench.lookup",
    "retrieval": "jaxembed.bench.retrieval",
    "sharding": "jaxembed.bench.sharding",
    "sparse-step": "jaxembed.bench.sparse_step",
    "train": "jaxembed.bench.train",
    "word2vec": "jaxembed.bench.word2vec",
}


def _prove(args: argparse.Namespace) -> int:
    from jaxembed.prove import run

    return run(profile=args.profile, pattern=args.k)


def _train(args: argparse.Namespace) -> int:
    from jaxembed.train import job, offline, online, sharded

    mesh = None
    if args.mesh:
        _virtual_cpu_devices(args.mesh)
        mesh = sharded.MeshConfig(shape=args.mesh, kind=args.shard_kind,
                                  strategy=args.shard_strategy, route=args.route)
    config = job.JobConfig(
        mesh=mesh,
        train_size=args.train_size, eval_size=args.eval_size, online_size=args.online_size,
        seed=args.seed, out_dir=args.out, resume=args.resume, data_paths=tuple(args.data),
        offline=offline.OfflineConfig(epochs=args.epochs, batch_size=args.batch_size,
                                      accumulate=args.accumulate, seed=args.seed),
        online=online.OnlineConfig(accumulate=args.accumulate, seed=args.seed,
                                   negative_rate=args.negative_rate),
    )
    job.run(config)
    return 0


def _virtual_cpu_devices(shape: str) -> None:
    """Let the CPU backend offer as many (virtual) devices as ``--mesh`` needs.

    Only the host platform reads the flag, so a GPU run is unaffected; it must be set before
    jax starts its backends, which the ``train`` command has not done yet.
    """
    import os

    import numpy as np

    flag = "--xla_force_host_platform_device_count"
    flags = os.environ.get("XLA_FLAGS", "")
    if flag in flags:
        return
    try:
        count = int(np.prod([int(part) for part in shape.lower().split("x")]))
    except ValueError:
        message = f"jaxembed train: --mesh must look like '8' or '2x4', got {shape!r}"
        raise SystemExit(message) from None
    os.environ["XLA_FLAGS"] = f"{flags} {flag}={count}".strip()


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

    train = commands.add_parser(
        "train", help="the main job: train SearchCTR offline, then online on a click stream")
    defaults = _job_defaults()
    train.add_argument("--train-size", type=int, default=defaults["train_size"],
                       help="generated training impressions")
    train.add_argument("--eval-size", type=int, default=defaults["eval_size"],
                       help="generated evaluation impressions (each period)")
    train.add_argument("--online-size", type=int, default=defaults["online_size"],
                       help="generated impressions streamed in the online phase")
    train.add_argument("--epochs", type=int, default=defaults["epochs"])
    train.add_argument("--batch-size", type=int, default=defaults["batch_size"])
    train.add_argument("--accumulate", type=int, default=1,
                       help="mini-batches accumulated per update (optax.MultiSteps)")
    train.add_argument("--negative-rate", type=float, default=1.0,
                       help="online phase: keep each negative with this probability "
                            "(positives always; calibrate served logits with it)")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--out", default="jaxembed-run",
                       help="folder for checkpoints and training_curves.png")
    train.add_argument("--resume", action="store_true",
                       help="continue from the newest checkpoint in --out")
    train.add_argument("--data", nargs="*", default=[],
                       help="search log CSV/Parquet file(s) with the documented columns: one "
                            "(split by time) or two (offline, online)")
    train.add_argument("--mesh", default=None, metavar="SHAPE",
                       help="shard the tables over a device mesh: '8' (tables and batch over 8 "
                            "devices) or '2x4' (data x model); on CPU, virtual devices")
    train.add_argument("--shard-kind", default="row", choices=("row", "column", "table"),
                       help="with --mesh: how the tables are split")
    train.add_argument("--shard-strategy", default="mod", choices=("mod", "div"),
                       help="with --mesh and row sharding: TF's id placement")
    train.add_argument("--route", default="all_gather", choices=("all_gather", "all_to_all"),
                       help="with --mesh and row sharding: how ids reach their rows")
    train.set_defaults(handler=_train)

    add_node2vec_parser(commands)
    add_word2vec_parser(commands)
    add_search_parser(commands)
    add_index_parser(commands)

    bench = commands.add_parser("bench", help="benchmarks against a peer, as ratios")
    bench.add_argument("name", choices=sorted(BENCHMARKS))
    bench.add_argument("--vocab", type=int, help="table rows V")
    bench.add_argument("--features", type=int, help="embedding size K")
    bench.add_argument("--batch", type=int, help="bags per batch B")
    bench.add_argument("--width", type=int, help="ids per bag L")
    bench.add_argument("--repeats", type=int, help="timed repetitions (median reported)")
    bench.add_argument("--nodes", type=int, help="graph: nodes of the generated graph")
    bench.add_argument("--seeds", type=int,
                       help="graph: also macro-F1 on the same walks over this many seeds")
    bench.set_defaults(handler=_bench)
    return parser


def _job_defaults() -> dict:
    from jaxembed.train import job, offline

    config, fit = job.JobConfig(), offline.OfflineConfig()
    return {"train_size": config.train_size, "eval_size": config.eval_size,
            "online_size": config.online_size, "epochs": fit.epochs,
            "batch_size": fit.batch_size}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
