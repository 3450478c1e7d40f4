"""Lazy TAMRF prediction over datacubes: the xarray API.

``predict(s2, landsat, dates, model)`` returns a LAZY ``xarray.Dataset`` of the 18 bands at
10 m on the requested dates, plus quality layers. Computing it maps the model over spatial
blocks of the output area (the whole cube, or ``output_bounds`` inside it): each block is read
with up to ``margin_px`` of the cube around it (default: the checkpoint's receptive-field
radius, so a tiled result equals a whole-image one; see :mod:`tamrf_xr.inference.seams`), and
the model computes each of its stages only where the block needs it
(:mod:`tamrf_xr.receptive_field`). A block at the cube's outer edge uses the data that exist,
no padding. So a cube grown once by the margin around the output (a production tile) is
predicted with no pixel computed outside the output but that margin. Only a
:class:`ModelSource` travels in the task graph; workers load the model once
(:func:`cached_model`).

Input conventions (what :mod:`pipelines.datacube` produces, or any analyst's own cubes):
``s2`` has ``observations`` (time, band, y, x) with the 10 S2 bands in model order at 10 m
(reflectance) and ``valid`` (time, y, x) bool; ``landsat`` the same with the 8 Landsat bands
(LST in Kelvin) at 30 m on the same bounds. Either may have no dates.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np
import xarray as xr
from scipy import ndimage

from tamrf_xr.bands import BANDS, LANDSAT_BANDS, S2_BANDS
from tamrf_xr.flops import forward_memory_bytes
from tamrf_xr.inference.blocks import prepare_block, run_block
from tamrf_xr.inference.dates import target_dates
from tamrf_xr.inference.model_cache import (
    FORWARD_LOCK,
    ModelSource,
    cached_model,
    resolve_device,
)
from tamrf_xr.inference.quality import (
    QUALITY_ATTRS,
    QUALITY_VARIABLES,
    clear_count,
    days_to_nearest_clear,
)
from tamrf_xr.model import ModelConfig
from tamrf_xr.precision import resolve_precision
from tamrf_xr.receptive_field import Sides, receptive_field_radius

__all__ = [
    "QUALITY_VARIABLES",
    "Block",
    "InferenceConfig",
    "block_layout",
    "checkpoint_identity",
    "model_margin_px",
    "predict",
    "prediction_blocks",
]

LANDSAT_FACTOR = 3
MIN_AUTO_CHUNK_PX = 165
"""The smallest block the automatic block size chooses: below it the margin's FLOPs grow
past 1.3x the output's (benchmarks/README.md)."""


@dataclass(frozen=True)
class InferenceConfig:
    """How the model is mapped over a cube."""

    chunk_px: int | None = None
    """Side of the output blocks at 10 m (a multiple of 3); ``None``: the largest blocks whose
    held tensors fit in ``block_memory_mb`` (at least :data:`MIN_AUTO_CHUNK_PX`), splitting
    the output into equal blocks. Larger blocks spend fewer FLOPs on margins, smaller ones
    bound memory."""
    margin_px: int | None = None
    """Context read around every block (a multiple of 3); ``None``: the checkpoint's
    receptive-field radius (:func:`model_margin_px`), where the tiled result equals the
    whole-image one to float rounding; less context costs less and leaves seams (measured in
    benchmarks/README.md). It is also the support radius: a pixel with no clear observation
    of either sensor within it is NaN (pure extrapolation)."""
    block_memory_mb: float = 2000.0
    """What the automatic block size allows one block's forward pass to hold (features of
    every date, decoded tokens of every output date: :func:`forward_memory_bytes`)."""
    origin: dt.date | None = None
    """Day 0 of the model's time axis; default: the first S2 date (else the first Landsat
    date, else the first output date)."""

    def __post_init__(self) -> None:
        for name in ("chunk_px", "margin_px"):
            value = getattr(self, name)
            if value is None:
                continue
            if value < 0 or value % LANDSAT_FACTOR or (name == "chunk_px" and value == 0):
                raise ValueError(f"{name}={value} must be a positive multiple of 3")
        if self.block_memory_mb <= 0:
            raise ValueError(f"block_memory_mb={self.block_memory_mb} must be positive")


def model_margin_px(checkpoint: str | None, margin_px: int | None = None) -> int:
    """``margin_px``, or the receptive-field radius of the checkpoint's architecture (the
    s1t3 default without a checkpoint) rounded up to whole Landsat pixels."""
    if margin_px is not None:
        return margin_px
    return _architecture_margin(checkpoint and str(checkpoint))


@lru_cache(maxsize=16)
def _architecture_margin(checkpoint: str | None) -> int:
    from tamrf_xr.checkpoint import checkpoint_architecture

    config = checkpoint_architecture(checkpoint) if checkpoint else ModelConfig()
    return LANDSAT_FACTOR * math.ceil(receptive_field_radius(config) / LANDSAT_FACTOR)


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


def _split(n: int, chunk: int) -> tuple[int, ...]:
    """``n`` pixels (a multiple of 3) in the fewest blocks of at most ``chunk``, of nearly
    equal sizes, each a multiple of 3 (so no sliver of a block pays a full margin)."""
    count = max(1, math.ceil(n / chunk))
    thirds = n // LANDSAT_FACTOR
    sizes = [thirds // count + (1 if i < thirds % count else 0) for i in range(count)]
    return tuple(LANDSAT_FACTOR * s for s in sizes if s)


def _auto_chunk(ny: int, nx: int, t_s: int, t_l: int, t_q: int, config: InferenceConfig,
                model: ModelConfig) -> int:  # fmt: skip
    """The largest block side, among equal splits of the output, whose held tensors fit
    ``config.block_memory_mb`` (never below :data:`MIN_AUTO_CHUNK_PX`)."""
    margin = config.margin_px or 0
    longest = max(ny, nx)
    for count in range(1, longest // MIN_AUTO_CHUNK_PX + 1):
        side = LANDSAT_FACTOR * math.ceil(longest / count / LANDSAT_FACTOR)
        block = (min(side, ny) + 2 * margin, min(side, nx) + 2 * margin)
        held = forward_memory_bytes(model, *block, t_s, t_l, t_q, (margin,) * 4)
        if held <= config.block_memory_mb * 1e6:
            return side
    return min(longest, MIN_AUTO_CHUNK_PX)


def block_layout(
    ny: int,
    nx: int,
    config: InferenceConfig,
    dates: tuple[int, int, int] = (1, 1, 1),
    model: ModelConfig | None = None,
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Output block sizes (rows, columns) of a (ny, nx) output area: each block is computed
    from itself plus up to ``config.margin_px`` (resolved) of context on every side.

    ``dates`` = (S2, Landsat, output) dates, for the automatic block size."""
    chunk = config.chunk_px or _auto_chunk(ny, nx, *dates, config, model or ModelConfig())
    return _split(ny, chunk), _split(nx, chunk)


@dataclass(frozen=True)
class Block:
    """One output block and the input window it is computed from (10 m pixels of the cube)."""

    rows: tuple[int, int]
    cols: tuple[int, int]
    context: Sides
    """(top, bottom, left, right) pixels of the window around the block."""

    def window(self) -> tuple[slice, slice]:
        """(rows, cols) of the cube the block is computed from."""
        top, bottom, left, right = self.context
        return (slice(self.rows[0] - top, self.rows[1] + bottom),
                slice(self.cols[0] - left, self.cols[1] + right))  # fmt: skip


def prediction_blocks(
    shape: tuple[int, int],
    window: tuple[tuple[int, int], tuple[int, int]],
    config: InferenceConfig,
    dates: tuple[int, int, int],
    model: ModelConfig | None = None,
) -> list[list[Block]]:
    """The blocks :func:`predict` computes: the output ``window`` (rows, cols of a cube of
    ``shape``) cut by :func:`block_layout`, each block with ``config.margin_px`` of context,
    or what the cube holds where it ends sooner.

    Args:
        shape: (rows, cols) of the 10 m cube.
        window: ((row0, row1), (col0, col1)) of the output area in the cube.
        config: blocks and margin (``margin_px`` resolved, see :func:`model_margin_px`).
        dates: (S2, Landsat, output) dates, for the automatic block size.
        model: the architecture (memory of the automatic block size); default s1t3.
    """
    margin = config.margin_px
    if margin is None:
        raise ValueError("resolve margin_px first (model_margin_px)")
    size = (window[0][1] - window[0][0], window[1][1] - window[1][0])
    chunks = block_layout(*size, config, dates, model)

    def edges(start: int, sizes: tuple[int, ...]) -> list[tuple[int, int]]:
        bounds = np.cumsum((start, *sizes))
        return [(int(a), int(b)) for a, b in itertools.pairwise(bounds)]

    out = []
    for r0, r1 in edges(window[0][0], chunks[0]):
        row = []
        for c0, c1 in edges(window[1][0], chunks[1]):
            context = (min(margin, r0), min(margin, shape[0] - r1),
                       min(margin, c0), min(margin, shape[1] - c1))  # fmt: skip
            row.append(Block((r0, r1), (c0, c1), context))
        out.append(row)
    return out


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
    context: Sides,
    support_px: int,
) -> np.ndarray:
    """One block from its input window: (t_q, 18, rows, cols) float32, NaN where no clear
    observation of either sensor lies within ``support_px``."""
    loaded = cached_model(source)
    device = resolve_device(source.device)
    # Standardising (and a GPU's host-to-device copy) outside the lock overlaps another
    # block's forward pass on this worker.
    prepared = prepare_block(s2, s2_valid, s2_days, landsat, landsat_valid, landsat_days,
                             query_days, loaded, device, context)  # fmt: skip
    with FORWARD_LOCK:
        out = run_block(prepared, loaded, device, resolve_precision(source.precision, device))
    supported = _supported(s2_valid, landsat_valid, context, support_px)
    return np.where(supported[None, None], out, np.float32(np.nan))


def _supported(s2_valid: np.ndarray, landsat_valid: np.ndarray, context: Sides,
               radius: int) -> np.ndarray:  # fmt: skip
    """(rows, cols) bool of the block: a clear observation of either sensor lies within
    ``radius`` pixels (the window holds every pixel within the margin that exists)."""
    observed = s2_valid.any(axis=0) if s2_valid.shape[0] else None
    if landsat_valid.shape[0]:
        landsat_any = _to_10m(landsat_valid.any(axis=0))
        observed = landsat_any if observed is None else observed | landsat_any
    top, bottom, left, right = context
    if observed is None or not observed.any():
        rows = s2_valid.shape[-2] if s2_valid.shape[0] else 3 * landsat_valid.shape[-2]
        cols = s2_valid.shape[-1] if s2_valid.shape[0] else 3 * landsat_valid.shape[-1]
        return np.zeros((rows - top - bottom, cols - left - right), bool)
    within = ndimage.distance_transform_edt(~observed) <= radius if radius else observed
    return within[top : within.shape[0] - bottom, left : within.shape[1] - right]


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
    output_bounds: Sequence[float] | None = None,
) -> xr.Dataset:
    """The 18 bands at 10 m on ``dates``, lazily (see the module docstring).

    Args:
        s2: Sentinel-2 cube (10 m); may have no dates.
        landsat: Landsat cube (30 m, same bounds); may have no dates.
        dates: output dates, or a cadence (``"10D"``, ``"SMS"``: 1st and 15th of each month)
            over ``start``..``end`` (default: the period of the inputs).
        model: the checkpoint and how workers run it.
        config: blocks, margin and time origin.
        output_bounds: (west, south, east, north) of the area to predict, in the cubes' CRS,
            on 30 m pixel edges of the cube; the rest of the cube is context only. Default:
            the whole cube.

    Returns:
        Dataset (time, y, x) over the output area: one float32 variable per band (``LS_B1``
        ... ``S2_B12``, reflectance, ``LS_B10`` in Kelvin) and the quality layers of
        :data:`QUALITY_VARIABLES`; a CF ``spatial_ref`` when the inputs carry ``epsg``.

    Raises:
        ValueError: cubes that do not follow the conventions, output bounds outside the cube
            or off its 30 m grid, or no input date at all.
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

    shape = (s2.sizes["y"], s2.sizes["x"])
    window = _output_window(shape, west, north, output_bounds)
    margin = model_margin_px(model.checkpoint, config.margin_px)
    blocks = prediction_blocks(shape, window, replace(config, margin_px=margin),
                               (len(s2_times), len(landsat_times), len(queries)))  # fmt: skip
    chunks = (tuple(r[0].rows[1] - r[0].rows[0] for r in blocks),
              tuple(b.cols[1] - b.cols[0] for b in blocks[0]))  # fmt: skip

    s2_in = _dask(s2["observations"]).astype(np.float32)
    s2_ok = _dask(s2["valid"]).astype(bool)
    ls_in = _dask(landsat["observations"]).astype(np.float32)
    ls_ok = _dask(landsat["valid"]).astype(bool)
    days = {"s2_days": s2_days, "landsat_days": landsat_days, "query_days": query_days}

    def block_prediction(block: Block) -> da.Array:
        rows, cols = block.window()
        thirds = (slice(rows.start // 3, rows.stop // 3), slice(cols.start // 3, cols.stop // 3))
        pieces = [_one_chunk(a[..., rows, cols]) for a in (s2_in, s2_ok)]
        pieces += [_one_chunk(a[..., thirds[0], thirds[1]]) for a in (ls_in, ls_ok)]
        return da.blockwise(
            _predict_task, "qbyx",
            pieces[0], "tcyx", pieces[1], "tyx", pieces[2], "lcyx", pieces[3], "lyx",
            new_axes={"q": len(queries), "b": len(BANDS)},
            adjust_chunks={"y": block.rows[1] - block.rows[0], "x": block.cols[1] - block.cols[0]},
            concatenate=True, align_arrays=False, dtype=np.float32,
            meta=np.empty((0, 0, 0, 0), np.float32),
            source=model, context=block.context, support_px=margin, **days,
        )  # fmt: skip

    predicted = da.block([[block_prediction(b) for b in row] for row in blocks])
    rows, cols = (slice(*window[0]), slice(*window[1]))
    quality = _quality(s2_ok[:, rows, cols], ls_ok, window, chunks, s2_days, landsat_days,
                       query_days)  # fmt: skip
    variables: dict[str, Any] = {
        band.name: (("time", "y", "x"), predicted[:, k], _band_attrs(band))
        for k, band in enumerate(BANDS)
    }
    variables |= quality
    out = xr.Dataset(
        variables,
        coords={
            "time": queries.astype("datetime64[ns]"),
            "y": s2["y"].values[rows],
            "x": s2["x"].values[cols],
        },
        attrs=_provenance(s2, landsat, model, config, origin, queries, margin, chunks),
    )
    if "spatial_ref" in s2.coords:
        out = out.assign_coords(spatial_ref=s2["spatial_ref"])
        for name in out.data_vars:
            out[name].attrs["grid_mapping"] = "spatial_ref"
    out.attrs["epsg"] = s2.attrs.get("epsg", landsat.attrs.get("epsg"))
    out.attrs["geotransform"] = [west + 10.0 * window[1][0], 10.0, 0.0,
                                 north - 10.0 * window[0][0], 0.0, -10.0]  # fmt: skip
    return out


def _output_window(
    shape: tuple[int, int], west: float, north: float, bounds: Sequence[float] | None
) -> tuple[tuple[int, int], tuple[int, int]]:
    """(rows, cols) of the cube inside ``bounds``, checked to lie on its 30 m pixel edges."""
    if bounds is None:
        return (0, shape[0]), (0, shape[1])
    w, s, e, n = (float(v) for v in bounds)
    edges = [(north - n) / 10.0, (north - s) / 10.0, (w - west) / 10.0, (e - west) / 10.0]
    pixels = [round(v) for v in edges]
    on_grid = all(
        abs(v - p) < 1e-6 and p % LANDSAT_FACTOR == 0 for v, p in zip(edges, pixels, strict=True)
    )
    r0, r1, c0, c1 = pixels
    if not on_grid or not (0 <= r0 < r1 <= shape[0] and 0 <= c0 < c1 <= shape[1]):
        east, south = west + 10.0 * shape[1], north - 10.0 * shape[0]
        raise ValueError(
            f"output bounds {tuple(bounds)} must lie inside the cube ({west}, {south}, {east}, "
            f"{north}) on its 30 m pixel edges: snap them to the cube's grid"
        )
    return (r0, r1), (c0, c1)


def _one_chunk(array: da.Array) -> da.Array:
    """One block's window as one chunk (the model needs all its dates and pixels at once)."""
    return array.rechunk(tuple((max(s, 0),) for s in array.shape))


def _band_attrs(band) -> dict[str, str]:
    if band.quantity == "temperature":
        return {"long_name": f"{band.name} land surface temperature", "units": "K"}
    return {"long_name": f"{band.name} surface reflectance", "units": "1"}


def _quality(
    s2_valid: da.Array,
    landsat_valid: da.Array,
    window: tuple[tuple[int, int], tuple[int, int]],
    chunks: tuple[tuple[int, ...], tuple[int, ...]],
    s2_days: np.ndarray,
    landsat_days: np.ndarray,
    query_days: np.ndarray,
) -> dict[str, Any]:
    """The quality layers over the output window, lazily, in the prediction's blocks.

    ``s2_valid`` (t_s, rows, cols) is the window already; ``landsat_valid`` (t_l, h, w) is the
    whole 30 m cube, repeated onto the 10 m grid and cut to the window."""
    (r0, r1), (c0, c1) = window
    spatial = {1: chunks[0], 2: chunks[1]}
    ls_window = landsat_valid[:, r0 // 3 : r1 // 3, c0 // 3 : c1 // 3]
    ls_window = ls_window.rechunk({0: -1, 1: tuple(c // 3 for c in chunks[0]),
                                   2: tuple(c // 3 for c in chunks[1])})  # fmt: skip
    ls_10m = ls_window.map_blocks(_to_10m, chunks=(ls_window.chunks[0], *chunks), dtype=bool)
    out = {}
    for sensor, valid, days in (
        ("s2", s2_valid.rechunk({0: -1, **spatial}), s2_days),
        ("landsat", ls_10m, landsat_days),
    ):
        out[f"{sensor}_days_to_clear"] = (
            ("time", "y", "x"),
            valid.map_blocks(
                days_to_nearest_clear,
                days,
                query_days,
                dtype=np.int16,
                chunks=((len(query_days),), *chunks),
            ),
            dict(QUALITY_ATTRS[f"{sensor}_days_to_clear"]),
        )
        out[f"{sensor}_clear_count"] = (
            ("y", "x"),
            valid.map_blocks(clear_count, drop_axis=0, dtype=np.int16),
            dict(QUALITY_ATTRS[f"{sensor}_clear_count"]),
        )
    return out


def _to_10m(valid: np.ndarray) -> np.ndarray:
    """(..., h, w) -> (..., 3h, 3w): Landsat pixels repeated onto the 10 m grid."""
    return valid.repeat(3, axis=-2).repeat(3, axis=-1)


def _provenance(s2, landsat, model, config, origin, queries, margin, chunks) -> dict[str, Any]:
    def items(cube: xr.Dataset) -> list[dict[str, Any]]:
        return json.loads(cube.attrs.get("items", "[]"))

    return {
        "tamrf_model": json.dumps({**checkpoint_identity(model.checkpoint),
                                   "device": model.device, "precision": model.precision}),
        "tamrf_inference": json.dumps({
            **{k: (str(v) if isinstance(v, dt.date) else v) for k, v in asdict(config).items()},
            "margin_px": margin, "blocks_px": [list(chunks[0]), list(chunks[1])],
            "time_origin": str(origin), "dates": [str(d) for d in queries],
        }),
        "tamrf_inputs": json.dumps({"sentinel-2": items(s2), "landsat": items(landsat)}),
    }  # fmt: skip
