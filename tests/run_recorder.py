"""A run reporter for tests: records every call and the thread it came from."""

from __future__ import annotations

import threading

from pipelines.tiles_in_flight import TileOutcome

__all__ = ["Recorder"]


class Recorder:
    """A reporter that records its calls and the thread they came from."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []
        self.threads: set[int] = set()

    def planned(self, plan) -> None:
        self.calls.append(("planned",))

    def tile_started(self, tile_id: str, attempt: int) -> None:
        self.threads.add(threading.get_ident())
        self.calls.append(("started", tile_id, attempt))

    def tile_blocks(self, tile_id: str, done: int, total: int) -> None:
        self.threads.add(threading.get_ident())
        self.calls.append(("blocks", tile_id, done, total))

    def tile_finished(self, outcome: TileOutcome) -> None:
        self.threads.add(threading.get_ident())
        self.calls.append(("finished", outcome.tile_id, outcome.status))
