"""The main job on the embedded default, as a Prefect flow: simulate (or reuse) a region,
serve it as a local STAC API on 127.0.0.1, and run the production chain on it
(:func:`pipelines.production.run_region`, the same call as on any catalog).

Wiring only. A re-run resumes: tiles whose completion record matches are not computed again.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.cache_policies import NO_CACHE

from flows.production_run import produce_task, published
from flows.terminal import progress_bars
from pipelines.cluster import ClusterConfig
from pipelines.demo.region_request import check_demo_out_dir, simulated_region_request
from pipelines.demo.simulated_catalog import open_or_write_simulated_catalog
from pipelines.demo.stac_servers import create_server
from pipelines.production import ProductionRequest, check_request, parse_dates, search_region
from pipelines.run_lock import run_lock
from tamrf_xr.simulate import SimulationConfig

__all__ = ["checked_demo_request", "regional_run"]


@task(name="simulate-region")
def simulate_region(
    config_json: str, product_dir: str, overwrite: bool, show_progress: bool = False
) -> str:
    """Simulated catalog for the region (reused when already there); returns its catalog path."""
    artifact = create_progress_artifact(0.0, key="tamrf-simulation-progress",
                                        description="Simulating the region")  # fmt: skip
    with progress_bars(show_progress) as bar:

        def progress(stage: str, done: int, total: int) -> None:
            bar(stage, done, total)
            # Items first (most of the time), then the truth store.
            share = 0.8 * done / total if stage == "items" else 0.8 + 0.2 * done / total
            if done == total or done % 10 == 0:
                update_progress_artifact(artifact, 100.0 * share)

        product = open_or_write_simulated_catalog(
            SimulationConfig.from_json(config_json),
            Path(product_dir),
            overwrite=overwrite,
            progress=progress,
        )
    update_progress_artifact(artifact, 100.0)
    return str(product.catalog)


@task(name="query-catalog", cache_policy=NO_CACHE)
def query_catalog(request: ProductionRequest) -> dict[str, list[dict[str, Any]]]:
    """One search of the region: item documents by collection."""
    return search_region(request)


def checked_demo_request(
    config: SimulationConfig,
    out_dir: str,
    dates: str = "SMS",
    scheduler: str | None = None,
    **options: Any,
) -> ProductionRequest:
    """The demo's production request, every parameter checked before anything is simulated
    (its catalog URL is known once the local server runs), with the Dask ``scheduler`` the
    run will use; ``tamrf run`` calls it before taking the output's lock, the flow again
    inside it.

    Raises:
        ValueError: a bad parameter (nothing written).
    """
    check_demo_out_dir(out_dir)
    out = Path(out_dir).absolute()
    request = simulated_region_request(config, out, "http://127.0.0.1/not-served-yet",
                                       dates=parse_dates(dates), **options)  # fmt: skip
    check_request(request, catalog=False, scheduler=scheduler)
    return request


@flow(name="tamrf-regional-run", log_prints=True)
def regional_run(
    out_dir: str,
    seed: int = 0,
    center_lon: float = 1.45,
    center_lat: float = 43.60,
    size_px: int = 240,
    start: dt.date = dt.date(2022, 1, 1),
    end: dt.date = dt.date(2022, 12, 31),
    cloud_cover: float = 0.45,
    backend: str = "rustac",
    overwrite: bool = False,
    show_progress: bool = False,
    dates: str = "SMS",
    checkpoint: str | None = None,
    tile_size_m: float = 9_900.0,
    encoding: str = "float32",
    precision: str = "auto",
    scheduler_address: str | None = None,
    n_workers: int | None = None,
    threads_per_worker: int = 2,
    chunk_px: int | None = None,
    tiles_in_flight: int = 2,
    cluster_kind: str = "auto",
    cluster_spec: str | None = None,
    lock_held: bool = False,
) -> dict[str, Any]:
    """Simulate a region into ``out_dir/simulated``, serve it, and produce its Level-3
    stores into ``out_dir/level3`` (one Zarr store per UTM zone + STAC collection).

    Args:
        seed, center_lon, center_lat, size_px, start, end, cloud_cover: the simulated
            region (a square of ``size_px`` 10 m pixels, a multiple of 6) and its period.
        dates: output dates: a cadence over the simulated period (``SMS``: 1st and 15th of
            each month, ``10D``...) or comma-separated ISO dates.
        checkpoint: model weights (ours or the authors' ``.ckpt``); default: the bundled
            model; ``untrained``: the untrained stand-in, flagged in the summary and the
            products.
        tile_size_m: output tile side (a multiple of 30 m).
        encoding: ``float32`` (mantissa rounded to the int16 precision class) or ``int16``
            (CF scale/offset).
        precision: model arithmetic: auto (bf16 where the hardware runs it natively, else
            fp32), fp32, bf16 or fp16 (GPU).
        scheduler_address: an existing Dask cluster; default: a local one (GPU workers via
            dask-cuda when GPUs are present).
        cluster_kind: auto, cpu, cuda, or the name of a cluster spec in infra/clusters
            (local, slurm, kubernetes...).
        cluster_spec: a cluster spec file to start instead (its kind decides).
        lock_held: the caller holds ``out_dir``'s run lock already (``tamrf run`` takes it
            before starting the flow, so that a second run is refused in one line).

    Returns the run summary, also written to ``out_dir/run-summary.json`` and published as a
    Prefect markdown artifact.
    """
    logger = get_run_logger()
    config = SimulationConfig(seed=seed, center_lon=center_lon, center_lat=center_lat,
                              width_px=size_px, height_px=size_px, start=start, end=end,
                              cloud_cover_mean=cloud_cover)  # fmt: skip
    out = Path(out_dir).absolute()
    options = {"dates": dates, "checkpoint": checkpoint, "tile_size_m": tile_size_m,
               "encoding": encoding, "precision": precision, "chunk_px": chunk_px,
               "tiles_in_flight": tiles_in_flight}  # fmt: skip
    cluster = ClusterConfig(address=scheduler_address, kind=cluster_kind,
                            n_workers=n_workers,
                            threads_per_worker=threads_per_worker,
                            dashboard_address=None, spec=cluster_spec)  # fmt: skip
    request = checked_demo_request(config, out_dir, scheduler=scheduler_address, **options)
    # The lock covers the simulation too: two demo runs on one directory would otherwise
    # write the same product at once.
    with contextlib.nullcontext() if lock_held else run_lock(out):
        catalog = simulate_region(config.to_json(), str(out / "simulated"), overwrite,
                                  show_progress)  # fmt: skip
        with create_server(catalog, backend=backend) as server:
            logger.info("serving %s at %s (%s)", catalog, server.url, backend)
            request = dataclasses.replace(request, catalog_url=server.url)
            items = query_catalog(request)
        # The temporary server is gone after the run: the summary points at the catalog file.
        summary = produce_task(request, cluster, show_progress, items,
                               {"catalog": catalog, "backend": backend},
                               lock_held=True)  # fmt: skip
    return published(summary)
