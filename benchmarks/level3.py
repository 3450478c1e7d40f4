"""End-to-end Level-3 production throughput against the model kernel on the same tiles.

A simulated region (``tamrf_xr.simulate``, ``--size`` x ``--height`` px at 10 m, ``--start`` to
``--end``) is written once as COGs + a static STAC catalog (cached under ``--data-dir`` in a
folder keyed by the simulation config) and cut into output tiles (``GridSpec(tile_size_m)``;
by default the region is moved so that its edges fall on tile corners: whole tiles, as in
the interior of a large run). Every tile is measured twice in the same run, in alternating
order (kernel first on even tiles, end-to-end first on odd ones):

- **end-to-end**: ``pipelines.level3_production.produce_tile`` into a fresh Level-3 store
  (``create_store`` timed once and added): reads the COGs, assembles the S2 and Landsat cubes
  on the tile grown by the inference margin (clipped to the region, as
  the demo run does), drops sparse dates, predicts lazily, crops to the tile,
  encodes and writes the Zarr chunks and the completion record.
- **kernel**: for the same tile, the same cubes (same grid, ``CubeConfig``, items) are
  assembled and ``.compute()``-d first (not timed); then ``predict(...).compute()`` on those
  in-memory cubes is timed: the model's forward passes plus the per-block preparation
  (overlap/padding, standardisation, quality layers, support mask). Inside it, the time in
  ``tamrf_xr.inference.blocks.predict_block`` (standardise, forward, unstandardise: the
  "model only" time) is recorded by a wrapper installed at run time, with every block's shape,
  so that both passes are checked to run exactly the same blocks.

Both run on the dask threaded scheduler in this process (``--threads`` workers) with
``ModelSource(torch_threads=--threads)``, the model loaded once before the measurement
(``cached_model``, as the flow's preload does) and one small untimed warm-up forward.
Throughput = region km^2 x output dates / seconds. Target: end-to-end / kernel < 1.15 (sums
over the tiles). Because the two passes of a tile run at different moments of a shared
machine, two steadier ratios are printed beside it: over the "quiet" tiles only (other
processes' CPU time, from ``/proc/stat``, under 10 % of a core in both passes), and the
end-to-end time over the ``predict_block`` time inside the same end-to-end pass.

Where the end-to-end time goes: wall time of produce_tile's steps (wrappers around the names
it calls: assembly with the eager sparse-date filter, prediction graph, crop, and
``write_tile``, which is where the dask computation runs), and thread-seconds (overlapping)
in the reader, the masks, the bicubic upsampling and ``predict_block``.

Memory: per tile and pass, the peak RSS above the RSS just before the tile (Linux VmHWM,
reset through ``/proc/self/clear_refs``), in this process; and for the ``--memory-tiles``
largest tiles, the same measured in a fresh subprocess per pass (baseline: imports, catalog,
model loaded, one warm-up forward; the kernel's baseline also holds its computed cubes).

FLOPs: ``tamrf_xr.flops.forward_flops`` of every block that ran a forward pass. The cost
model projects a continental run (``--project-*``) from the analytic FLOPs at the projected
date counts and a production tiling (9.9 km tiles, ``InferenceConfig`` blocks), at an assumed
sustained GPU rate and at the CPU rate measured here.

Usage::

    python benchmarks/level3.py --quick     # 120 x 60 px, 1 month, 2 tiles of 600 m (< 3 min)
    python benchmarks/level3.py             # 360 px, 3 months, 1200 m tiles
    python benchmarks/level3.py --report benchmarks/results/level3.json

Writes ``--out`` (JSON, default benchmarks/results/level3.json, ``level3_quick.json`` with
``--quick``) and prints markdown tables. No project file is modified.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import functools
import hashlib
import importlib
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
TARGET_RATIO = 1.15
QUIET_SHARE = 0.1
"""A tile is "quiet" when other processes used less than this share of one core during both
of its passes (the machine is shared: another session's tests skew single passes)."""
MB = 1e6
PHASES = (  # names produce_tile calls (looked up in its module at call time) -> step
    ("pipelines.level3_production", "assemble_s2", "assemble S2 (+ date filter)"),
    ("pipelines.level3_production", "assemble_landsat", "assemble Landsat (+ date filter)"),
    ("pipelines.level3_production", "cube_summary", "cube summaries"),
    ("pipelines.level3_production", "predict", "predict graph"),
    ("pipelines.level3_production", "_tile_dataset", "crop to tile"),
    ("pipelines.level3_production", "write_tile", "write_tile (compute + write)"),
)
LEAVES = (  # thread-seconds (tasks overlap on the threaded scheduler)
    ("pipelines.asset_reader", "RecordingRioReader.read", "read (stackstac + GDAL)"),
    ("pipelines.datacube", "s2_invalid", "masks"),
    ("pipelines.datacube", "landsat_invalid", "masks"),
    ("pipelines.datacube", "upsample_bicubic", "bicubic x2"),
    ("tamrf_xr.inference.predict", "predict_block", "predict_block"),
)


# -- the simulated region and the run's setup -------------------------------------------------


def simulation_config(args: argparse.Namespace) -> Any:
    """The region; with ``args.align`` its west and north edges moved onto tile corners."""
    from pyproj import Transformer

    from tamrf_xr.simulate import SimulationConfig
    from tamrf_xr.simulate.geometry import region_grid

    config = SimulationConfig(
        seed=args.seed, width_px=args.size, height_px=args.height, start=args.start, end=args.end
    )
    if not args.align:
        return config
    grid = region_grid(config)
    size = args.tile_size_m
    x0, y0 = round(grid.bounds[0] / size) * size, round(grid.bounds[3] / size) * size
    # region_grid snaps floor((cx - 5 w) / 60) * 60 and ceil((cy + 5 h) / 60) * 60: aim 30 m
    # inside the wanted cell, far from the rounding.
    cx, cy = x0 + args.size * 5.0 + 30.0, y0 - args.height * 5.0 - 30.0
    lon, lat = Transformer.from_crs(grid.epsg, 4326, always_xy=True).transform(cx, cy)
    config = dataclasses.replace(
        config, center_lon=round(lon, 7), center_lat=round(lat, 7), epsg=grid.epsg
    )
    moved = region_grid(config).bounds
    if (moved[0], moved[3]) != (x0, y0):
        raise RuntimeError(f"could not align the region: {moved[0], moved[3]} != {x0, y0}")
    return config


def product(config: Any, data_dir: Path) -> tuple[Path, float | None]:
    """The product's catalog.json (written once per config) and the seconds it took to write."""
    from pipelines.demo.simulated_catalog import open_or_write_simulated_catalog

    key = hashlib.sha256(config.to_json().encode()).hexdigest()[:12]
    root = data_dir / f"sim-{key}"
    if (root / "simulation.json").is_file():  # reuse (raises if another config is there)
        return open_or_write_simulated_catalog(config, root).catalog, None
    print(f"simulating {config.width_px} px, {config.start}..{config.end} into {root}",
          file=sys.stderr, flush=True)  # fmt: skip
    start = time.perf_counter()
    written = open_or_write_simulated_catalog(config, root)
    return written.catalog, time.perf_counter() - start


def region_request(config: Any, args: argparse.Namespace) -> Any:
    """The demo run's request for the region (``pipelines.demo.region_request``): its tiles
    and output dates come from the same library code as ``tamrf run``. The items are read
    from the static catalog here, so the URL is never contacted."""
    from pipelines.demo.region_request import simulated_region_request
    from pipelines.production import parse_dates

    return simulated_region_request(
        config, args.data_dir / "run", "http://127.0.0.1/static-catalog-read-directly",
        dates=parse_dates(args.dates), tile_size_m=args.tile_size_m,
    )  # fmt: skip


@dataclasses.dataclass
class Setup:
    config: Any
    catalog: Path
    simulate_s: float | None
    items: dict[str, list[dict[str, Any]]]
    tiles: list[Any]
    dates: list[str]
    source: Any
    region_bounds: tuple[float, float, float, float]

    def job(self, store: Path) -> Any:
        """The flow's TileJob (default cube and inference configs, profile LOCAL)."""
        from pipelines.catalogs import LOCAL
        from pipelines.level3_production import TileJob

        return TileJob(store=store, profile=LOCAL, dates=tuple(self.dates), model=self.source,
                       clip_to=self.region_bounds)  # fmt: skip

    def grid(self, tile: Any) -> Any:
        from tamrf_xr.inference import InferenceConfig

        margin = InferenceConfig().margin_px
        return tile.grid(margin_px=margin, clip_to=self.region_bounds)


def setup(args: argparse.Namespace) -> Setup:
    from pipelines.demo.stac_servers import load_static_catalog
    from pipelines.production import region_tiles
    from tamrf_xr.inference import ModelSource, untrained_checkpoint
    from tamrf_xr.simulate.geometry import region_grid

    config = simulation_config(args)
    catalog, simulate_s = product(config, args.data_dir)
    items: dict[str, list[dict[str, Any]]] = {}
    for item in load_static_catalog(catalog).items:
        items.setdefault(item["collection"], []).append(item)
    request = region_request(config, args)
    checkpoint = untrained_checkpoint(args.data_dir / "models" / "untrained-s1t3")
    source = ModelSource(str(checkpoint), torch_threads=args.threads)
    return Setup(config, catalog, simulate_s, items, region_tiles(request),
                 request.output_dates(), source, region_grid(config).bounds)  # fmt: skip


def create_store(s: Setup, store: Path) -> float:
    """A fresh Level-3 store for every tile; returns the seconds it took."""
    from pipelines.level3 import Level3Config
    from pipelines.level3 import create_store as create

    start = time.perf_counter()
    create(store, s.tiles, s.dates, Level3Config(), attrs={"benchmark": "level3"})
    return time.perf_counter() - start


def warm_up(s: Setup) -> float:
    """Load the model (as the flow's preload does) and run one small forward (untimed)."""
    from tamrf_xr.inference import cached_model
    from tamrf_xr.inference.blocks import predict_block

    start = time.perf_counter()
    loaded = cached_model(s.source)
    rng = np.random.default_rng(0)
    s2 = rng.uniform(0.0, 0.3, (2, 10, 96, 96)).astype(np.float32)
    landsat = rng.uniform(0.0, 0.3, (1, 8, 32, 32)).astype(np.float32)
    landsat[:, 7] += 290.0  # LST in K
    predict_block(s2, np.ones((2, 96, 96), bool), np.array([0.0, 5.0], np.float32), landsat,
                  np.ones((1, 32, 32), bool), np.array([2.0], np.float32),
                  np.array([3.0], np.float32), loaded, s.source.device)  # fmt: skip
    return time.perf_counter() - start


# -- instruments ---------------------------------------------------------------------------


class Instruments:
    """Timers wrapped at run time around the PHASES and LEAVES (restored on exit), and a
    record of every ``predict_block`` call (block shapes, seconds, whether it ran a forward)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.blocks: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def snapshot(self) -> tuple[dict[str, float], int]:
        with self._lock:
            return dict(self.seconds), len(self.blocks)

    def since(self, mark: tuple[dict[str, float], int]) -> tuple[dict[str, float], list]:
        before, n = mark
        with self._lock:
            spent = {k: v - before.get(k, 0.0) for k, v in self.seconds.items()}
            return {k: v for k, v in spent.items() if v > 0}, self.blocks[n:]

    def _add(self, part: str, seconds: float) -> None:
        with self._lock:
            self.seconds[part] = self.seconds.get(part, 0.0) + seconds

    def _wrap(self, function: Callable[..., Any], part: str) -> Callable[..., Any]:
        if part == "predict_block":
            return self._wrap_block(function)

        @functools.wraps(function)
        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                self._add(part, time.perf_counter() - start)

        return timed

    def _wrap_block(self, function: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(function)
        def timed(s2, s2_valid, s2_days, landsat, landsat_valid, landsat_days, query_days,
                  *args: Any, **kwargs: Any) -> Any:  # fmt: skip
            cpu0 = cpu_times()
            start = time.perf_counter()
            try:
                return function(s2, s2_valid, s2_days, landsat, landsat_valid, landsat_days,
                                query_days, *args, **kwargs)  # fmt: skip
            finally:
                seconds = time.perf_counter() - start
                own, busy, steal = (b - a for a, b in zip(cpu0, cpu_times(), strict=True))
                h, w = (s2.shape[-2:] if s2.shape[0]
                        else (landsat.shape[-2] * 3, landsat.shape[-1] * 3))  # fmt: skip
                block = {
                    "t_s": int(s2.shape[0]),
                    "t_l": int(landsat.shape[0]),
                    "t_q": len(query_days),
                    "h": int(h),
                    "w": int(w),
                    "forward": bool(s2_valid.any() or landsat_valid.any()),
                    "seconds": seconds,
                    "process_cpu_s": own,  # the whole process's, not only this block's
                    "others_cpu_s": max(busy - own, 0.0),
                    "steal_s": steal,
                }
                self._add("predict_block", seconds)
                with self._lock:
                    self.blocks.append(block)

        return timed

    @contextlib.contextmanager
    def installed(self) -> Iterator[Instruments]:
        saved = []
        for module_name, attribute, part in (*PHASES, *LEAVES):
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


def _status_kib(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def rss_bytes() -> int:
    kib = _status_kib("VmRSS")
    return kib * 1024 if kib is not None else peak_rss_bytes()


def peak_rss_bytes() -> int:
    kib = _status_kib("VmHWM")
    if kib is not None:
        return kib * 1024
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def cpu_times() -> tuple[float, float, float]:
    """(this process's CPU s, the machine's busy CPU s, CPU s stolen by the hypervisor); the
    machine's from /proc/stat (0 elsewhere). Busy minus ours = other processes' CPU time."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    own = usage.ru_utime + usage.ru_stime
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return own, 0.0, 0.0
    tick = os.sysconf("SC_CLK_TCK")
    busy = sum(fields[i] for i in (0, 1, 2, 5, 6)) / tick  # user nice system irq softirq
    steal = fields[7] / tick if len(fields) > 7 else 0.0
    return own, busy, steal


class Probe:
    """Wall time, process CPU time, other processes' CPU time and the peak RSS above the RSS
    at the start."""

    def __init__(self) -> None:
        try:
            Path("/proc/self/clear_refs").write_text("5")  # reset the RSS high-water mark
            self.reset = True
        except OSError:
            self.reset = False
        self.rss0 = rss_bytes()
        self.cpu0 = cpu_times()
        self.t0 = time.perf_counter()

    def stop(self) -> dict[str, Any]:
        seconds = time.perf_counter() - self.t0
        own, busy, steal = (b - a for a, b in zip(self.cpu0, cpu_times(), strict=True))
        peak = peak_rss_bytes()
        return {
            "seconds": seconds,
            "cpu_s": own,
            "others_cpu_s": max(busy - own, 0.0),
            "steal_s": steal,
            "rss_before_bytes": self.rss0,
            "peak_rss_bytes": peak,
            "peak_above_start_bytes": peak - self.rss0 if self.reset else None,
            "high_water_mark_reset": self.reset,
        }


# -- the two passes ------------------------------------------------------------------------


def _items_of(s: Setup, job: Any) -> tuple[list, list]:
    s2 = [i for c in job.profile.s2_collections for i in s.items.get(c, [])]
    return s2, list(s.items.get(job.profile.landsat_collection or "", []))


def kernel_cubes(s: Setup, tile: Any, job: Any) -> tuple[Any, Any]:
    """The tile's cubes as produce_tile assembles them, computed into memory."""
    from pipelines.datacube import assemble_landsat, assemble_s2

    grid = s.grid(tile)
    s2_items, landsat_items = _items_of(s, job)
    s2 = assemble_s2(s2_items, grid, job.profile, job.cube).compute()
    landsat = assemble_landsat(landsat_items, grid, job.profile, job.cube).compute()
    return s2, landsat


def kernel_pass(s: Setup, tile: Any, job: Any, instruments: Instruments) -> dict[str, Any]:
    from tamrf_xr.inference import predict

    s2, landsat = kernel_cubes(s, tile, job)
    if s2.sizes["time"] + landsat.sizes["time"] == 0:
        return {"skipped": "no usable input"}
    mark = instruments.snapshot()
    probe = Probe()
    predict(s2, landsat, list(job.dates), job.model, job.inference).compute()
    out = probe.stop()
    out["leaves"], out["blocks"] = instruments.since(mark)
    out["cube_nbytes"] = int(s2.nbytes + landsat.nbytes)
    return out


def e2e_pass(s: Setup, tile: Any, job: Any, instruments: Instruments) -> dict[str, Any]:
    from pipelines.level3_production import produce_tile

    mark = instruments.snapshot()
    probe = Probe()
    summary = produce_tile(s.items, tile, job)
    out = probe.stop()
    spent, out["blocks"] = instruments.since(mark)
    names = {part for *_, part in PHASES}
    out["phases"] = {k: v for k, v in spent.items() if k in names}
    out["leaves"] = {k: v for k, v in spent.items() if k not in names}
    out["status"] = summary["status"]
    out["cubes"] = [
        {"sensor": c["sensor"], "items": c["items"], "dates_kept": len(c["dates"]),
         "dates_dropped": len(c["dropped_dates"])}
        for c in summary["cubes"]
    ]  # fmt: skip
    return out


def read_halo_px() -> int:
    """The S2 reader's halo (masks + bicubic) in 10 m px, from pipelines.datacube's private
    helpers (0 if they moved)."""
    try:
        from pipelines import datacube
        from tamrf_xr.resample import UPSAMPLE_HALO

        halo_m = datacube._halo_m(datacube._s2_halo_px(datacube.CubeConfig().masks)
                                  + 2 * UPSAMPLE_HALO)  # fmt: skip
    except (ImportError, AttributeError):
        return 0
    return round(halo_m / 10.0)


def block_key(blocks: list[dict[str, Any]]) -> list[tuple]:
    return sorted((b["t_s"], b["t_l"], b["t_q"], b["h"], b["w"], b["forward"]) for b in blocks)


def block_flops(blocks: list[dict[str, Any]], model_config: Any) -> int:
    from tamrf_xr.flops import forward_flops

    return sum(
        forward_flops(model_config, b["h"], b["w"], b["t_s"], b["t_l"], b["t_q"]).total
        for b in blocks
        if b["forward"]
    )


# -- memory in fresh subprocesses ------------------------------------------------------------


def run_worker(args: argparse.Namespace) -> dict[str, Any]:
    """One pass of one tile in this fresh process; peak RSS above the baseline."""
    import dask

    s = setup(args)
    tile = next(t for t in s.tiles if t.tile_id == args.worker_tile)
    scratch = Path(tempfile.mkdtemp(prefix="level3-memory-", dir=args.data_dir))
    try:
        store = scratch / "store.zarr"
        create_store(s, store)
        job = s.job(store)
        with dask.config.set(scheduler="threads", num_workers=args.threads):
            warm_up(s)
            if args.worker == "kernel":
                from tamrf_xr.inference import predict

                s2, landsat = kernel_cubes(s, tile, job)
                probe = Probe()
                predict(s2, landsat, list(job.dates), job.model, job.inference).compute()
            else:
                from pipelines.level3_production import produce_tile

                probe = Probe()
                produce_tile(s.items, tile, job)
            return {"pass": args.worker, "tile": tile.tile_id, **probe.stop()}
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def memory_in_subprocess(argv: list[str], mode: str, tile_id: str) -> dict[str, Any]:
    command = [sys.executable, str(Path(__file__).resolve()), *argv,
               "--worker", mode, "--worker-tile", tile_id]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"memory worker {mode} {tile_id} failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# -- environment ---------------------------------------------------------------------------


def environment(threads: int) -> dict[str, Any]:
    import dask
    import torch
    import xarray
    import zarr

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
    modified = git("diff", "HEAD", "--name-only", "--", "pipelines", "tamrf_xr")
    return {
        "cpu_model": cpu,
        "cpu_count": os.cpu_count(),
        "threads": threads,
        "scheduler": "dask threaded (local threads in this process)",
        "python": platform.python_version(),
        "torch": torch.__version__,
        "dask": dask.__version__,
        "xarray": xarray.__version__,
        "zarr": zarr.__version__,
        "git_commit": git("rev-parse", "HEAD"),
        "pipelines_or_tamrf_xr_modified": None if modified is None else bool(modified),
        "load_average_1min": os.getloadavg()[0],
    }


# -- driver ----------------------------------------------------------------------------------


def measure(args: argparse.Namespace, argv: list[str]) -> dict[str, Any]:
    import dask

    from tamrf_xr.inference import InferenceConfig, cached_model

    s = setup(args)
    if not s.tiles:
        raise SystemExit("the region touches no tile")
    instruments = Instruments()
    runs_dir = args.data_dir / "stores"
    runs_dir.mkdir(parents=True, exist_ok=True)
    store = Path(tempfile.mkdtemp(prefix="run-", dir=runs_dir)) / "level3.zarr"
    result: dict[str, Any] = {
        "benchmark": "level3",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "environment": environment(args.threads),
        "settings": {
            "simulation": json.loads(s.config.to_json()),
            "region_bounds": list(s.region_bounds),
            "tile_size_m": args.tile_size_m,
            "aligned": args.align,
            "inference": dataclasses.asdict(InferenceConfig()),
            "output_dates": s.dates,
            "threads": args.threads,
            "quick": args.quick,
            "catalog": str(s.catalog),
            "simulate_s": s.simulate_s,
            "model": "untrained (random weights; irrelevant for speed)",
        },
        "tiles": [],
    }
    try:
        with (
            dask.config.set(scheduler="threads", num_workers=args.threads),
            instruments.installed(),
        ):
            result["warm_up_s"] = warm_up(s)
            result["model_config"] = dataclasses.asdict(cached_model(s.source).config)
            result["create_store_s"] = create_store(s, store)
            result["summary_inputs"] = {"read_halo_px": read_halo_px()}
            job = s.job(store)
            for i, tile in enumerate(s.tiles):
                row: dict[str, Any] = {"tile": tile.tile_id, "kernel_first": i % 2 == 0}
                row["cube_shape"] = list(s.grid(tile).shape)
                order = ("kernel", "e2e") if i % 2 == 0 else ("e2e", "kernel")
                for name in order:
                    run = kernel_pass if name == "kernel" else e2e_pass
                    row[name] = run(s, tile, job, instruments)
                row["same_blocks"] = block_key(row["e2e"]["blocks"]) == block_key(
                    row["kernel"].get("blocks", [])
                )
                result["tiles"].append(row)
                k = row["kernel"].get("seconds", 0.0)
                print(f"tile {i + 1}/{len(s.tiles)} {tile.tile_id}: kernel {k:.1f} s, "
                      f"end-to-end {row['e2e']['seconds']:.1f} s", file=sys.stderr,
                      flush=True)  # fmt: skip
    finally:
        shutil.rmtree(store.parent, ignore_errors=True)
    # Memory of the largest tiles (cube pixels), each pass in a fresh subprocess.
    result["memory_subprocess"] = []
    largest = sorted(result["tiles"], key=lambda r: -r["cube_shape"][0] * r["cube_shape"][1])
    for row in largest[: args.memory_tiles]:
        for mode in ("kernel", "e2e"):
            result["memory_subprocess"].append(memory_in_subprocess(argv, mode, row["tile"]))
    result["environment"]["load_average_1min_end"] = os.getloadavg()[0]
    return result


def summarise(result: dict[str, Any]) -> dict[str, Any]:
    """Totals over tiles, throughputs, FLOPs, the verdict."""
    from tamrf_xr.model import ModelConfig

    config = ModelConfig(**result["model_config"])
    sim = result["settings"]["simulation"]
    area_km2 = sim["width_px"] * sim["height_px"] * 1e-4
    t_q = len(result["settings"]["output_dates"])
    rows = [r for r in result["tiles"] if "seconds" in r["kernel"]]
    e2e_s = result["create_store_s"] + sum(r["e2e"]["seconds"] for r in result["tiles"])
    kernel_s = sum(r["kernel"]["seconds"] for r in rows)
    blocks = [b for r in rows for b in r["kernel"]["blocks"]]
    model_s = sum(b["seconds"] for b in blocks)
    e2e_blocks = [b for r in result["tiles"] for b in r["e2e"]["blocks"]]
    flops = block_flops(blocks, config)
    block_px_dates = sum(b["h"] * b["w"] * b["t_q"] for b in blocks if b["forward"])
    cube_px = sum(r["cube_shape"][0] * r["cube_shape"][1] for r in result["tiles"])
    halo = result["summary_inputs"]["read_halo_px"]
    read_px_dates = sum(  # read area (cube + the S2 reader's halo) x dates read
        (r["cube_shape"][0] + 2 * halo) * (r["cube_shape"][1] + 2 * halo)
        * sum(c["dates_kept"] + c["dates_dropped"] for c in r["e2e"]["cubes"])
        for r in result["tiles"]
    )  # fmt: skip
    kept = {
        sensor: (sum(c["dates_kept"] for r in result["tiles"] for c in r["e2e"]["cubes"]
                     if c["sensor"] == sensor),
                 sum(c["dates_kept"] + c["dates_dropped"] for r in result["tiles"]
                     for c in r["e2e"]["cubes"] if c["sensor"] == sensor))
        for sensor in ("sentinel-2", "landsat")
    }  # fmt: skip
    e2e_cpu = sum(r["e2e"]["cpu_s"] for r in result["tiles"])
    kernel_cpu = sum(r["kernel"]["cpu_s"] for r in rows)
    ratio = e2e_s / kernel_s if kernel_s else None
    e2e_model_s = sum(b["seconds"] for b in e2e_blocks)
    # CPU time of the end-to-end pass outside predict_block (the process's CPU during the
    # blocks counts as the model's, so work overlapping a block is left out: a lower bound).
    non_model_cpu = e2e_cpu - sum(b.get("process_cpu_s", np.nan) for b in e2e_blocks)

    def quiet(row: dict[str, Any]) -> bool:
        return all(row[p].get("others_cpu_s", np.inf) < QUIET_SHARE * row[p]["seconds"]
                   for p in ("kernel", "e2e"))  # fmt: skip

    calm = [r for r in rows if quiet(r)]
    calm_kernel = sum(r["kernel"]["seconds"] for r in calm)
    return {
        "area_km2": area_km2,
        "output_dates": t_q,
        "tiles": len(result["tiles"]),
        "e2e_s": e2e_s,
        "kernel_s": kernel_s,
        "model_s": model_s,
        "e2e_model_s": e2e_model_s,
        "e2e_non_model_s": e2e_s - e2e_model_s,
        "e2e_non_model_cpu_s": non_model_cpu,
        "e2e_cpu_s": e2e_cpu,
        "kernel_cpu_s": kernel_cpu,
        "throughput_e2e": area_km2 * t_q / e2e_s,
        "throughput_kernel": area_km2 * t_q / kernel_s if kernel_s else None,
        "throughput_model": area_km2 * t_q / model_s if model_s else None,
        "flops": flops,
        "blocks": len(blocks),
        "blocks_with_forward": sum(b["forward"] for b in blocks),
        "flop_per_s_e2e": flops / e2e_s,
        "flop_per_s_kernel": flops / kernel_s if kernel_s else None,
        "flop_per_s_model": flops / model_s if model_s else None,
        "flops_per_block_pixel_date": flops / block_px_dates if block_px_dates else None,
        "flops_per_region_pixel_date": flops / (area_km2 * 1e4 * t_q),
        "block_pixels_over_region_pixels": sum(b["h"] * b["w"] for b in blocks if b["forward"])
        / (area_km2 * 1e4),
        "cube_pixels": cube_px,
        "dates_kept_read": kept,
        "read_halo_px": halo,
        "non_model_cpu_s_per_read_km2_input_date": non_model_cpu / (read_px_dates * 1e-4)
        if read_px_dates and np.isfinite(non_model_cpu)
        else None,
        "same_blocks_every_tile": all(r["same_blocks"] for r in result["tiles"]),
        "ratio": ratio,
        "target": f"end-to-end / kernel < {TARGET_RATIO}",
        "verdict": None if ratio is None else ("PASS" if ratio < TARGET_RATIO else "FAIL"),
        "quiet_tiles": [r["tile"] for r in calm],
        "ratio_quiet_tiles": sum(r["e2e"]["seconds"] for r in calm) / calm_kernel
        if calm_kernel
        else None,
        "ratio_within_e2e": e2e_s / e2e_model_s if e2e_model_s else None,
    }


def project(result: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """GPU-hours (and hours on the CPU measured here) for a continental run."""
    from tamrf_xr.flops import forward_flops
    from tamrf_xr.inference import InferenceConfig
    from tamrf_xr.model import ModelConfig

    try:  # the chunking predict() really uses (a private helper)
        from tamrf_xr.inference.predict import _block_chunks
    except ImportError:  # pragma: no cover

        def _block_chunks(n: int, chunk: int, margin: int) -> tuple[int, ...]:
            sizes = [chunk] * (n // chunk) + ([n % chunk] if n % chunk else [])
            if len(sizes) > 1 and sizes[-1] < max(margin, 1):
                sizes[-2] += sizes.pop()
            return tuple(sizes)

    config = ModelConfig(**result["model_config"])
    summary = result["summary"]
    inference = InferenceConfig()
    chunk, margin = inference.chunk_px, inference.margin_px
    tile_px = round(args.project_tile_size_m / 10.0)
    area_km2, t_q = args.project_area_km2, args.project_output_dates
    kept = summary["dates_kept_read"]
    shares = {s: (k / n if n else 1.0) for s, (k, n) in kept.items()}
    date_cases = {
        "all dates kept": (args.project_s2_dates, args.project_landsat_dates),
        "kept share as measured": (
            round(args.project_s2_dates * shares["sentinel-2"]),
            round(args.project_landsat_dates * shares["landsat"]),
        ),
    }
    gpu_rate = args.gpu_peak_tflops * 1e12 * args.gpu_efficiency
    cpu_rate = summary["flop_per_s_model"]
    rows = []
    for label, (t_s, t_l) in date_cases.items():
        # Ideal: every output block of chunk^2 px reads a margin of context on each side.
        block = forward_flops(config, chunk + 2 * margin, chunk + 2 * margin, t_s, t_l, t_q)
        ideal_per_km2 = block.total / (chunk * chunk * 1e-4)
        # As implemented: produce_tile's cube is the tile grown by the margin, and predict()
        # cuts that cube into blocks and grows every block by the margin again.
        sizes = [c + 2 * margin for c in _block_chunks(tile_px + 2 * margin, chunk, margin)]
        tile_flops = sum(
            forward_flops(config, h, w, t_s, t_l, t_q).total for h in sizes for w in sizes
        )
        tile_per_km2 = tile_flops / (tile_px * tile_px * 1e-4)
        for tiling, per_km2, overhead in (
            (f"ideal: {chunk} px blocks + {margin} px margin", ideal_per_km2,
             (chunk + 2 * margin) ** 2 / chunk**2),
            (f"as implemented: {tile_px} px tiles, blocks {'+'.join(map(str, sizes))}",
             tile_per_km2, sum(sizes) ** 2 / tile_px**2),
        ):  # fmt: skip
            total = per_km2 * area_km2
            rows.append({
                "dates": label, "t_s": t_s, "t_l": t_l, "tiling": tiling,
                "computed_over_output_pixels": overhead,
                "flops_per_output_pixel_date": per_km2 / 1e4 / t_q,
                "flops_total": total,
                "gpu_hours": total / gpu_rate / 3600,
                "cpu_hours": total / cpu_rate / 3600 if cpu_rate else None,
            })  # fmt: skip
    extra = summary["non_model_cpu_s_per_read_km2_input_date"]
    read_side = tile_px + 2 * margin + 2 * summary["read_halo_px"]
    read_km2 = area_km2 * (read_side / tile_px) ** 2
    input_dates = args.project_s2_dates + args.project_landsat_dates
    non_kernel_core_h = extra * read_km2 * input_dates / 3600 if extra is not None else None
    return {
        "area_km2": area_km2,
        "output_dates": t_q,
        "input_dates": [args.project_s2_dates, args.project_landsat_dates],
        "tile_px": tile_px,
        "chunk_px": chunk,
        "margin_px": margin,
        "gpu_assumption": f"{args.gpu_efficiency:.0%} of {args.gpu_peak_tflops:g} TFLOP/s "
        "(H100 SXM bf16 dense peak) sustained",
        "gpu_flop_per_s": gpu_rate,
        "cpu_flop_per_s_measured": cpu_rate,
        "rows": rows,
        "non_kernel_cpu_core_hours": non_kernel_core_h,
        "non_kernel_note": "CPU seconds of the end-to-end pass outside predict_block, "
        "per km^2 read (tile + margin + the S2 reader's halo) per input date read, scaled "
        "linearly to the area and the input dates (reading and masks dominate; writing scales "
        "with output dates)",
        "read_over_output_area": (read_side / tile_px) ** 2,
    }


# -- report ----------------------------------------------------------------------------------


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def markdown(result: dict[str, Any]) -> str:
    s, env, sm = result["settings"], result["environment"], result["summary"]
    sim = s["simulation"]
    inf = s["inference"]
    lines = [
        f"Level-3 end-to-end vs kernel, {sim['width_px']} x {sim['height_px']} px at 10 m "
        f"({sm['area_km2']:.2f} km^2), {sim['start']}..{sim['end']} (seed {sim['seed']}), "
        f"{sm['tiles']} tiles of {s['tile_size_m']:g} m{' (aligned)' if s['aligned'] else ''}, "
        f"{sm['output_dates']} output dates, chunk {inf['chunk_px']} px, margin "
        f"{inf['margin_px']} px, {env['scheduler']}, {env['threads']} threads, "
        f"{env['cpu_model']} ({env['cpu_count']} CPUs), torch {env['torch']}, "
        f"{result['date'][:10]}, commit {(env['git_commit'] or '?')[:7]}"
        f"{' (pipelines/tamrf_xr MODIFIED)' if env['pipelines_or_tamrf_xr_modified'] else ''}, "
        f"load average {env['load_average_1min']:.1f} -> "
        f"{env.get('load_average_1min_end', float('nan')):.1f}. Untrained weights.",
        "",
        f"Target {sm['target']}: **{sm['verdict']}** (ratio {_fmt(sm['ratio'], '.3f')} over "
        f"all tiles; {_fmt(sm['ratio_quiet_tiles'], '.3f')} over the "
        f"{len(sm['quiet_tiles'])} tiles where other processes used < {QUIET_SHARE:.0%} of a "
        f"core in both passes; end-to-end / predict_block time within the end-to-end pass "
        f"{_fmt(sm['ratio_within_e2e'], '.3f')}). Same blocks in both passes: "
        f"{sm['same_blocks_every_tile']}. Outside predict_block the end-to-end pass spent "
        f"{sm['e2e_non_model_s']:.1f} s wall and {sm['e2e_non_model_cpu_s']:.1f} CPU s.",
        "",
        "| pass | time s | km^2 x dates / s | CPU s | other processes' CPU s | GFLOP/s "
        "| max peak RSS above tile start MB |",
        "|---|---|---|---|---|---|---|",
    ]
    others = {
        name: sum(r[name].get("others_cpu_s", 0.0) for r in result["tiles"])
        for name in ("e2e", "kernel")
    }
    peak = {
        name: max((r[name].get("peak_above_start_bytes") or 0) for r in result["tiles"])
        for name in ("e2e", "kernel")
    }
    lines += [
        f"| end-to-end (produce_tile + create_store) | {sm['e2e_s']:.2f} "
        f"| {sm['throughput_e2e']:.4f} | {sm['e2e_cpu_s']:.1f} | {others['e2e']:.1f} "
        f"| {sm['flop_per_s_e2e'] / 1e9:.1f} | {peak['e2e'] / MB:.0f} |",
        f"| kernel: predict().compute() on in-memory cubes | {sm['kernel_s']:.2f} "
        f"| {_fmt(sm['throughput_kernel'], '.4f')} | {sm['kernel_cpu_s']:.1f} "
        f"| {others['kernel']:.1f} "
        f"| {_fmt(sm['flop_per_s_kernel'] and sm['flop_per_s_kernel'] / 1e9, '.1f')} "
        f"| {peak['kernel'] / MB:.0f} |",
        f"| model only: predict_block in the kernel pass | {sm['model_s']:.2f} "
        f"| {_fmt(sm['throughput_model'], '.4f')} | | | "
        f"{_fmt(sm['flop_per_s_model'] and sm['flop_per_s_model'] / 1e9, '.1f')} | |",
        "",
        f"FLOPs: {sm['flops'] / 1e12:.2f} TFLOP in {sm['blocks_with_forward']} forward passes "
        f"({sm['blocks']} blocks); {_fmt(sm['flops_per_block_pixel_date'], '.3g')} FLOP per "
        f"block pixel x output date, {sm['flops_per_region_pixel_date']:.3g} per region pixel x "
        f"output date (blocks hold {sm['block_pixels_over_region_pixels']:.1f}x the region's "
        f"pixels: cube margin + block margin). predict_block in the end-to-end pass: "
        f"{sm['e2e_model_s']:.2f} s.",
        "",
        "Per tile (k = kernel pass, e = end-to-end pass; model = predict_block; others = CPU "
        "seconds of other processes during the pass):",
        "",
        "| tile | cube px | S2 kept/read | Landsat kept/read | blocks (t_s+t_l, px) | kernel s "
        "| e2e s | e2e/kernel | model s k / e | others s k / e | peak MB k / e |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["tiles"]:
        cubes = {c["sensor"]: c for c in r["e2e"]["cubes"]}
        k, e = r["kernel"], r["e2e"]
        blocks = ", ".join(f"{b['t_s']}+{b['t_l']} {b['h']}x{b['w']}" for b in e["blocks"])
        kept = [
            f"{cubes[x]['dates_kept']}/{cubes[x]['dates_kept'] + cubes[x]['dates_dropped']}"
            if x in cubes else "-"
            for x in ("sentinel-2", "landsat")
        ]  # fmt: skip
        ks = k.get("seconds")
        lines.append(
            f"| {r['tile']} | {r['cube_shape'][0]}x{r['cube_shape'][1]} | {kept[0]} | {kept[1]} "
            f"| {blocks} | {_fmt(ks, '.2f')} | {e['seconds']:.2f} "
            f"| {_fmt(ks and e['seconds'] / ks, '.3f')} "
            f"| {sum(b['seconds'] for b in k.get('blocks', [])):.2f} / "
            f"{sum(b['seconds'] for b in e['blocks']):.2f} "
            f"| {_fmt(k.get('others_cpu_s'), '.1f')} / {_fmt(e.get('others_cpu_s'), '.1f')} "
            f"| {_fmt(k.get('peak_above_start_bytes') and k['peak_above_start_bytes'] / MB, '.0f')}"
            f" / {_fmt(e['peak_above_start_bytes'] and e['peak_above_start_bytes'] / MB, '.0f')} |"
        )
    # Where the end-to-end time goes.
    phases: dict[str, float] = {}
    leaves: dict[str, dict[str, float]] = {"e2e": {}, "kernel": {}}
    for r in result["tiles"]:
        for k, v in r["e2e"]["phases"].items():
            phases[k] = phases.get(k, 0.0) + v
        for name in ("e2e", "kernel"):
            for k, v in r[name].get("leaves", {}).items():
                leaves[name][k] = leaves[name].get(k, 0.0) + v
    e2e_tiles = sm["e2e_s"] - result["create_store_s"]
    phases["create_store"] = result["create_store_s"]
    phases["other (produce_tile itself)"] = e2e_tiles - sum(
        v for k, v in phases.items() if k != "create_store"
    )
    lines += [
        "",
        "End-to-end wall time by produce_tile step (sequential; write_tile runs the dask "
        "computation: reads, masks, model, encoding, Zarr writes):",
        "",
        "| step | s | share of end-to-end |",
        "|---|---|---|",
    ]
    for k, v in phases.items():
        lines.append(f"| {k} | {v:.2f} | {v / sm['e2e_s']:.1%} |")
    lines += [
        "",
        "Thread-seconds inside (tasks overlap; the kernel pass's cube reads are untimed):",
        "",
        "| function | end-to-end s | kernel s |",
        "|---|---|---|",
    ]
    for k in dict.fromkeys([*leaves["e2e"], *leaves["kernel"]]):
        lines.append(
            f"| {k} | {leaves['e2e'].get(k, 0.0):.2f} | {leaves['kernel'].get(k, 0.0):.2f} |"
        )
    if result.get("memory_subprocess"):
        lines += [
            "",
            "Peak memory of one tile in a fresh subprocess (peak RSS above the baseline: "
            "imports, catalog, model, warm-up; kernel: also its computed cubes):",
            "",
            "| tile | pass | s | baseline RSS MB | peak above baseline MB | peak RSS MB |",
            "|---|---|---|---|---|---|",
        ]
        for m in result["memory_subprocess"]:
            lines.append(
                f"| {m['tile']} | {m['pass']} | {m['seconds']:.2f} "
                f"| {m['rss_before_bytes'] / MB:.0f} "
                f"| {_fmt(m['peak_above_start_bytes'] and m['peak_above_start_bytes'] / MB, '.0f')}"
                f" | {m['peak_rss_bytes'] / MB:.0f} |"
            )
    p = result["projection"]
    lines += [
        "",
        f"Projection: {p['area_km2'] / 1e6:g} M km^2, {p['output_dates']} output dates, "
        f"{p['input_dates'][0]} S2 + {p['input_dates'][1]} Landsat input dates per year; "
        f"GPU: {p['gpu_assumption']} = {p['gpu_flop_per_s'] / 1e12:.0f} TFLOP/s; CPU: the "
        f"model-only rate measured here, {_fmt(p['cpu_flop_per_s_measured'] and p['cpu_flop_per_s_measured'] / 1e9, '.1f')} GFLOP/s "  # noqa: E501
        f"(fp32, {env['threads']} threads).",
        "",
        "| input dates (S2+L) | tiling | computed/output px | kFLOP per output px x date "
        "| EFLOP | GPU-hours | hours on this CPU |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in p["rows"]:
        lines.append(
            f"| {row['dates']} ({row['t_s']}+{row['t_l']}) | {row['tiling']} "
            f"| {row['computed_over_output_pixels']:.3f} "
            f"| {row['flops_per_output_pixel_date'] / 1e3:,.0f} | {row['flops_total'] / 1e18:.1f} "
            f"| {row['gpu_hours']:,.0f} | {_fmt(row['cpu_hours'], ',.3g')} |"
        )
    if p["non_kernel_cpu_core_hours"] is not None:
        gpu_h = p["rows"][1]["gpu_hours"]  # all dates kept, as implemented
        lines += [
            "",
            f"Non-kernel CPU work (reads, masks, assembly, writes), projected: "
            f"{p['non_kernel_cpu_core_hours']:,.0f} core-hours ({p['non_kernel_note']}; read "
            f"area {p['read_over_output_area']:.2f}x the output area), i.e. "
            f"{p['non_kernel_cpu_core_hours'] / gpu_h:,.0f} CPU cores per GPU to keep pace with "
            f"the {gpu_h:,.0f} GPU-hours of the as-implemented, all-dates row.",
        ]
    return "\n".join(lines)


# -- command line ----------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", type=int, default=None, help="region width, 10 m px (x 6)")
    p.add_argument("--height", type=int, default=None, help="region height (default: --size)")
    p.add_argument("--start", type=dt.date.fromisoformat, default=None, help="first day")
    p.add_argument("--end", type=dt.date.fromisoformat, default=None, help="last day")
    p.add_argument("--tile-size-m", type=float, default=None, help="output tile side (x 30 m)")
    p.add_argument("--dates", default="SMS", help="output cadence (SMS, 10D...) or ISO list")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2, help="dask workers and torch threads")
    p.add_argument(
        "--no-align", dest="align", action="store_false",
        help="keep the region where the simulation puts it (partial tiles at its edges)",
    )  # fmt: skip
    p.add_argument("--memory-tiles", type=int, default=1,
                   help="largest tiles whose memory is measured in fresh subprocesses")  # fmt: skip
    p.add_argument("--quick", action="store_true",
                   help="smoke run: 120 x 60 px, 2022-05-01..05-31, 600 m tiles (2)")  # fmt: skip
    p.add_argument("--data-dir", type=Path, default=REPO / "benchmarks/results/level3_data",
                   help="where simulated products, the model and scratch stores go")  # fmt: skip
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--report", type=Path, help="re-print the tables of an earlier --out JSON")
    g = p.add_argument_group("projection (also applied with --report)")
    g.add_argument("--project-area-km2", type=float, default=10.5e6, help="Europe's land")
    g.add_argument("--project-s2-dates", type=int, default=73, help="S2 dates per year")
    g.add_argument("--project-landsat-dates", type=int, default=45, help="Landsat dates/year")
    g.add_argument("--project-output-dates", type=int, default=24)
    g.add_argument("--project-tile-size-m", type=float, default=9_900.0)
    g.add_argument("--gpu-peak-tflops", type=float, default=989.0, help="H100 SXM bf16 dense")
    g.add_argument("--gpu-efficiency", type=float, default=0.30, help="sustained share of peak")
    p.add_argument("--worker", choices=["kernel", "e2e"], help=argparse.SUPPRESS)
    p.add_argument("--worker-tile", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    quick = args.quick
    args.size = args.size or (120 if quick else 360)
    args.height = args.height or (60 if quick else args.size)
    args.start = args.start or dt.date(2022, 5, 1)
    args.end = args.end or (dt.date(2022, 5, 31) if quick else dt.date(2022, 7, 31))
    args.tile_size_m = args.tile_size_m or (600.0 if quick else 1200.0)
    if args.size % 6 or args.height % 6:
        p.error(f"--size and --height must be multiples of 6, got {args.size}, {args.height}")
    if args.out is None:
        args.out = REPO / "benchmarks/results" / ("level3_quick.json" if quick else "level3.json")
    return args


def _json_default(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else str(value)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args.worker:
        print(json.dumps(run_worker(args), default=_json_default))
        return {}
    result = json.loads(args.report.read_text()) if args.report else measure(args, argv)
    result["summary"] = summarise(result)
    result["projection"] = project(result, args)
    if not args.report:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2, default=_json_default) + "\n")
        print(f"wrote {args.out}", file=sys.stderr)
    print(markdown(result))
    return result


if __name__ == "__main__":
    main()
