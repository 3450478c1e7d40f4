"""Lazy TAMRF prediction over datacubes: the xarray API.

``predict(s2, landsat, dates, model)`` returns a LAZY ``xarray.Dataset`` of the 18 bands at
10 m on the requested dates, plus quality layers. Computing it maps the model over spatial
blocks: each block is read with a margin of context on every side (``margin_px``, default the
model's receptive-field radius, so a tiled result equals a whole-image one: see
:mod:`tamrf_xr.inference.seams`), predicted, and cropped back. Only a :class:`ModelSource`
travels in the task graph; workers load the model once (:func:`cached_model`).

Input conventions (what :mod:`pipelines.datacube` produces, or any analyst's own cubes):
``s2`` has ``observations`` (time, band, y, x) with the 10 S2 bands in model order at 10 m
(reflectance) and ``valid`` (time, y, x) bool; ``landsat`` the same with the 8 Landsat bands
(LST in Kelvin) at 30 m on the same bounds. Either may have no dates.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np
import xarray as xr
from scipy import ndimage

from tamrf_xr.bands import BANDS, LANDSAT_BANDS, S2_BANDS
from tamrf_xr.inference.blocks import predict_block
from tamrf_xr.inference.dates import target_dates
from tamrf_xr.inference.model_cache import ModelSource, cached_model, resolve_device
from tamrf_xr.inference.quality import (
    QUALITY_ATTRS,
    QUALITY_VARIABLES,
    clear_count,
    days_to_nearest_clear,
)

__all__ = [
    "QUALITY_VARIABLES",
    "InferenceConfig",
    "block_layout",
    "checkpoint_identity",
    "predict",
]

LANDSAT_FACTOR = 3
DEFAULT_MARGIN_PX = 60
"""The s1t3 receptive-field radius at 10 m (``tamrf_xr.model.receptive_field_radius``)."""


@dataclass(frozen=True)
class InferenceConfig:
    """How the model is mapped over a cube."""

    chunk_px: int = 480
    """Side of the output blocks at 10 m (a multiple of 3). Each block is computed from
    (chunk + 2 margin)^2 input pixels: larger blocks waste less on margins, smaller ones
    bound memory (inputs: dates x bands x block pixels x 4 bytes)."""
    margin_px: int = DEFAULT_MARGIN_PX
    """Context read around every block (a multiple of 3). At the receptive-field radius the
    tiled result equals the whole-image one to float rounding; less context costs less and
    leaves seams (measured in benchmarks/README.md). It is also the support radius: a pixel
    with no clear observation of either sensor within it is NaN (pure extrapolation)."""
    origin: dt.date | None = None
    """Day 0 of the model's time axis; default: the first S2 date (else the first Landsat
    date, else the first output date)."""

    def __post_init__(self) -> None:
        for name in ("chunk_px", "margin_px"):
            value = getattr(self, name)
            if value < 0 or value % LANDSAT_FACTOR or (name == "chunk_px" and value == 0):
                raise ValueError(f"{name}={value} must be a positive multiple of 3")
        if self.margin_px > self.chunk_px:
            raise ValueError(
                f"margin_px={self.margin_px} exceeds chunk_px={self.chunk_px}: a block's "
                "context comes from its neighbours only; use larger blocks"
            )


def checkpoint_identity(checkpoint: str) -> dict[str, Any]:
    """What identifies a checkpoint in provenance, read without loading the weights (so a
    client never creates a CUDA context)."""
    path = Path(checkpoint)
    config = path / "config.json"
    if config.is_file():
        metadata = json.loads(config.read_text())
        keep = ("format", "architecture", "normalisation", "origin", "software", "weights_sha256")
        return {"path": str(path), **{k: metadata.get(k) for k in keep}}
    from tamrf_xr.checkpoint import sha256_file

    return {"path": str(path), "file_sha256": sha256_file(path)}


# ---------------------------------------------------------------------------------------------
# Checks
# ---------------------------------------------------------------------------------------------


def _check_cube(cube: xr.Dataset, names: list[str], sensor: str) -> None:
    missing = {"observations", "valid"} - set(cube.data_vars)
    if missing:
        raise ValueError(
            f"the {sensor} cube has no {sorted(missing)} variable(s): it needs `observations` "
            "(time, band, y, x) and `valid` (time, y, x), as pipelines.datacube builds them"
        )
    if cube["observations"].dims != ("time", "band", "y", "x"):
        raise ValueError(
            f"{sensor} observations have dims {cube['observations'].dims}; expected "
            "(time, band, y, x): transpose the cube"
        )
    bands = [str(b) for b in cube["band"].values]
    if bands != names:
        raise ValueError(f"{sensor} bands are {bands}; the model needs exactly {names}, in order")


def _check_grids(s2: xr.Dataset, landsat: xr.Dataset) -> tuple[float, float]:
    """(west, north) of the 10 m grid, after checking that the 30 m grid is 3x coarser on the
    same bounds and that both share a CRS."""
    epsg = (s2.attrs.get("epsg"), landsat.attrs.get("epsg"))
    if None not in epsg and epsg[0] != epsg[1]:
        raise ValueError(f"the S2 cube is in EPSG:{epsg[0]}, the Landsat cube in EPSG:{epsg[1]}")
    ny, nx = s2.sizes["y"], s2.sizes["x"]
    if ny % 3 or nx % 3 or (landsat.sizes["y"] * 3, landsat.sizes["x"] * 3) != (ny, nx):
        raise ValueError(
            f"the S2 grid is {ny} x {nx} and the Landsat grid {landsat.sizes['y']} x "
            f"{landsat.sizes['x']}: the 10 m grid must be exactly 3x the 30 m one"
        )
    west = float(s2.x[0]) - 5.0
    north = float(s2.y[0]) + 5.0
    if (
        abs(float(landsat.x[0]) - 15.0 - west) > 1e-6
        or abs(float(landsat.y[0]) + 15.0 - north) > 1e-6
    ):
        raise ValueError("the S2 and Landsat cubes do not share bounds: assemble them on one grid")
    return west, north


# ---------------------------------------------------------------------------------------------
# Blocks
# ---------------------------------------------------------------------------------------------


def _block_chunks(n: int, chunk: int, margin: int) -> tuple[int, ...]:
    """Chunks of ``n`` pixels of about ``chunk``; a last chunk smaller than the margin is
    merged into the previous one (overlap depth may not exceed a chunk)."""
    sizes = [chunk] * (n // chunk) + ([n % chunk] if n % chunk else [])
    if len(sizes) > 1 and sizes[-1] < max(margin, 1):
        sizes[-2] += sizes.pop()
    return tuple(sizes)


def block_layout(
    ny: int, nx: int, config: InferenceConfig
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Output block sizes (rows, columns) of a (ny, nx) cube: each block is computed from
    itself plus ``config.margin_px`` on every side."""
    return (
        _block_chunks(ny, config.chunk_px, config.margin_px),
        _block_chunks(nx, config.chunk_px, config.margin_px),
    )


def _with_margin(array: da.Array, chunks: tuple[tuple[int, ...], tuple[int, ...]], depth: int,
                 fill: float | bool) -> da.Array:  # fmt: skip
    """Rechunk the spatial axes of (..., y, x) to ``chunks`` and add ``depth`` pixels of each
    neighbour (``fill`` beyond the cube)."""
    lead = array.ndim - 2
    if array.size == 0:  # an empty series: blocks of the overlapped shape, no data
        grown = tuple(tuple(c + 2 * depth for c in axis) for axis in chunks)
        return da.zeros(array.shape[:lead] + tuple(sum(a) for a in grown), dtype=array.dtype,
                        chunks=tuple((s,) for s in array.shape[:lead]) + grown)  # fmt: skip
    array = array.rechunk(tuple((s,) for s in array.shape[:lead]) + chunks)
    if depth == 0:
        return array
    # dask overlaps only axes whose chunks are all at least ``depth``; an axis held in one
    # smaller chunk (a small cube) is padded instead, which is the same thing there.
    single = [i for i in range(lead, array.ndim) if len(array.chunks[i]) == 1]
    if single:
        padding = [(depth, depth) if i in single else (0, 0) for i in range(array.ndim)]
        array = da.pad(array, padding, mode="constant", constant_values=fill)
        array = array.rechunk({i: -1 for i in single})  # pad adds chunks: one block again
    overlapped = [i for i in range(lead, array.ndim) if i not in single]
    if not overlapped:
        return array
    return da.overlap.overlap(
        array,
        depth={i: (depth if i in overlapped else 0) for i in range(array.ndim)},
        boundary={i: (fill if i in overlapped else "none") for i in range(array.ndim)},
    )


def _predict_task(
    s2: np.ndarray,
    s2_valid: np.ndarray,
    landsat: np.ndarray,
    landsat_valid: np.ndarray,
    *,
    s2_days: np.ndarray,
    landsat_days: np.ndarray,
    query_days: np.ndarray,
    source: ModelSource,
    margin: int,
) -> np.ndarray:
    """One block: (t_q, 18, chunk, chunk) float32 (the margin cropped)."""
    loaded = cached_model(source)
    out = predict_block(s2, s2_valid, s2_days, landsat, landsat_valid, landsat_days, query_days,
                        loaded, resolve_device(source.device), source.precision)  # fmt: skip
    return out[..., margin : out.shape[-2] - margin, margin : out.shape[-1] - margin]


def _dask(variable: xr.DataArray) -> da.Array:
    """The variable as a dask array (in-memory cubes become one chunk, rechunked later)."""
    data = variable.data
    return data if isinstance(data, da.Array) else da.from_array(data, chunks=data.shape or -1)


def _days(times: np.ndarray, origin: np.datetime64) -> np.ndarray:
    return ((times.astype("datetime64[D]") - origin) / np.timedelta64(1, "D")).astype(np.float32)


# ---------------------------------------------------------------------------------------------
# The API
# ---------------------------------------------------------------------------------------------


def predict(
    s2: xr.Dataset,
    landsat: xr.Dataset,
    dates: Sequence[dt.date | str | np.datetime64] | str,
    model: ModelSource,
    config: InferenceConfig | None = None,
    *,
    start: dt.date | str | None = None,
    end: dt.date | str | None = None,
) -> xr.Dataset:
    """The 18 bands at 10 m on ``dates``, lazily (see the module docstring).

    Args:
        s2: Sentinel-2 cube (10 m); may have no dates.
        landsat: Landsat cube (30 m, same bounds); may have no dates.
        dates: output dates, or a cadence (``"10D"``, ``"SMS"``: 1st and 15th of each month)
            over ``start``..``end`` (default: the period of the inputs).
        model: the checkpoint and how workers run it.
        config: blocks, margin and time origin.

    Returns:
        Dataset (time, y, x): one float32 variable per band (``LS_B1`` ... ``S2_B12``,
        reflectance, ``LS_B10`` in Kelvin) and the quality layers of
        :data:`QUALITY_VARIABLES`; a CF ``spatial_ref`` when the inputs carry ``epsg``.

    Raises:
        ValueError: cubes that do not follow the conventions, or no input date at all.
    """
    config = config or InferenceConfig()
    _check_cube(s2, [b.name for b in S2_BANDS], "Sentinel-2")
    _check_cube(landsat, [b.name for b in LANDSAT_BANDS], "Landsat")
    west, north = _check_grids(s2, landsat)
    if s2.sizes["time"] + landsat.sizes["time"] == 0:
        raise ValueError("both cubes are empty: there is nothing to predict from")

    s2_times = s2["time"].values.astype("datetime64[D]")
    landsat_times = landsat["time"].values.astype("datetime64[D]")
    if isinstance(dates, str):
        inputs = np.concatenate([s2_times, landsat_times])
        start = start or str(inputs.min())
        end = end or str(inputs.max())
    queries = target_dates(dates, start, end)
    first = (
        s2_times[0] if len(s2_times) else (landsat_times[0] if len(landsat_times) else queries[0])
    )
    origin = np.datetime64(config.origin, "D") if config.origin else first
    s2_days, landsat_days, query_days = (_days(t, origin) for t in (s2_times, landsat_times,
                                                                    queries))  # fmt: skip

    ny, nx = s2.sizes["y"], s2.sizes["x"]
    m = config.margin_px
    chunks10 = block_layout(ny, nx, config)
    chunks30 = tuple(tuple(c // 3 for c in axis) for axis in chunks10)

    def data(cube: xr.Dataset, name: str) -> da.Array:
        return _dask(cube[name])

    s2_in = _with_margin(data(s2, "observations").astype(np.float32), chunks10, m, np.nan)
    s2_ok = _with_margin(data(s2, "valid").astype(bool), chunks10, m, False)
    ls_in = _with_margin(data(landsat, "observations").astype(np.float32), chunks30, m // 3, np.nan)
    ls_ok = _with_margin(data(landsat, "valid").astype(bool), chunks30, m // 3, False)
    predicted = da.blockwise(
        _predict_task, "qbyx",
        s2_in, "tcyx", s2_ok, "tyx", ls_in, "lcyx", ls_ok, "lyx",
        new_axes={"q": len(queries), "b": len(BANDS)},
        adjust_chunks={"y": chunks10[0], "x": chunks10[1]},
        concatenate=True, align_arrays=False, dtype=np.float32,
        meta=np.empty((0, 0, 0, 0), np.float32),
        s2_days=s2_days, landsat_days=landsat_days, query_days=query_days, source=model, margin=m,
    )  # fmt: skip

    quality = _quality(s2, landsat, chunks10, chunks30, s2_days, landsat_days, query_days)
    supported = _supported(s2, landsat, chunks10, chunks30, m)
    predicted = da.where(supported[None, None], predicted, np.float32(np.nan))
    variables: dict[str, Any] = {
        band.name: (("time", "y", "x"), predicted[:, k], _band_attrs(band))
        for k, band in enumerate(BANDS)
    }
    variables |= quality
    out = xr.Dataset(
        variables,
        coords={
            "time": queries.astype("datetime64[ns]"),
            "y": s2["y"].values,
            "x": s2["x"].values,
        },
        attrs=_provenance(s2, landsat, model, config, origin, queries),
    )
    if "spatial_ref" in s2.coords:
        out = out.assign_coords(spatial_ref=s2["spatial_ref"])
        for name in out.data_vars:
            out[name].attrs["grid_mapping"] = "spatial_ref"
    out.attrs["epsg"] = s2.attrs.get("epsg", landsat.attrs.get("epsg"))
    out.attrs["geotransform"] = [west, 10.0, 0.0, north, 0.0, -10.0]
    return out


def _band_attrs(band) -> dict[str, str]:
    if band.quantity == "temperature":
        return {"long_name": f"{band.name} land surface temperature", "units": "K"}
    return {"long_name": f"{band.name} surface reflectance", "units": "1"}


def _quality(
    s2: xr.Dataset,
    landsat: xr.Dataset,
    chunks10: tuple[tuple[int, ...], tuple[int, ...]],
    chunks30: tuple[tuple[int, ...], tuple[int, ...]],
    s2_days: np.ndarray,
    landsat_days: np.ndarray,
    query_days: np.ndarray,
) -> dict[str, Any]:
    """The quality layers, lazily (Landsat validity repeated onto the 10 m grid)."""

    s2_valid = _with_margin(_dask(s2["valid"]).astype(bool), chunks10, 0, False)
    ls_valid = _with_margin(_dask(landsat["valid"]).astype(bool), chunks30, 0, False)
    ls_valid = ls_valid.map_blocks(_to_10m, chunks=(ls_valid.chunks[0], *chunks10), dtype=bool)
    out = {}
    for sensor, valid, days in (("s2", s2_valid, s2_days), ("landsat", ls_valid, landsat_days)):
        out[f"{sensor}_days_to_clear"] = (
            ("time", "y", "x"),
            valid.map_blocks(
                days_to_nearest_clear,
                days,
                query_days,
                dtype=np.int16,
                chunks=((len(query_days),), *chunks10),
            ),
            dict(QUALITY_ATTRS[f"{sensor}_days_to_clear"]),
        )
        out[f"{sensor}_clear_count"] = (
            ("y", "x"),
            valid.map_blocks(clear_count, drop_axis=0, dtype=np.int16),
            dict(QUALITY_ATTRS[f"{sensor}_clear_count"]),
        )
    return out


def _supported(
    s2: xr.Dataset,
    landsat: xr.Dataset,
    chunks10: tuple[tuple[int, ...], tuple[int, ...]],
    chunks30: tuple[tuple[int, ...], tuple[int, ...]],
    radius: int,
) -> da.Array:
    """(y, x) bool: a clear observation of either sensor lies within ``radius`` pixels.

    Computed on its own halo, so it does not depend on how the prediction is tiled."""
    s2_any = _with_margin(_dask(s2["valid"]).astype(bool), chunks10, 0, False).any(axis=0)
    ls_any = _with_margin(_dask(landsat["valid"]).astype(bool), chunks30, 0, False).any(axis=0)
    ls_any = ls_any.map_blocks(_to_10m, chunks=chunks10, dtype=bool)
    observed = s2_any | ls_any
    if radius == 0:
        return observed
    grown = _with_margin(observed, chunks10, radius, False)
    return grown.map_blocks(partial(_within, radius=radius), chunks=chunks10, dtype=bool)


def _to_10m(valid: np.ndarray) -> np.ndarray:
    """(..., h, w) -> (..., 3h, 3w): Landsat pixels repeated onto the 10 m grid."""
    return valid.repeat(3, axis=-2).repeat(3, axis=-1)


def _within(observed: np.ndarray, radius: int) -> np.ndarray:
    """Pixels within ``radius`` of an observed pixel, a margin of ``radius`` cropped."""
    inner = (slice(radius, observed.shape[0] - radius), slice(radius, observed.shape[1] - radius))
    if not observed.any():
        return observed[inner]
    return (ndimage.distance_transform_edt(~observed) <= radius)[inner]


def _provenance(s2, landsat, model, config, origin, queries) -> dict[str, Any]:
    def items(cube: xr.Dataset) -> list[dict[str, Any]]:
        return json.loads(cube.attrs.get("items", "[]"))

    return {
        "tamrf_model": json.dumps({**checkpoint_identity(model.checkpoint),
                                   "device": model.device, "precision": model.precision}),
        "tamrf_inference": json.dumps({
            **{k: (str(v) if isinstance(v, dt.date) else v) for k, v in asdict(config).items()},
            "time_origin": str(origin), "dates": [str(d) for d in queries],
        }),
        "tamrf_inputs": json.dumps({"sentinel-2": items(s2), "landsat": items(landsat)}),
    }  # fmt: skip
