"""Faults of a production run, each provoked for real; every test states in its assertion
messages the figure it measured (tiles recomputed, requests made, seconds to fail, processes
and ports left, bytes left on a disk).

1. A Dask worker killed with SIGKILL while tiles compute.
2. The STAC API down (refused, or a gateway answering 503), slow, or going silent mid-search.
3. Missing (404), truncated and corrupt COGs, of reflectance bands and of mask assets (S2 SCL,
   Landsat QA_PIXEL).
4. A full disk (ENOSPC on a real tmpfs mounted for the test) during the demo's simulation and
   while tiles are written.
5. SIGTERM, SIGINT (to the whole process group, as a terminal's Ctrl-C) and SIGKILL of
   ``tamrf run`` while tiles compute, with no ``PREFECT_API_URL`` (so that it starts Prefect's
   temporary server), then the resume.

Small on purpose: one simulated catalog (240 px, 4 output tiles of 300 m) with its broken
assets, served once for the module, and one demo region of 36 px (4 tiles).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import http.server
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import psutil
import pytest
from cli_process import REPO_ROOT, tamrf
from shapely.geometry import box, mapping

from pipelines.demo.simulated_catalog import write_simulated_catalog
from pipelines.demo.stac_servers import RustacServer, free_port, load_static_catalog
from tamrf_xr.simulate import SimulationConfig
from tamrf_xr.simulate.geometry import region_grid

CONFIG = SimulationConfig(seed=11, width_px=240, height_px=240, start=dt.date(2022, 6, 1),
                          end=dt.date(2022, 6, 30), cloud_cover_mean=0.2)  # fmt: skip
DATES = ("2022-06-08", "2022-06-22")
TILE_M = 300.0
DEMO = ["run", "--seed", "7", "--size-px", "36", "--start", "2022-07-01", "--end",
        "2022-07-20", "--tile-size-m", "300", "--no-progress"]  # fmt: skip
"""The smallest demo: 4 tiles of 300 m, 1 worker (the default on 2 cores)."""

BREAKS = (  # (collection, asset key, band in the records, how it is broken)
    ("sentinel-2-l2a", "red", "S2_B4", "missing"),
    ("sentinel-2-l2a", "red", "S2_B4", "truncated"),
    ("sentinel-2-l2a", "red", "S2_B4", "corrupt"),
    ("sentinel-2-l2a", "scl", "SCL", "missing"),
    ("sentinel-2-l2a", "scl", "SCL", "truncated"),
    ("sentinel-2-l2a", "scl", "SCL", "corrupt"),
    ("landsat-c2-l2", "red", "LS_B4", "truncated"),
    ("landsat-c2-l2", "qa_pixel", "QA_PIXEL", "missing"),
    ("landsat-c2-l2", "qa_pixel", "QA_PIXEL", "corrupt"),
)
"""One item each, the clearest first (so that every broken band is on a date the run keeps
and reads): a missing file is what a 404 is to the reader."""
MASKS = {"SCL", "QA_PIXEL"}


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------


def _break(path: Path, how: str) -> None:
    """Delete the COG, cut it to a third, or overwrite half of its first full-resolution block
    (zlib header included) with garbage, and check that it no longer reads."""
    import rasterio

    if how == "missing":
        path.unlink()
        return
    data = bytearray(path.read_bytes())
    if how == "truncated":
        path.write_bytes(bytes(data[: len(data) // 3]))
    else:
        with rasterio.open(path) as ds:
            offset = int(ds.get_tag_item("BLOCK_OFFSET_0_0", "TIFF", bidx=1))
            size = int(ds.get_tag_item("BLOCK_SIZE_0_0", "TIFF", bidx=1))
        garbage = np.random.default_rng(0).integers(0, 256, size // 2, np.uint8).tobytes()
        data[offset : offset + len(garbage)] = garbage
        path.write_bytes(bytes(data))
    with pytest.raises(rasterio.errors.RasterioError), rasterio.open(path) as ds:
        ds.read(1)


def aoi() -> dict:
    """A 400 m lon/lat box around the tile corner nearest the region's centre: 2 x 2 tiles
    whose cubes (tile + 600 m of margin on each side) lie within the region."""
    from pyproj import Transformer

    grid = region_grid(CONFIG)
    west, south, east, north = grid.bounds
    x = round((west + east) / 2 / TILE_M) * TILE_M
    y = round((south + north) / 2 / TILE_M) * TILE_M
    to_lonlat = Transformer.from_crs(grid.epsg, 4326, always_xy=True)
    lon0, lat0 = to_lonlat.transform(x - 200, y - 200)
    lon1, lat1 = to_lonlat.transform(x + 200, y + 200)
    return mapping(box(lon0, lat0, lon1, lat1))


def catalog_request(url: str, out: Path):
    from pipelines.production import ProductionRequest

    return ProductionRequest(catalog="earth-search-v1", aoi=aoi(), start=CONFIG.start,
                             end=CONFIG.end, out_dir=out, catalog_url=url, dates=DATES,
                             tile_size_m=TILE_M)  # fmt: skip


def catalog_args(url: str, out: Path) -> list[str]:
    """The same run as :func:`catalog_request`, as ``tamrf run`` arguments."""
    from shapely.geometry import shape

    bbox = ",".join(repr(v) for v in shape(aoi()).bounds)
    return ["run", "--catalog", "earth-search-v1", "--catalog-url", url, "--bbox", bbox,
            "--start", str(CONFIG.start), "--end", str(CONFIG.end), "--dates", ",".join(DATES),
            "--tile-size-m", str(TILE_M), "--out-dir", str(out), "--no-progress"]  # fmt: skip


def two_workers():
    from pipelines.cluster import ClusterConfig

    return ClusterConfig(n_workers=2, threads_per_worker=1, kind="cpu", dashboard_address=None)


def store_of(out: Path) -> Path:
    (store,) = (out / "level3").glob("*.zarr")
    return store


def chunk_files(store: Path) -> dict[str, bytes]:
    """Every data chunk file of a store (records and metadata aside), by relative path."""
    return {
        str(p.relative_to(store)): p.read_bytes()
        for p in sorted(store.rglob("*"))
        if p.is_file() and "completed" not in p.parts and not p.name.startswith(("zarr.json", "."))
    }


def same_chunks(store: Path, reference: Path) -> tuple[bool, str]:
    """(every chunk file byte-identical, a one-line account of the comparison)."""
    ours, theirs = chunk_files(store), chunk_files(reference)
    differ = sorted(k for k in ours.keys() & theirs.keys() if ours[k] != theirs[k])
    missing, extra = sorted(theirs.keys() - ours.keys()), sorted(ours.keys() - theirs.keys())
    account = (f"{len(theirs)} chunk files compared: {len(differ)} differ {differ[:3]}, "
               f"{len(missing)} missing {missing[:3]}, {len(extra)} extra {extra[:3]}")  # fmt: skip
    return not (differ or missing or extra), account


def tiles_with_their_data(store: Path, reference: Path) -> tuple[set[str], set[str]]:
    """(tiles with a completion record, those of them whose every value equals the
    reference's): a tile must never be complete without its data."""
    from pipelines.level3 import completion_records, open_level3, read_definition

    recorded = set(completion_records(store))
    definition = read_definition(reference)
    ours, theirs = open_level3(store), open_level3(reference)
    whole = set()
    for tile in definition.grid_tiles:
        if tile.tile_id in recorded:
            region = {k: v for k, v in definition.region(tile).items() if k != "time"}
            a, b = ours.isel(region).load(), theirs.isel(region).load()
            if all(np.array_equal(a[n].values, b[n].values, equal_nan=True) for n in a):
                whole.add(tile.tile_id)
    return recorded, whole


def complete_tiles(out: Path) -> set[str]:
    return {p.parent.name for p in out.glob("level3/*.zarr/completed/*/zarr.json")}


def harness_env() -> dict[str, str]:
    """The environment of a ``tamrf`` process on this session's Prefect server."""
    from prefect.settings import PREFECT_API_URL

    return {**os.environ, "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_API_URL": PREFECT_API_URL.value()}  # fmt: skip


def own_server_env() -> dict[str, str]:
    """No Prefect API: ``tamrf run`` starts Prefect's temporary server itself."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API_")}
    return {**env, "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}


def error_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("error:")]


def _alive(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


class WatchedRun:
    """``tamrf ARGS`` in a process group of its own; while it runs, every process descended
    from it and every TCP port they listen on are remembered (polled every 0.1 s)."""

    def __init__(self, args: list[str], log: Path, env: dict[str, str]) -> None:
        self.log = log
        with open(log, "w") as stream:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "flows.cli", *args], stdout=stream,
                stderr=subprocess.STDOUT, cwd=REPO_ROOT, env=env, start_new_session=True,
            )  # fmt: skip
        self.started = time.monotonic()
        self.main = psutil.Process(self.process.pid)
        self.seen: dict[int, psutil.Process] = {}
        self.ports: set[int] = set()
        self._watcher = threading.Thread(target=self._watch, daemon=True)
        self._watcher.start()

    def _watch(self) -> None:
        while self.process.poll() is None:
            with contextlib.suppress(psutil.Error):
                for process in [self.main, *self.main.children(recursive=True)]:
                    if process.pid != self.main.pid:
                        self.seen[process.pid] = process
                    with contextlib.suppress(psutil.Error):
                        self.ports |= {c.laddr.port for c in process.net_connections("inet")
                                       if c.status == psutil.CONN_LISTEN}  # fmt: skip
            time.sleep(0.1)

    def wait_for(self, ready, timeout_s: float = 300.0) -> float:
        """Seconds until ``ready()`` holds (the run still going)."""
        while not ready():
            assert self.process.poll() is None, f"the run ended first:\n{self.output}"
            assert time.monotonic() - self.started < timeout_s, f"not ready:\n{self.output}"
            time.sleep(0.05)
        return time.monotonic() - self.started

    def send(self, number: int, group: bool = False) -> None:
        (os.killpg if group else os.kill)(self.process.pid, number)

    def wait(self, timeout_s: float = 300.0) -> int:
        code = self.process.wait(timeout=timeout_s)
        self._watcher.join()
        return code

    @property
    def output(self) -> str:
        return self.log.read_text()

    def left_behind(self, within_s: float = 15.0) -> tuple[list[str], set[int]]:
        """(processes of the run still alive after up to ``within_s`` s, ports they listened
        on that still listen): both empty once everything stopped."""
        deadline = time.monotonic() + within_s
        while True:
            alive = [p for p in self.seen.values() if _alive(p)]
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, 0)  # raises once the group is empty
                alive = alive or [self.main]
            if not alive or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        ours = {*self.seen, self.main.pid, None}
        listening = {c.laddr.port for c in psutil.net_connections("tcp")
                     if c.status == psutil.CONN_LISTEN and c.laddr.port in self.ports
                     and c.pid in ours}  # fmt: skip
        names = []
        for process in alive:
            with contextlib.suppress(psutil.Error):
                names.append(f"{process.pid} {' '.join(process.cmdline()[:4])}")
        return names, listening

    def stop(self) -> None:
        """Kill what is left (a failed test must not leave a run behind)."""
        for process in [self.main, *self.seen.values()]:
            if _alive(process):
                with contextlib.suppress(psutil.Error):
                    process.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=10)


@contextlib.contextmanager
def watched(args: list[str], log: Path, env: dict[str, str]) -> Iterator[WatchedRun]:
    run = WatchedRun(args, log, env)
    try:
        yield run
    finally:
        run.stop()


@contextlib.contextmanager
def small_disk(directory: Path, size: str) -> Iterator[Path]:
    """A real tmpfs of ``size`` mounted at ``directory`` (root in a container that allows
    mounts; elsewhere the test is skipped with the reason)."""
    directory.mkdir(parents=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs",
                              str(directory)], capture_output=True, text=True)  # fmt: skip
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here to fill ({mounted.stderr.strip()}): run as "
                    "root in a container that allows mounts")  # fmt: skip
    try:
        yield directory
    finally:
        subprocess.run(["umount", "-l", str(directory)], check=False)


def fill(directory: Path) -> int:
    """Write a file until the disk is full; return the bytes written."""
    written = 0
    with open(directory / "filler", "wb", buffering=0) as stream:
        for block in (1 << 20, 1 << 12):
            try:
                while True:
                    written += stream.write(b"\0" * block)
            except OSError as error:
                assert error.errno == errno.ENOSPC, error
    return written


# ---------------------------------------------------------------------------------------------
# The module's catalog (with its broken assets) and the reference runs
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def broken(tmp_path_factory) -> Iterator[tuple[str, dict[tuple[str, str], str]]]:
    """The simulated catalog served by a real STAC API, with :data:`BREAKS` applied; yields
    its URL and {(item id, band): how it is broken}."""
    product = write_simulated_catalog(CONFIG, tmp_path_factory.mktemp("sim"), with_truth=False)
    items = load_static_catalog(product.catalog).items
    by_clearness = sorted(items, key=lambda i: (i["properties"]["eo:cloud_cover"], i["id"]))
    chosen: dict[tuple[str, str], str] = {}
    for collection, key, band, how in BREAKS:
        item = next(i for i in by_clearness if i["collection"] == collection
                    and not any(i["id"] == item_id for item_id, _ in chosen))  # fmt: skip
        _break(Path(item["assets"][key]["href"]), how)
        chosen[(item["id"], band)] = how
    with RustacServer(product.catalog) as server:
        yield server.url, chosen


@pytest.fixture(scope="module")
def catalog_run(broken, tmp_path_factory) -> tuple[Path, dict]:
    """The uninterrupted run on the broken catalog: the reference of the stores."""
    from pipelines.production import run_region

    out = tmp_path_factory.mktemp("catalog") / "out"
    summary = run_region(catalog_request(broken[0], out), two_workers())
    assert summary["level3"]["failed"] == [] and len(summary["level3"]["tiles"]) == 4
    return out, summary


@pytest.fixture(scope="module")
def demo_reference(tmp_path_factory) -> tuple[Path, dict]:
    """The uninterrupted demo run, on a temporary Prefect server of its own; it leaves no
    process and no listening port behind either."""
    root = tmp_path_factory.mktemp("demo")
    out = root / "out"
    with watched([*DEMO, "--out-dir", str(out)], root / "log", own_server_env()) as run:
        code = run.wait()
        left, ports = run.left_behind()
        assert code == 0, run.output
        assert (left, ports) == ([], set()), (
            f"a clean exit left {len(left)} of {len(run.seen)} processes and {len(ports)} of "
            f"{len(run.ports)} listening ports: {left} {ports}"
        )
    return out, json.loads((out / "run-summary.json").read_text())


# ---------------------------------------------------------------------------------------------
# 1. A worker killed while tiles compute
# ---------------------------------------------------------------------------------------------


def test_a_worker_killed_mid_tile_is_recomputed_to_the_same_bytes(broken, catalog_run, tmp_path):
    """kill -9 of the worker process that runs a tile's tasks: the scheduler recomputes what
    was lost on the other worker (or, had the tile failed, its retry or the re-run would):
    the store ends byte-identical to the uninterrupted run's."""
    import distributed

    from pipelines.level3_production import produce_tile
    from pipelines.production import run_region

    killed: list[tuple[int, float]] = []

    def kill_a_busy_worker(client: distributed.Client) -> None:
        pids = client.run(os.getpid)  # {worker address: pid}
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            busy = [address for address, keys in client.processing().items() if keys]
            if busy:
                os.kill(pids[busy[0]], signal.SIGKILL)
                killed.append((pids[busy[0]], time.time()))
                return
            time.sleep(0.02)

    def produce(items, tile, job, **kwargs):
        if not killed and not any(t.name == "killer" for t in threading.enumerate()):
            client = distributed.default_client()
            threading.Thread(target=kill_a_busy_worker, args=(client,), name="killer").start()
        return produce_tile(items, tile, job, **kwargs)

    out = tmp_path / "out"
    request = catalog_request(broken[0], out)
    summary = run_region(request, two_workers(), produce=produce)
    assert killed, "no worker was busy: nothing was killed"
    pid, at = killed[0]
    spans = {t["tile"]: (t["started"], t["finished"]) for t in summary["tiles"]}
    in_flight = sorted(t for t, (start, end) in spans.items() if start <= at <= end)
    retried = sorted(t["tile"] for t in summary["tiles"] if t["attempts"] > 1)
    failed = [f["tile"] for f in summary["level3"]["failed"]]
    rerun = []
    if failed:  # a tile that failed for good is the re-run's to compute
        again = run_region(request, two_workers())
        rerun = again["level3"]["produced_now"]
        assert sorted(rerun) == sorted(failed), again["level3"]
    identical, account = same_chunks(store_of(out), store_of(catalog_run[0]))
    figure = (f"worker pid {pid} killed while {len(in_flight)} tile(s) computed {in_flight} "
              f"(their lost tasks recomputed by the scheduler); tiles retried by the run: "
              f"{len(retried)} {retried}; failed, then recomputed by the re-run: {len(rerun)}; "
              f"{account}")  # fmt: skip
    assert identical, figure
    assert in_flight, figure
    print(figure)


# ---------------------------------------------------------------------------------------------
# 2. The STAC API down, answering 503, slow, or silent mid-search
# ---------------------------------------------------------------------------------------------


_ITEM = {"type": "Feature", "stac_version": "1.0.0", "id": "only", "collection": "sentinel-2-l2a",
         "geometry": {"type": "Point", "coordinates": [1.45, 43.55]},
         "bbox": [1.45, 43.55, 1.45, 43.55], "properties": {"datetime": "2022-06-05T10:00:00Z"},
         "links": [], "assets": {}}  # fmt: skip
"""One item per page (a client stops at an empty page)."""


class _CountingHandler(http.server.BaseHTTPRequestHandler):
    """A STAC API that misbehaves as ``server.mode`` says, counting requests by path."""

    def log_message(self, *args) -> None:  # quiet
        pass

    def _answer(self) -> None:
        server = self.server
        path = self.path.split("?")[0]
        with server.lock:
            server.counts[path] = server.counts.get(path, 0) + 1
        if server.mode == "503":
            self.send_error(503, "backend down")
            return
        if path == "/" and server.mode == "slow":
            time.sleep(server.delay_s)
        if path == "/search" and server.mode == "silent" and server.counts[path] > 1:
            time.sleep(server.delay_s)  # the first page answered, the next ones never
        root = f"http://127.0.0.1:{server.server_port}"
        if path == "/":
            body = {"type": "Catalog", "id": "faulty", "description": "faulty",
                    "stac_version": "1.0.0",
                    "conformsTo": ["https://api.stacspec.org/v1.0.0/core",
                                   "https://api.stacspec.org/v1.0.0/item-search"],
                    "links": [{"rel": "self", "href": root + "/"},
                              {"rel": "root", "href": root + "/"},
                              {"rel": "search", "href": root + "/search", "method": "POST",
                               "type": "application/geo+json"}]}  # fmt: skip
        else:
            body = {"type": "FeatureCollection", "features": [_ITEM],
                    "links": [{"rel": "next", "href": root + "/search", "method": "POST",
                               "body": {"page": 2}}]}  # fmt: skip
        data = json.dumps(body).encode()
        with contextlib.suppress(OSError):  # the client gave up waiting
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    do_GET = do_POST = _answer  # noqa: N815 (http.server's names)


@contextlib.contextmanager
def faulty_stac_api(mode: str, delay_s: float = 3.0) -> Iterator[http.server.HTTPServer]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _CountingHandler)
    server.daemon_threads = True
    server.mode, server.delay_s, server.counts, server.lock = mode, delay_s, {}, threading.Lock()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def test_a_catalog_down_at_the_start_fails_in_one_line_and_touches_nothing(catalog_run):
    """Refused connections, then a gateway answering 503: each retried with backoff, then one
    `error:` naming the catalog URL, exit 2; the complete tiles of the earlier run keep their
    records untouched and nothing is written."""
    out, _ = catalog_run
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    dead = f"http://127.0.0.1:{free_port()}"
    started = time.monotonic()
    refused = tamrf(catalog_args(dead, out))
    refused_s = time.monotonic() - started
    with faulty_stac_api("503") as gateway:
        url = f"http://127.0.0.1:{gateway.server_port}"
        answered = tamrf(catalog_args(url, out))
        requests = sum(gateway.counts.values())
    after = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    figure = (f"refused: exit {refused.exit_code} in {refused_s:.1f} s; 503: exit "
              f"{answered.exit_code} after {requests} requests (1 + retries)")  # fmt: skip
    for ran, named in ((refused, dead), (answered, url)):
        errors = error_lines(ran.output)
        assert ran.exit_code == 2 and len(errors) == 1, f"{figure}\n{ran.output}"
        assert named in errors[0] and "Traceback" not in ran.output, ran.output
    assert requests >= 3, f"not retried: {figure}"
    assert after == before, f"the output changed: {figure}"
    print(figure)


def test_a_slow_or_silent_catalog_is_retried_then_reported_naming_it():
    """A landing page slower than the client timeout, and a search whose second page never
    comes: each request retried (timeout 0.5 s, 2 retries), then a CatalogSearchError that
    names the catalog, in seconds rather than never."""
    from pipelines.search import CatalogSearchError, SearchRequest, check_reachable, search_items

    request = SearchRequest(collections=("sentinel-2-l2a",), bbox=(1.4, 43.5, 1.5, 43.6),
                            start=CONFIG.start, end=CONFIG.end)  # fmt: skip
    figures = []
    for mode in ("slow", "silent"):
        with faulty_stac_api(mode) as api:
            url = f"http://127.0.0.1:{api.server_port}"
            started = time.monotonic()
            with pytest.raises(CatalogSearchError) as failure:
                if mode == "slow":
                    check_reachable(url, retries=2, backoff_s=0.05, timeout_s=0.5)
                else:
                    search_items(url, request, retries=2, backoff_s=0.05, timeout_s=0.5)
            seconds = time.monotonic() - started
            path = "/" if mode == "slow" else "/search"
            answered = "" if mode == "slow" else "1 page answered, then "
            figures.append(f"{mode}: {api.counts.get(path, 0)} requests to {path} ({answered}"
                           f"1 + 2 retries), failed after {seconds:.1f} s")  # fmt: skip
            assert url in str(failure.value), str(failure.value)
            expected = 3 if mode == "slow" else 4  # the silent one answered its first page
            assert api.counts.get(path, 0) == expected, figures[-1]
            assert seconds < 10, figures[-1]
    print("; ".join(figures))


# ---------------------------------------------------------------------------------------------
# 3. Missing, truncated and corrupt COGs
# ---------------------------------------------------------------------------------------------


def test_broken_cogs_are_recorded_and_each_date_is_stated_truthfully(broken, catalog_run):
    """Every broken asset is in run-summary.json and in the record of every tile whose inputs
    include it (the run's tiles share one broken-asset log); a date whose reflectance band
    broke is used without that band (its item in the inputs); a date whose mask broke is
    dropped, with the unreadable mask as the reason (its item not in the inputs): its clear
    pixels cannot be told from clouds."""
    from pipelines.level3 import completion_records

    out, summary = catalog_run
    _, chosen = broken
    found = {(a["item_id"], a["band"]) for a in summary["broken_assets"]}
    assert found == set(chosen), f"summary lists {sorted(found)}, broken {sorted(chosen)}"
    assert all(a["error"] for a in summary["broken_assets"])
    written = json.loads((out / "run-summary.json").read_text())
    assert {(a["item_id"], a["band"]) for a in written["broken_assets"]} == set(chosen)
    records = completion_records(store_of(out))
    assert set(records) == set(summary["level3"]["tiles"])
    bands_used = 0
    for tile, record in records.items():
        provenance = record["provenance"]
        listed = {(a["item_id"], a["band"]) for a in provenance["broken_assets"]}
        used = {i["id"] for sensor in provenance["inputs"].values() for i in sensor}
        dropped = {d["item_ids"]: d["reason"] for c in provenance["cubes"]
                   for d in c["dropped_dates"]}  # fmt: skip
        assert listed == set(chosen), f"tile {tile} records {sorted(listed)}"
        for (item, band), how in chosen.items():
            if band in MASKS:
                assert item not in used, f"{tile}: {item} listed as used with its {band} {how}"
                assert f"quality layer {band} unreadable" in dropped.get(item, ""), (
                    f"{tile}: the date of {item} ({band} {how}) dropped for {dropped.get(item)}"
                )
            elif item in used:
                bands_used += 1
            else:  # too cloudy on this tile: dropped before its bands were read
                assert "min_valid_fraction" in dropped[item], (tile, item, dropped[item])
    masks = sum(band in MASKS for _, band in chosen)
    assert bands_used, "no date with a broken band was used: the test reads no broken band"
    print(
        f"{len(chosen)} broken assets ({masks} masks) in run-summary.json and in each of the "
        f"{len(records)} tile records; {masks} dates dropped for their mask on every tile; "
        f"{bands_used} tile-dates used without their broken band"
    )


def test_a_broken_cog_reads_as_nodata_for_its_asset_and_date_only(broken, tmp_path):
    """On the region's cubes without the date filter (every date kept): a broken band is NaN
    on its date, which has no valid pixel, while its other bands keep their data; a date whose
    mask broke has no clear and no valid pixel (the run's filter then drops it, see above)."""
    from pipelines.asset_reader import BrokenAssetLog
    from pipelines.catalogs import profile
    from pipelines.datacube import CubeConfig, assemble_landsat, assemble_s2
    from pipelines.production import search_region

    url, chosen = broken
    items = search_region(catalog_request(url, tmp_path / "unused"))
    grid = region_grid(CONFIG)
    log, every_date = BrokenAssetLog(tmp_path / "log"), CubeConfig(min_valid_fraction=0.0)
    es = profile("earth-search-v1")
    s2 = assemble_s2(items["sentinel-2-l2a"], grid, es, every_date, log)
    landsat = assemble_landsat(items["landsat-c2-l2"], grid, es, every_date, log)
    checked = []
    for (item, band), how in chosen.items():
        cube = s2 if band in ("S2_B4", "SCL") else landsat
        (index,) = np.flatnonzero([item in str(ids).split() for ids in cube.item_ids.values])
        date = cube.isel(time=index).compute()
        assert not date.valid.values.any(), f"{item}: pixels without {band} ({how}) valid"
        if band in MASKS:
            assert float(date.clear_fraction) == 0, f"{item}: clear without its {band} ({how})"
        else:
            values = date.observations.sel(band=band).values
            others = date.observations.drop_sel(band=band).values
            assert np.isnan(values).all(), f"{item} {band} ({how}) has values"
            assert np.isfinite(others).any(), f"{item}: the other bands were lost too"
        checked.append(f"{band} {how}")
    print(f"{len(checked)} broken assets read as nodata on their date only: {checked}")


# ---------------------------------------------------------------------------------------------
# 4. A full disk
# ---------------------------------------------------------------------------------------------


def test_a_full_disk_during_the_simulation_leaves_nothing_half_written(prefect_harness, tmp_path):
    """The demo on a 1 MiB tmpfs: the simulation hits ENOSPC; one `error:` names the stage
    and the path, exit 1, and no `.simulated.incomplete/` is left filling the disk."""
    with small_disk(tmp_path / "disk", "1m") as disk:
        out = disk / "out"
        ran = tamrf([*DEMO, "--out-dir", str(out)])
        usage = shutil.disk_usage(disk)
        leftovers = sorted(p.name for p in out.iterdir() if p.name != ".tamrf-run.lock")
    figure = f"exit {ran.exit_code}; {usage.used} bytes used on the disk after; left {leftovers}"
    errors = error_lines(ran.output)
    assert ran.exit_code == 1 and len(errors) == 1, f"{figure}\n{ran.output}"
    assert f"simulating the region to {out}: No space left on device" in errors[0], errors
    assert leftovers == [], figure
    assert usage.used <= 64 * 1024, figure
    print(figure)


def test_a_full_disk_while_tiles_are_written_stops_cleanly_and_resumes(
    prefect_harness, demo_reference, tmp_path
):
    """The demo on a 48 MiB tmpfs filled up as soon as its store exists: the first tile
    write hits ENOSPC; one `error:` names the stage, the tile and the store, exit 1; no tile
    is complete without its data. Space freed, the same command computes the missing tiles
    and the store ends byte-identical to an uninterrupted run's."""
    with small_disk(tmp_path / "disk", "48m") as disk:
        out = disk / "out"
        with watched([*DEMO, "--out-dir", str(out)], tmp_path / "log", harness_env()) as run:
            run.wait_for(lambda: bool(list(out.glob("level3/*.zarr/zarr.json"))))
            filled = fill(disk)
            code = run.wait()
        errors = error_lines(run.output)
        recorded, whole = tiles_with_their_data(store_of(out), store_of(demo_reference[0]))
        assert code == 1 and len(errors) == 1, run.output
        assert "chunks to" in errors[0] and str(store_of(out)) in errors[0], errors
        assert "No space left on device" in errors[0] and "re-run" in errors[0], errors
        assert recorded == whole, f"tiles complete without their data: {recorded - whole}"
        (disk / "filler").unlink()
        again = tamrf([*DEMO, "--out-dir", str(out)])
        assert again.exit_code == 0, again.output
        level3 = json.loads((out / "run-summary.json").read_text())["level3"]
        identical, account = same_chunks(store_of(out), store_of(demo_reference[0]))
    figure = (f"disk filled with {filled} bytes; complete when it stopped: {len(recorded)} of "
              f"{len(level3['tiles'])} tiles; re-run computed {len(level3['produced_now'])}, "
              f"skipped {len(level3['skipped'])}; {account}")  # fmt: skip
    assert sorted(level3["produced_now"]) == sorted(set(level3["tiles"]) - recorded), figure
    assert identical, figure
    print(figure)


def test_an_unwritable_output_stops_the_run_without_retries(tmp_path):
    """ENOSPC, EROFS... while a tile is written stop the run at once: not retried (0 retries
    where an I/O error gets 2), no further tile started. A permission denied counts only on a
    file of the output (a denied read of an input is the input's problem)."""
    from pipelines.output_errors import OutputWriteError, writing
    from pipelines.tiles_in_flight import run_tiles

    calls: list[str] = []

    def produce(tile: str, progress) -> dict:
        calls.append(tile)
        with writing(f"writing tile {tile} chunks", tmp_path):
            raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OutputWriteError) as stopped:
        run_tiles([f"t{i}" for i in range(5)], produce, str, in_flight=1, retries=2)
    assert calls == ["t0"], f"attempts made: {calls}"
    assert str(stopped.value).startswith(f"writing tile t0 chunks to {tmp_path}: No space")
    denied = OSError(errno.EACCES, "Permission denied")
    for filename, output in ((tmp_path / "x.zarr" / "c", True), ("/elsewhere/in.tif", False)):
        denied.filename = str(filename)
        expected = OutputWriteError if output else OSError
        with pytest.raises(expected) as raised, writing("writing", tmp_path):
            raise denied
        assert isinstance(raised.value, OutputWriteError) == output, filename
    print(f"attempts after ENOSPC: {len(calls)} of 5 tiles, retries 0")


# ---------------------------------------------------------------------------------------------
# 5. SIGTERM, SIGINT and SIGKILL of `tamrf run`, then the resume
# ---------------------------------------------------------------------------------------------


def _interrupt_then_resume(number: int, group: bool, reference: tuple[Path, dict], root: Path):
    out = root / "out"
    with watched([*DEMO, "--out-dir", str(out)], root / "log", own_server_env()) as run:
        at = run.wait_for(lambda: bool(complete_tiles(out)))
        run.send(number, group)
        code = run.wait(timeout_s=120)
        stopped_s = time.monotonic() - run.started - at
        left, ports = run.left_behind()
        output = run.output
        seen = len(run.seen)
    name = signal.Signals(number).name
    complete = complete_tiles(out)
    figure = (f"{name} at {at:.1f} s ({'group' if group else 'main process'}): exit {code} "
              f"{stopped_s:.1f} s later; processes left {len(left)} of {seen}, listening "
              f"ports left {len(ports)}; tiles complete {len(complete)}")  # fmt: skip
    assert (left, ports) == ([], set()), f"{figure}: {left} {ports}"
    if number == signal.SIGKILL:
        assert code == -signal.SIGKILL, figure
        return figure
    errors = error_lines(output)
    assert code == 128 + number, f"{figure}\n{output}"
    assert len(errors) == 1 and name in errors[0] and "re-run" in errors[0], output
    recorded, whole = tiles_with_their_data(store_of(out), store_of(reference[0]))
    assert recorded == whole, f"tiles complete without their data: {recorded - whole}"
    again = tamrf([*DEMO, "--out-dir", str(out)])
    assert again.exit_code == 0, again.output
    level3 = json.loads((out / "run-summary.json").read_text())["level3"]
    identical, account = same_chunks(store_of(out), store_of(reference[0]))
    figure += (f"; the re-run computed {len(level3['produced_now'])} and skipped "
               f"{len(level3['skipped'])}; {account}")  # fmt: skip
    assert sorted(level3["skipped"]) == sorted(complete), figure
    assert sorted(level3["produced_now"]) == sorted(set(level3["tiles"]) - complete), figure
    assert identical, figure
    return figure


def test_sigterm_stops_the_run_and_everything_it_started_then_it_resumes(
    prefect_harness, demo_reference, tmp_path
):
    """SIGTERM to the main process (a supervisor, `kill PID`) while tiles compute: exit 143
    with one `error:` line; the temporary Prefect server, the workers and every other process
    it started are gone and no port still listens; the re-run computes only the missing
    tiles, to the bytes of an uninterrupted run."""
    print(_interrupt_then_resume(signal.SIGTERM, False, demo_reference, tmp_path))


def test_ctrl_c_stops_the_run_and_everything_it_started_then_it_resumes(
    prefect_harness, demo_reference, tmp_path
):
    """SIGINT to the whole process group (a terminal's Ctrl-C) while tiles compute: exit 130
    with one `error:` line, nothing left running or listening, a resume as after SIGTERM."""
    print(_interrupt_then_resume(signal.SIGINT, True, demo_reference, tmp_path))


_KILLED_PARENT = """
import os, signal, subprocess, sys, time
from flows.child_watchdog import Watchdog
quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
older = subprocess.Popen(["sleep", "60"], **quiet)  # started before the command
watchdog = Watchdog()
watchdog.watch()
children = [subprocess.Popen(["sleep", "60"], **quiet),
            subprocess.Popen(["sleep", "60"], start_new_session=True, **quiet)]
time.sleep(0.6)  # a few polls
print(older.pid, *(c.pid for c in children), flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_the_watchdog_stops_what_a_killed_process_started_and_nothing_else():
    """A process killed with SIGKILL: the two children it started while watched (one in a
    session of its own) are stopped; the one it started before is left alone."""
    ran = subprocess.run([sys.executable, "-c", _KILLED_PARENT], capture_output=True, text=True,
                         cwd=REPO_ROOT, timeout=60)  # fmt: skip
    older, *started = (int(pid) for pid in ran.stdout.split())

    def alive(pid: int) -> bool:
        try:
            return _alive(psutil.Process(pid))
        except psutil.Error:
            return False

    try:
        deadline = time.monotonic() + 10
        while any(alive(p) for p in started) and time.monotonic() < deadline:
            time.sleep(0.05)
        left = [p for p in started if alive(p)]
        assert ran.returncode == -signal.SIGKILL, ran.stderr
        assert left == [], f"left {len(left)} of {len(started)} children of a killed process"
        assert alive(older), "the watchdog stopped a process older than the command"
    finally:
        for pid in (older, *started):
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
    print(f"children stopped after SIGKILL of their parent: {len(started)} of {len(started)}")


def test_sigkill_leaves_no_process_behind(demo_reference, tmp_path):
    """SIGKILL of the main process (no handler runs): the watchdog stops the temporary Prefect
    server and the rest within its grace period; no port still listens."""
    print(_interrupt_then_resume(signal.SIGKILL, False, demo_reference, tmp_path))
