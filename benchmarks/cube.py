"""Read throughput of datacube assembly from local COGs against plain rasterio reads.

A simulated region (``tamrf_xr.simulate``, ``--size`` x ``--size`` px at 10 m, ``--start`` to
``--end``) is written once as COGs + a static STAC catalog (cached under ``--data-dir`` in a
folder keyed by the simulation config) and, per sensor, read in two ways in the same run:

- **cube**: ``pipelines.datacube.assemble_s2`` / ``assemble_landsat`` on the region's grid
  (profile ``LOCAL``, ``CubeConfig(min_valid_fraction=0)``: fully lazy), then
  ``Dataset.compute()`` with the dask threaded scheduler and N workers. Time = graph
  construction + compute; the graph construction alone is reported too.
- **rasterio** (the I/O floor): every asset the cube reads (every band and the SCL / QA layers
  of every item), opened with rasterio and read over the grid's bounds in the COG's pixel space
  (``rasterio.windows.from_bounds``; a WarpedVRT onto the grid for an asset in another CRS)
  into float32 (``out_dtype``; NaN where the COG does not cover the grid), by a thread pool of
  N workers, one task per asset, the arrays kept until the sensor is done (as the cube's are).

Pixels (the same number for both): the sum over items and over each item's assets (bands +
quality layers) of the grid's rows x cols at the asset's native resolution (10, 20 or 30 m).
Mpixel/s = pixels / seconds / 1e6. Each measurement is repeated ``--repeats`` times
(interleaved, rasterio then cube, per sensor) and the best is kept; totals add the per-sensor
bests. One untimed rasterio pass over everything comes first (warm page cache for both).

The dask threaded scheduler and the rasterio thread pool get the same number of workers
(``--threads``, default 2; the reference machine has 2 cores). Unless ``--no-parts``, one more
single-threaded cube pass (dask ``synchronous`` scheduler) runs with timers wrapped at run time
around the asset reader (``pipelines.asset_reader.RecordingRioReader.read``: stackstac's open
and the windowed or WarpedVRT read), the masks (``pipelines.datacube.s2_invalid`` /
``landsat_invalid``) and the bicubic upsampling (``pipelines.datacube.upsample_bicubic``);
"other" is the rest (scaling, same-day merge, stacking, cropping, validity, dask overhead).
It is compared with the rasterio pass on 1 thread (best of ``--repeats``). No project file is
modified.

Usage::

    python benchmarks/cube.py --quick          # smoke run: 120 px, 2 months, 1 repeat
    python benchmarks/cube.py                  # 600 px, one year, 2 threads
    python benchmarks/cube.py --threads 1,2    # also the threaded scheduler with 1 worker
    python benchmarks/cube.py --report benchmarks/results/cube.json

Writes ``--out`` (JSON, default benchmarks/results/cube.json, ``cube_quick.json`` with
``--quick``) and prints a markdown table.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import functools
import hashlib
import json
import os
import platform
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

MPX = 1e6
SENSORS = ("s2", "landsat")
COLLECTIONS = {"s2": "sentinel-2-l2a", "landsat": "landsat-c2-l2"}
GDAL_ENV = {"GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR"}  # as the cube's readers open files
REPO = Path(__file__).resolve().parents[1]


# -- the simulated product -------------------------------------------------------------------


def simulation_config(args: argparse.Namespace) -> Any:
    from tamrf_xr.simulate import SimulationConfig

    return SimulationConfig(
        seed=args.seed, width_px=args.size, height_px=args.size, start=args.start, end=args.end
    )


def product(config: Any, data_dir: Path) -> tuple[Path, float | None]:
    """The product's catalog.json (written once per config) and the seconds it took to write."""
    from pipelines.demo.simulated_catalog import (
        open_or_write_simulated_catalog,
        write_simulated_catalog,
    )

    key = hashlib.sha256(config.to_json().encode()).hexdigest()[:12]
    root = data_dir / f"sim-{key}"
    if (root / "simulation.json").is_file():  # reuse (raises if another config is there)
        return open_or_write_simulated_catalog(config, root).catalog, None
    print(
        f"simulating {config.width_px} px, {config.start}..{config.end} into {root}",
        file=sys.stderr,
        flush=True,
    )
    start = time.perf_counter()

    def progress(stage: str, done: int, total: int) -> None:
        if done == total or done % 25 == 0:
            print(f"  {stage} {done}/{total}", file=sys.stderr, flush=True)

    written = write_simulated_catalog(config, root, with_truth=False, progress=progress)
    return written.catalog, time.perf_counter() - start


# -- the rasterio baseline -------------------------------------------------------------------


@dataclass(frozen=True)
class Read:
    """One asset read over the grid: source window, where it lands, output shape."""

    href: str
    resolution: float
    shape: tuple[int, int]
    """Rows, cols of the grid at the asset's resolution: the output array."""
    window: tuple[int, int, int, int] | None
    """(row_off, col_off, height, width) in the COG (same CRS), None: WarpedVRT."""
    dest: tuple[int, int]
    """(row, col) of the window's first pixel in the output."""
    rounded: bool
    """The grid's bounds fall between the COG's pixels (offsets rounded)."""


def plan_reads(items: list[dict[str, Any]], keys: list[str], grid: Any) -> list[Read]:
    """Open every asset once (untimed): its window over the grid's bounds."""
    import rasterio
    from rasterio.windows import from_bounds

    west, south, east, north = grid.bounds
    reads = []
    with rasterio.Env(**GDAL_ENV):
        for item in items:
            for key in keys:
                asset = item["assets"].get(key)
                if asset is None:  # e.g. no lwir11 in L2SR items: the cube reads NaN there
                    continue
                with rasterio.open(asset["href"]) as ds:
                    res = float(ds.res[0])
                    shape = grid.at(res).shape
                    if ds.crs.to_epsg() != grid.epsg:
                        reads.append(Read(asset["href"], res, shape, None, (0, 0), False))
                        continue
                    win = from_bounds(west, south, east, north, transform=ds.transform)
                    row0, col0 = round(win.row_off), round(win.col_off)
                    rounded = max(abs(win.row_off - row0), abs(win.col_off - col0)) > 1e-6
                    r0, r1 = max(row0, 0), min(row0 + shape[0], ds.height)
                    c0, c1 = max(col0, 0), min(col0 + shape[1], ds.width)
                    window = (r0, c0, max(r1 - r0, 0), max(c1 - c0, 0))
                    dest = (r0 - row0, c0 - col0)
                    reads.append(Read(asset["href"], res, shape, window, dest, rounded))
    return reads


def read_one(read: Read, grid: Any) -> np.ndarray:
    """One asset over the grid into float32 (NaN outside the COG)."""
    import rasterio
    from rasterio.transform import from_origin
    from rasterio.vrt import WarpedVRT
    from rasterio.windows import Window

    with rasterio.Env(**GDAL_ENV), rasterio.open(read.href) as ds:
        if read.window is None:  # another CRS: warp onto the grid (nearest)
            west, _, _, north = grid.bounds
            transform = from_origin(west, north, read.resolution, read.resolution)
            with WarpedVRT(
                ds,
                crs=f"EPSG:{grid.epsg}",
                transform=transform,
                width=read.shape[1],
                height=read.shape[0],
                src_nodata=ds.nodata,
                nodata=np.nan,
                dtype="float32",
            ) as vrt:
                return vrt.read(1, out_dtype="float32")
        row, col, height, width = read.window
        if (height, width) == read.shape:  # the COG covers the grid
            return ds.read(1, window=Window(col, row, width, height), out_dtype="float32")
        out = np.full(read.shape, np.nan, np.float32)
        if height and width:
            r, c = read.dest
            out[r : r + height, c : c + width] = ds.read(
                1, window=Window(col, row, width, height), out_dtype="float32"
            )
        return out


def rasterio_pass(reads: list[Read], grid: Any, threads: int) -> tuple[float, int]:
    """Seconds to read every asset (arrays kept until the end), and the pixels read."""
    start = time.perf_counter()
    if threads == 1:
        arrays = [read_one(r, grid) for r in reads]
    else:
        with ThreadPoolExecutor(threads) as pool:
            arrays = list(pool.map(functools.partial(read_one, grid=grid), reads))
    seconds = time.perf_counter() - start
    pixels = sum(a.size for a in arrays)
    return seconds, pixels


# -- the cube -------------------------------------------------------------------------------


def assemble(sensor: str, items: list[dict[str, Any]], grid: Any) -> Any:
    from pipelines.catalogs import LOCAL
    from pipelines.datacube import CubeConfig, assemble_landsat, assemble_s2

    build = assemble_s2 if sensor == "s2" else assemble_landsat
    return build(items, grid, LOCAL, CubeConfig(min_valid_fraction=0))


def cube_pass(sensor: str, items: list[dict[str, Any]], grid: Any, threads: int) -> dict:
    """Graph construction, then compute with the threaded scheduler (``threads`` workers)."""
    import dask

    start = time.perf_counter()
    ds = assemble(sensor, items, grid)
    graph_s = time.perf_counter() - start
    with dask.config.set(scheduler="threads", num_workers=threads):
        computed = ds.compute()
    total_s = time.perf_counter() - start
    shape = tuple(computed["observations"].shape)
    del computed
    return {"graph_s": graph_s, "total_s": total_s, "observations_shape": shape}


class PartTimers:
    """Timers wrapped around the cube's reader, masks and upsampling (restored on exit)."""

    TARGETS = (  # (module, attribute, part)
        ("pipelines.asset_reader", "RecordingRioReader.read", "read (stackstac + GDAL)"),
        ("pipelines.datacube", "s2_invalid", "masks"),
        ("pipelines.datacube", "landsat_invalid", "masks"),
        ("pipelines.datacube", "upsample_bicubic", "bicubic x2"),
    )

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.calls: dict[str, int] = {}
        self._lock = threading.Lock()

    def _wrap(self, function: Callable[..., Any], part: str) -> Callable[..., Any]:
        @functools.wraps(function)
        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                elapsed = time.perf_counter() - start
                with self._lock:
                    self.seconds[part] = self.seconds.get(part, 0.0) + elapsed
                    self.calls[part] = self.calls.get(part, 0) + 1

        return timed

    @contextlib.contextmanager
    def installed(self) -> Iterator[PartTimers]:
        import importlib

        saved = []
        for module_name, attribute, part in self.TARGETS:
            owner: Any = importlib.import_module(module_name)
            *path, name = attribute.split(".")
            for step in path:
                owner = getattr(owner, step)
            original = owner.__dict__[name] if isinstance(owner, type) else getattr(owner, name)
            saved.append((owner, name, original))
            setattr(owner, name, self._wrap(original, part))
        try:
            yield self
        finally:
            for owner, name, original in reversed(saved):
                setattr(owner, name, original)


def parts_pass(sensor: str, items: list[dict[str, Any]], grid: Any) -> dict[str, Any]:
    """One single-threaded cube pass (dask synchronous scheduler) with the part timers."""
    import dask

    timers = PartTimers()
    with timers.installed():
        start = time.perf_counter()
        ds = assemble(sensor, items, grid)
        graph_s = time.perf_counter() - start
        with dask.config.set(scheduler="synchronous"):
            ds.compute()
        total_s = time.perf_counter() - start
    parts = {"graph construction": graph_s, **timers.seconds}
    parts["other"] = total_s - sum(parts.values())
    return {"total_s": total_s, "seconds": parts, "calls": timers.calls}


def cube_pixels_read(sensor: str, items: list[dict[str, Any]], grid: Any) -> int | None:
    """Pixels the cube's readers produce: each layer on the grid grown by its halo (S2: the
    SCL's and the 20 m bands'; Landsat: the quality layers'), every asset key of every item
    (missing assets too, as NaN). Uses private helpers of pipelines.datacube."""
    try:
        from pipelines import datacube
        from pipelines.catalogs import LOCAL
        from pipelines.grid import LANDSAT_FACTOR
        from tamrf_xr.bands import S2_BANDS

        masks = datacube.CubeConfig().masks
        if sensor == "s2":
            scl_halo, halo20 = datacube._s2_halos_m(masks)
            n10 = sum(b.native_resolution == 10.0 for b in S2_BANDS)
            n20 = len(S2_BANDS) - n10
            per_item = (
                n10 * _area(grid.at(10.0))
                + n20 * _area(grid.at(20.0).grown(halo20))
                + _area(grid.at(20.0).grown(scl_halo))
            )
        else:
            halo = datacube._halo_m(
                LANDSAT_FACTOR * (masks.landsat_fill_dilation_px + masks.landsat_dilation_px)
            )
            n_qa = 3  # QA_PIXEL, QA_RADSAT, QA_AEROSOL
            n_bands = len(LOCAL.landsat_asset_keys()) - n_qa
            per_item = n_bands * _area(grid.at(30.0)) + n_qa * _area(grid.at(30.0).grown(halo))
    except (ImportError, AttributeError):  # the private helpers moved: not reported
        return None
    return len(items) * per_item


def _area(grid: Any) -> int:
    rows, cols = grid.shape
    return rows * cols


# -- environment ---------------------------------------------------------------------------


def environment() -> dict[str, Any]:
    import dask
    import rasterio
    import scipy
    import stackstac
    import xarray

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, check=True)
        except (OSError, subprocess.CalledProcessError):
            return None
        return done.stdout.decode().strip()

    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    modified = git("diff", "HEAD", "--name-only", "--", "pipelines", "tamrf_xr")  # tracked
    return {
        "cpu_model": cpu,
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "dask": dask.__version__,
        "xarray": xarray.__version__,
        "stackstac": stackstac.__version__,
        "rasterio": rasterio.__version__,
        "gdal": rasterio.__gdal_version__,
        "git_commit": git("rev-parse", "HEAD"),
        "pipelines_or_tamrf_xr_modified": None if modified is None else bool(modified),
        "load_average_1min": os.getloadavg()[0],
    }


# -- driver ----------------------------------------------------------------------------------


def measure(args: argparse.Namespace) -> dict[str, Any]:
    from pipelines.demo.stac_servers import load_static_catalog
    from tamrf_xr.simulate.geometry import region_grid

    config = simulation_config(args)
    catalog, simulate_s = product(config, args.data_dir)
    grid = region_grid(config)  # the region's 10 m grid, as the cubes use it
    items = list(load_static_catalog(catalog).items)

    from pipelines.catalogs import LOCAL
    from pipelines.datacube import solar_date

    keys = {
        "s2": list(LOCAL.s2_asset_keys().values()),
        "landsat": list(LOCAL.landsat_asset_keys().values()),
    }
    data: dict[str, dict[str, Any]] = {}
    for sensor in args.sensors:
        sensor_items = [i for i in items if i["collection"] == COLLECTIONS[sensor]]
        reads = plan_reads(sensor_items, keys[sensor], grid)
        by_res: dict[str, int] = {}
        for r in reads:
            by_res[f"{r.resolution:g}"] = by_res.get(f"{r.resolution:g}", 0) + 1
        data[sensor] = {
            "items": sensor_items,
            "reads": reads,
            "info": {
                "items": len(sensor_items),
                "dates": len({solar_date(i) for i in sensor_items}),
                "assets_read": len(reads),
                "assets_by_resolution_m": by_res,
                "pixels": sum(r.shape[0] * r.shape[1] for r in reads),
                "cube_pixels_read_with_halo": cube_pixels_read(sensor, sensor_items, grid),
                "windows_rounded": sum(r.rounded for r in reads),
                "warped_assets": sum(r.window is None for r in reads),
            },
        }
        rasterio_pass(reads, grid, max(args.threads))  # untimed: warms the page cache

    result: dict[str, Any] = {
        "benchmark": "cube",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "environment": environment(),
        "settings": {
            "simulation": json.loads(config.to_json()),
            "grid": {"epsg": grid.epsg, "bounds": grid.bounds, "shape_10m": grid.shape},
            "threads": args.threads,
            "repeats": args.repeats,
            "quick": args.quick,
            "catalog": str(catalog),
            "simulate_s": simulate_s,
        },
        "data": {s: d["info"] for s, d in data.items()},
        "rows": [],
        "parts": {},
    }
    for threads in args.threads:
        for sensor in args.sensors:
            d = data[sensor]
            raw, cube = [], []
            for _ in range(args.repeats):
                seconds, pixels = rasterio_pass(d["reads"], grid, threads)
                if pixels != d["info"]["pixels"]:
                    raise RuntimeError(f"rasterio read {pixels} px, planned {d['info']['pixels']}")
                raw.append(seconds)
                cube.append(cube_pass(sensor, d["items"], grid, threads))
            row = {
                "threads": threads,
                "sensor": sensor,
                "pixels": d["info"]["pixels"],
                "rasterio_s": raw,
                "cube_graph_s": [c["graph_s"] for c in cube],
                "cube_total_s": [c["total_s"] for c in cube],
                "observations_shape": cube[0]["observations_shape"],
            }
            result["rows"].append(row)
            print(
                f"{threads} thread(s), {sensor}: rasterio {min(raw):.2f} s, cube "
                f"{min(row['cube_total_s']):.2f} s",
                file=sys.stderr,
                flush=True,
            )
    if args.parts:
        for sensor in args.sensors:
            d = data[sensor]
            parts = parts_pass(sensor, d["items"], grid)
            parts["rasterio_1_thread_s"] = [
                rasterio_pass(d["reads"], grid, 1)[0] for _ in range(args.repeats)
            ]
            result["parts"][sensor] = parts
    result["environment"]["load_average_1min_end"] = os.getloadavg()[0]
    return result


def summarise(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Best-of rows per (threads, sensor) plus a total per thread count."""
    table = []
    for threads in result["settings"]["threads"]:
        rows = [r for r in result["rows"] if r["threads"] == threads]
        best = [
            {
                "threads": threads,
                "sensor": r["sensor"],
                "pixels": r["pixels"],
                "rasterio_s": min(r["rasterio_s"]),
                "cube_s": min(r["cube_total_s"]),
                "graph_s": min(r["cube_graph_s"]),
            }
            for r in rows
        ]
        if len(best) > 1:
            best.append(
                {
                    "threads": threads,
                    "sensor": "total",
                    **{
                        k: sum(b[k] for b in best)
                        for k in ("pixels", "rasterio_s", "cube_s", "graph_s")
                    },
                }
            )
        for b in best:
            b["rasterio_mpx_s"] = b["pixels"] / b["rasterio_s"] / MPX
            b["cube_mpx_s"] = b["pixels"] / b["cube_s"] / MPX
            b["ratio"] = b["cube_mpx_s"] / b["rasterio_mpx_s"]
        table += best
    return table


def markdown(result: dict[str, Any]) -> str:
    s, env = result["settings"], result["environment"]
    sim = s["simulation"]
    lines = [
        f"Cube assembly vs rasterio reads, {sim['width_px']} x {sim['height_px']} px at 10 m, "
        f"{sim['start']}..{sim['end']} (seed {sim['seed']}), {env['cpu_model']} "
        f"({env['cpu_count']} CPUs), best of {s['repeats']}, {result['date'][:10]}, commit "
        f"{(env['git_commit'] or '?')[:7]}"
        f"{' (pipelines/tamrf_xr MODIFIED)' if env['pipelines_or_tamrf_xr_modified'] else ''}, "
        f"load average {env['load_average_1min']:.1f} -> {env['load_average_1min_end']:.1f}.",
        "",
        "| sensor | items (dates) | assets read | Mpixel | cube pixels read incl. halo |",
        "|---|---|---|---|---|",
    ]
    for sensor, info in result["data"].items():
        halo = info["cube_pixels_read_with_halo"]
        halo_text = "?" if halo is None else f"{halo / info['pixels']:.2f} x"
        lines.append(
            f"| {sensor} | {info['items']} ({info['dates']}) | {info['assets_read']} "
            f"| {info['pixels'] / MPX:.1f} "
            f"| {halo_text} |"
        )
    lines += [
        "",
        "| threads | sensor | rasterio s | rasterio Mpx/s | cube graph s | cube s "
        "| cube Mpx/s | cube/rasterio |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for b in summarise(result):
        lines.append(
            f"| {b['threads']} | {b['sensor']} | {b['rasterio_s']:.2f} "
            f"| {b['rasterio_mpx_s']:.1f} | {b['graph_s']:.2f} | {b['cube_s']:.2f} "
            f"| {b['cube_mpx_s']:.1f} | {b['ratio']:.2f} |"
        )
    if result["parts"]:
        names = ["graph construction", "read (stackstac + GDAL)", "masks", "bicubic x2", "other"]
        lines += [
            "",
            "Single-threaded: one instrumented cube pass (dask synchronous) against rasterio with "
            "1 thread (best of the repeats); the cube's time by part:",
            "",
            "| sensor | cube s | rasterio s | cube/rasterio | " + " | ".join(names) + " |",
            "|---|---|---|---|" + "---|" * len(names),
        ]
        for sensor, p in result["parts"].items():
            raw = min(p["rasterio_1_thread_s"])
            cells = [
                f"{p['seconds'][n]:.2f} s ({p['seconds'][n] / p['total_s']:.0%})"
                if n in p["seconds"]
                else "-"
                for n in names
            ]
            lines.append(
                f"| {sensor} | {p['total_s']:.2f} | {raw:.2f} | {raw / p['total_s']:.2f} | "
                + " | ".join(cells)
                + " |"
            )
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", type=int, default=None, help="region side, 10 m px (multiple of 6)")
    p.add_argument("--start", type=dt.date.fromisoformat, default=None, help="first day")
    p.add_argument("--end", type=dt.date.fromisoformat, default=None, help="last day")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--no-worker-env",
        action="store_true",
        help="run in this shell's environment, not the run's worker environment "
        "(pipelines.cluster.WORKER_ENV: malloc thresholds, thread counts)",
    )
    p.add_argument("--threads", default="2", help="worker counts, comma-separated")
    p.add_argument("--repeats", type=int, default=None, help="best of (default 3)")
    p.add_argument("--sensors", default="s2,landsat")
    p.add_argument(
        "--no-parts",
        dest="parts",
        action="store_false",
        help="skip the single-threaded pass timing reader, masks and bicubic",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: 120 px, 2022-05-01..06-30, 1 repeat",
    )
    p.add_argument(
        "--data-dir",
        type=Path,
        default=REPO / "benchmarks/results/cube_data",
        help="where simulated products are cached (one folder per config)",
    )
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--report", type=Path, help="re-print the table of an earlier --out JSON")
    args = p.parse_args(argv)
    quick = args.quick
    args.size = args.size or (120 if quick else 600)
    args.start = args.start or (dt.date(2022, 5, 1) if quick else dt.date(2022, 1, 1))
    args.end = args.end or (dt.date(2022, 6, 30) if quick else dt.date(2022, 12, 31))
    args.repeats = args.repeats or (1 if quick else 3)
    args.threads = [int(t) for t in args.threads.split(",")]
    args.sensors = [s.strip() for s in args.sensors.split(",")]
    if unknown := set(args.sensors) - set(SENSORS):
        p.error(f"unknown sensors {sorted(unknown)}; choose from {', '.join(SENSORS)}")
    if args.size % 6:
        p.error(f"--size must be a multiple of 6, got {args.size}")
    if args.out is None:
        name = "cube_quick.json" if quick else "cube.json"
        args.out = REPO / "benchmarks/results" / name
    return args


def _json_default(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else str(value)


def _in_worker_environment(args: argparse.Namespace) -> None:
    """Re-run this script in the environment of the run's worker processes
    (``pipelines.cluster.WORKER_ENV``: malloc thresholds and thread counts, which glibc and
    OpenMP read at process start), unless ``--no-worker-env`` or already there."""
    from pipelines.cluster import WORKER_ENV

    if args.no_worker_env or all(os.environ.get(k) == v for k, v in WORKER_ENV.items()):
        return
    os.execve(sys.executable, [sys.executable, *sys.argv], os.environ | WORKER_ENV)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    if args.report:
        result = json.loads(args.report.read_text())
    else:
        if argv is None:
            _in_worker_environment(args)
        result = measure(args)
        result["worker_env"] = not args.no_worker_env
        result["summary"] = summarise(result)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2, default=_json_default) + "\n")
        print(f"wrote {args.out}", file=sys.stderr)
    print(markdown(result))
    return result


if __name__ == "__main__":
    main()
