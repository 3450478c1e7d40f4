"""The simulator's ground truth as a Zarr v3 store: 18 bands at 10 m on every day.

One variable per band (time, y, x), stored as int16 with CF ``scale_factor``/``add_offset``
(reflectance: 1e-4; temperature: 0.01 K around 300 K), plus the land-cover map and the parcel
ids. Written from a template, then time block by time block, so memory stays bounded
whatever the region size.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path

import dask.array as da
import numpy as np
import pandas as pd
import xarray as xr

import tamrf_xr
from pipelines.band_encoding import band_attrs, int16_encoding
from pipelines.georef import grid_coords, with_grid_mapping
from tamrf_xr.bands import BANDS
from tamrf_xr.simulate import LandCover, Simulation

__all__ = ["open_truth", "truth_dates", "write_truth"]

_TIME_CHUNK = 16
_SPACE_CHUNK = 512


def truth_dates(simulation: Simulation) -> list[dt.date]:
    """Days stored in the truth (every ``truth_every_days`` from the first day)."""
    config = simulation.config
    return [
        config.start + dt.timedelta(days=i) for i in range(0, config.days, config.truth_every_days)
    ]


def write_truth(
    simulation: Simulation,
    path: Path,
    progress: Callable[[int, int], None] | None = None,
) -> None:
    """Write the truth store at ``path`` (which must not exist).

    Args:
        simulation: the simulated region.
        path: new Zarr store.
        progress: called with (days done, days total) after every time block.
    """
    grid = simulation.grid
    dates = truth_dates(simulation)
    h, w = grid.shape
    times = pd.DatetimeIndex(dates).astype("datetime64[ns]")
    space = (min(h, _SPACE_CHUNK), min(w, _SPACE_CHUNK))
    template = xr.Dataset(coords=grid_coords(grid))
    template = template.assign_coords(time=("time", times))
    encoding = {}
    for band in BANDS:
        lazy = da.zeros((len(dates), h, w), dtype=np.float32, chunks=(_TIME_CHUNK, *space))
        template[band.name] = (("time", "y", "x"), lazy, band_attrs(band))
        encoding[band.name] = {**int16_encoding(band.quantity), "chunks": (_TIME_CHUNK, *space)}
    classes = list(LandCover)
    template["landcover"] = (
        ("y", "x"),
        simulation.landscape.landcover,
        {
            "long_name": "land cover class of the simulated truth",
            "flag_values": np.array([c.value for c in classes], dtype=np.uint8),
            "flag_meanings": " ".join(c.name.lower() for c in classes),
        },
    )
    template["unit_id"] = (("y", "x"), simulation.landscape.unit_id, {"long_name": "parcel id"})
    west, _, _, north = grid.bounds
    template = with_grid_mapping(template, grid.epsg, west, north, grid.resolution)
    template.attrs.update(
        {
            "title": "tamrf-xr simulated ground truth (cloud-free surface, every band at 10 m)",
            "tamrf:simulation_config": simulation.config.to_json(),
            "tamrf:software_version": tamrf_xr.__version__,
            "Conventions": "CF-1.10",
        }
    )
    template.time.encoding.update({"units": "days since 1970-01-01", "dtype": "int32"})
    template.to_zarr(
        path, mode="w-", compute=False, encoding=encoding, zarr_format=3, consolidated=False
    )

    index_of_day = {d: i for i, d in enumerate(dates)}
    for start in range(0, len(dates), _TIME_CHUNK):
        block_dates = dates[start : start + _TIME_CHUNK]
        stack = np.stack(
            [simulation.truth((d - simulation.config.start).days) for d in block_dates]
        )  # (t, 18, H, W)
        block = xr.Dataset(
            {
                band.name: (("time", "y", "x"), stack[:, channel])
                for channel, band in enumerate(BANDS)
            }
        )
        first = index_of_day[block_dates[0]]
        block.to_zarr(
            path, region={"time": slice(first, first + len(block_dates))}, consolidated=False
        )
        if progress is not None:
            progress(first + len(block_dates), len(dates))


def open_truth(path: Path) -> xr.Dataset:
    """Open a truth store lazily (values decoded to reflectance / Kelvin)."""
    return xr.open_zarr(path, zarr_format=3, consolidated=False)
