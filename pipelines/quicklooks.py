"""Quicklooks of a run's Level-3 stores: small PNGs that show an operator, at a glance, whether
the product looks right. Written next to the stores (``<out>/level3/quicklooks/``) through
:class:`pipelines.storage.Location` (a local directory or an object store alike), listed in the
run summary and embedded in the run's Prefect summary artifact.

Per store:

- ``<epsg>-rgb-<date>.png``: S2 B4/B3/B2 of one output date (a 2-98 % stretch per band, pixels
  without a value in a neutral grey) beside that date's ``s2_days_to_clear`` (days from the
  output date to the nearest clear Sentinel-2 observation: where the picture is a long
  interpolation);
- ``<epsg>-pixel-<tile>.png``: one pixel's time series: predicted S2 B4, S2 B8 (reflectance)
  and LS B10 (Kelvin, on its own axis) as lines, that pixel's clear input observations as
  points (carried by the tile's summary, :mod:`pipelines.pixel_sample`).

Reads stay bounded whatever the store's size: a store is read whole only when it is at most
:data:`MAX_WINDOW_PX` on a side, else one tile-sized window; the picture is one date of that
window, cropped to where there are values and subsampled to :data:`MAX_IMAGE_PX`; a pixel's
series is three bands at one position. The rendering functions take arrays and return
figures or bytes (:func:`stretch_rgb`, :func:`best_supported_date`, :func:`rgb_figure`,
:func:`pixel_figure`, :func:`png_bytes`); :func:`write_quicklooks` does the I/O.
"""

from __future__ import annotations

import io
import logging
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.dates import AutoDateLocator, ConciseDateFormatter
from matplotlib.figure import Figure

from pipelines.storage import Location

if TYPE_CHECKING:
    import xarray as xr

    from pipelines.level3 import Level3Definition

__all__ = [
    "MAX_IMAGE_PX",
    "MAX_PNG_BYTES",
    "MAX_WINDOW_PX",
    "NEUTRAL",
    "PIXEL_BANDS",
    "RGB_BANDS",
    "best_supported_date",
    "pixel_figure",
    "png_bytes",
    "rgb_figure",
    "stretch_rgb",
    "write_quicklooks",
]

LOG = logging.getLogger(__name__)

RGB_BANDS = ("S2_B4", "S2_B3", "S2_B2")
"""Red, green, blue."""
PIXEL_BANDS = ("S2_B4", "S2_B8", "LS_B10")
"""The predicted bands of a pixel's series (those :mod:`pipelines.pixel_sample` samples)."""
THERMAL = "LS_B10"
"""Kelvin: drawn on its own axis."""
QUALITY = "s2_days_to_clear"
NEUTRAL = (0.5, 0.5, 0.5)
"""The colour of pixels without a value (outside the predicted area, or never written)."""
MAX_WINDOW_PX = 1024
"""A store up to this many pixels on a side is read whole (one date); a larger one, one tile."""
MAX_IMAGE_PX = 400
"""The picture is subsampled to at most this many pixels on a side."""
MAX_PNG_BYTES = 150_000
"""Each PNG is kept under this size (it is embedded in a Prefect artifact)."""
FIGSIZE_IN = (9.0, 4.0)
DPIS = (100, 80, 64, 50)
"""Resolutions tried in turn until a PNG fits :data:`MAX_PNG_BYTES`."""
_COLOURS = {"S2_B4": "tab:red", "S2_B8": "tab:green", "LS_B10": "tab:purple"}


# ---------------------------------------------------------------------------------------------
# Rendering (arrays in, figures and bytes out)
# ---------------------------------------------------------------------------------------------


def stretch_rgb(bands: np.ndarray, low: float = 2.0, high: float = 98.0) -> np.ndarray:
    """An RGB picture of three reflectance bands.

    Args:
        bands: (3, H, W) red, green, blue; NaN where there is no value.
        low, high: percentiles (of the pixels with a value in all three bands) mapped to 0
            and 1, per band; values beyond them are clipped.

    Returns:
        (H, W, 3) float in [0, 1]; :data:`NEUTRAL` where any band is NaN.
    """
    bands = np.asarray(bands, np.float64)
    if bands.ndim != 3 or bands.shape[0] != 3:
        raise ValueError(f"bands of shape {bands.shape}: give (3, H, W) red, green, blue")
    known = np.isfinite(bands).all(axis=0)
    rgb = np.empty((*bands.shape[1:], 3))
    rgb[:] = NEUTRAL
    if not known.any():
        return rgb
    for channel, band in enumerate(bands):
        lo, hi = np.percentile(band[known], [low, high])
        # A constant band (hi == lo) is drawn mid-grey rather than divided by zero.
        scaled = (band[known] - lo) / (hi - lo) if hi > lo else np.full(known.sum(), 0.5)
        rgb[..., channel][known] = np.clip(scaled, 0.0, 1.0)
    return rgb


def best_supported_date(days_to_clear: np.ndarray) -> int:
    """The output date the picture shows: the one whose pixels are nearest, on average, to a
    clear Sentinel-2 observation. An operator first wants to see the model where the inputs
    support it (a date in a long cloudy spell shows interpolation, which the quality panel
    beside it flags anyway); the middle date would often be such a spell.

    Args:
        days_to_clear: (T, H, W) ``s2_days_to_clear``; -1 (never clear) and NaN (no value)
            are left out.

    Returns:
        The date index; the middle one when no pixel has a clear observation.
    """
    days = np.asarray(days_to_clear, np.float64)
    days = np.where(days >= 0, days, np.nan)  # NaN >= 0 is False: stays NaN
    counts = np.isfinite(days).sum(axis=(1, 2))
    if not counts.any():
        return days.shape[0] // 2
    means = np.where(counts > 0, np.nansum(days, axis=(1, 2)) / np.maximum(counts, 1), np.inf)
    return int(np.argmin(means))


def _new_figure() -> Figure:
    """A figure on the Agg canvas, outside pyplot (no global state: safe in any thread)."""
    figure = Figure(figsize=FIGSIZE_IN, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def rgb_figure(rgb: np.ndarray, days_to_clear: np.ndarray, title: str) -> Figure:
    """The picture beside its quality layer.

    Args:
        rgb: (H, W, 3) in [0, 1] (:func:`stretch_rgb`).
        days_to_clear: (H, W) ``s2_days_to_clear`` of the same date; -1 or NaN: none.
        title: above both panels (store and date).
    """
    figure = _new_figure()
    left, right = figure.subplots(1, 2)
    left.imshow(rgb, interpolation="nearest")
    left.set_title("S2 B4/B3/B2 (2-98 % stretch)", fontsize=9)
    days = np.asarray(days_to_clear, np.float64)
    shown = np.ma.masked_where(~(days >= 0), days)  # -1 (never clear) and NaN: no colour
    cmap = colormaps["viridis_r"].with_extremes(bad=NEUTRAL)  # dark: far from clear
    image = right.imshow(shown, cmap=cmap, interpolation="nearest", vmin=0,
                         vmax=max(1.0, float(shown.max()) if shown.count() else 1.0))  # fmt: skip
    right.set_title("S2 days to clear (grey: none)", fontsize=9)
    if shown.count():
        bar = figure.colorbar(image, ax=right, shrink=0.85)
        bar.set_label("days to the nearest clear S2 observation")
    else:  # a colour bar of nothing would only confuse: say it
        right.text(0.5, 0.5, "no clear S2 observation\nfor this date", ha="center",
                   va="center", transform=right.transAxes, fontsize=10)  # fmt: skip
    for axes in (left, right):
        axes.set_xticks([])
        axes.set_yticks([])
    figure.suptitle(title, fontsize=10)
    return figure


def pixel_figure(
    times: np.ndarray,
    predicted: Mapping[str, np.ndarray],
    observed: Mapping[str, tuple[Sequence[Any], Sequence[float]]],
    title: str,
) -> Figure:
    """One pixel's time series: the predicted bands as lines, the clear observations as points;
    reflectance on the left axis, :data:`THERMAL` (K) on the right one.

    Args:
        times: (T,) output dates (datetime64).
        predicted: per band, (T,) predicted values (NaN: none).
        observed: per band, the dates (ISO strings or datetime64) and values of the pixel's
            clear input observations.
        title: above the plot (store, tile and position).
    """
    figure = _new_figure()
    reflectance = figure.subplots()
    thermal = reflectance.twinx()
    for band in sorted({*predicted, *observed}):
        axes = thermal if band == THERMAL else reflectance
        colour = _COLOURS.get(band)
        if band in predicted:
            axes.plot(times, predicted[band], color=colour, label=f"{band} predicted")
        dates, values = observed.get(band, ((), ()))
        if len(dates):
            axes.scatter(np.asarray(dates, "datetime64[D]"), values, color=colour, s=14,
                         edgecolors="black", linewidths=0.4,
                         label=f"{band} clear input ({len(dates)})")  # fmt: skip
    reflectance.set_ylabel("reflectance")
    thermal.set_ylabel(f"{THERMAL} (K)")
    locator = AutoDateLocator()
    reflectance.xaxis.set_major_locator(locator)
    reflectance.xaxis.set_major_formatter(ConciseDateFormatter(locator))
    handles = [h for axes in (reflectance, thermal) for h in axes.get_legend_handles_labels()[0]]
    if handles:
        figure.legend(handles=handles, fontsize=7, loc="outside lower center", ncols=3)
    reflectance.set_title(title, fontsize=10)
    return figure


def png_bytes(figure: Figure, max_bytes: int = MAX_PNG_BYTES) -> bytes:
    """The figure as a 256-colour PNG at the highest of :data:`DPIS` that fits ``max_bytes``
    (the lowest if none does). A palette is what keeps a picture of reflectance small: the
    same figure in 24-bit colour is 2-3 times larger, the size of the artifact it goes in."""
    from PIL import Image

    data = b""
    for dpi in DPIS:
        figure.set_dpi(dpi)
        figure.canvas.draw()
        pixels = np.asarray(figure.canvas.buffer_rgba())[..., :3]
        buffer = io.BytesIO()
        Image.fromarray(pixels).quantize(colors=256).save(buffer, format="png", optimize=True)
        data = buffer.getvalue()
        if len(data) <= max_bytes:
            break
    return data


# ---------------------------------------------------------------------------------------------
# I/O: read bounded windows of the stores, write the PNGs
# ---------------------------------------------------------------------------------------------


def _window(definition: Level3Definition, tile_id: str | None) -> tuple[slice, slice]:
    """(rows, columns) read: the whole store when it is small, else ``tile_id``'s tile (the
    store's first tile when none is given)."""
    _, rows, cols = definition.shape
    if max(rows, cols) <= MAX_WINDOW_PX:
        return slice(0, rows), slice(0, cols)
    tiles = {t.tile_id: t for t in definition.grid_tiles}
    region = definition.region(tiles.get(tile_id or "", definition.grid_tiles[0]))
    return region["y"], region["x"]


def _cropped(values: np.ndarray) -> tuple[slice, slice]:
    """(rows, columns) of the bounding box of the finite values of a (..., H, W) array, and
    subsampled to at most :data:`MAX_IMAGE_PX` on a side."""
    known = np.isfinite(values).reshape(-1, *values.shape[-2:]).any(axis=0)
    if not known.any():
        return slice(None), slice(None)
    rows, cols = np.flatnonzero(known.any(axis=1)), np.flatnonzero(known.any(axis=0))
    step = max(1, math.ceil(max(rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1) / MAX_IMAGE_PX))
    return slice(rows[0], rows[-1] + 1, step), slice(cols[0], cols[-1] + 1, step)


def _rgb_quicklook(
    ds: xr.Dataset, definition: Level3Definition, tile_id: str | None
) -> tuple[str, bytes]:
    """(date, PNG) of the store's picture."""
    rows, cols = _window(definition, tile_id)
    window = ds.isel(y=rows, x=cols)
    # The date is chosen on a subsample of every date (the same chunks are read whole in any
    # case; the subsample keeps what is held in memory small).
    step = max(1, math.ceil(max(window.sizes["y"], window.sizes["x"]) / MAX_IMAGE_PX))
    k = best_supported_date(window[QUALITY][:, ::step, ::step].values)
    at = window.isel(time=k)
    bands = np.stack([at[b].values for b in RGB_BANDS])
    crop = _cropped(bands)
    date = str(np.datetime_as_string(window["time"].values[k], unit="D"))
    figure = rgb_figure(stretch_rgb(bands[:, crop[0], crop[1]]),
                        at[QUALITY].values[crop], f"EPSG:{definition.epsg}, {date}")  # fmt: skip
    return date, png_bytes(figure)


def _pixel_quicklook(ds: xr.Dataset, pixel: Mapping[str, Any], tile_id: str) -> bytes:
    """PNG of one pixel's series (predicted from the store, observed from the tile)."""
    point = ds[list(PIXEL_BANDS)].sel(x=pixel["x"], y=pixel["y"], method="nearest")
    predicted = {b: point[b].values for b in PIXEL_BANDS}
    observed = {b: (o["dates"], o["values"]) for b, o in pixel["observations"].items()}
    title = f"tile {tile_id}, pixel x={pixel['x']:.0f} y={pixel['y']:.0f} (EPSG:{pixel['epsg']})"
    return png_bytes(pixel_figure(ds["time"].values, predicted, observed, title))


def _store_quicklooks(store: str, tiles: Sequence[Mapping[str, Any]],
                      directory: Location) -> list[str]:  # fmt: skip
    """Write the quicklooks of one store; return their locations."""
    from pipelines.level3 import open_level3, read_definition

    definition = read_definition(store)
    ds = open_level3(store)
    # The tile whose pixel is drawn also frames the picture of a large store.
    sampled = next((t for t in tiles if t.get("pixel", {}).get("epsg") == definition.epsg),
                   None)  # fmt: skip
    tile_id = None if sampled is None else sampled["tile"]
    written = []
    date, png = _rgb_quicklook(ds, definition, tile_id)
    target = directory / f"{definition.epsg}-rgb-{date}.png"
    target.write_bytes(png)
    written.append(str(target))
    if sampled is not None:
        target = directory / f"{definition.epsg}-pixel-{tile_id}.png"
        target.write_bytes(_pixel_quicklook(ds, sampled["pixel"], sampled["tile"]))
        written.append(str(target))
    return written


def write_quicklooks(
    summary: Mapping[str, Any], out_dir: str | os.PathLike[str] | Path | Location
) -> list[str]:
    """Draw the quicklooks of a run and write them under ``<out_dir>/level3/quicklooks/``.

    Args:
        summary: the run summary: ``level3.stores`` and ``tiles`` (the tiles produced in this
            run, with their ``pixel``; the first one of each store is drawn).
        out_dir: the run's output directory or URL.

    Returns:
        The locations of the PNGs written. Quicklooks are a convenience: a store whose
        quicklooks cannot be drawn is logged with the reason and skipped, never failing a run
        whose products are written.
    """
    import dask

    directory = Location.of(out_dir) / "level3" / "quicklooks"
    written: list[str] = []
    for store in summary["level3"]["stores"]:
        try:
            # Small reads of this machine's outputs: the threaded scheduler, not a cluster
            # (the run's own is closed by now; a default client may be someone else's).
            with dask.config.set(scheduler="threads"):
                written += _store_quicklooks(str(store), summary.get("tiles", []), directory)
        except Exception as error:
            LOG.warning("no quicklook of %s (%s: %s); the products are unaffected", store,
                        type(error).__name__, error, exc_info=True)  # fmt: skip
    return written
