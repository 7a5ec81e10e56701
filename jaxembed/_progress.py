"""One progress display for every long loop: a bar with the done/total count, the rate and
the time left (rich, on stderr), so each command's long work reads the same way."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    ProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text


class RateColumn(ProgressColumn):
    """The task's speed in its own unit (``task.fields['unit']``, default 'it') per second,
    with k/M prefixes."""

    def render(self, task: Any) -> Text:
        speed = task.finished_speed or task.speed
        unit = task.fields.get("unit", "it")
        if speed is None:
            return Text(f"- {unit}/s", style="progress.data.speed")
        for scale, prefix in ((1e6, "M"), (1e3, "k"), (1.0, "")):
            if speed >= scale:
                return Text(f"{speed / scale:.1f} {prefix}{unit}/s", style="progress.data.speed")
        return Text(f"{speed:.2f} {unit}/s", style="progress.data.speed")


def progress_bar(*extra: ProgressColumn | str, transient: bool = False,
                 console: Console | None = None) -> Progress:
    """A rich :class:`Progress` with description, bar, percentage, rate, elapsed
    time and ETA (then any ``extra`` columns), on stderr by default. Give a task its unit
    with ``add_task(..., unit="tokens")``."""
    return Progress(
        TextColumn("{task.description}"), BarColumn(bar_width=24),
        TextColumn("{task.percentage:>3.0f}%"), RateColumn(), TimeElapsedColumn(),
        TextColumn("eta"), TimeRemainingColumn(), *extra,
        console=console or Console(stderr=True), transient=transient)
