"""pipelines.run_span: a run's tiles compute in one Dask span, which keeps only the task
groups of tiles still in flight (benchmarks/load.py measures the effect over 400 tiles)."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import dask.array as da
import distributed
import pytest

from pipelines.run_span import SPAN_NAME, run_span


def spans_on(dask_scheduler: distributed.Scheduler) -> dict[str, int]:
    """Groups kept per span name on the scheduler."""
    spans = dask_scheduler.extensions["spans"].spans.values()
    return {"/".join(s.name): sum(len(x.groups) for x in spans if x.name == s.name) for s in spans}


@pytest.fixture(scope="module")
def client():
    with (
        distributed.LocalCluster(
            n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None
        ) as cluster,  # fmt: skip
        distributed.Client(cluster) as client,
    ):
        yield client


def tile_work(seed: int) -> float:
    """A few graph layers, computed in two steps (as a tile persists, then writes)."""
    x = da.random.default_rng(seed).random((60, 60), chunks=30)
    y = (x + 1).persist()
    return float((y * 2).sum().compute())


def test_every_tile_computes_in_the_run_span_which_keeps_no_finished_group(client) -> None:
    with run_span(client) as span, ThreadPoolExecutor(3) as pool:

        def tile(seed: int) -> float:
            with span.tile():
                return tile_work(seed)

        assert len(list(pool.map(tile, range(12)))) == 12
    # The last tiles' tasks are forgotten a moment after their results arrive.
    deadline = time.monotonic() + 10
    while (kept := client.run_on_scheduler(spans_on)).get(SPAN_NAME) != 1:
        if time.monotonic() > deadline:
            break
        span.release_forgotten_groups()
        time.sleep(0.1)
    assert set(kept) == {SPAN_NAME}, f"tiles computed outside the run's span: {kept}"
    assert kept[SPAN_NAME] == 1, f"{kept[SPAN_NAME]} task groups kept once 12 tiles are done"


def test_a_failed_release_never_fails_a_tile(client, monkeypatch, caplog) -> None:
    with run_span(client) as span:

        def unreachable(*args: object, **kwargs: object) -> None:
            raise OSError("scheduler gone")

        monkeypatch.setattr(span.client, "run_on_scheduler", unreachable)
        for seed in range(2):
            with span.tile():
                tile_work(seed)
    warnings = [r for r in caplog.records if "cannot release" in r.getMessage()]
    assert len(warnings) == 1, "said once, not per tile"
