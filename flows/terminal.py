"""Terminal progress bars (rich) behind the library's ``progress(stage, done, total)`` callbacks."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

__all__ = ["progress_bars"]


@contextmanager
def progress_bars(enabled: bool = True) -> Iterator:
    """Yield a callback ``(stage, done, total)`` that draws one bar per stage.

    With ``enabled=False`` (or when the output is not a terminal, where rich prints nothing
    animated) the callback still works and costs nothing.
    """
    with Progress(
        TextColumn("[bold]{task.description:<10}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        disable=not enabled,
    ) as progress:
        tasks: dict[str, int] = {}

        def update(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = progress.add_task(stage, total=total)
            progress.update(tasks[stage], completed=done, total=total)

        yield update
