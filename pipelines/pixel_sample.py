"""One pixel's clear input observations across dates, taken from a tile's cubes while the
tile is computed.

The Level-3 store holds predictions, not inputs: the quicklook of a pixel's time series
(:mod:`pipelines.quicklooks`) draws the clear observations behind the predicted lines, and the
only place that has them is the tile's work (:func:`pipelines.level3_production.produce_tile`),
with its assembled cubes and their clear masks. Selecting one pixel of the cubes is a lazy
getitem on the chunks the model reads anyway: computed in the same graph as the prediction,
it costs no extra read. The result is a small JSON document that the tile's summary and its
completion record carry.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import xarray as xr

from tamrf_xr.grid import RasterGrid

__all__ = ["PIXEL_BANDS", "centre_pixel", "pixel_document", "pixel_series"]

PIXEL_BANDS: dict[str, tuple[str, ...]] = {
    "sentinel-2": ("S2_B4", "S2_B8"),
    "landsat": ("LS_B10",),
}
"""The bands sampled per sensor (cube ``sensor`` attribute): red and near infrared at 10 m,
and the thermal band, which only Landsat observes (the quicklook draws it on its own axis)."""


def centre_pixel(grid: RasterGrid) -> tuple[float, float]:
    """(x, y) of the pixel centre at the middle of ``grid`` (the area a tile predicts: for a
    tile clipped to a region, the region's part of it, so the pixel has data)."""
    y, x = grid.coords()
    return float(x[len(x) // 2]), float(y[len(y) // 2])


def pixel_series(cube: xr.Dataset, x: float, y: float) -> xr.Dataset:
    """The cube's pixel that contains (x, y), lazily: ``observations`` (time, band) of the
    sensor's :data:`PIXEL_BANDS` and ``valid`` (time,). A 30 m Landsat cube gives the 30 m
    pixel around the 10 m one."""
    bands = list(PIXEL_BANDS[cube.attrs["sensor"]])
    point = cube[["observations", "valid"]].sel(band=bands)
    return point.sel(x=x, y=y, method="nearest")


def _clear(series: xr.Dataset) -> dict[str, dict[str, list[Any]]]:
    """Per band, the dates (ISO) and values of the clear, finite observations."""
    dates = np.datetime_as_string(series["time"].values, unit="D")
    valid = np.asarray(series["valid"].values, bool)
    out: dict[str, dict[str, list[Any]]] = {}
    for band in series["band"].values:
        values = np.asarray(series["observations"].sel(band=band).values, np.float64)
        keep = valid & np.isfinite(values)
        out[str(band)] = {
            "dates": [str(d) for d in dates[keep]],
            "values": [round(float(v), 6) for v in values[keep]],
        }
    return out


def pixel_document(x: float, y: float, epsg: int, series: Sequence[xr.Dataset]) -> dict[str, Any]:
    """JSON-able record of one pixel: its position (pixel centre, metres of EPSG ``epsg``) and,
    per band, the dates and values of its clear observations (``series``: computed or
    persisted results of :func:`pixel_series`, one per sensor; computed here)."""
    import dask

    computed = dask.compute(*series)
    observations: dict[str, dict[str, list[Any]]] = {}
    for sensor_series in computed:
        observations |= _clear(sensor_series)
    return {"x": x, "y": y, "epsg": int(epsg), "observations": observations}
