"""A rich progress bar for training loops (on stderr), or nothing when turned off."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator


@contextlib.contextmanager
def training_bar(description: str, total: int,
                 enabled: bool) -> Iterator[Callable[[int, float], None]]:
    """Yield ``update(steps_done, loss)``: a bar over ``total`` steps showing the last loss."""
    if not enabled:
        yield lambda done, loss: None
        return
    from rich.progress import TextColumn

    from jaxembed._progress import progress_bar

    with progress_bar(TextColumn("loss {task.fields[loss]}")) as bar:
        task = bar.add_task(description, total=total, loss="-", unit="steps")

        def update(done: int, loss: float) -> None:
            bar.update(task, completed=done, loss=f"{loss:.4f}")

        yield update
