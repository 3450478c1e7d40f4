"""One output tile from STAC items to its Level-3 chunks: cubes, prediction, write, record.

The tile's cubes are assembled on the tile grown by the inference margin (so the blocks at
the tile's edges see real context), predicted lazily, cropped to the tile and written by
region; the completion record carries the tile's inputs (item ids and scaling rules) and the
dates dropped from its cubes. Computation runs on whatever Dask scheduler is active (the
run's cluster).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from pipelines.asset_reader import BrokenAssetLog
from pipelines.catalogs import CatalogProfile
from pipelines.datacube import (
    CubeConfig,
    CubeGrid,
    assemble_landsat,
    assemble_s2,
    broken_assets,
    cube_summary,
)
from pipelines.grid import GridTile
from pipelines.level3 import write_tile
from tamrf_xr.inference import InferenceConfig, ModelSource, predict
from tamrf_xr.inference.quality import NO_CLEAR_OBSERVATION

__all__ = ["TileJob", "produce_tile"]


@dataclass(frozen=True)
class TileJob:
    """What every tile of a run shares."""

    store: Path
    profile: CatalogProfile
    dates: tuple[str, ...]
    """Output dates (ISO), the store's."""
    model: ModelSource
    cube: CubeConfig = field(default_factory=CubeConfig)
    inference: InferenceConfig = field(default_factory=InferenceConfig)
    clip_to: tuple[float, float, float, float] | None = None
    """Only read inputs inside these bounds (the tile CRS), e.g. a simulated region."""
    broken_log: Path | None = None


def _fill_values(dataset: xr.Dataset) -> dict[str, Any]:
    """What a pixel outside the predicted area holds, per variable."""
    fills: dict[str, Any] = {}
    for name, variable in dataset.data_vars.items():
        if name.endswith("_days_to_clear"):
            fills[name] = NO_CLEAR_OBSERVATION
        elif name.endswith("_clear_count"):
            fills[name] = 0
        else:
            fills[name] = np.float32(np.nan) if variable.dtype.kind == "f" else 0
    return fills


def _tile_dataset(prediction: xr.Dataset, tile: GridTile) -> xr.Dataset:
    """The prediction on exactly the tile's grid (what the store expects)."""
    west, south, east, north = tile.bounds
    pixel = tile.spec.pixel_m
    x = west + (np.arange(round((east - west) / pixel)) + 0.5) * pixel
    y = north - (np.arange(round((north - south) / pixel)) + 0.5) * pixel
    out = prediction.reindex(x=x, y=y, fill_value=_fill_values(prediction))
    return out.chunk({"y": len(y), "x": len(x)})


def produce_tile(
    items: Mapping[str, Sequence[Mapping[str, Any]]], tile: GridTile, job: TileJob
) -> dict[str, Any]:
    """Assemble, predict and write one tile; return its summary.

    Args:
        items: STAC item documents by collection (S2 and Landsat of ``job.profile``).
        tile: the output tile.
        job: the run's shared settings.
    """
    grid = CubeGrid.for_tile(tile, margin_px=job.inference.margin_px, clip_to=job.clip_to)
    log = BrokenAssetLog(job.broken_log) if job.broken_log else None
    s2_items = [i for c in job.profile.s2_collections for i in items.get(c, [])]
    landsat_items = list(items.get(job.profile.landsat_collection or "", []))
    s2 = assemble_s2(s2_items, grid, job.profile, job.cube, log)
    landsat = assemble_landsat(landsat_items, grid, job.profile, job.cube, log)
    summaries = [cube_summary(s2), cube_summary(landsat)]
    inputs = {cube.attrs["sensor"]: _used_items(cube) for cube in (s2, landsat)}
    if s2.sizes["time"] + landsat.sizes["time"] == 0:
        status = "no usable input: written as missing"
        prediction = _empty_prediction(s2, job)
    else:
        status = "predicted"
        prediction = predict(s2, landsat, list(job.dates), job.model, job.inference)
    tile_data = _tile_dataset(prediction, tile)
    tile_data.attrs["epsg"] = tile.epsg
    broken = [a for cube in (s2, landsat) for a in broken_assets(cube)]
    record = {"status": status, "inputs": inputs, "cubes": summaries, "broken_assets": broken}
    write_tile(job.store, tile, tile_data, provenance=record)
    return {"tile": tile.tile_id, "status": status, "cubes": summaries,
            "broken_assets": broken}  # fmt: skip


def _used_items(cube: xr.Dataset) -> list[dict[str, Any]]:
    """Id and scaling rule of every item behind the cube's kept dates."""
    kept = {i for ids in cube.item_ids.values for i in str(ids).split()}
    return [
        {"id": r["id"], "scaling": r["scaling"]}
        for r in json.loads(cube.attrs["items"])
        if r["id"] in kept
    ]


def _empty_prediction(s2: xr.Dataset, job: TileJob) -> xr.Dataset:
    """All-missing variables on the cube's grid (a tile with no usable input at all)."""
    from tamrf_xr.bands import BANDS
    from tamrf_xr.inference.quality import QUALITY_VARIABLES

    times = np.array(job.dates, dtype="datetime64[ns]")
    shape = (len(times), s2.sizes["y"], s2.sizes["x"])
    variables: dict[str, Any] = {
        b.name: (("time", "y", "x"), np.full(shape, np.nan, np.float32)) for b in BANDS
    }
    for name, dims in QUALITY_VARIABLES.items():
        value = NO_CLEAR_OBSERVATION if name.endswith("_days_to_clear") else 0
        variables[name] = (dims, np.full(shape[-len(dims) :], value, np.int16))
    return xr.Dataset(variables, coords={"time": times, "y": s2.y.values, "x": s2.x.values})
