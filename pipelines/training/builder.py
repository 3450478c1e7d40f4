"""Build a training store (``tamrf_xr.training.store``) from a STAC catalog or the simulator.

- :func:`build_from_catalog`: any catalog profile, an AOI and a period, through the
  production chain's search and datacube assembly (``pipelines.datacube``): the AOI's grid is
  cut into tiles of ``tiles_px`` patches, each tile's cubes are assembled and loaded (one tile
  at a time: the memory of a tile, never of the region), then cut into patches and windows.
  A simulated product served as a local STAC API (``tamrf simulate`` + ``tamrf catalog
  serve``) goes this way like any catalog.
- :func:`build_from_simulation`: simulated regions straight from the simulator (no files in
  between, the same masks): the quick way to a synthetic training set.

Validation patches are whole tiles (catalog: every ``validation_every``-th tile) or whole
regions (simulation: the regions marked for validation), so that no validation pixel was
seen in training.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from pipelines.datacube import CubeConfig, assemble_landsat, assemble_s2
from pipelines.production import ProductionRequest, check_request, region_tiles, search_region
from tamrf_xr.training.store import PatchConfig, StoreWriter, TrainingStore, cube_patches

__all__ = ["DatasetRequest", "build_from_catalog", "build_from_simulation"]

Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class DatasetRequest:
    out: Path
    """New folder of the store."""
    patch: PatchConfig = field(default_factory=PatchConfig)
    tiles_px: int = 2
    """Catalog: a tile holds tiles_px x tiles_px patches (the unit assembled in memory)."""
    validation_every: int = 10
    """Catalog: every n-th tile goes to validation (0: none)."""


def _write(writer: StoreWriter, cubes, split: str, source: str, patch: PatchConfig) -> int:
    written = 0
    for item in cube_patches(*cubes, patch, source=source):
        writer.append(item, split)
        written += 1
    return written


def build_from_catalog(
    production: ProductionRequest,
    request: DatasetRequest,
    progress: Progress | None = None,
    cube: CubeConfig | None = None,
) -> dict[str, Any]:
    """A store from ``production``'s catalog, AOI and period (its output options unused).

    Returns:
        A summary: tiles, patches per split, the store's path.
    """
    size_m = 10.0 * request.patch.patch_px * request.tiles_px
    production = replace(production, tile_size_m=size_m)
    check_request(production, writing=False)
    writer = TrainingStore.create(
        request.out,
        request.patch,
        {
            "source": "catalog",
            "catalog": production.catalog,
            "period": [str(production.start), str(production.end)],
        },
    )
    items = search_region(production)
    s2_collections = production.profile.s2_collections
    landsat_collection = production.profile.landsat_collection or ""
    tiles = region_tiles(production)
    counts = {"train": 0, "validation": 0}
    for k, tile in enumerate(tiles):
        grid = tile.grid()
        s2_items = [i for c in s2_collections for i in items.get(c, [])]
        s2 = assemble_s2(s2_items, grid, production.profile, cube).load()
        landsat = assemble_landsat(
            items.get(landsat_collection, []), grid, production.profile, cube
        ).load()
        validation = (
            request.validation_every
            and k % request.validation_every == request.validation_every - 1
        )
        split = "validation" if validation else "train"
        counts[split] += _write(writer, (s2, landsat), split, tile.tile_id, request.patch)
        if progress:
            progress("tiles", k + 1, len(tiles))
    return {"store": str(request.out), "tiles": len(tiles), "patches": counts}


def build_from_simulation(
    configs: Sequence[Any],
    validation_configs: Sequence[Any],
    request: DatasetRequest,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """A store from simulated regions (``SimulationConfig``s): ``configs`` for training,
    ``validation_configs`` (other seeds) for validation."""
    from tamrf_xr.evaluation.simulated import simulated_dataset

    writer = TrainingStore.create(
        request.out,
        request.patch,
        {
            "source": "simulation",
            "regions": {
                "train": [c.to_json() for c in configs],
                "validation": [c.to_json() for c in validation_configs],
            },
        },
    )
    counts = {"train": 0, "validation": 0}
    jobs = [(c, "train") for c in configs] + [(c, "validation") for c in validation_configs]
    for k, (config, split) in enumerate(jobs):
        data = simulated_dataset(config)
        counts[split] += _write(
            writer,
            (data.s2, data.landsat),
            split,
            f"simulated-seed{config.seed}",
            request.patch,
        )
        if progress:
            progress("regions", k + 1, len(jobs))
    return {"store": str(request.out), "regions": len(jobs), "patches": counts}
