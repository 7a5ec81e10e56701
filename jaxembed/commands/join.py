"""``jaxembed join``: impressions labelled by the clicks that follow them within a window.

::

    jaxembed join --impressions imp.parquet --clicks clk.parquet --key pageview_id \\
        --window 30m --out joined.parquet [--time ts] [--downsample 0.1] [--seed 0]

then ``jaxembed fit --train joined.parquet ...`` (a down-sampled file's rate is taken from its
metadata, and the run's predictions are calibrated with it). The rules (window, duplicates,
late clicks) and the memory bound are in :mod:`jaxembed.data.join`.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from jaxembed.commands import _args

__all__ = ["add_join_parser"]


def _window(text: str) -> float:
    from jaxembed.data.join import parse_window

    try:
        return parse_window(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a duration like 30m, 45s, 2h or 1d (a bare "
                                         f"number is seconds), got {text!r}") from None


def _log_path(text: str) -> str:
    """An existing log: a file (CSV/TSV/Parquet) or a folder of Parquet files."""
    if os.path.isdir(text):
        return _args.existing_dir(text)
    return _args.existing_file(text)


def add_join_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``join`` on ``subparsers``."""
    p = subparsers.add_parser(
        "join", help="label impressions with the clicks that follow them within a window "
                     "(raw event logs -> a training log)",
        description="Join an impression log with a click log on a key: an impression is "
        "labelled 1 if a click with its key comes at most --window after it. Both logs must "
        "be sorted by --time; they are merged in one pass holding only the open window. A "
        "repeated impression key within the window is an error (or dropped with --duplicates "
        "drop); clicks after the window, repeated clicks and clicks of unknown keys are "
        "counted, never labelled twice. --downsample keeps each negative with that "
        "probability and records it in the file, so jaxembed fit calibrates the run's "
        "predictions.",
        epilog="try: python -c \"from jaxembed.bench.join import write_logs; "
        "write_logs('/tmp/logs', 100000)\" (writes a generated impressions.parquet and "
        "clicks.parquet), then jaxembed join --impressions /tmp/logs/impressions.parquet "
        "--clicks /tmp/logs/clicks.parquet --key pageview_id --window 30m --out "
        "/tmp/logs/joined.parquet")
    p.add_argument("--impressions", required=True, type=_log_path, metavar="PATH",
                   help="impression log, sorted by time: .parquet (or a folder of them), "
                        ".csv or .tsv; every column is kept")
    p.add_argument("--clicks", required=True, type=_log_path, metavar="PATH",
                   help="click log, sorted by time (only its key and time columns are read)")
    p.add_argument("--key", required=True, type=_args.nonempty_text, metavar="COLUMN",
                   help="the column both logs share, e.g. pageview_id")
    p.add_argument("--window", required=True, type=_window, metavar="DURATION",
                   help="how long after an impression a click still counts: 30m, 45s, 2h, "
                        "1d, or seconds")
    p.add_argument("--out", required=True, type=_args.output_file, metavar="FILE",
                   help="the joined log to write, .parquet (replaced only once complete)")
    p.add_argument("--time", default="time", type=_args.nonempty_text, metavar="COLUMN",
                   help="the time column of both logs: seconds, or timestamps")
    p.add_argument("--label", default="label", type=_args.nonempty_text, metavar="COLUMN",
                   help="the name of the label column added")
    p.add_argument("--downsample", default=None, type=_args.probability, metavar="W",
                   help="keep each negative with probability W in (0, 1], every positive "
                        "(default: keep all)")
    p.add_argument("--seed", default=0, type=_args.nonneg_int,
                   help="seed of the down-sampling draws")
    p.add_argument("--duplicates", default="error", choices=("error", "drop"),
                   help="a key repeated within the window: stop naming the row, or drop "
                        "the repeats")
    p.set_defaults(handler=_join, check=_check_join)
    return p


def _config(args: argparse.Namespace):
    from jaxembed.data.join import JoinConfig

    return JoinConfig(key=args.key, window=args.window, time=args.time, label=args.label,
                      downsample=args.downsample, seed=args.seed, duplicates=args.duplicates)


def _check_join(args: argparse.Namespace) -> None:
    from jaxembed.data.join import check_sources

    if not args.out.lower().endswith((".parquet", ".pq")):
        raise _args.UsageError(f"--out {args.out!r}: expected a .parquet file name")
    _args.distinct_paths(**{"--impressions": args.impressions, "--clicks": args.clicks,
                            "--out": args.out})
    check_sources(args.impressions, args.clicks, _config(args))


def _join(args: argparse.Namespace) -> int:
    import time

    from jaxembed.data.join import join

    config = _config(args)
    tick = time.perf_counter()
    stats = join(args.impressions, args.clicks, key=config.key, window=config.window,
                 out=args.out, time=config.time, downsample=config.downsample,
                 seed=config.seed, duplicates=config.duplicates, label=config.label)
    seconds = time.perf_counter() - tick
    events = stats.impressions + stats.clicks
    print(f"impressions {stats.impressions:,} ({stats.duplicate_impressions:,} duplicates "
          f"dropped), clicks {stats.clicks:,}: {stats.matched_clicks:,} matched, "
          f"{stats.duplicate_clicks:,} repeated, {stats.late_clicks:,} late, "
          f"{stats.unmatched_clicks:,} unmatched", file=sys.stderr)
    print(f"wrote {stats.rows:,} rows ({stats.positives:,} positive, "
          f"{stats.negatives - stats.negatives_dropped:,} negative"
          + (f", {stats.negatives_dropped:,} negatives down-sampled away at "
             f"{config.negative_rate:g}" if config.downsample is not None else "")
          + f") to {os.path.abspath(args.out)} in {seconds:.1f} s "
          f"({events / max(seconds, 1e-9):,.0f} events/s)", file=sys.stderr)
    return 0
