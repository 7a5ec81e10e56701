"""``jaxembed export``: a fitted run as a served folder.

::

    jaxembed fit --schema criteo.toml --train train.tsv --out run/
    jaxembed export --run run/ --out served/

then, in the serving process, ``jaxembed.serving.load("served/")(records)``.
``add_export_parser`` registers the subcommand on an ``argparse`` subparsers object and sets
``handler`` (``handler(args) -> exit code``).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from jaxembed.commands import _args

__all__ = ["add_export_parser", "run_export"]

PLATFORMS = ("cpu", "cuda", "rocm", "tpu")


def add_export_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``export --run RUN --out SERVED [--platforms cpu,cuda]`` on ``subparsers``."""
    p = subparsers.add_parser(
        "export", help="write a fitted run as a served folder (jax.export function, schema, "
                       "vocabularies)",
        description="Export a fitted run (a folder made by `jaxembed fit`, e.g. "
                    "`jaxembed fit --schema criteo.toml --train train.tsv --out run/`) for "
                    "serving: the prediction function serialized with jax.export for any "
                    "batch size, its parameters as .npy files, the schema and the "
                    "vocabularies. Score with jaxembed.serving.load(OUT)(records).",
        epilog="try: jaxembed export --run /tmp/criteo-run --out /tmp/criteo-served  (after "
               "the jaxembed fit example)")
    p.add_argument("--run", required=True, metavar="RUN", type=_args.existing_dir,
                   help="a run folder made by `jaxembed fit` (holds schema.toml, "
                        "vocabularies.json, model.json, params/)")
    p.add_argument("--out", required=True, metavar="SERVED", type=_args.output_dir,
                   help="the served folder to write (an earlier export there is replaced "
                        "once the new one is complete; any other existing folder is refused)")
    p.add_argument("--platforms", default="cpu,cuda", type=_platforms,
                   help="comma-separated platforms to lower the function for, of "
                        f"{', '.join(PLATFORMS)} (default: cpu,cuda)")
    p.set_defaults(handler=run_export, check=_check_export)
    return p


def _check_export(args: argparse.Namespace) -> None:
    import os

    if not os.path.isfile(os.path.join(args.run, "model.json")):
        raise _args.UsageError(f"--run {args.run!r} is not a fitted run (no model.json; make "
                               f"one with jaxembed fit)")
    if os.path.realpath(args.out) == os.path.realpath(args.run):
        raise _args.UsageError(f"--out {args.out!r} is the run folder itself; choose another")


def _platforms(text: str) -> tuple[str, ...]:
    names = tuple(part.strip() for part in text.split(",") if part.strip())
    bad = [n for n in names if n not in PLATFORMS]
    if bad or not names:
        raise argparse.ArgumentTypeError(f"unknown platform {bad[0] if bad else text!r}; "
                                         f"choose from {', '.join(PLATFORMS)}")
    return names


def run_export(args: argparse.Namespace, out: Any = None) -> int:
    """Export ``args.run`` to ``args.out``; prints the folder, its size and the time taken."""
    from jaxembed.serving.exporter import timed_export

    out = out or sys.stdout
    try:
        path, seconds, size = timed_export(args.run, args.out, platforms=args.platforms)
    except (FileNotFoundError, FileExistsError, ValueError) as err:
        print(f"jaxembed export: {err}", file=sys.stderr)
        return 2
    print(f"exported {args.run} -> {path} ({size / 2**20:.1f} MiB, {seconds:.1f} s, "
          f"platforms {','.join(args.platforms)})", file=out)
    return 0
