"""One Dask span for all the tiles of a run, so that the scheduler and the workers keep
nothing per tile once it is written.

Dask files every task group (one per graph layer and computation: a small tile's graphs make
about 60) under a *span*, and keeps spans and their task groups for the scheduler's whole life
(dask/distributed#7977). Tasks without a span annotation go to a "default" span that is
replaced by a new one whenever the cluster goes idle, which with tiles in flight happens
between tiles. Measured by ``benchmarks/load.py`` (tiles of 60 m, 3 in flight, 2 workers):
the scheduler kept 66 task groups per tile and each worker 53 fine-performance-metric entries
per tile (``Worker.digests_total``, keyed by span id), and the client process, where a
``LocalCluster`` runs the scheduler, grew by 9 MB per 100 tiles from this alone (12 against 3
with Dask's bounded histories filled first; 22 against 10 without), without bound.

So :func:`run_span` opens ONE span for the run (named ``tamrf-run``: the run is one entry in
the dashboard's fine performance metrics), every tile's thread computes inside it
(:meth:`RunSpan.tile`; a span is a context variable, which threads do not inherit), and after
each tile the span lets go of the task groups the scheduler has forgotten (all their tasks
released). The span's worker metrics (``cumulative_worker_metrics``, keyed by task prefix,
not by tile) are kept whole; its task-state counts and durations then cover the tiles still
in flight. The span itself is never removed: workers may still report metrics for it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import dask
import distributed

__all__ = ["RunSpan", "run_span"]

SPAN_NAME = "tamrf-run"
LOG = logging.getLogger(__name__)


@dataclass
class RunSpan:
    """A run's span on ``client``'s scheduler."""

    client: distributed.Client
    id: str
    annotation: dict[str, Any]
    """The ``span`` annotation (``{"name": (...), "ids": (...)}``) to put on graphs."""
    _warned: bool = field(default=False, repr=False)

    @contextmanager
    def tile(self) -> Iterator[None]:
        """Around one tile's work, in its own thread: its graphs go to the run's span, and
        the groups of the tiles finished by then are let go once it ends (failed or not)."""
        try:
            with dask.annotate(span=self.annotation):
                yield
        finally:
            try:
                self.release_forgotten_groups()
            except Exception:  # housekeeping (a lost scheduler, no run_on_scheduler): never
                if not self._warned:  # a tile's failure; said once
                    self._warned = True
                    LOG.warning("cannot release the finished task groups of span %s: the "
                                "scheduler keeps them", self.id, exc_info=True)  # fmt: skip

    def release_forgotten_groups(self) -> int:
        """Drop from the span the task groups the scheduler has forgotten; how many."""
        return self.client.run_on_scheduler(_release_forgotten_groups, span_id=self.id)


@contextmanager
def run_span(client: distributed.Client, name: str = SPAN_NAME) -> Iterator[RunSpan]:
    """Open the run's span (in the calling thread) for :meth:`RunSpan.tile`."""
    with distributed.span(name) as span_id:
        yield RunSpan(client, span_id, dask.get_annotations()["span"])


def _release_forgotten_groups(span_id: str, dask_scheduler: Any) -> int:
    """On the scheduler: remove from span ``span_id`` the task groups that are no longer
    the scheduler's (forgotten), keeping one (``Span.stop`` needs a group)."""
    spans = dask_scheduler.extensions.get("spans")
    span = spans.spans.get(span_id) if spans is not None else None
    if span is None:
        return 0
    alive = dask_scheduler.task_groups
    forgotten = {group for group in span.groups if alive.get(group.name) is not group}
    if forgotten and len(forgotten) == len(span.groups):
        forgotten.discard(max(forgotten, key=lambda group: group.stop))
    span.groups.difference_update(forgotten)
    return len(forgotten)
