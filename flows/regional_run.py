"""The main job as a Prefect flow: simulate (or reuse) a region, serve it as a STAC API,
query it, and produce the Level-3 Zarr store of every output tile it touches (datacubes,
TAMRF inference on a Dask cluster, region writes), with a STAC collection of the outputs.

Each task calls library functions; the flow only wires them. A re-run resumes: tiles whose
completion record is in the store are not computed again.
"""

from __future__ import annotations

import json
import platform
from dataclasses import asdict
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    update_progress_artifact,
)
from prefect.cache_policies import NO_CACHE

import tamrf_xr
from flows.terminal import progress_bars
from pipelines.catalogs import LOCAL
from pipelines.cluster import ClusterConfig, start_cluster
from pipelines.datacube import CubeConfig
from pipelines.grid import GridSpec, GridTile, tiles_for_aoi
from pipelines.level3 import Level3Config, create_store, missing_tiles
from pipelines.level3_production import TileJob, produce_tile
from pipelines.level3_stac import write_level3_collection
from pipelines.search import SearchRequest, search_items
from pipelines.simulated_catalog import open_or_write_simulated_catalog
from pipelines.stac_servers import create_server
from tamrf_xr.inference import InferenceConfig, ModelSource, target_dates, untrained_checkpoint
from tamrf_xr.inference.predict import checkpoint_identity
from tamrf_xr.simulate import SimulationConfig
from tamrf_xr.simulate.geometry import LANDSAT_COLLECTION, S2_COLLECTION, region_grid

__all__ = ["regional_run"]


@task(name="simulate-region")
def simulate_region(
    config_json: str, product_dir: str, overwrite: bool, show_progress: bool = False
) -> str:
    """Simulated catalog for the region (reused when already there); returns its catalog path."""
    artifact = create_progress_artifact(0.0, description="Simulating the region")
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
def query_catalog(url: str, request: SearchRequest) -> dict[str, list[dict[str, Any]]]:
    """Search the catalog; return the item documents by collection."""
    return {c: [i.to_dict() for i in items] for c, items in search_items(url, request).items()}


def _found_summary(found: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    def cover(item: dict[str, Any]) -> float:
        return item["properties"].get("eo:cloud_cover", 0.0)

    return {
        collection: {
            "count": len(items),
            "first": items[0]["properties"]["datetime"],
            "last": items[-1]["properties"]["datetime"],
            "mean_cloud_cover": round(sum(cover(i) for i in items) / len(items), 2),
            "ids": [i["id"] for i in items],
        }
        for collection, items in found.items()
    }


@task(name="produce-tile", cache_policy=NO_CACHE)
def produce_level3_tile(
    items: dict[str, list[dict[str, Any]]], tile: GridTile, job: TileJob
) -> dict[str, Any]:
    """Cubes, prediction and Level-3 write of one tile (on the run's Dask cluster)."""
    return produce_tile(items, tile, job)


def _region_tiles(config: SimulationConfig, spec: GridSpec) -> list[GridTile]:
    """The output tiles that hold part of the simulated region."""
    grid = region_grid(config)
    gw, gs, ge, gn = grid.bounds
    tiles = []
    for tile in tiles_for_aoi(grid.lonlat_bbox(), spec):
        west, south, east, north = tile.bounds
        # The lon/lat box is larger than the region: keep tiles that overlap the region itself.
        if (
            tile.epsg == grid.epsg
            and min(east, ge) > max(west, gw)
            and min(north, gn) > max(south, gs)
        ):
            tiles.append(tile)
    return tiles


def _model_identity(model: ModelSource) -> dict[str, Any]:
    """The checkpoint's identity (checksum, architecture, origin), not where it lies: moving
    a run directory must not make its store look like another product."""
    identity = checkpoint_identity(model.checkpoint)
    identity.pop("path")
    return identity


def _output_dates(dates: str, config: SimulationConfig) -> list[str]:
    """A cadence over the simulated period, or comma-separated ISO dates."""
    listed = dates[:4].isdigit()
    values = target_dates(dates.split(",") if listed else dates, config.start, config.end)
    return [str(d) for d in values]


def _model_source(checkpoint: str | None, out: Path) -> tuple[ModelSource, bool]:
    """The model to run, and whether it is the untrained stand-in."""
    if checkpoint:
        return ModelSource(str(Path(checkpoint).absolute())), False
    return ModelSource(str(untrained_checkpoint(out / "models" / "untrained-s1t3"))), True


@flow(name="tamrf-regional-run", log_prints=True)
def regional_run(
    config_json: str,
    out_dir: str,
    backend: str = "rustac",
    overwrite: bool = False,
    show_progress: bool = False,
    dates: str = "SMS",
    checkpoint: str | None = None,
    tile_size_m: float = 9_900.0,
    encoding: str = "int16",
    scheduler_address: str | None = None,
    n_workers: int = 1,
    threads_per_worker: int = 2,
    chunk_px: int = 480,
) -> dict[str, Any]:
    """Simulate a region into ``out_dir/simulated``, serve it, query it, and write its
    Level-3 products into ``out_dir/level3`` (one Zarr store per UTM zone + STAC collection).

    Args:
        dates: output dates: a cadence over the simulated period (``SMS``: 1st and 15th of
            each month, ``10D``...) or comma-separated ISO dates.
        checkpoint: model weights (ours or the authors' ``.ckpt``); default: an untrained
            stand-in, flagged in the summary and the products.
        tile_size_m: output tile side (a multiple of 30 m).
        encoding: ``int16`` (CF scale/offset) or ``float32``.
        scheduler_address: an existing Dask cluster; default: a local one (GPU workers via
            dask-cuda when GPUs are present).

    Returns the run summary, also written to ``out_dir/run-summary.json`` and published as a
    Prefect markdown artifact.
    """
    logger = get_run_logger()
    config = SimulationConfig.from_json(config_json)
    out = Path(out_dir).absolute()
    catalog = simulate_region(config_json, str(out / "simulated"), overwrite, show_progress)
    request = SearchRequest(
        collections=(S2_COLLECTION, LANDSAT_COLLECTION),
        bbox=region_grid(config).lonlat_bbox(),
        start=config.start,
        end=config.end,
    )
    with create_server(catalog, backend=backend) as server:
        logger.info("serving %s at %s (%s)", catalog, server.url, backend)
        items = query_catalog(server.url, request)
    found = _found_summary(items)

    output_dates = _output_dates(dates, config)
    tiles = _region_tiles(config, GridSpec(tile_size_m=tile_size_m))
    model, untrained = _model_source(checkpoint, out)
    if untrained:
        logger.warning("no checkpoint given: predicting with UNTRAINED weights (%s); the "
                       "products only show the chain at work", model.checkpoint)  # fmt: skip
    inference = InferenceConfig(chunk_px=chunk_px)
    cube = CubeConfig()
    store = out / "level3" / f"{tiles[0].epsg}.zarr"
    create_store(
        store, tiles, output_dates, Level3Config(encoding=encoding),
        attrs={
            "model": _model_identity(model), "untrained_model": untrained,
            "inference": {**asdict(inference), "origin": None}, "cube": {
                "min_valid_fraction": cube.min_valid_fraction,
                "landsat_resampling": cube.landsat_resampling,
                "masks": asdict(cube.masks)},
            "catalog_profile": LOCAL.name, "collections": list(request.collections),
            "request": {"bbox": list(request.bbox), "start": str(config.start),
                        "end": str(config.end)},
            "software": {"tamrf_xr": tamrf_xr.__version__, "python": platform.python_version()},
        },
    )  # fmt: skip
    todo = missing_tiles(store, tiles)
    logger.info("%d of %d tiles to produce in %s", len(todo), len(tiles), store)
    progress = create_progress_artifact(0.0, description="Level-3 tiles")
    tile_summaries = []
    cluster_config = ClusterConfig(address=scheduler_address, n_workers=n_workers,
                                   threads_per_worker=threads_per_worker,
                                   dashboard_address=None)  # fmt: skip
    with start_cluster(cluster_config) as cluster, progress_bars(show_progress) as bar:
        job = TileJob(store=store, profile=LOCAL, dates=tuple(output_dates),
                      model=cluster.model_source(model), cube=cube, inference=inference,
                      clip_to=region_grid(config).bounds,
                      broken_log=out / "broken-assets")  # fmt: skip
        cluster.preload(job.model)
        for done, tile in enumerate(todo, start=1):
            tile_summaries.append(produce_level3_tile(items, tile, job))
            bar("tiles", done, len(todo))
            update_progress_artifact(progress, 100.0 * done / len(todo))
    update_progress_artifact(progress, 100.0)
    stac = write_level3_collection([store], out / "level3" / "stac")
    summary = {
        "catalog": catalog,
        "backend": backend,
        "bbox": list(request.bbox),
        "start": config.start.isoformat(),
        "end": config.end.isoformat(),
        "collections": found,
        "level3": {
            "store": str(store),
            "stac": str(stac),
            "dates": output_dates,
            "tiles": [t.tile_id for t in tiles],
            "produced_now": [t["tile"] for t in tile_summaries],
            "untrained_model": untrained,
        },
        "tiles": tile_summaries,
    }
    (out / "run-summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    _publish(summary)
    return summary


def _publish(summary: dict[str, Any]) -> None:
    """The run summary as a Prefect markdown artifact."""
    found = summary["collections"]
    rows = "\n".join(
        f"| {c} | {s['count']} | {s['first'][:10]} | {s['last'][:10]} | {s['mean_cloud_cover']} |"
        for c, s in found.items()
    )
    tile_rows = "\n".join(
        f"| {t['tile']} | {c['sensor']} | {len(c['dates'])} | {len(c['dropped_dates'])} "
        f"| {c['mean_clear_fraction']} |"
        for t in summary["tiles"]
        for c in t["cubes"]
    )
    level3 = summary["level3"]
    create_markdown_artifact(
        "| collection | items | first | last | mean cloud cover % |\n|---|---|---|---|---|\n"
        + rows
        + "\n\n| tile | sensor | dates kept | dates dropped | mean clear share |\n"
        + "|---|---|---|---|---|\n"
        + tile_rows
        + f"\n\nLevel-3 store: `{level3['store']}` ({len(level3['tiles'])} tiles, "
        f"{len(level3['produced_now'])} produced in this run, {len(level3['dates'])} dates)"
        + ("\n\n**Untrained model weights: the values are not meaningful.**"
           if level3["untrained_model"] else ""),
        key="tamrf-regional-run-summary",
        description="Items found, tile cubes and the Level-3 output of the run",
    )  # fmt: skip
