"""The production request of a simulated region: what the demo run (and the benchmarks)
produce, through the same library call as any catalog."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipelines.production import ProductionRequest
from pipelines.storage import is_url
from tamrf_xr.simulate import SimulationConfig
from tamrf_xr.simulate.geometry import region_grid

__all__ = ["check_demo_out_dir", "simulated_region_request"]


def check_demo_out_dir(out_dir: str | Path) -> None:
    """The demo simulates its inputs into ``out_dir`` and serves them from there: it must be
    a local directory (an object store is for runs on a catalog)."""
    if is_url(out_dir):
        raise ValueError(
            f"--out-dir {out_dir}: the embedded demo simulates and serves its inputs from a "
            "local directory; give a local --out-dir, or write to an object store from a "
            "catalog (--catalog local --catalog-url URL, or a public catalog)"
        )


def simulated_region_request(
    config: SimulationConfig, out_dir: str | Path, url: str, **options: Any
) -> ProductionRequest:
    """The request of a simulated region served at ``url`` (profile ``local``): the region's
    lon/lat box as AOI, its period, cubes cut to the region (nothing is read outside it) and
    the simulation in the stores' provenance. ``options``: other request fields."""
    check_demo_out_dir(out_dir)
    grid = region_grid(config)
    west, south, east, north = grid.lonlat_bbox()
    ring = [[west, south], [east, south], [east, north], [west, north], [west, south]]
    return ProductionRequest(
        catalog="local",
        catalog_url=url,
        aoi={"type": "Polygon", "coordinates": [ring]},
        start=config.start,
        end=config.end,
        out_dir=Path(out_dir),
        clip_to=grid.bounds,
        clip_epsg=grid.epsg,
        extra_provenance={
            "simulation": {"seed": config.seed, "bounds": list(grid.bounds), "epsg": grid.epsg}
        },
        **options,
    )
