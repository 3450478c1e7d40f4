"""Lazy reads of STAC assets onto a grid: the one module that uses stackstac.

stackstac is unmaintained (it pins pandas<3); keeping every call to it here means swapping it
for another reader (odc-stac, a rasterio loop) touches one file. Everything it returns is raw:
no ``raster:bands`` rescaling (the catalogs disagree on it, see :mod:`pipelines.catalogs`), DNs
as float32 with NaN where the asset has no data.

A broken asset (404, truncated or corrupt file) never crashes a run: its reads return NaN, a
:class:`BrokenAssetWarning` is issued once per asset and process, and a record is written to a
:class:`BrokenAssetLog` directory (shared by every worker of a cluster on one file system), so
a run can report which item/asset went missing after the fact.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import dask
import dask.array as da
import numpy as np
import pystac
import rasterio.errors
import rasterio.io
import xarray as xr
from rasterio import windows
from rasterio.enums import MaskFlags, Resampling
from rasterio.vrt import WarpedVRT
from rasterio.windows import Window
from stackstac.prepare import prepare_items
from stackstac.rio_reader import (
    DEFAULT_GDAL_ENV,
    MULTITHREADED_DRIVER_ALLOWLIST,
    AutoParallelRioReader,
    SelfCleaningDatasetReader,
    SingleThreadedRioDataset,
    ThreadLocalRioDataset,
)
from stackstac.to_dask import asset_table_to_reader_and_window

from pipelines.catalogs import item_epsg
from pipelines.output_errors import writing
from pipelines.redaction import redact_text, redact_url
from pipelines.storage import Location
from tamrf_xr.grid import RasterGrid

__all__ = [
    "BrokenAssetLog",
    "BrokenAssetWarning",
    "read_assets",
    "stac_item_dicts",
]

LOG = logging.getLogger(__name__)

RESAMPLING = {"nearest": Resampling.nearest, "bilinear": Resampling.bilinear,
              "cubic": Resampling.cubic, "average": Resampling.average}  # fmt: skip

# Failures of the data source, not of the program: these become nodata + a record.
_ASSET_ERRORS = (rasterio.errors.RasterioError, RuntimeError, OSError, ValueError)


class BrokenAssetWarning(UserWarning):
    """An asset could not be read; its pixels are nodata for that date."""


class BrokenAssetLog:
    """A directory (or object-store prefix) of JSON records, one per broken asset (each
    written whole, idempotent)."""

    def __init__(self, directory: str | os.PathLike[str] | Location) -> None:
        self.directory = Location.of(directory)

    def record(self, url: str, error: str) -> None:
        """Record ``url`` as broken, signature and credentials redacted (the same asset
        signed anew is the same record)."""
        url = redact_url(url)
        target = self.directory / (hashlib.sha256(url.encode()).hexdigest()[:24] + ".json")
        # A run that cannot record what it read as missing stops (a full disk, say) rather
        # than report a product as complete without saying so.
        with writing(f"recording broken asset {url}", self.directory):
            if not target.exists():
                target.write_bytes(json.dumps({"url": url, "error": redact_text(error)}).encode())

    def records(self) -> list[dict[str, str]]:
        """Every record, sorted by URL."""
        fs, pattern = self.directory.fs, f"{self.directory.path}/*.json"
        files = fs.glob(pattern)
        found = [json.loads(content) for content in fs.cat(files).values()] if files else []
        return sorted(found, key=lambda r: r["url"])


_WARNED: set[str] = set()
_WARNED_LOCK = threading.Lock()


class RecordingRioReader(AutoParallelRioReader):
    """stackstac's reader, turning any failure to open or read an asset into nodata + record,
    and warping so that a pixel's value does not depend on the grid it is read into.

    An asset on the grid's pixel lattice (same CRS and resolution, edges a whole number of
    pixels apart) is read with a plain windowed read of the COG, NaN where the COG does not
    cover the grid: warping it would copy the same pixels, only slower. Other assets are
    warped in float32 (stackstac warps in the asset's integer type, so resampled DNs were
    rounded, and the rounding flipped with the grid's origin and size: seams between tiles)
    with XSCALE/YSCALE pinned to the true ratio of pixel sizes, which GDAL otherwise estimates
    per request (its documented advice for reproducible output).
    """

    def __init__(self, *, broken_log_dir: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.broken_log_dir = broken_log_dir
        self._lattice: _Lattice | None = None

    def _open(self):  # returns stackstac's private thread-safe dataset wrappers
        with self.gdal_env.open:
            ds = SelfCleaningDatasetReader(self.url, sharing=False)
            if ds.count != 1:
                count = ds.count
                ds.close()
                raise RuntimeError(f"asset {self.url!r} has {count} bands; assets must have one")
            if ds.crs is None:  # GDAL opens a COG cut inside its header without georeferencing
                ds.close()
                raise RuntimeError(f"asset {self.url!r} has no CRS: truncated or not a COG")
            self._lattice = _Lattice.of(ds, self.spec)
            vrt = None
            if self._lattice is None:
                extras = {}
                if ds.crs.is_projected and ds.crs.linear_units in ("metre", "meter"):
                    x_res, y_res = self.spec.resolutions_xy
                    extras = {"XSCALE": repr(ds.res[0] / x_res), "YSCALE": repr(ds.res[1] / y_res)}
                with self.gdal_env.open_vrt:
                    # Warp in float32: resampled DNs are not rounded back to integers.
                    vrt = WarpedVRT(ds, sharing=False, resampling=self.resampling,
                                    add_alpha=ds.nodata is None, dtype="float32", **extras,
                                    **self.spec.vrt_params)  # fmt: skip
        if ds.driver in MULTITHREADED_DRIVER_ALLOWLIST:
            return ThreadLocalRioDataset(self.gdal_env, ds, vrt=vrt)
        return SingleThreadedRioDataset(self.gdal_env, ds, vrt=vrt)

    def read(self, window: Window, out: np.ndarray | None = None, **kwargs: Any) -> np.ndarray:
        """(window.height, window.width) float32 of the grid's ``window``, NaN for no data;
        written into ``out`` (a float32 view of that shape, returned) if given."""
        try:
            dataset = self.dataset  # opens the asset (and decides on the lattice) once
            if self._lattice is not None:
                return self._lattice.read(dataset, window, out)
            data = super().read(window, **kwargs)
            if out is None:
                return data
            out[...] = data
            return out
        except _ASSET_ERRORS as error:
            message = redact_text(f"asset {self.url!r} is unreadable ({error}); its pixels are "
                                  "nodata")  # fmt: skip
            with _WARNED_LOCK:
                first = self.url not in _WARNED
                _WARNED.add(self.url)
            if first:
                warnings.warn(message, BrokenAssetWarning, stacklevel=2)
                LOG.warning(message)
            if self.broken_log_dir is not None:
                BrokenAssetLog(self.broken_log_dir).record(self.url, str(error))
            if out is None:
                return np.full((int(window.height), int(window.width)), self.fill_value,
                               self.dtype)  # fmt: skip
            out.fill(self.fill_value)
            return out

    def __getstate__(self) -> dict[str, Any]:
        return {**super().__getstate__(), "broken_log_dir": self.broken_log_dir}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(**state)


@dataclass(frozen=True)
class _Lattice:
    """Where the grid sits on an asset that shares its pixel lattice, and how the asset's no
    data is told apart."""

    row: int
    col: int
    """The asset pixel under the grid's first pixel (negative when the grid starts outside)."""
    height: int
    width: int
    nodata: float | None
    """Compared with the float32 values; None: ask GDAL for the mask (see :meth:`of`)."""
    masked: bool

    @classmethod
    def of(cls, ds: rasterio.io.DatasetReader, spec: Any) -> _Lattice | None:
        """The lattice of ``ds`` if it is the grid's (``spec``: stackstac's RasterSpec), else
        None (the asset is warped)."""
        grid, own = spec.transform, ds.transform
        if ds.crs is None or ds.crs.to_epsg() != spec.epsg:
            return None
        if own.b or own.d or grid.b or grid.d:  # rotated
            return None
        if not (_close(own.a, grid.a) and _close(own.e, grid.e)):
            return None
        col, row = (grid.c - own.c) / own.a, (grid.f - own.f) / own.e
        if abs(col - round(col)) > _LATTICE_TOLERANCE or abs(row - round(row)) > _LATTICE_TOLERANCE:
            return None
        nodata, masked = ds.nodata, False
        if np.dtype(ds.dtypes[0]) not in _EXACT_IN_FLOAT32 or (
            nodata is not None and not float(nodata).is_integer()
        ):
            nodata, masked = None, True  # GDAL's own no-data rules (float tolerance, ranges)
        elif nodata is None and MaskFlags.all_valid not in ds.mask_flag_enums[0]:
            masked = True  # an internal mask band
        return cls(round(row), round(col), ds.height, ds.width, nodata, masked)

    def read(self, dataset: Any, window: Window, out: np.ndarray | None = None) -> np.ndarray:
        """The grid's ``window`` (rows, cols) as float32, NaN outside the asset and where it
        has no data, read straight into ``out`` (a float32 view of that shape) if given.
        ``dataset``: stackstac's thread-safe wrapper of the asset."""
        rows, cols = int(window.height), int(window.width)
        if out is None:
            out = np.empty((rows, cols), np.float32)
        top, left = int(window.row_off) + self.row, int(window.col_off) + self.col
        r0, r1 = max(top, 0), min(top + rows, self.height)
        c0, c1 = max(left, 0), min(left + cols, self.width)
        if r1 <= r0 or c1 <= c0:
            out.fill(np.nan)
            return out
        source = Window(c0, r0, c1 - c0, r1 - r0)
        inner = out[r0 - top : r1 - top, c0 - left : c1 - left]
        if self.masked:
            data = dataset.read(window=source, indexes=1, out_dtype=np.float32, masked=True)
            inner[...] = np.ma.filled(data, np.float32(np.nan))
        else:
            dataset.read(window=source, indexes=1, out=inner)
            if self.nodata is not None:
                np.copyto(inner, np.float32(np.nan), where=inner == np.float32(self.nodata))
        # NaN beyond the asset: the rows above and below, the columns left and right.
        out[: r0 - top].fill(np.nan)
        out[r1 - top :].fill(np.nan)
        out[r0 - top : r1 - top, : c0 - left].fill(np.nan)
        out[r0 - top : r1 - top, c1 - left :].fill(np.nan)
        return out


_LATTICE_TOLERANCE = 1e-6
"""Pixels: how far from a whole-pixel offset the two grids may be (rounding of the bounds)."""
_EXACT_IN_FLOAT32 = {np.dtype(t) for t in ("uint8", "int8", "uint16", "int16")}
"""Asset types whose values and no-data value compare exactly once read as float32."""


def _close(a: float, b: float) -> bool:
    return abs(a - b) <= 1e-9 * abs(b)


class _ReaderFactory:
    """Picklable ``reader`` for stackstac that carries the broken-asset log directory."""

    def __init__(self, broken_log_dir: str | None) -> None:
        self.broken_log_dir = broken_log_dir

    def __call__(self, **kwargs: Any) -> RecordingRioReader:
        return RecordingRioReader(broken_log_dir=self.broken_log_dir, **kwargs)


def _split(size: int, chunk: int | None) -> tuple[int, ...]:
    """``size`` in chunks of ``chunk`` (the last one smaller); one chunk if None."""
    if not chunk or chunk >= size:
        return (size,)
    return (chunk,) * (size // chunk) + ((size % chunk,) if size % chunk else ())


def _read_block(table: np.ndarray, window: Window, spec: Any, resampling: Resampling,
                gdal_env: Any, reader: _ReaderFactory) -> np.ndarray:  # fmt: skip
    """(item, asset, window.height, window.width) float32 of a chunk of the asset table: each
    asset read straight into its slice of the block (stackstac's readers: plain windowed
    reads on the lattice, warps elsewhere, broken assets as NaN), NaN where there is none."""
    readers = asset_table_to_reader_and_window(
        table, spec, resampling, np.dtype("float32"), np.float32(np.nan), False, gdal_env, (),
        reader,
    )  # fmt: skip
    out = np.empty((*table.shape, int(window.height), int(window.width)), np.float32)
    for index, entry in np.ndenumerate(readers):
        if entry and windows.intersect(window, entry[1]):
            entry[0].read(window, out=out[index])
        else:
            out[index].fill(np.nan)
    return out


def stac_item_dicts(items: Sequence[pystac.Item | Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Plain STAC item dicts, each with ``proj:epsg`` (derived from ``proj:code`` if needed).

    stackstac 0.5.1 reads only ``proj:epsg``; STAC 1.1 catalogs publish ``proj:code``.
    """
    out = []
    for item in items:
        document = item.to_dict() if isinstance(item, pystac.Item) else json.loads(json.dumps(item))
        properties = document.setdefault("properties", {})
        properties["proj:epsg"] = item_epsg(document)
        out.append(document)
    return out


def read_assets(
    items: Sequence[Mapping[str, Any]],
    assets: Sequence[str],
    grid: RasterGrid,
    *,
    resampling: str = "nearest",
    chunk_px: int | None = None,
    item_chunks: Sequence[int] | None = None,
    gdal_env: Mapping[str, str] | None = None,
    broken_log: BrokenAssetLog | None = None,
) -> xr.DataArray:
    """Lazily read ``assets`` of ``items`` onto ``grid`` as raw float32 DNs.

    Args:
        items: STAC item dicts (see :func:`stac_item_dicts`), in the order wanted along time.
        assets: asset keys; an item without one of them reads as NaN for it.
        grid: the output grid: an asset on its pixel lattice is read with windowed reads,
            any other is warped onto it.
        resampling: ``nearest``, ``bilinear``, ``cubic`` or ``average``.
        chunk_px: spatial chunk size (default: the whole grid in one chunk).
        item_chunks: items per chunk along ``item`` (summing to ``len(items)``), every asset
            in one chunk: one read task per chunk, e.g. one per date, reading each asset
            straight into its slice of the block (stackstac plans the reads and provides the
            readers; its chunk fill and copy are bypassed). Default: one item per chunk.
        gdal_env: GDAL options for opening the assets (e.g. requester pays).
        broken_log: where to record broken assets.

    Returns:
        (item, asset, y, x) float32, NaN where the asset has no data; coordinates ``item``
        (index), ``asset`` (keys), ``y`` and ``x`` (pixel centres), ``href`` (item, asset).
    """
    if resampling not in RESAMPLING:
        raise ValueError(f"resampling {resampling!r} unknown; choose one of {sorted(RESAMPLING)}")
    if not items:
        raise ValueError("no items to read")
    rows, cols = grid.shape
    ids = [item["id"] for item in items]
    if len(set(ids)) != len(ids):
        raise ValueError("duplicate item ids: pass each item once")
    env = DEFAULT_GDAL_ENV.updated(always=dict(gdal_env or {}))
    # stackstac plans the reads (each asset's URL and bounds, the grid's RasterSpec) ...
    planned, spec, planned_assets, planned_items = prepare_items(
        list(items), assets=list(assets), epsg=grid.epsg, resolution=grid.resolution,
        bounds=grid.bounds, snap_bounds=False, rescale=False, dtype=np.dtype("float32"),
    )  # fmt: skip
    if spec.shape != (rows, cols):
        raise RuntimeError(f"stackstac planned {spec.shape} pixels, expected {(rows, cols)}")
    # ... leaving out the assets no item has and the items with nothing on the grid: they are
    # put back (no URL: NaN) so that callers always get the (item, asset) table they asked for.
    table = np.zeros((len(items), len(assets)), planned.dtype)
    table["url"] = None
    table["bounds"] = np.nan
    table[np.ix_([ids.index(i["id"]) for i in planned_items],
                 [list(assets).index(a) for a in planned_assets])] = planned  # fmt: skip
    # ... and each task reads a chunk of items straight into its block (see _read_block).
    chunks = (tuple(item_chunks or (1,) * len(items)), (len(assets),),
              _split(rows, chunk_px), _split(cols, chunk_px))  # fmt: skip
    table_dask = da.from_array(table, chunks=(chunks[0], -1), inline_array=True,
                               name="asset-table-" + dask.base.tokenize(table))  # fmt: skip
    reader = _ReaderFactory(None if broken_log is None else str(broken_log.directory))
    blocks = []
    row0 = 0
    for height in chunks[2]:
        line, col0 = [], 0
        for width in chunks[3]:
            line.append(table_dask.map_blocks(
                _read_block, Window(col0, row0, width, height), spec, RESAMPLING[resampling],
                env, reader, new_axis=[2, 3],
                chunks=(chunks[0], chunks[1], (height,), (width,)), dtype=np.float32,
                meta=np.empty((0, 0, 0, 0), np.float32),
            ))  # fmt: skip
            col0 += width
        blocks.append(line)
        row0 += height
    data = blocks[0][0] if len(blocks) == len(blocks[0]) == 1 else da.block(blocks)
    y, x = grid.coords()
    hrefs = np.array(
        [[item.get("assets", {}).get(key, {}).get("href", "") for key in assets] for item in items],
        dtype=object,
    )
    return xr.DataArray(
        data,
        dims=("item", "asset", "y", "x"),
        coords={
            "item": np.arange(len(items)),
            "asset": list(assets),
            "y": y,
            "x": x,
            "href": (("item", "asset"), hrefs),
        },
    )
