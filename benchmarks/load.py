"""Memory and scheduler load over a run of a few hundred small tiles.

One simulated region served by a real STAC API on 127.0.0.1 (rustac), cut into small tiles
(default 60 m: 6 x 6 output pixels, each read with the model's 60 px margin, so a tile's model
work is small and the run is mostly per-tile overhead: plan, graphs, scheduler, reads, writes,
completion records), produced with the bundled model by ``pipelines.production.run_region``
(the library call of ``tamrf run``) on a local cluster started as ``tamrf run`` starts it,
with several tiles in flight. While it runs, a thread of the client process samples every
``--interval`` seconds:

- the client process: RSS and the memory blocks Python's allocator holds
  (``sys.getallocatedblocks``: small objects, O(1) to read; ``gc.get_objects`` would hand out
  references to objects that other threads are still building, and CPython then fails them
  with ``SystemError: bad argument to internal function``). A ``LocalCluster`` runs its
  scheduler in this process, so the scheduler's memory is in it;
- every worker (``client.run``): RSS, tasks executed so far, tasks held, allocator blocks;
- the scheduler (``client.run_on_scheduler``): tasks held, futures the clients hold, task
  groups alive and task groups kept by its spans (dask/distributed#7977), events, computations;
- the round trip of that O(1) scheduler call: how responsive the scheduler is;
- tiles done (the run's reporter).

Reported: peaks; values at 25, 50, 75 and 100 % of the tiles done; the slope of each value
against tiles done over the second half of the tiles, per 100 tiles (flat: about 0); the
scheduler's latency p50/p99; tasks executed per second; what the run leaves behind once it
returned.

Usage::

    python benchmarks/load.py                  # 400 tiles of 60 m, 3 in flight, 2 workers
    python benchmarks/load.py --saturated      # Dask's bounded histories filled first
    python benchmarks/load.py --size-px 66 --saturated  # 121 tiles (tests/test_load.py)
    python benchmarks/load.py --report benchmarks/results/load.json

Writes ``--out`` (JSON with every sample, default benchmarks/results/load.json) and a
markdown table.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import gc
import hashlib
import json
import os
import platform
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dask

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MB = 1e6
QUARTERS = (0.25, 0.5, 0.75, 1.0)


@dataclasses.dataclass(frozen=True)
class LoadScenario:
    """A simulated square region cut into small tiles, and the cluster that runs it."""

    size_px: int = 120
    """Region side in 10 m pixels (a multiple of 6): (size_px * 10 / tile_size_m)² tiles."""
    tile_size_m: float = 60.0
    """A multiple of 60 m, so that the region's edges (on 60 m) fall on tile edges."""
    start: dt.date = dt.date(2022, 6, 1)
    end: dt.date = dt.date(2022, 6, 16)
    """A short period: 2 S2 and 2 Landsat dates kept per tile."""
    dates: tuple[str, ...] = ("2022-06-08",)
    tiles_in_flight: int = 3
    workers: int = 2
    threads_per_worker: int = 1
    interval_s: float = 0.5
    saturated: bool = False
    """Fill Dask's bounded histories before the run (:func:`saturated_histories`), so that
    what still grows is what has no bound."""

    @property
    def tiles(self) -> int:
        return round(self.size_px * 10 / self.tile_size_m) ** 2


# ------------------------------------------------------------------ bounded histories

HISTORY_CAPS = {
    "distributed.admin.low-level-log-length": 20,
    "distributed.diagnostics.computations.max-history": 5,
    "distributed.admin.system-monitor.log-length": 20,
    "distributed.admin.log-length": 100,
}
"""Dask's configurable histories, capped low in a saturated run. By default they hold
1000 entries (worker profile cycles of 1 s, transition, stimulus and transfer logs), 100
computations (each with its task groups), 7200 system-monitor samples and 10000 log records:
they fill during the first minutes of a run (about 17 for the profiles) and then stay flat."""
KEY_CACHE_SIZE = 100_000
"""``dask.utils.key_split`` keeps its last 100000 keys (``functools.lru_cache``, not
configurable): every process that names tasks (client, scheduler, workers) fills it over the
first few hundred tiles."""


def _fill_key_cache(dask_worker: Any = None) -> int:
    """Fill this process's ``key_split`` cache with keys shaped like a tile's (a token-named
    layer and a chunk index), so that a run's keys replace them instead of adding to it."""
    from dask.utils import key_split

    for i in range(KEY_CACHE_SIZE):
        key_split((f"warm-up-layer-{i:032x}", 0, 0, 0))
    return key_split.cache_info().currsize


@contextlib.contextmanager
def saturated_histories(saturated: bool) -> Iterator[None]:
    """Dask's configurable histories capped (:data:`HISTORY_CAPS`) while a cluster starts in
    this context (its nannies pass the configuration on to the workers); nothing otherwise."""
    with dask.config.set(HISTORY_CAPS if saturated else {}):
        yield


# ------------------------------------------------------------------------------- probes


def _scheduler_probe(dask_scheduler: Any) -> dict[str, int]:
    """O(1)-ish counts of what the scheduler holds (run on the scheduler's event loop)."""
    spans = dask_scheduler.extensions.get("spans")
    return {
        "tasks": len(dask_scheduler.tasks),
        "futures": sum(len(c.wants_what) for c in dask_scheduler.clients.values()),
        "task_groups": len(dask_scheduler.task_groups),
        "spans": len(spans.spans) if spans else 0,
        "span_groups": sum(len(s.groups) for s in spans.spans.values()) if spans else 0,
        "events": sum(len(e) for e in dask_scheduler.get_events().values()),
        "computations": len(dask_scheduler.computations),
        "transitions": dask_scheduler.transition_counter,
    }


def _key_cache_size() -> int:
    from dask.utils import key_split

    return key_split.cache_info().currsize


def _worker_probe(dask_worker: Any) -> dict[str, int]:
    """RSS, tasks executed so far, tasks held and allocator blocks of one worker."""
    import psutil

    return {
        "rss": psutil.Process().memory_info().rss,
        "executed": dask_worker.state.executed_count,
        "tasks": len(dask_worker.state.tasks),
        "blocks": sys.getallocatedblocks(),
        "key_cache": _key_cache_size(),
        "profile_history": len(dask_worker.profile_history),
    }


class TileCounter:
    """A :class:`pipelines.tiles_in_flight.RunReporter` that counts finished tiles."""

    def __init__(self) -> None:
        self.total = 0
        self.done = 0
        self.failed: list[dict[str, Any]] = []

    def planned(self, plan: Any) -> None:
        self.total = len(plan.pending())

    def tile_started(self, tile_id: str, attempt: int) -> None:
        pass

    def tile_blocks(self, tile_id: str, done: int, total: int) -> None:
        pass

    def tile_finished(self, outcome: Any) -> None:
        self.done += 1
        if outcome.status != "done":
            self.failed.append({"tile": outcome.tile_id, "error": outcome.error,
                                "details": outcome.details})  # fmt: skip


class Sampler(threading.Thread):
    """Samples the client, the workers and the scheduler every ``interval_s`` until
    stopped; one sample is a flat dict (see :func:`sample`)."""

    def __init__(self, client: Any, tiles: TileCounter, interval_s: float) -> None:
        super().__init__(name="tamrf-load-sampler", daemon=True)
        self.client, self.tiles, self.interval_s = client, tiles, interval_s
        self.samples: list[dict[str, Any]] = []
        self.start_time = time.perf_counter()
        self._stop_event = threading.Event()

    def sample(self) -> dict[str, Any]:
        """One sample: ``t`` (s), ``tiles``, ``client_rss``, ``client_blocks``,
        ``scheduler_latency_s`` and the scheduler's counts (``scheduler_*``), ``worker_rss``
        (max over workers), ``worker_blocks`` (max), ``executed`` (sum), ``worker_tasks``
        (sum), ``per_worker_rss`` ({address: bytes})."""
        import psutil

        tiles = self.tiles.done
        start = time.perf_counter()
        scheduler = self.client.run_on_scheduler(_scheduler_probe)
        latency = time.perf_counter() - start
        workers = self.client.run(_worker_probe)
        return {
            "t": time.perf_counter() - self.start_time,
            "tiles": tiles,
            "client_rss": psutil.Process().memory_info().rss,
            "client_blocks": sys.getallocatedblocks(),
            "client_key_cache": _key_cache_size(),
            "scheduler_latency_s": latency,
            **{f"scheduler_{k}": v for k, v in scheduler.items()},
            "worker_rss": max(w["rss"] for w in workers.values()),
            "worker_blocks": max(w["blocks"] for w in workers.values()),
            "worker_key_cache": max(w["key_cache"] for w in workers.values()),
            "worker_profile_history": max(w["profile_history"] for w in workers.values()),
            "worker_tasks": sum(w["tasks"] for w in workers.values()),
            "executed": sum(w["executed"] for w in workers.values()),
            "per_worker_rss": {a: w["rss"] for a, w in workers.items()},
        }

    def run(self) -> None:
        while not self._stop_event.is_set():
            began = time.perf_counter()
            self.samples.append(self.sample())
            self._stop_event.wait(max(0.0, self.interval_s - (time.perf_counter() - began)))

    def stop(self) -> None:
        self._stop_event.set()
        self.join()


# --------------------------------------------------------------------------------- run


def simulated_catalog(scenario: LoadScenario, data_dir: Path) -> tuple[Any, Path]:
    """The scenario's region (cached under ``data_dir`` by its configuration)."""
    from pipelines.demo.simulated_catalog import open_or_write_simulated_catalog
    from tamrf_xr.simulate import SimulationConfig

    config = SimulationConfig(seed=0, width_px=scenario.size_px, height_px=scenario.size_px,
                              start=scenario.start, end=scenario.end,
                              cloud_cover_mean=0.2)  # fmt: skip
    key = hashlib.sha256(config.to_json().encode()).hexdigest()[:16]
    product = open_or_write_simulated_catalog(config, data_dir / "catalogs" / key)
    return config, product.catalog


def run_load(scenario: LoadScenario, data_dir: Path) -> dict[str, Any]:
    """Run the scenario with the sampler on; the samples and their analysis."""
    import shutil

    from pipelines.cluster import ClusterConfig, start_cluster
    from pipelines.demo.region_request import simulated_region_request
    from pipelines.demo.stac_servers import RustacServer
    from pipelines.production import run_region, search_region

    config, catalog = simulated_catalog(scenario, data_dir)
    out = data_dir / "runs" / f"{scenario.size_px}px-{scenario.tile_size_m:g}m"
    shutil.rmtree(out, ignore_errors=True)
    cluster = ClusterConfig(n_workers=scenario.workers, kind="cpu", dashboard_address=None,
                            threads_per_worker=scenario.threads_per_worker)  # fmt: skip
    with (
        RustacServer(catalog) as server,
        saturated_histories(scenario.saturated),
        start_cluster(cluster) as running,
    ):
        request = simulated_region_request(
            config, out, server.url, dates=scenario.dates, tile_size_m=scenario.tile_size_m,
            tiles_in_flight=scenario.tiles_in_flight,
        )  # fmt: skip
        items = search_region(request)
        if scenario.saturated:
            _fill_key_cache()
            running.client.run(_fill_key_cache)
        tiles = TileCounter()
        sampler = Sampler(running.client, tiles, scenario.interval_s)
        before = sampler.sample()  # the warm cluster, before the run
        sampler.start()
        start = time.perf_counter()
        try:
            summary = run_region(request, ClusterConfig(address=running.client.scheduler.address),
                                 reporter=tiles, items=items)  # fmt: skip
        finally:
            wall_s = time.perf_counter() - start
            sampler.stop()
        gc.collect()
        after = sampler.sample()  # what the run left behind
    store = Path(summary["level3"]["store"])
    files = [p for p in store.rglob("*") if p.is_file()]
    return {
        "scenario": {
            **dataclasses.asdict(scenario),
            "start": str(scenario.start),
            "end": str(scenario.end),
        },
        "tiles": tiles.total,
        "tiles_done": tiles.done,
        "tiles_failed": len(tiles.failed),
        "failures": tiles.failed,
        "wall_s": wall_s,
        "summary_bytes_per_tile": len(json.dumps(summary["tiles"])) / max(tiles.done, 1),
        "store": {"files": len(files), "bytes": sum(p.stat().st_size for p in files)},
        "before": before,
        "after": after,
        "samples": sampler.samples,
        "analysis": analyse(sampler.samples, tiles.total, before, after),
    }


# ----------------------------------------------------------------------------- analysis

SERIES = {
    "client_rss": ("client RSS (scheduler included)", MB, "MB"),
    "worker_rss": ("worker RSS, largest worker", MB, "MB"),
    "client_blocks": ("client Python allocator blocks", 1e3, "thousand"),
    "worker_blocks": ("worker Python allocator blocks, largest worker", 1e3, "thousand"),
    "scheduler_tasks": ("tasks held by the scheduler", 1, "tasks"),
    "scheduler_futures": ("futures held by clients", 1, "futures"),
    "scheduler_task_groups": ("task groups alive on the scheduler", 1, "groups"),
    "scheduler_spans": ("spans on the scheduler", 1, "spans"),
    "scheduler_span_groups": ("task groups kept by the scheduler's spans", 1, "groups"),
    "worker_tasks": ("tasks held by the workers", 1, "tasks"),
    "client_key_cache": ("client key_split cache (bounded: 100000)", 1e3, "thousand"),
    "worker_key_cache": ("worker key_split cache, largest (bounded: 100000)", 1e3, "thousand"),
    "worker_profile_history": ("worker profile cycles kept, largest (bounded)", 1, "cycles"),
}
"""Sampled series: label, unit divisor, unit."""


def slope_per_100_tiles(samples: list[dict[str, Any]], key: str, total: int) -> float:
    """Least-squares slope of ``key`` against tiles done over the second half of the tiles
    (samples taken once half of them were done and before the last one was: the run's end,
    consolidation, STAC and quicklooks, is not tile work), per 100 tiles (series' units)."""
    import numpy as np

    half = [s for s in samples if total / 2 <= s["tiles"] < total]
    tiles = np.array([s["tiles"] for s in half], float)
    if len(half) < 3 or np.ptp(tiles) == 0:
        return float("nan")
    return float(np.polyfit(tiles, np.array([s[key] for s in half], float), 1)[0] * 100)


def at_fraction(samples: list[dict[str, Any]], total: int, fraction: float) -> dict[str, Any]:
    """The first sample taken once ``fraction`` of the tiles were done (else the last)."""
    return next((s for s in samples if s["tiles"] >= fraction * total), samples[-1])


def analyse(
    samples: list[dict[str, Any]], total: int, before: dict[str, Any], after: dict[str, Any]
) -> dict[str, Any]:
    """Peaks, quarter values, second-half slopes, scheduler latency and task rate."""
    import numpy as np

    series = {}
    for key, (_, scale, _unit) in SERIES.items():
        values = [s[key] for s in samples]
        first = [s[key] for s in samples if s["tiles"] < total / 2]
        second = [s[key] for s in samples if total / 2 <= s["tiles"] < total]
        series[key] = {
            "before": before[key] / scale,
            "peak": max(values) / scale,
            "at": {f"{q:.0%}": at_fraction(samples, total, q)[key] / scale for q in QUARTERS},
            "peak_first_half": max(first, default=0) / scale,
            "peak_second_half": max(second, default=0) / scale,
            "slope_second_half_per_100_tiles": slope_per_100_tiles(samples, key, total) / scale,
            "after": after[key] / scale,
        }
    latency = np.array([s["scheduler_latency_s"] for s in samples])
    running = [s for s in samples if 0 < s["tiles"] < total] or samples
    seconds = running[-1]["t"] - running[0]["t"]
    executed = running[-1]["executed"] - running[0]["executed"]
    transitions = running[-1]["scheduler_transitions"] - running[0]["scheduler_transitions"]
    tiles = running[-1]["tiles"] - running[0]["tiles"]
    return {
        "series": series,
        "samples": len(samples),
        "scheduler_latency_ms": {
            "p50": float(np.percentile(latency, 50) * 1e3),
            "p99": float(np.percentile(latency, 99) * 1e3),
            "max": float(latency.max() * 1e3),
        },
        "tasks_per_s": executed / seconds if seconds else float("nan"),
        "transitions_per_s": transitions / seconds if seconds else float("nan"),
        "tiles_per_s": tiles / seconds if seconds else float("nan"),
        "tasks_per_tile": executed / tiles if tiles else float("nan"),
    }


def markdown(result: dict[str, Any]) -> str:
    a, s = result["analysis"], result["scenario"]
    lines = [
        f"Load, {result['date'][:10]}, {result['environment']['cpu_count']} cores: "
        f"{result['tiles']} tiles of {s['tile_size_m']:g} m ({s['size_px']} px region), "
        f"{s['tiles_in_flight']} in flight, {s['workers']} worker(s) x "
        f"{s['threads_per_worker']} thread(s), "
        f"{'saturated' if s['saturated'] else 'default'} Dask histories, "
        f"{result['tiles_done']} done "
        f"({result['tiles_failed']} failed) in {result['wall_s']:.0f} s, "
        f"{a['samples']} samples.",
        "",
        "| quantity | before | peak | at 25 % | 50 % | 75 % | 100 % | slope, 2nd half, per 100 "
        "tiles | after the run |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for key, (label, _, unit) in SERIES.items():
        v = a["series"][key]
        fmt = ".0f" if unit != "thousand" else ".1f"
        quarters = " | ".join(f"{x:{fmt}}" for x in v["at"].values())
        lines.append(
            f"| {label} ({unit}) | {v['before']:{fmt}} | {v['peak']:{fmt}} | {quarters} "
            f"| {v['slope_second_half_per_100_tiles']:+.2f} | {v['after']:{fmt}} |"
        )
    lat = a["scheduler_latency_ms"]
    lines += [
        "",
        f"Scheduler round trip (O(1) call) p50 {lat['p50']:.1f} ms, p99 {lat['p99']:.1f} ms, "
        f"max {lat['max']:.0f} ms; {a['tasks_per_s']:.0f} tasks executed per s "
        f"({a['tasks_per_tile']:.0f} per tile; {a['transitions_per_s']:.0f} scheduler "
        f"transitions per s), {a['tiles_per_s']:.2f} tiles per s; run "
        f"summary {result['summary_bytes_per_tile'] / 1e3:.1f} kB per tile; store "
        f"{result['store']['files']} files, {result['store']['bytes'] / MB:.1f} MB.",
    ]
    return "\n".join(lines)


def environment() -> dict[str, Any]:
    import distributed
    import torch

    return {"cpu_count": os.cpu_count(), "torch": torch.__version__,
            "distributed": distributed.__version__, "python": platform.python_version(),
            "load_average_start": os.getloadavg()[0]}  # fmt: skip


def main(argv: list[str] | None = None) -> dict[str, Any]:
    defaults = LoadScenario()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-px", type=int, default=defaults.size_px)
    parser.add_argument("--tile-size-m", type=float, default=defaults.tile_size_m)
    parser.add_argument("--tiles-in-flight", type=int, default=defaults.tiles_in_flight)
    parser.add_argument("--workers", type=int, default=defaults.workers)
    parser.add_argument("--threads-per-worker", type=int, default=defaults.threads_per_worker)
    parser.add_argument("--interval", type=float, default=defaults.interval_s)
    parser.add_argument(
        "--saturated", action="store_true", help="fill Dask's bounded histories first"
    )
    parser.add_argument("--data-dir", type=Path, default=Path("benchmarks/results/load"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/load.json"))
    parser.add_argument("--report", type=Path, help="re-print an earlier --out JSON")
    args = parser.parse_args(argv)
    if args.report:
        result = json.loads(args.report.read_text())
        print(markdown(result))
        return result
    scenario = dataclasses.replace(
        defaults, size_px=args.size_px, tile_size_m=args.tile_size_m,
        tiles_in_flight=args.tiles_in_flight, workers=args.workers,
        threads_per_worker=args.threads_per_worker, interval_s=args.interval,
        saturated=args.saturated,
    )  # fmt: skip
    result = {
        "benchmark": "load",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "environment": environment(),
    }
    result |= run_load(scenario, args.data_dir.absolute())
    result["environment"]["load_average_end"] = os.getloadavg()[0]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(markdown(result))
    print(f"\nwrote {args.out}", file=sys.stderr)
    return result


if __name__ == "__main__":
    main()
