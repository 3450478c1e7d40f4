"""Terminal progress bars (rich) behind the library's ``progress(stage, done, total)`` callbacks."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
)

__all__ = ["TileBars", "progress_bars", "tile_bars"]


def _progress(label_width: int, enabled: bool) -> Progress:
    """Bars with a label, the count done and the time left."""
    return Progress(
        TextColumn(f"[bold]{{task.description:<{label_width}}}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        disable=not enabled,
    )


@contextmanager
def progress_bars(enabled: bool = True) -> Iterator:
    """Yield a callback ``(stage, done, total)`` that draws one bar per stage.

    With ``enabled=False`` (or when the output is not a terminal, where rich prints nothing
    animated) the callback still works and costs nothing.
    """
    with _progress(10, enabled) as progress:
        tasks: dict[str, int] = {}

        def update(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = progress.add_task(stage, total=total)
            progress.update(tasks[stage], completed=done, total=total)

        yield update


class TileBars:
    """Terminal bars of a production run: all tiles, plus one bar per tile in flight
    (its model blocks), removed when the tile ends."""

    def __init__(self, progress: Progress) -> None:
        self._progress = progress
        self._overall: TaskID | None = None
        self._tiles: dict[str, TaskID] = {}

    def overall(self, done: int, total: int) -> None:
        if self._overall is None:
            self._overall = self._progress.add_task("tiles", total=total)
        self._progress.update(self._overall, completed=done, total=total)

    def tile(self, tile_id: str, done: int, total: int | None) -> None:
        if tile_id not in self._tiles:
            self._tiles[tile_id] = self._progress.add_task(f"  {tile_id}", total=total)
        self._progress.update(self._tiles[tile_id], completed=done, total=total)

    def tile_ended(self, tile_id: str) -> None:
        task = self._tiles.pop(tile_id, None)
        if task is not None:
            self._progress.remove_task(task)


@contextmanager
def tile_bars(enabled: bool = True) -> Iterator[TileBars]:
    """A :class:`TileBars` on the terminal (nothing drawn when ``enabled`` is False)."""
    with _progress(24, enabled) as progress:
        yield TileBars(progress)
