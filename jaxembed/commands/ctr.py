"""``jaxembed fit``, ``evaluate`` and ``predict``: a click model on your own log.

Every option is checked before any work (docs/cli.md): the schema parses, the model and its
hyperparameters exist, the data files exist and have the schema's columns.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from jaxembed.commands import _args

SAMPLE = ("try: python -m jaxembed.data.criteo_like /tmp/criteo  (writes a generated "
          "Criteo-format train.tsv, test.tsv and schema.toml), then\n"
          "  jaxembed fit --schema /tmp/criteo/schema.toml --train /tmp/criteo/train.tsv "
          "--model deepfm --out /tmp/criteo-run")


def _key_value(text: str) -> tuple[str, object]:
    key, sep, raw = str(text).partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"must look like KEY=VALUE, got {text!r}")
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return key.strip(), value


def _schema(path: str):
    from jaxembed.data.schema import Schema

    return Schema.from_toml(path)


MESH_OPTIONS = {"shard_kind": "row", "shard_strategy": "mod", "route": "all_gather"}
PROCESS_OPTIONS = ("coordinator", "num_processes", "process_id")


def _check_mesh(args: argparse.Namespace) -> None:
    """``--mesh`` and its options; gives the CPU backend the (virtual) devices the mesh needs
    and joins a multi-process run, both before JAX starts."""
    given = [f"--{name.replace('_', '-')}" for name in (*MESH_OPTIONS, *PROCESS_OPTIONS)
             if getattr(args, name) is not None]
    if args.mesh is None:
        if given:
            raise _args.UsageError(f"{', '.join(given)} only applies with --mesh")
        return
    for name, default in MESH_OPTIONS.items():
        if getattr(args, name) is None:
            setattr(args, name, default)
    processes = [getattr(args, name) for name in PROCESS_OPTIONS]
    if any(p is not None for p in processes) and any(p is None for p in processes):
        raise _args.UsageError("a multi-process fit needs --coordinator, --num-processes and "
                               "--process-id together")
    count = args.num_processes or 1
    if args.process_id is not None and args.process_id >= count:
        raise _args.UsageError(f"--process-id {args.process_id} is not below "
                               f"--num-processes {count}")
    needed = 1
    for part in args.mesh.split("x"):
        needed *= int(part)
    if needed % count:
        raise _args.UsageError(f"--mesh {args.mesh} ({needed} devices) does not split over "
                               f"{count} processes")
    flag = "--xla_force_host_platform_device_count"
    flags = os.environ.get("XLA_FLAGS", "")
    if flag not in flags:  # only the CPU backend reads it; it must be set before jax starts
        os.environ["XLA_FLAGS"] = f"{flags} {flag}={needed // count}".strip()
    if count > 1:
        from jaxembed.sharding.launch import initialize

        initialize(args.coordinator, count, args.process_id)
    import jax

    if needed > jax.device_count():
        raise _args.UsageError(f"--mesh {args.mesh} needs {needed} devices, the "
                               f"{jax.devices()[0].platform} backend has {jax.device_count()}")


def _check_fit(args: argparse.Namespace) -> None:
    _check_mesh(args)  # first: before anything starts JAX
    from jaxembed.data.readers import check_source
    from jaxembed.data.split import Split
    from jaxembed.models import registry
    from jaxembed.train.runs import check_model, resolve_negative_rate

    schema = _schema(args.schema)
    registry.model_class(args.model)
    if args.valid is not None and args.split is not None:
        raise _args.UsageError("give --valid or --split, not both")
    if args.split is not None:
        Split.parse(args.split)
    check_source(args.train, schema)
    if args.valid is not None:
        check_source(args.valid, schema)
    lead = not args.process_id  # in a multi-process fit, process 0 owns the run folder
    if lead and args.resume and not os.path.isfile(os.path.join(args.out, "schema.toml")):
        raise _args.UsageError(f"--resume: no run in {args.out!r} to continue")
    if lead and not args.resume and os.path.isfile(os.path.join(args.out, "model.json")):
        raise _args.UsageError(f"--out {args.out!r} already holds a fitted run (--resume "
                               f"continues it; choose another folder for a new run)")
    options = dict(schema.model)
    options.update(dict(args.set or []))
    for key in ("epochs", "batch_size", "learning_rate", "seed", "negative_rate"):
        if getattr(args, key) is not None:
            options[key] = getattr(args, key)
    resolve_negative_rate(args.train, options)  # a rate the joined file records, checked
    check_model(schema, args.model, options)  # last: it builds the model on stand-in tables
    args.options = options


def _fit(args: argparse.Namespace) -> int:
    from jaxembed.train.runs import fit

    mesh = None
    if args.mesh is not None:
        from jaxembed.train.field_sharding import MeshSpec

        mesh = MeshSpec(args.mesh, kind=args.shard_kind, strategy=args.shard_strategy,
                        route=args.route)
    run = fit(args.schema, args.train, valid=args.valid, split=args.split, model=args.model,
              out=args.out, resume=args.resume, progress=not args.quiet,
              checkpoint_every=args.checkpoint_every, mesh=mesh, **args.options)
    best = max(run.history, key=lambda h: h["auc"]) if run.history else None
    if best is not None:
        print(f"best epoch {best['epoch']}: valid AUC {best['auc']:.4f}, logloss "
              f"{best['logloss']:.4f}", file=sys.stderr)
    if run.config.negative_rate != 1.0:
        print(f"negatives were kept at rate {run.config.negative_rate:g} (model.json): "
              f"predict, evaluate and export calibrate p to p / (p + (1 - p) / "
              f"{run.config.negative_rate:g})", file=sys.stderr)
    print(f"wrote the run to {os.path.abspath(args.out)} (fit.json: per-epoch metrics)",
          file=sys.stderr)
    return 0


def _check_run(args: argparse.Namespace) -> None:
    from jaxembed.data.readers import check_source

    if not os.path.isfile(os.path.join(args.run, "model.json")):
        raise _args.UsageError(f"--run {args.run!r} is not a fitted run (no model.json; "
                               f"make one with jaxembed fit)")
    schema = _schema(os.path.join(args.run, "schema.toml"))
    check_source(args.data, schema, labels=args.command == "evaluate")


def _evaluate(args: argparse.Namespace) -> int:
    from jaxembed._atomic import write_text
    from jaxembed.train.plots import save_plots
    from jaxembed.train.runs import Run
    from jaxembed.train.scoring import labelled_scores, metrics_of

    run = Run.load(args.run)
    labels, probs, groups = labelled_scores(run, args.data)
    figures = metrics_of(labels, probs, groups)
    folder = args.report or os.path.join(
        args.run, "evaluation", os.path.splitext(os.path.basename(args.data.rstrip("/")))[0])
    os.makedirs(folder, exist_ok=True)
    write_text(os.path.join(folder, "metrics.json"), json.dumps(figures, indent=1))
    plots = save_plots(labels, probs, folder, os.path.basename(args.data), figures["auc"])
    if args.json:
        print(json.dumps(figures))
    else:
        for key in ("auc", "logloss", "gauc", "calibration", "ne"):
            print(f"{key:12s} {figures[key]:.4f}")
        print(f"{'rows':12s} {figures['rows']}")
        print(f"wrote {os.path.join(folder, 'metrics.json')}, {', '.join(plots)}",
              file=sys.stderr)
    return 0


def _predict(args: argparse.Namespace) -> int:
    from jaxembed.train.scoring import predict_to

    rows = predict_to(args.run, args.data, args.out)
    print(f"wrote {rows:,} scores to {os.path.abspath(args.out)}", file=sys.stderr)
    return 0


def _check_predict(args: argparse.Namespace) -> None:
    _check_run(args)
    if not args.out.lower().endswith((".parquet", ".pq", ".csv")):
        raise _args.UsageError(f"--out {args.out!r}: expected a .parquet or .csv file name")


def add_ctr_parsers(commands: argparse._SubParsersAction) -> None:
    """Register ``fit``, ``evaluate`` and ``predict``."""
    from jaxembed.models import registry

    fit = commands.add_parser(
        "fit", help="fit a click model on your own log (CSV/TSV/Parquet + a schema)",
        description="Read the log through the schema, build vocabularies on the training "
        "rows, fit the model with early stopping on the validation AUC, and write the run "
        "folder (schema, vocabularies, best parameters, fit.json).", epilog=SAMPLE)
    fit.add_argument("--schema", required=True, type=_args.existing_file, metavar="TOML",
                     help="the log's schema (docs/data.md)")
    fit.add_argument("--train", required=True, metavar="PATH",
                     help="training log: .csv/.tsv/.txt (optionally .gz) or .parquet, or a "
                          "folder of Parquet files")
    fit.add_argument("--valid", default=None, metavar="PATH",
                     help="validation log (default: --split of the training log)")
    fit.add_argument("--split", default=None, metavar="HOW:SHARE",
                     help="time:0.8 (by the schema's time column) or random:0.9 (default: "
                          "time:0.9 with a time column, else random:0.9)")
    fit.add_argument("--model", default="wide_deep", metavar="NAME",
                     help=f"one of: {', '.join(registry.available())}")
    fit.add_argument("--out", required=True, type=_args.output_dir, metavar="DIR",
                     help="the run folder to write")
    fit.add_argument("--resume", action="store_true",
                     help="continue the run in --out from its newest checkpoint")
    fit.add_argument("--epochs", type=_args.positive_int, default=None, metavar="N",
                     help="most passes over the training rows (early stopping may end "
                          "sooner; default 10)")
    fit.add_argument("--batch-size", type=_args.batch_size, default=None, metavar="N",
                     help="rows per step, or auto (the default: 256 below 524,288 training "
                          "rows, 512 below 1,048,576, then 1024)")
    fit.add_argument("--learning-rate", type=_args.positive_float, default=None, metavar="LR",
                     help="Adam rate of the dense layers (default 0.003)")
    fit.add_argument("--seed", type=_args.nonneg_int, default=None, help="random seed "
                     "(default 0)")
    fit.add_argument("--negative-rate", type=_args.probability, default=None, metavar="W",
                     help="the training log kept each negative with probability W, in (0, 1] "
                          "(jaxembed join --downsample W); predict, evaluate and export "
                          "calibrate p to p / (p + (1 - p) / W) (default: the rate a joined "
                          "Parquet file records, else 1)")
    fit.add_argument("--set", action="append", type=_key_value, metavar="KEY=VALUE",
                     help="a model hyperparameter or fit option, e.g. --set hidden=[400,400] "
                          "(JSON values; repeatable; over the schema's [model] table)")
    fit.add_argument("--checkpoint-every", type=_args.nonneg_int, default=0, metavar="STEPS",
                     help="also checkpoint every STEPS steps, loader position included "
                          "(0: after each epoch only)")
    fit.add_argument("--quiet", action="store_true", help="no progress bar")
    fit.add_argument("--mesh", default=None, metavar="SHAPE", type=_args.mesh_shape,
                     help="shard the tables over a device mesh and split each batch over its "
                          "devices: '8' or '2x4' (data x model); on CPU, virtual devices "
                          "(default: one device)")
    fit.add_argument("--shard-kind", default=None, choices=("row", "column", "table"),
                     help="with --mesh: how the tables are split (default: row)")
    fit.add_argument("--shard-strategy", default=None, choices=("mod", "div"),
                     help="with --mesh and row sharding: TF's id placement (default: mod)")
    fit.add_argument("--route", default=None, choices=("all_gather", "all_to_all"),
                     help="with --mesh and row sharding: how ids reach their rows "
                          "(default: all_gather)")
    fit.add_argument("--coordinator", default=None, metavar="HOST:PORT",
                     help="with --mesh: process 0's address in a multi-process fit (run the "
                          "same command in every process, each with its --process-id; default: one "
                          "process)")
    fit.add_argument("--num-processes", default=None, type=_args.positive_int, metavar="N",
                     help="with --coordinator: how many processes take part (default: 1)")
    fit.add_argument("--process-id", default=None, type=_args.nonneg_int, metavar="I",
                     help="with --coordinator: this process's index, 0 .. N-1 (default: 0)")
    fit.set_defaults(handler=_fit, check=_check_fit)

    evaluate = commands.add_parser(
        "evaluate", help="AUC, log loss, GAUC, calibration and NE of a run on labelled data",
        description="Score a labelled log with a fitted run; print the metrics, save them "
        "as metrics.json with ROC and calibration plots (PNG).",
        epilog="try: jaxembed evaluate --run /tmp/criteo-run --data /tmp/criteo/test.tsv "
        "(after the jaxembed fit example)")
    evaluate.add_argument("--run", required=True, type=_args.existing_dir, metavar="DIR",
                          help="a folder written by jaxembed fit")
    evaluate.add_argument("--data", required=True, metavar="PATH", help="labelled log")
    evaluate.add_argument("--report", default=None, type=_args.output_dir, metavar="DIR",
                          help="where metrics.json, roc.png and calibration.png go (default: "
                               "RUN/evaluation/<data name>)")
    evaluate.add_argument("--json", action="store_true",
                          help="print only the metrics as one JSON object")
    evaluate.set_defaults(handler=_evaluate, check=_check_run)

    predict = commands.add_parser(
        "predict", help="score a log with a run, streamed to Parquet or CSV",
        description="Score every row of a log (the label column is not needed) and stream "
        "the click probabilities, in row order, into one 'score' column.",
        epilog="try: jaxembed predict --run /tmp/criteo-run --data /tmp/criteo/test.tsv "
        "--out /tmp/scores.parquet")
    predict.add_argument("--run", required=True, type=_args.existing_dir, metavar="DIR",
                         help="a folder written by jaxembed fit")
    predict.add_argument("--data", required=True, metavar="PATH", help="the log to score")
    predict.add_argument("--out", required=True, type=_args.output_file, metavar="FILE",
                         help="scores file, .parquet or .csv")
    predict.set_defaults(handler=_predict, check=_check_predict)
