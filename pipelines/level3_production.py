"""One output tile from STAC items to its Level-3 chunks: cubes, prediction, write, record.

The tile's cubes are assembled once on the tile grown by the model's margin (so the blocks at
the tile's edges see real context), and only the tile is predicted, lazily (the margin is
context, never output), then written by region; the completion record carries the tile's
inputs (item ids and scaling rules), the dates dropped from its cubes and the clear
observations of its centre pixel (:mod:`pipelines.pixel_sample`, for the run's quicklooks).
Computation runs on whatever Dask scheduler is active (the run's cluster).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import distributed
import numpy as np
import xarray as xr

from pipelines.asset_reader import BrokenAssetLog
from pipelines.catalogs import CatalogProfile
from pipelines.datacube import (
    CubeConfig,
    assemble_landsat,
    assemble_s2,
    broken_assets,
    cube_summary,
)
from pipelines.grid import GridTile
from pipelines.level3 import write_tile
from pipelines.pixel_sample import centre_pixel, pixel_document, pixel_series
from pipelines.storage import Location
from tamrf_xr.inference import InferenceConfig, ModelSource, model_margin_px, predict
from tamrf_xr.inference.quality import NO_CLEAR_OBSERVATION

__all__ = ["INPUT_OUTCOMES", "TileJob", "input_outcome", "produce_tile"]

INPUT_OUTCOMES = {
    "both_sensors": "predicted from Sentinel-2 and Landsat dates",
    "one_sensor": "predicted from one sensor only (the other had no item or no clear date)",
    "all_cloudy": "items reach the tile but every date is below the clear-share threshold "
    "(min_valid_fraction): written as missing",
    "no_input": "no item reaches the tile: written as missing",
}
"""How a tile's inputs turned out (``outcome`` in its completion record and summary, counted
in the run summary): none is an error, a tile with no usable date is written as missing."""


@dataclass(frozen=True)
class TileJob:
    """What every tile of a run shares."""

    store: Path | str
    """The Level-3 store (a directory or URL)."""
    profile: CatalogProfile
    dates: tuple[str, ...]
    """Output dates (ISO), the store's."""
    model: ModelSource
    cube: CubeConfig = field(default_factory=CubeConfig)
    inference: InferenceConfig = field(default_factory=InferenceConfig)
    """Blocks and margin (default: the checkpoint's receptive field, see
    :func:`tamrf_xr.inference.model_margin_px`): the cubes are the tile grown by it."""
    clip_to: tuple[float, float, float, float] | None = None
    """Only read inputs inside these bounds (the tile CRS), e.g. a simulated region."""
    broken_log: Location | None = None
    """Where assets that cannot be read are recorded (:class:`BrokenAssetLog`)."""


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
    """The prediction on exactly the tile's grid (what the store expects): cropped where it
    extends beyond the tile (the margin), padded with each variable's fill where it covers
    less (a cube clipped to a region). Both grids are on the same 10 m lattice, so this is
    slicing and padding, never resampling."""
    y, x = tile.grid().coords()
    pixel = tile.spec.pixel_m
    # Where the prediction's first pixel falls on the tile's grid (negative inside a margin).
    row0 = round((y[0] - float(prediction.y[0])) / pixel)
    col0 = round((float(prediction.x[0]) - x[0]) / pixel)
    rows = (max(0, -row0), min(prediction.sizes["y"], len(y) - row0))
    cols = (max(0, -col0), min(prediction.sizes["x"], len(x) - col0))
    inside = prediction.isel(y=slice(*rows), x=slice(*cols))
    pads = {"y": (row0 + rows[0], len(y) - row0 - rows[1]),
            "x": (col0 + cols[0], len(x) - col0 - cols[1])}  # fmt: skip
    fills = _fill_values(prediction)
    variables = {}
    for name, variable in inside.data_vars.items():
        widths = {d: w for d, w in pads.items() if d in variable.dims and any(w)}
        if widths:
            variable = variable.pad(widths, constant_values=fills[name])
        variables[name] = variable.variable
    out = xr.Dataset(variables, coords={"time": prediction["time"].values, "y": y, "x": x})
    return out.chunk({"y": len(y), "x": len(x)})


def produce_tile(
    items: Mapping[str, Sequence[Mapping[str, Any]]],
    tile: GridTile,
    job: TileJob,
    *,
    cache_key: str | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Assemble, predict and write one tile; return its summary.

    Args:
        items: STAC item documents by collection (S2 and Landsat of ``job.profile``); only
            those whose footprint reaches the tile are needed.
        tile: the output tile.
        job: the run's shared settings.
        cache_key: identity of the tile's inputs, model and parameters, kept in the record
            (a later run skips the tile when its key is the same).
        progress: called with (blocks done, blocks) while the model runs on a distributed
            cluster.
    """
    inference = replace(
        job.inference, margin_px=model_margin_px(job.model.checkpoint, job.inference.margin_px)
    )
    grid, output = tile.prediction_grids(inference.margin_px, job.clip_to)
    log = BrokenAssetLog(job.broken_log) if job.broken_log else None
    s2_items = [i for c in job.profile.s2_collections for i in items.get(c, [])]
    landsat_items = list(items.get(job.profile.landsat_collection or "", []))
    s2 = assemble_s2(s2_items, grid, job.profile, job.cube, log)
    landsat = assemble_landsat(landsat_items, grid, job.profile, job.cube, log)
    summaries = [cube_summary(s2), cube_summary(landsat)]
    outcome = input_outcome(summaries)
    inputs = {cube.attrs["sensor"]: _used_items(cube) for cube in (s2, landsat)}
    # One pixel's clear inputs for the run's quicklook (pipelines.quicklooks): the store keeps
    # no inputs, and here they are at hand.
    x, y = centre_pixel(output)
    samples = [pixel_series(cube, x, y) for cube in (s2, landsat)]
    if s2.sizes["time"] + landsat.sizes["time"] == 0:
        status = "no usable input: written as missing"
        prediction = _empty_prediction(s2, job)
    else:
        status = "predicted"
        prediction = predict(s2, landsat, list(job.dates), job.model, inference,
                             output_bounds=output.bounds)  # fmt: skip
        prediction, *samples = _computed_with_progress(prediction, progress, *samples)
    pixel = pixel_document(x, y, tile.epsg, samples)
    tile_data = _tile_dataset(prediction, tile)
    tile_data.attrs["epsg"] = tile.epsg
    broken: list[dict[str, str]] = []

    def record() -> dict[str, Any]:
        # Called once the data are written: assets found broken while the bands were read
        # are in the log by then (the date filter alone reads the quality layers only).
        broken.extend(a for cube in (s2, landsat) for a in broken_assets(cube))
        return {"status": status, "outcome": outcome, "inputs": inputs, "cubes": summaries,
                "broken_assets": broken, "cache_key": cache_key, "pixel": pixel}  # fmt: skip

    write_tile(job.store, tile, tile_data, provenance=record)
    return {"tile": tile.tile_id, "status": status, "outcome": outcome, "cubes": summaries,
            "broken_assets": broken, "pixel": pixel}  # fmt: skip


def input_outcome(cubes: Sequence[Mapping[str, Any]]) -> str:
    """The :data:`INPUT_OUTCOMES` key of a tile from its cubes' summaries
    (:func:`pipelines.datacube.cube_summary`: the dates kept, the items read)."""
    with_dates = [cube for cube in cubes if cube["dates"]]
    if len(with_dates) == len(cubes):
        return "both_sensors"
    if with_dates:
        return "one_sensor"
    return "all_cloudy" if any(cube["items"] for cube in cubes) else "no_input"


def _computed_with_progress(
    prediction: xr.Dataset, progress: Callable[[int, int], None] | None, *more: xr.Dataset
) -> list[xr.Dataset]:
    """The prediction, and ``more`` small results of the same cubes (e.g. a pixel's inputs),
    computed on the active distributed cluster (kept there, as futures), reporting each model
    block as it finishes; unchanged without a distributed client. Persisted in one graph, so
    that the cube chunks they share are read once."""
    try:
        client = distributed.default_client()
    except ValueError:  # no distributed client: the write computes it
        return [prediction, *more]
    persisted, *rest = client.persist([prediction, *more])
    # One future per model block: any band's chunks are the blocks.
    blocks = distributed.futures_of(persisted[next(iter(persisted.data_vars))])
    for done, _ in enumerate(distributed.as_completed(blocks), start=1):
        if progress is not None:
            progress(done, len(blocks))
    for future in blocks:
        if future.status == "error":
            future.result()  # raise the block's error here, with its traceback
    return [persisted, *rest]


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
