"""``jaxembed update``: keep a fitted run fresh with a new log (the seed's online phase).

Every option is checked before any work (docs/cli.md): the run is a fitted run, the new log
(and --eval) exist and have the run's columns with the types the run was fitted on, --out
is a new folder that is not the run, and the options are in range.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from jaxembed.commands import _args
from jaxembed.commands.ctr import _key_value

SAMPLE = ("try: python -m jaxembed.data.criteo_like /tmp/criteo, fit a run on "
          "/tmp/criteo/train.tsv (see jaxembed fit --help), then\n"
          "  jaxembed update --run /tmp/criteo-run --data /tmp/criteo/test.tsv "
          "--out /tmp/criteo-run-2 --grow")


def _check_update(args: argparse.Namespace) -> None:
    from jaxembed.train.runs import Run
    from jaxembed.train.update import check_log, online_config

    if args.min_count is not None and not args.grow:
        raise _args.UsageError("--min-count only applies with --grow")
    if not os.path.isfile(os.path.join(args.run, "model.json")):
        raise _args.UsageError(f"--run {args.run!r} is not a fitted run (no model.json; "
                               f"make one with jaxembed fit)")
    run_path, out = os.path.abspath(args.run), os.path.abspath(args.out)
    if out == run_path or run_path.startswith(out + os.sep):
        raise _args.UsageError(f"--out {args.out!r} would overwrite the run; an update "
                               f"writes a new run (choose a new folder)")
    if os.path.exists(out) and os.listdir(out):
        raise _args.UsageError(f"--out {args.out!r} is not empty; an update writes a new run "
                               f"(choose a new folder)")
    options = dict(args.set or [])
    for key in ("learning_rate", "linear_learning_rate", "accumulate", "epochs",
                "batch_size"):
        if getattr(args, key) is not None:
            options[key] = getattr(args, key)
    run = Run.load(args.run)
    if args.fine_tune:
        options.setdefault("freeze_embeddings", False)
        options.setdefault("dense_optimizer", run.config.dense_optimizer)
        options.setdefault("learning_rate", run.config.learning_rate)
    online_config(run.config, options)
    check_log(run, args.data, "--data")
    if args.eval is not None:
        check_log(run, args.eval, "--eval")
    args.options, args.parent = options, run


def _update(args: argparse.Namespace) -> int:
    from jaxembed.train.update import update

    update(args.parent, args.data, out=args.out, eval=args.eval, grow=args.grow,
           min_count=args.min_count, progress=not args.quiet, **args.options)
    with open(os.path.join(args.out, "lineage.json"), encoding="utf-8") as handle:
        lineage = json.load(handle)
    if lineage["eval"] is not None:
        before, after = lineage["eval"]["before"], lineage["eval"]["after"]
        print(f"{'':12s} {'parent':>8s} {'updated':>8s}")
        for key in ("auc", "logloss", "calibration", "ne"):
            print(f"{key:12s} {before[key]:8.4f} {after[key]:8.4f}")
        print(f"{'rows':12s} {before['rows']:8d} {after['rows']:8d}")
    grown = lineage["grown"]
    if grown is not None:
        rows = ", ".join(f"{k} +{v}" for k, v in grown["rows"].items()) or "no new ids"
        print(f"grew the tables: {rows}", file=sys.stderr)
    print(f"updated on {lineage['rows']:,} rows in {lineage['steps']:,} steps; wrote the run "
          f"to {os.path.abspath(args.out)} (lineage.json: parent, data, metrics)",
          file=sys.stderr)
    return 0


def add_update_parser(commands: argparse._SubParsersAction) -> None:
    """Register ``update``."""
    from jaxembed.train.update import UPDATE_LEARNING_RATE

    update = commands.add_parser(
        "update", help="update a fitted run on a new log (frozen embeddings, FTRL wide, "
                       "SGD deep) into a new run",
        description="Read the new log through the run's schema and vocabularies, restore "
        "its parameters and optimizer state, and train one pass with the online partition: "
        "embedding tables frozen, linear/wide tables by FTRL continuing the fit's "
        "accumulators, dense layers by SGD at a small rate. Writes a new run with "
        "lineage.json; the run given stays as it is.", epilog=SAMPLE)
    update.add_argument("--run", required=True, type=_args.existing_dir, metavar="DIR",
                        help="a folder written by jaxembed fit (or by an earlier update)")
    update.add_argument("--data", required=True, metavar="PATH",
                        help="the new log: .csv/.tsv/.txt (optionally .gz) or .parquet, or a "
                             "folder of Parquet files")
    update.add_argument("--out", required=True, type=_args.output_dir, metavar="DIR",
                        help="the new run folder (must not exist, or be empty)")
    update.add_argument("--eval", default=None, metavar="PATH",
                        help="labelled log on which to report the run's and the updated "
                             "run's AUC and calibration side by side (default: none)")
    update.add_argument("--grow", action="store_true",
                        help="give ids the vocabulary has not seen their own rows (default: "
                             "they go to the OOV buckets)")
    update.add_argument("--min-count", type=_args.positive_int, default=None, metavar="N",
                        help="with --grow: rows only for ids seen at least N times in the new "
                             "log (default: each field's min_count)")
    update.add_argument("--accumulate", type=_args.positive_int, default=None, metavar="K",
                        help="mini-batches per update, their gradients averaged (optax.MultiSteps; "
                             "default: 1)")
    update.add_argument("--learning-rate", type=_args.nonneg_float, default=None,
                        metavar="LR", help="SGD rate of the dense layers, 0 holds them "
                        f"(default: {UPDATE_LEARNING_RATE:g})")
    update.add_argument("--linear-learning-rate", type=_args.nonneg_float, default=None,
                        metavar="LR", help="FTRL rate of the linear and wide tables, 0 holds "
                        "them (default: the run's; changing it changes FTRL's weights)")
    update.add_argument("--epochs", type=_args.positive_int, default=None, metavar="N",
                        help="passes over the new log (default: 1)")
    update.add_argument("--batch-size", type=_args.positive_int, default=None, metavar="N",
                        help="rows per step (default: the run's)")
    update.add_argument("--fine-tune", action="store_true",
                        help="train every parameter with the fit's rules (Adam, embeddings "
                             "too) instead of the online partition (default: off)")
    update.add_argument("--set", action="append", type=_key_value, metavar="KEY=VALUE",
                        help="any fit option, e.g. --set freeze_embeddings=false (JSON "
                             "values; repeatable; default: none)")
    update.add_argument("--quiet", action="store_true", help="no progress bar")
    update.set_defaults(handler=_update, check=_check_update)
