"""The production run as a Prefect flow: any STAC catalog, an AOI, a period, Level-3 stores.

Wiring only: the plan and the run are each one call of :mod:`pipelines.production`; the
tiles run several at a time on the Dask cluster underneath one coarse Prefect task (Prefect
does not schedule thousands of tile tasks well), and what happens to them is visible while
they run through keyed artifacts (:mod:`flows.run_reporting`). Parameters are plain typed
fields, so the Prefect UI shows them as a form.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from flows.run_reporting import FlowReporter, publish_plan, publish_summary
from flows.terminal import tile_bars
from pipelines.cluster import ClusterConfig
from pipelines.grid import aoi_geometry
from pipelines.production import ProductionRequest, TilesFailedError, plan_region, run_region

__all__ = ["plan_task", "produce_task", "production_run", "published", "request_from_parameters"]


@task(name="plan-region", task_run_name="plan-{request.catalog}", cache_policy=NO_CACHE)
def plan_task(request: ProductionRequest, device: str) -> dict[str, Any]:
    """Tiles, their items and dates, and the estimated cost; computes nothing."""
    return plan_region(request, device).to_dict()


@task(name="produce-region", task_run_name="produce-tiles-{request.catalog}", cache_policy=NO_CACHE)
def produce_task(
    request: ProductionRequest,
    cluster: ClusterConfig,
    show_progress: bool,
    items: dict[str, list[dict[str, Any]]] | None = None,
    summary_extra: dict[str, Any] | None = None,
    lock_held: bool = False,
) -> dict[str, Any]:
    """The run's tiles on the cluster (several in flight), stores, summary."""
    with tile_bars(show_progress) as bars:
        reporter = FlowReporter(get_run_logger(), bars)
        return run_region(request, cluster, reporter, items=items, summary_extra=summary_extra,
                          lock_held=lock_held)  # fmt: skip


def published(summary: dict[str, Any]) -> dict[str, Any]:
    """Publish the summary; a run with failed tiles then ends as a failed flow run (so that
    the Prefect UI, automations and deployments see it) after everything else was written."""
    publish_summary(summary)
    if summary["level3"]["failed"]:
        raise TilesFailedError(summary)
    return summary


def request_from_parameters(
    catalog: str,
    start: dt.date,
    end: dt.date,
    out_dir: str,
    bbox: list[float] | None = None,
    aoi: dict[str, Any] | None = None,
    **options: Any,
) -> ProductionRequest:
    """A checked request from the flow's (or the command line's) parameters."""
    if (bbox is None) == (aoi is None):
        raise ValueError("give exactly one AOI: --aoi FILE.geojson or --bbox W,S,E,N")
    geometry = aoi if aoi is not None else aoi_geometry(bbox).__geo_interface__
    return ProductionRequest(catalog=catalog, aoi=geometry, start=start, end=end,
                             out_dir=out_dir, **options)  # fmt: skip


@flow(name="tamrf-production-run", log_prints=True)
def production_run(
    catalog: str,
    start: dt.date,
    end: dt.date,
    out_dir: str,
    bbox: list[float] | None = None,
    aoi: dict[str, Any] | None = None,
    catalog_url: str | None = None,
    dates: str = "SMS",
    checkpoint: str | None = None,
    s2_collection: str | None = None,
    max_cloud_cover: float | None = None,
    tile_size_m: float = 9_900.0,
    encoding: str = "float32",
    precision: str = "auto",
    tiles_in_flight: int = 2,
    tile_retries: int = 2,
    tiles: list[str] | None = None,
    scheduler_address: str | None = None,
    cluster_kind: str = "auto",
    cluster_spec: str | None = None,
    n_workers: int | None = None,
    threads_per_worker: int = 2,
    flop_rate_gflops: float | None = None,
    retry_broken: bool = False,
    dry_run: bool = False,
    show_progress: bool = False,
    lock_held: bool = False,
) -> dict[str, Any]:
    """Level-3 stores of an AOI and a period from a STAC catalog.

    Args:
        catalog: profile name (earth-search-v1, planetary-computer, local).
        start, end: the input period (inclusive).
        out_dir: output directory (stores, STAC collection, run-summary.json).
        bbox: AOI as [west, south, east, north] in degrees; or ``aoi``, a GeoJSON geometry,
            Feature or FeatureCollection in lon/lat.
        catalog_url: STAC API root (an internal mirror); default the profile's.
        dates: output dates: SMS, MS, 10D... or comma-separated ISO dates.
        checkpoint: model weights; default the bundled model; ``untrained``: the untrained
            stand-in (flagged everywhere).
        precision: model arithmetic: auto (bf16 where the hardware runs it natively, else
            fp32), fp32, bf16 or fp16 (GPU).
        tiles_in_flight: tiles computed at once.
        tiles: only these tile ids.
        scheduler_address: an existing Dask scheduler; else a local cluster of
            ``cluster_kind`` (auto, cpu, cuda), or the cluster of a spec: ``cluster_kind``
            names one of infra/clusters (local, slurm, kubernetes...) or ``cluster_spec``
            gives a file (its kind decides).
        flop_rate_gflops: the model's speed for the plan's estimate; default measured here.
        retry_broken: also recompute complete tiles whose record lists broken assets.
        dry_run: plan only: publish the tiles, items, dates and estimated cost.
        lock_held: the caller holds ``out_dir``'s run lock already (``tamrf run`` takes it
            before starting the flow, so that a second run is refused in one line).

    Returns:
        The plan (dry run) or the run summary.
    """
    from pipelines.production import parse_dates

    request = request_from_parameters(
        catalog, start, end, out_dir, bbox, aoi, catalog_url=catalog_url,
        dates=parse_dates(dates), checkpoint=checkpoint, s2_collection=s2_collection,
        max_cloud_cover=max_cloud_cover, tile_size_m=tile_size_m, encoding=encoding,
        precision=precision, tiles_in_flight=tiles_in_flight, tile_retries=tile_retries,
        tile_filter=None if tiles is None else tuple(tiles),
        flop_rate=None if flop_rate_gflops is None else flop_rate_gflops * 1e9,
        retry_broken=retry_broken,
    )  # fmt: skip
    cluster = ClusterConfig(address=scheduler_address, kind=cluster_kind,
                            n_workers=n_workers, threads_per_worker=threads_per_worker,
                            dashboard_address=None, spec=cluster_spec)  # fmt: skip
    if dry_run:
        plan = plan_task(request, cluster.model_device)
        publish_plan(plan)
        return plan
    return published(produce_task(request, cluster, show_progress, lock_held=lock_held))
