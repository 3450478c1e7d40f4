"""A run of many small tiles keeps the client and the workers flat and the scheduler's load
bounded by the tiles in flight: ``benchmarks/load.py`` on 121 tiles (the benchmark runs 400).

Dask's bounded histories (profiles, logs, the ``key_split`` cache...) are filled first
(``saturated``), so that what the slopes measure is what has no bound. Slow (about 2 minutes
on 2 cores): ``pytest -m slow tests/test_load.py``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the benchmarks folder

from benchmarks.load import LoadScenario, run_load

pytestmark = pytest.mark.slow

SCENARIO = LoadScenario(size_px=66, saturated=True)  # 11 x 11 tiles of 60 m, 3 in flight
CLIENT_MB_PER_100_TILES = 5.0
"""Client RSS slope allowed over the second half (scheduler included: a LocalCluster runs it
in the client process). Measured 2.1-2.8; one span per tile, as before pipelines.run_span,
added about 12."""
WORKER_MB_PER_100_TILES = 15.0
"""Worker RSS slope allowed (measured 2.3 over 400 tiles, up to 9 over 121 while a worker
still warms up); keeping one tile's cubes would add hundreds."""
SCHEDULER_P99_MS = 1000.0


def test_a_run_of_many_small_tiles_stays_flat(tmp_path: Path) -> None:
    result = run_load(SCENARIO, tmp_path)
    analysis, series = result["analysis"], result["analysis"]["series"]
    figures = (
        f"{result['tiles_done']} tiles in {result['wall_s']:.0f} s, "
        f"{analysis['tasks_per_s']:.0f} tasks/s ({analysis['tasks_per_tile']:.0f} per tile)"
    )
    assert result["tiles_done"] == SCENARIO.tiles == 121, figures
    assert not result["failures"], result["failures"]

    for key, limit in (("client_rss", CLIENT_MB_PER_100_TILES),
                       ("worker_rss", WORKER_MB_PER_100_TILES)):  # fmt: skip
        v = series[key]
        slope = v["slope_second_half_per_100_tiles"]
        assert abs(slope) <= limit, (
            f"{key} grows by {slope:+.1f} MB per 100 tiles over the second half (limit "
            f"{limit}); peak {v['peak']:.0f} MB, at 25/50/75/100 % of the tiles "
            f"{', '.join(f'{x:.0f}' for x in v['at'].values())} MB; {figures}"
        )

    tasks = series["scheduler_tasks"]
    bound = 1.5 * SCENARIO.tiles_in_flight * analysis["tasks_per_tile"]
    assert tasks["peak"] <= bound, (
        f"the scheduler held up to {tasks['peak']:.0f} tasks, more than 1.5 x "
        f"{SCENARIO.tiles_in_flight} tiles in flight x {analysis['tasks_per_tile']:.0f} tasks "
        f"per tile = {bound:.0f}; {figures}"
    )
    for key in ("scheduler_tasks", "scheduler_futures", "scheduler_span_groups"):
        v = series[key]
        assert v["peak_second_half"] <= 1.25 * v["peak_first_half"], (
            f"{key} grows with the tiles: peak {v['peak_first_half']:.0f} over the first half "
            f"of the tiles, {v['peak_second_half']:.0f} over the second; {figures}"
        )
    left = {"scheduler_tasks": 0, "scheduler_futures": 0, "worker_tasks": 0, "scheduler_spans": 1}
    after = {key: series[key]["after"] for key in left}
    assert after == left, f"left behind by the run: {after} (expected {left})"

    latency = analysis["scheduler_latency_ms"]
    assert latency["p99"] <= SCHEDULER_P99_MS, (
        f"the scheduler answered an O(1) call in {latency['p50']:.0f} ms (p50), "
        f"{latency['p99']:.0f} ms (p99), {latency['max']:.0f} ms (max); {figures}"
    )
