"""End-to-end throughput (STAC -> cubes -> model -> Zarr) against the model kernel alone.

For each scenario, on one local Dask cluster (the production default: worker processes,
``pipelines.cluster.start_cluster``) and a simulated region served by a real STAC API on
127.0.0.1:

- **end-to-end**: ``pipelines.production.run_region`` (what ``tamrf run`` runs): one search,
  the plan, several tiles in flight, cubes, the model, the Level-3 store and its STAC
  collection, timed from the call to its return.
- **kernel**: the same tiles' cubes (same items, grids and dates), computed and kept on the
  cluster first (not timed), then ``predict(...).compute()`` of each tile, timed: the forward
  passes of exactly the blocks the run computes, plus the quality layers.

``kernel s / end-to-end s`` is the end-to-end throughput over the kernel throughput of the
same work (1 = the pipeline costs nothing beyond the model). Both passes run in one process,
on the same warm cluster, in the same run. The workers' CPU time (user and system) and peak
RSS come from ``resource.getrusage`` in each worker process.

Usage::

    python benchmarks/end_to_end.py                    # every scenario (about 25 min on 2 cores)
    python benchmarks/end_to_end.py --scenario demo    # the README's default demo only
    python benchmarks/end_to_end.py --report benchmarks/results/end_to_end.json

Writes ``--out`` (JSON, default benchmarks/results/end_to_end.json) and a markdown table.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import hashlib
import json
import os
import platform
import resource
import sys
import time
from pathlib import Path
from typing import Any

TARGET_RATIO = 0.85
"""End-to-end throughput over kernel throughput, at least."""
TARGET_DEMO_S = 300.0
"""The README's default demo, at most (simulation included)."""


@dataclasses.dataclass(frozen=True)
class Scenario:
    """A simulated region, its period, tiles and output dates."""

    name: str
    description: str
    size_px: int
    start: dt.date
    end: dt.date
    dates: str
    tile_size_m: float
    tiles_in_flight: int
    aligned: bool = False
    """Region edges moved onto tile corners: whole tiles, as inside a large run."""


SCENARIOS = {
    "demo": Scenario(
        "demo",
        "the README's default demo: 240 px region, 2022, SMS (24 dates), one tile",
        240,
        dt.date(2022, 1, 1),
        dt.date(2022, 12, 31),
        "SMS",
        9_900.0,
        2,
    ),
    "tiles-16-dates": Scenario(
        "tiles-16-dates",
        "480 px region on tile corners, 4 tiles of 2400 m, 2 in flight, 2022-05..07, "
        "12 output dates (about 16 input dates kept per tile)",
        480,
        dt.date(2022, 5, 1),
        dt.date(2022, 7, 31),
        ",".join(f"2022-{m:02d}-{d:02d}" for m in (5, 6, 7) for d in (1, 8, 16, 24)),
        2_400.0,
        2,
        True,
    ),
    "tiles-year": Scenario(
        "tiles-year",
        "480 px region on tile corners, 4 tiles of 2400 m, 2 in flight, 2022, SMS (24 dates)",
        480,
        dt.date(2022, 1, 1),
        dt.date(2022, 12, 31),
        "SMS",
        2_400.0,
        2,
        True,
    ),
}


def _worker_usage() -> dict[str, float]:
    """CPU seconds and peak RSS of the calling (worker) process."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {"user_s": usage.ru_utime, "system_s": usage.ru_stime,
            "max_rss_bytes": usage.ru_maxrss * 1024}  # fmt: skip


def _usage_delta(client: Any, before: dict[str, dict[str, float]]) -> dict[str, float]:
    after = client.run(_worker_usage)
    return {
        "user_s": sum(after[w]["user_s"] - before[w]["user_s"] for w in after),
        "system_s": sum(after[w]["system_s"] - before[w]["system_s"] for w in after),
        "max_rss_bytes": max(a["max_rss_bytes"] for a in after.values()),
    }


def simulated_catalog(scenario: Scenario, data_dir: Path) -> tuple[Any, Path]:
    from pipelines.demo.simulated_catalog import open_or_write_simulated_catalog
    from tamrf_xr.simulate import SimulationConfig

    config = SimulationConfig(seed=0, center_lon=1.45, center_lat=43.60,
                              width_px=scenario.size_px, height_px=scenario.size_px,
                              start=scenario.start, end=scenario.end)  # fmt: skip
    if scenario.aligned:
        config = _on_tile_corners(config, scenario.tile_size_m)
    key = hashlib.sha256(config.to_json().encode()).hexdigest()[:16]
    return config, open_or_write_simulated_catalog(config, data_dir / "catalogs" / key).catalog


def _on_tile_corners(config: Any, tile_size_m: float) -> Any:
    """``config`` with its region's west and north edges moved onto tile corners."""
    from pyproj import Transformer

    from tamrf_xr.simulate.geometry import region_grid

    grid = region_grid(config)
    x0 = round(grid.bounds[0] / tile_size_m) * tile_size_m
    y0 = round(grid.bounds[3] / tile_size_m) * tile_size_m
    # region_grid snaps the centre +- half the size to 60 m: aim 30 m inside the wanted cell.
    cx = x0 + config.width_px * 5.0 + 30.0
    cy = y0 - config.height_px * 5.0 - 30.0
    lon, lat = Transformer.from_crs(grid.epsg, 4326, always_xy=True).transform(cx, cy)
    moved = dataclasses.replace(config, center_lon=round(lon, 7), center_lat=round(lat, 7),
                                epsg=grid.epsg)  # fmt: skip
    bounds = region_grid(moved).bounds
    if (bounds[0], bounds[3]) != (x0, y0):
        raise RuntimeError(f"could not align the region: {bounds[0], bounds[3]} != {x0, y0}")
    return moved


def _warm_up(source: Any) -> None:
    """One small forward pass on this worker with the run's model settings."""
    import numpy as np

    from tamrf_xr.inference import cached_model
    from tamrf_xr.inference.blocks import predict_block
    from tamrf_xr.inference.model_cache import resolve_device
    from tamrf_xr.precision import resolve_precision

    device = resolve_device(source.device)
    rng = np.random.default_rng(0)
    s2 = rng.uniform(0, 0.3, (3, 10, 66, 66)).astype(np.float32)
    landsat = rng.uniform(0, 0.3, (2, 8, 22, 22)).astype(np.float32)
    landsat[:, 7] = 300.0
    precision = resolve_precision(source.precision, device)
    predict_block(s2, np.ones((3, 66, 66), bool), np.arange(3.0), landsat,
                  np.ones((2, 22, 22), bool), np.arange(2.0), np.arange(2.0),
                  cached_model(source), device, precision)  # fmt: skip


def kernel_pass(request: Any, items: dict[str, list], source: Any) -> dict[str, Any]:
    """The model over the run's tiles from cubes already on the cluster: seconds per tile."""
    import dask
    import distributed

    from pipelines.catalogs import LOCAL
    from pipelines.datacube import CubeConfig, assemble_landsat, assemble_s2
    from pipelines.production import region_tiles
    from pipelines.tile_plan import plan_tiles
    from tamrf_xr.inference import predict
    from tamrf_xr.inference.throughput import cube_flops

    inference = request.inference()
    s2_collection, landsat_collection = request.collections
    plans = plan_tiles(region_tiles(request), items.get(s2_collection, []),
                       items.get(landsat_collection, []), len(request.output_dates()), inference,
                       clip_to=request.clip_to)  # fmt: skip
    tiles = []
    for plan in plans:
        cube, output = plan.tile.prediction_grids(inference.margin_px, request.clip_to)
        s2 = assemble_s2(list(plan.s2_items), cube, LOCAL, CubeConfig())
        landsat = assemble_landsat(list(plan.landsat_items), cube, LOCAL, CubeConfig())
        s2, landsat = dask.persist(s2, landsat)
        distributed.wait([*distributed.futures_of(s2), *distributed.futures_of(landsat)])
        prediction = predict(s2, landsat, list(request.output_dates()), source, inference,
                             output_bounds=output.bounds)  # fmt: skip
        start = time.perf_counter()
        prediction.compute()
        seconds = time.perf_counter() - start
        # The FLOPs of the dates kept by the clear-share filter (the plan counts every date).
        rows, cols = cube.window(output.bounds)
        flops = cube_flops(cube.shape, ((rows.start, rows.stop), (cols.start, cols.stop)),
                           s2.sizes["time"], landsat.sizes["time"],
                           len(request.output_dates()), inference)  # fmt: skip
        tiles.append({"tile": plan.tile_id, "seconds": seconds, "s2_dates": s2.sizes["time"],
                      "landsat_dates": landsat.sizes["time"], "flops": flops})  # fmt: skip
        del s2, landsat, prediction
    return {"seconds": sum(t["seconds"] for t in tiles), "tiles": tiles}


def run_scenario(
    scenario: Scenario, data_dir: Path, workers: int | None, kind: str = "auto"
) -> dict[str, Any]:
    import shutil

    from pipelines.cluster import ClusterConfig, start_cluster
    from pipelines.demo.region_request import simulated_region_request
    from pipelines.demo.stac_servers import create_server
    from pipelines.production import parse_dates, run_region, search_region
    from tamrf_xr.inference import ModelSource, untrained_checkpoint
    from tamrf_xr.simulate.geometry import region_grid

    config, catalog = simulated_catalog(scenario, data_dir)
    out = data_dir / "runs" / scenario.name
    shutil.rmtree(out, ignore_errors=True)
    checkpoint = untrained_checkpoint(data_dir / "models" / "untrained-s1t3")
    area_km2 = (region_grid(config).shape[0] * region_grid(config).shape[1]) * 1e-4
    # Precision and device as a run decides them (auto: bf16 where the hardware has it).
    with (
        create_server(catalog) as server,
        start_cluster(ClusterConfig(n_workers=workers, dashboard_address=None)) as running,
    ):
        request = simulated_region_request(
            config, out, server.url, dates=parse_dates(scenario.dates),
            tile_size_m=scenario.tile_size_m, tiles_in_flight=scenario.tiles_in_flight,
            checkpoint=str(checkpoint),
        )  # fmt: skip
        address = running.client.scheduler.address
        source = running.model_source(ModelSource(str(checkpoint), precision=request.precision))
        running.preload(source)
        # A process's first forward pass also pays one-time kernel set-up (oneDNN): paid
        # here, so that neither pass below does.
        running.client.run(_warm_up, source)
        items = search_region(request)
        usage = running.client.run(_worker_usage)
        start = time.perf_counter()
        summary = run_region(request, ClusterConfig(address=address), items=items)
        e2e_s = time.perf_counter() - start
        e2e_usage = _usage_delta(running.client, usage)
        usage = running.client.run(_worker_usage)
        kernel = kernel_pass(request, items, source)
        kernel_usage = _usage_delta(running.client, usage)
        threads = running.threads_per_worker
        n_workers = len(running.client.scheduler_info()["workers"])
    dates = len(request.output_dates())
    cpu = e2e_usage["user_s"] + e2e_usage["system_s"]
    return {
        "scenario": dataclasses.asdict(scenario)
        | {"start": str(scenario.start), "end": str(scenario.end)},
        "area_km2": area_km2,
        "output_dates": dates,
        "tiles": len(kernel["tiles"]),
        "precision": source.precision,
        "workers": n_workers,
        "threads_per_worker": threads,
        "end_to_end_s": e2e_s,
        "kernel_s": kernel["seconds"],
        "ratio": kernel["seconds"] / e2e_s,
        "end_to_end_km2_h": area_km2 * dates / e2e_s * 3600 / dates,
        "kernel_km2_h": area_km2 / kernel["seconds"] * 3600,
        "end_to_end_worker_usage": e2e_usage,
        "kernel_worker_usage": kernel_usage,
        "system_share": e2e_usage["system_s"] / cpu if cpu else None,
        "input_dates_read": sum(
            len(t["cubes"][0]["dates"])
            + len(t["cubes"][0]["dropped_dates"])
            + len(t["cubes"][1]["dates"])
            + len(t["cubes"][1]["dropped_dates"])
            for t in summary["tiles"]
        )
        / max(len(summary["tiles"]), 1),
        "kernel_tiles": kernel["tiles"],
        "failed": summary["level3"].get("failed", []),
    }


EUROPE_KM2 = 10.5e6
"""Land area of Europe: the continental run of the cost model."""
ASSUMED_GPU_FLOP_RATE = 0.30 * 989e12
"""An H100 SXM's dense bf16 peak at 30 % sustained, when no GPU rate was measured."""


def projection(result: dict[str, Any], gpu_flop_rate: float | None) -> dict[str, Any]:
    """A continental run (Europe, one year, 24 output dates, 9.9 km tiles with one 60 px
    margin, automatic blocks) from the model FLOPs of ``cube_flops`` and the rates of this
    run: the CPU kernel rate measured here, a GPU rate measured by the GPU script (or
    assumed), and the CPU work outside the model per km² and input date measured here."""
    from tamrf_xr.inference.predict import InferenceConfig
    from tamrf_xr.inference.throughput import cube_flops

    tile, margin, t_q = 990, 60, 24
    config = InferenceConfig(margin_px=margin)
    window = ((margin, margin + tile), (margin, margin + tile))
    scenarios = result["scenarios"]
    kernel_flops = sum(t["flops"] for r in scenarios for t in r["kernel_tiles"])
    kernel_s = sum(r["kernel_s"] for r in scenarios)
    cpu_rate = kernel_flops / kernel_s
    # CPU seconds outside the model, per km² and input date read (reads scale with them).
    outside = sum(
        r["end_to_end_worker_usage"]["user_s"] + r["end_to_end_worker_usage"]["system_s"]
        - (r["kernel_worker_usage"]["user_s"] + r["kernel_worker_usage"]["system_s"])
        for r in scenarios
    )  # fmt: skip
    read = sum(r["area_km2"] * r["input_dates_read"] for r in scenarios)
    gpu_rate = gpu_flop_rate or ASSUMED_GPU_FLOP_RATE
    rows = []
    for label, (t_s, t_l) in {"all dates kept": (73, 45),
                              "kept as in the demo": _kept(scenarios)}.items():  # fmt: skip
        flops = cube_flops((tile + 2 * margin,) * 2, window, t_s, t_l, t_q, config)
        total = flops / (tile * tile * 1e-4) * EUROPE_KM2
        gpu_hours = total / gpu_rate / 3600
        outside_core_hours = max(outside, 0.0) / read * EUROPE_KM2 * (73 + 45) / 3600
        rows.append({
            "input_dates": label, "t_s": t_s, "t_l": t_l, "eflop": total / 1e18,
            "gpu_hours": gpu_hours, "cpu_hours_at_measured_rate": total / cpu_rate / 3600,
            "cpu_core_hours_outside_model": outside_core_hours,
            "cpu_cores_per_gpu": outside_core_hours / gpu_hours,
        })  # fmt: skip
    return {"gpu_flop_rate": gpu_rate, "gpu_rate_measured": gpu_flop_rate is not None,
            "cpu_flop_rate": cpu_rate, "rows": rows}  # fmt: skip


def _kept(scenarios: list[dict[str, Any]]) -> tuple[int, int]:
    """Mean S2 and Landsat dates kept per tile over a year (the demo scenario), else 17+9."""
    year = [r for r in scenarios if r["scenario"]["name"] == "demo"]
    if not year:
        return 17, 9
    tiles = year[0]["kernel_tiles"]
    return (round(sum(t["s2_dates"] for t in tiles) / len(tiles)),
            round(sum(t["landsat_dates"] for t in tiles) / len(tiles)))  # fmt: skip


def demo_command(data_dir: Path) -> dict[str, Any]:
    """The README's main job, as a user runs it (a fresh output directory), timed."""
    import shutil
    import subprocess

    out = data_dir / "readme-demo"
    shutil.rmtree(out, ignore_errors=True)
    tamrf = Path(sys.executable).with_name("tamrf")
    start = time.perf_counter()
    done = subprocess.run([str(tamrf), "run", "--out-dir", str(out), "--no-progress"],
                          capture_output=True, text=True)  # fmt: skip
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "exit_status": done.returncode,
            "stderr_tail": done.stderr[-2000:]}  # fmt: skip


def markdown(result: dict[str, Any]) -> str:
    env = result["environment"]
    lines = [
        f"End to end vs kernel, {result['date'][:10]}, {env['cpu_count']} cores, "
        f"{env['cpu_model']}, torch {env['torch']}.",
        "",
        "| scenario | tiles | km² | output dates | input dates per tile (S2+L) | precision "
        "| end-to-end s | kernel s | e2e/kernel throughput | km²/h e2e (all dates) "
        "| worker system CPU share | worker peak RSS MB |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["scenarios"]:
        dates = sorted({f"{t['s2_dates']}+{t['landsat_dates']}" for t in r["kernel_tiles"]})
        verdict = "PASS" if r["ratio"] >= TARGET_RATIO else "FAIL"
        lines.append(
            f"| {r['scenario']['name']} | {r['tiles']} | {r['area_km2']:.2f} "
            f"| {r['output_dates']} | {', '.join(dates)} | {r['precision']} "
            f"| {r['end_to_end_s']:.1f} | {r['kernel_s']:.1f} | **{r['ratio']:.2f}** ({verdict}) "
            f"| {r['end_to_end_km2_h']:.2f} "
            f"| {r['system_share']:.1%} "
            f"| {r['end_to_end_worker_usage']['max_rss_bytes'] / 1e6:.0f} |"
        )
    demo = result.get("readme_demo")
    if demo:
        verdict = "PASS" if demo["seconds"] <= TARGET_DEMO_S and not demo["exit_status"] else "FAIL"
        lines += ["", f"`tamrf run` (README main job, fresh out-dir, simulation included): "
                      f"{demo['seconds']:.0f} s, exit {demo['exit_status']} "
                      f"(target <= {TARGET_DEMO_S:.0f} s: **{verdict}**)."]  # fmt: skip
    lines += ["", f"Target: end-to-end throughput >= {TARGET_RATIO} x kernel throughput."]
    p = result.get("projection")
    if p:
        source = "measured" if p["gpu_rate_measured"] else "ASSUMED (30 % of an H100's bf16 peak)"
        lines += [
            "",
            f"Europe (10.5 M km², one year, 24 output dates, 9.9 km tiles): GPU rate "
            f"{p['gpu_flop_rate'] / 1e12:.0f} TFLOP/s ({source}), CPU kernel rate measured here "
            f"{p['cpu_flop_rate'] / 1e9:.1f} GFLOP/s.",
            "",
            "| input dates | EFLOP | GPU-hours | hours on this CPU | CPU core-hours outside "
            "the model | CPU cores per GPU |",
            "|---|---|---|---|---|---|",
        ]
        for row in p["rows"]:
            lines.append(
                f"| {row['input_dates']} ({row['t_s']}+{row['t_l']}) | {row['eflop']:.1f} "
                f"| {row['gpu_hours']:.0f} | {row['cpu_hours_at_measured_rate']:.2e} "
                f"| {row['cpu_core_hours_outside_model']:.0f} | {row['cpu_cores_per_gpu']:.0f} |"
            )
    return "\n".join(lines)


def environment() -> dict[str, Any]:
    import torch

    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu_count": os.cpu_count(), "cpu_model": model, "torch": torch.__version__,
            "python": platform.python_version(),
            "load_average_start": os.getloadavg()[0]}  # fmt: skip


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenario", action="append", choices=list(SCENARIOS))
    parser.add_argument("--workers", type=int, default=None, help="local worker processes")
    parser.add_argument("--no-readme-demo", action="store_true",
                        help="skip timing the README's `tamrf run` command")  # fmt: skip
    parser.add_argument("--data-dir", type=Path, default=Path("benchmarks/results/end_to_end"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/end_to_end.json"))
    parser.add_argument("--cluster", choices=["auto", "cpu", "cuda"], default="auto",
                        help="local cluster kind (cuda: one dask-cuda worker per GPU)")  # fmt: skip
    parser.add_argument("--gpu-flop-rate", type=float, default=None,
                        help="measured GPU FLOP/s, for the projection")  # fmt: skip
    parser.add_argument("--report", type=Path, help="re-print an earlier --out JSON")
    args = parser.parse_args(argv)
    if args.report:
        result = json.loads(args.report.read_text())
        result["projection"] = projection(result, args.gpu_flop_rate)
        print(markdown(result))
        return result
    result: dict[str, Any] = {
        "benchmark": "end_to_end",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "environment": environment(),
        "scenarios": [],
    }
    for name in args.scenario or list(SCENARIOS):
        row = run_scenario(SCENARIOS[name], args.data_dir.absolute(), args.workers, args.cluster)
        result["scenarios"].append(row)
        print(f"{name}: end-to-end {row['end_to_end_s']:.1f} s, kernel {row['kernel_s']:.1f} s, "
              f"ratio {row['ratio']:.2f}", file=sys.stderr, flush=True)  # fmt: skip
    if not args.no_readme_demo:
        result["readme_demo"] = demo_command(args.data_dir.absolute())
    result["environment"]["load_average_end"] = os.getloadavg()[0]
    result["projection"] = projection(result, args.gpu_flop_rate)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(markdown(result))
    print(f"\nwrote {args.out}", file=sys.stderr)
    return result


if __name__ == "__main__":
    main()
