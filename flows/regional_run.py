"""The main job as a Prefect flow: simulate (or reuse) a region, serve it, query it, and
assemble the S2 and Landsat datacubes of every output tile it touches.

Each task calls library functions; the flow only wires them. Later stages (TAMRF inference,
Level-3 Zarr) extend this same flow.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    update_progress_artifact,
)
from prefect.cache_policies import NO_CACHE

from flows.terminal import progress_bars
from pipelines.asset_reader import BrokenAssetLog
from pipelines.catalogs import LOCAL
from pipelines.datacube import (
    CubeConfig,
    CubeGrid,
    assemble_landsat,
    assemble_s2,
    broken_assets,
    cube_summary,
)
from pipelines.grid import GridTile, tiles_for_aoi
from pipelines.search import SearchRequest, search_items
from pipelines.simulated_catalog import open_or_write_simulated_catalog
from pipelines.stac_servers import create_server
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


@task(name="assemble-cubes", cache_policy=NO_CACHE)
def assemble_tile_cubes(
    items: dict[str, list[dict[str, Any]]],
    tile: GridTile,
    clip_to: tuple[float, float, float, float],
    config: CubeConfig,
    broken_log_dir: str,
) -> dict[str, Any]:
    """Assemble one tile's cubes (dates filtered on their clear share); return their summary."""
    grid = CubeGrid.for_tile(tile, clip_to=clip_to)
    log = BrokenAssetLog(broken_log_dir)
    cubes = [
        assemble_s2(items[S2_COLLECTION], grid, LOCAL, config, log),
        assemble_landsat(items[LANDSAT_COLLECTION], grid, LOCAL, config, log),
    ]
    return {
        "tile": tile.tile_id,
        "epsg": tile.epsg,
        "bounds": list(grid.bounds),
        "cubes": [cube_summary(c) for c in cubes],
        "broken_assets": [a for c in cubes for a in broken_assets(c)],
    }


@flow(name="tamrf-regional-run", log_prints=True)
def regional_run(
    config_json: str,
    out_dir: str,
    backend: str = "rustac",
    overwrite: bool = False,
    show_progress: bool = False,
) -> dict[str, Any]:
    """Simulate a region into ``out_dir/simulated``, serve it as a STAC API, query it.

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

    grid = region_grid(config)
    tiles = tiles_for_aoi(request.bbox)
    cube_config = CubeConfig()
    progress = create_progress_artifact(0.0, description="Assembling tile datacubes")
    tile_summaries = []
    with progress_bars(show_progress) as bar:
        for done, tile in enumerate(tiles, start=1):
            west, south, east, north = tile.bounds
            gw, gs, ge, gn = grid.bounds
            if (
                tile.epsg != grid.epsg
                or min(east, ge) <= max(west, gw)
                or min(north, gn) <= max(south, gs)
            ):
                continue  # the simulated region lives in one zone, inside the lon/lat box
            tile_summaries.append(
                assemble_tile_cubes(
                    items, tile, grid.bounds, cube_config, str(out / "broken-assets")
                )
            )
            bar("tiles", done, len(tiles))
            update_progress_artifact(progress, 100.0 * done / len(tiles))
    summary = {
        "catalog": catalog,
        "backend": backend,
        "bbox": list(request.bbox),
        "start": config.start.isoformat(),
        "end": config.end.isoformat(),
        "collections": found,
        "tiles": tile_summaries,
    }
    (out / "run-summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    rows = "\n".join(
        f"| {c} | {s['count']} | {s['first'][:10]} | {s['last'][:10]} | {s['mean_cloud_cover']} |"
        for c, s in found.items()
    )
    tile_rows = "\n".join(
        f"| {t['tile']} | {c['sensor']} | {len(c['dates'])} | {len(c['dropped_dates'])} "
        f"| {c['mean_clear_fraction']} |"
        for t in tile_summaries
        for c in t["cubes"]
    )
    create_markdown_artifact(
        "| collection | items | first | last | mean cloud cover % |\n|---|---|---|---|---|\n"
        + rows
        + "\n\n| tile | sensor | dates kept | dates dropped | mean clear share |\n"
        + "|---|---|---|---|---|\n"
        + tile_rows,
        key="tamrf-regional-run-summary",
        description="Items found in the regional catalog",
    )
    return summary
