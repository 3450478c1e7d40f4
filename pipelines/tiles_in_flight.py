"""Several tiles in flight on one cluster, with retries, failure isolation and progress.

Each tile is orchestrated by a client thread that builds its graph and submits it to the
shared Dask cluster, so while one tile's model blocks run, another tile's quality layers and
bands are read: the cluster stays busy. At most ``in_flight`` tiles are alive at once (their
graphs and results are what takes memory), so memory stays flat however many tiles a run has.

A tile that fails with a transient error (I/O, network, a lost worker) is retried with
exponential backoff; after the last retry, or at once for any other error, it is reported as
failed and the run goes on with the others. An error that every other tile would hit too (the
output's file system full or read-only: :data:`FATAL_ERRORS`) stops the run at once, as an
interrupt (Ctrl-C, SIGTERM) does: no tile starts or retries any more, and the run does not wait
for the tiles in flight (closing the cluster ends them; a tile gets its completion record only
after its data, so one cut short counts as missing). Reporter calls are made in the calling
thread only (Prefect's run context and artifact client live there), from a queue the tile
threads fill.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

from distributed.client import FutureCancelledError
from distributed.scheduler import KilledWorker

from pipelines.output_errors import OutputWriteError

__all__ = ["FATAL_ERRORS", "TRANSIENT_ERRORS", "RunReporter", "TileOutcome", "run_tiles"]

LOG = logging.getLogger(__name__)
Work = TypeVar("Work")

TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    OSError,  # file systems, HTTP/S3 reads, lost connections to the scheduler (CommClosedError)
    TimeoutError,
    KilledWorker,  # a worker died (out of memory, preempted): another one may finish it
    FutureCancelledError,
)
FATAL_ERRORS: tuple[type[BaseException], ...] = (
    OutputWriteError,  # a full or read-only output: every other tile would fail the same way
)


@dataclass(frozen=True)
class TileOutcome:
    """How one tile ended."""

    tile_id: str
    status: str
    """``done`` or ``failed``."""
    attempts: int
    seconds: float
    """Wall time of all attempts."""
    started: float = 0.0
    finished: float = 0.0
    """Epoch seconds of the first attempt's start and of the end (overlaps show tiles that
    were in flight together)."""
    summary: dict[str, Any] = field(default_factory=dict)
    """What the tile's work returned (done tiles)."""
    error: str | None = None
    """``Type: message`` of the last error (failed tiles)."""
    details: str | None = None
    """The last error's traceback."""


class RunReporter(Protocol):
    """Receives a run's progress (every call in the thread that runs the tiles)."""

    def planned(self, plan: Any) -> None:
        """The run's :class:`pipelines.tile_plan.RegionPlan`, before any tile starts."""

    def tile_started(self, tile_id: str, attempt: int) -> None: ...

    def tile_blocks(self, tile_id: str, done: int, total: int) -> None:
        """Model blocks of a tile finished so far."""

    def tile_finished(self, outcome: TileOutcome) -> None: ...


class _Attempts(Generic[Work]):
    """One tile's attempts, run in a pool thread; events go to the queue."""

    def __init__(self, events: queue.Queue, retries: int, backoff_s: float) -> None:
        self.events = events
        self.retries = retries
        self.backoff_s = backoff_s
        self.stopping = threading.Event()
        """Set when the run stops: no attempt starts any more (the cluster is going away)."""

    def __call__(
        self, tile_id: str, work: Work, produce: Callable[[Work, Callable[[int, int], None]], dict]
    ) -> TileOutcome:
        start, started = time.perf_counter(), time.time()
        attempt = 0
        while True:
            attempt += 1
            if self.stopping.is_set():
                return TileOutcome(tile_id, "failed", attempt - 1, time.perf_counter() - start,
                                   started, time.time(), error="the run stopped")  # fmt: skip
            self.events.put(("started", tile_id, attempt))
            try:
                summary = produce(
                    work, lambda done, total: self.events.put(("blocks", tile_id, done, total))
                )
            except FATAL_ERRORS:
                raise  # the run stops: run_tiles re-raises it
            except Exception as error:
                transient = isinstance(error, TRANSIENT_ERRORS)
                if transient and attempt <= self.retries:
                    # Woken early when the run stops (then no further attempt starts).
                    self.stopping.wait(self.backoff_s * 2 ** (attempt - 1))
                    continue
                return TileOutcome(
                    tile_id, "failed", attempt, time.perf_counter() - start, started, time.time(),
                    error=f"{type(error).__name__}: {error}"
                    + ("" if transient else " (not transient: not retried)"),
                    details=traceback.format_exc(),
                )  # fmt: skip
            return TileOutcome(tile_id, "done", attempt, time.perf_counter() - start, started,
                               time.time(), summary)  # fmt: skip


def run_tiles(
    work: Sequence[Work],
    produce: Callable[[Work, Callable[[int, int], None]], dict[str, Any]],
    key: Callable[[Work], str],
    in_flight: int = 2,
    retries: int = 2,
    reporter: RunReporter | None = None,
    backoff_s: float = 2.0,
) -> list[TileOutcome]:
    """Run ``produce(work, progress)`` for every item of ``work``, ``in_flight`` at a time.

    Args:
        work: one entry per tile (in the order they should start).
        produce: the tile's work; ``progress(done, total)`` reports its model blocks; returns
            the tile's summary.
        key: the tile id of an entry.
        in_flight: tiles alive at once (>= 1).
        retries: retries after a transient error (:data:`TRANSIENT_ERRORS`).
        reporter: progress, called in this thread.
        backoff_s: first retry delay, doubled each retry.

    Returns:
        One outcome per entry, in the order of ``work``.

    Raises:
        An error of :data:`FATAL_ERRORS` from a tile, or an interrupt (KeyboardInterrupt,
        SIGTERM turned into one by :mod:`flows.process_cleanup`): at once, without waiting
        for the tiles in flight.
    """
    if in_flight < 1:
        raise ValueError(f"in_flight={in_flight}: at least one tile must run")
    events: queue.Queue = queue.Queue()
    attempts = _Attempts[Work](events, retries, backoff_s)
    outcomes: dict[str, TileOutcome] = {}

    def report(method: str, *args: Any) -> None:
        # A reporter that fails (the Prefect API unreachable, a closed terminal) must not
        # stop the tiles: the completion records and the summary are what counts.
        if reporter is None:
            return
        try:
            getattr(reporter, method)(*args)
        except Exception:
            LOG.warning("progress reporter failed in %s; the run goes on", method, exc_info=True)

    def deliver(event: tuple) -> None:
        report("tile_started" if event[0] == "started" else "tile_blocks", *event[1:])

    # The pool starts a tile only when a thread is free: at most in_flight are alive.
    pool = ThreadPoolExecutor(max_workers=in_flight, thread_name_prefix="tamrf-tile")
    futures: dict[Future, str] = {
        pool.submit(attempts, key(entry), entry, produce): key(entry) for entry in work
    }
    pending = set(futures)
    try:
        while pending:
            finished, pending = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
            while not events.empty():
                deliver(events.get_nowait())
            for future in finished:
                outcome = future.result()  # raises only a FATAL_ERRORS error
                outcomes[outcome.tile_id] = outcome
                report("tile_finished", outcome)
    except BaseException:
        # Ctrl-C, SIGTERM or a fatal error: start no more tiles or attempts, and do not wait
        # for those in flight (threads cannot be killed; the caller closes the cluster,
        # which ends their work; a tile's record follows its data, so none is half complete).
        attempts.stopping.set()
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
    while not events.empty():
        deliver(events.get_nowait())
    return [outcomes[key(entry)] for entry in work]
