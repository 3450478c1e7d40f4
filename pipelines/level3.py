"""The Level-3 product: TAMRF's 18 bands at 10 m on the output dates, as one Zarr store
(v3 by default, v2 on request: :attr:`Level3Config.zarr_format`).

A store covers some output tiles of ONE UTM zone (a large area is several stores) and is
filled tile by tile, by any number of processes, across interrupted runs:

1. :func:`create_store` writes the template (metadata and coordinates, no data chunks). It is
   a no-op on a store created with the same parameters, so a resumed run calls it again.
2. :func:`write_tile` writes one tile's whole chunks by ``region=`` and then its completion
   record. :func:`missing_tiles` says what is left after a crash.
3. :func:`open_level3` reads it back decoded (float32, NaN where nothing was written), by
   default its complete tiles only (a store being written reads as the tiles done so far);
   :func:`completion_records` returns the records, :mod:`pipelines.level3_info` describes a
   store (``tamrf info STORE``).

Layout (``<store>`` is a directory; Zarr v2 has ``.zgroup`` + ``.zattrs`` where v3 has
``zarr.json``, ``.zarray`` + ``.zattrs`` for arrays, and chunk keys ``t.j.i`` for ``c/t/j/i``)::

    <store>/zarr.json                 root group: CF and provenance attributes, consolidated
                                      metadata (v2: .zgroup, .zattrs and .zmetadata)
    <store>/{x,y,time,spatial_ref}/   coordinates, CF / GDAL grid mapping
    <store>/LS_B1 ... S2_B12/         one array per band (time, y, x), model order
    <store>/s2_days_to_clear/ ...     quality layers (time, y, x) and (y, x)
    <store>/completed/<tile_id>/zarr.json   one completion record per written tile

Decisions:

- **Chunks:** one output tile in space (990 x 990 px at 10 m), so a tile writes whole chunks
  and two tiles never share a file. In time, all dates in one chunk up to 24 dates, else 24:
  a pixel's time series is then read in ceil(T / 24) requests (a 990 x 990 x 24 float32
  chunk is 94 MB raw, 47 MB in int16).
- **Encoding** (:class:`Level3Config`), decided so that every reader, plain
  ``xr.open_zarr`` included, gets float32 at the int16 precision class:

  - ``float32`` (the default): plain float32, NaN where the model gave none, with each
    value's mantissa rounded before writing to ``reflectance_keep_bits`` (12) /
    ``temperature_keep_bits`` (16) of its 23 bits (:func:`round_mantissa`: bit rounding as
    numcodecs' ``BitRound`` / xbitinfo, round half to even, but done by this module on the
    values and not as a Zarr codec, so that zarr, xarray and GDAL read plain float32). The
    error is at most 2**-(k+1) of the value: 1.2e-4 relative for reflectance (at most
    3.1e-5 in 0.25..0.5, 6.1e-5 in 0.5..1; int16: 5e-5 everywhere, coarser below 0.25),
    7.6e-6 for temperature (at most 0.002 K in 256..512 K; int16: 0.005 K). The rounded-off
    bits are zero, which Blosc's bit shuffle compresses away: on smooth fields with noise
    the store is 1.28 x the int16 one and 0.54 x exact float32 (measured by
    ``test_default_store_is_at_most_twice_int16_and_smaller_than_exact_float32``). Each band
    says its precision (attributes ``tamrf:keep_bits``, ``tamrf:max_relative_error``), as
    does the store definition (``config``). ``None`` keep bits: exact float32.
  - ``int16``: CF ``scale_factor``/``add_offset`` (the truth store's rule: reflectance 1e-4,
    range -3.2767..3.2767; temperature 0.01 K around 300 K, range -27.67..627.67 K), NaN
    stored as -32768: the smallest store, but plain xarray decodes it to float64 (below).

  The Zarr ``fill_value`` equals ``_FillValue`` (v3: set apart; v2: ``_FillValue`` *is* the
  array's ``fill_value``), so an unwritten chunk reads as NaN, never as 0. Layout version
  "1" covers both: stores written before the keep-bits fields (int16, then the default, or
  exact float32) have none in their definition and read as not rounded, which they are.
- **Zarr format:** v3 by default. v2 for readers on GDAL < 3.11 (e.g. QGIS builds of 2025):
  GDAL 3.10 implements a pre-final v3 draft and fails on zarr-python 3's v3 arrays
  ("Unsupported codec: bytes"), but reads v2 stores with their CRS, transform, scale/offset
  and nodata. Both formats carry the same arrays, attributes and chunk grid.
- **Compression:** Blosc with zstd by default, bit shuffle for float32 arrays (the zero
  low bit planes of rounded values compress away: 12 % smaller than with byte shuffle) and
  byte shuffle for int16 ones (smaller and faster than plain zstd on int16 reflectance).
  v2 stores use the same codecs from numcodecs, which GDAL reads.
- **Completion records** are Zarr groups ``completed/<tile_id>`` whose attributes are the
  record: the store stays a valid Zarr hierarchy (zarr-python warns about foreign files), each
  writer replaces only its own files, atomically and after its data (no shared attributes are
  read-modified-written). The file holding the attributes is the commit (v3 ``zarr.json``;
  v2 ``.zattrs``, written after ``.zgroup``): a record exists once that file does.
  ``write_empty_chunks=False`` leaves all-NaN chunks unwritten, so a missing chunk never means
  "not done".
- **Consolidated metadata: on, written once with the template** (v3: in the root
  ``zarr.json``; v2: ``.zmetadata``), so a plain ``xr.open_zarr(path)`` opens a store in one
  metadata read and without warnings. It holds the root, the arrays and the ``completed``
  group but not the records: they are written later, so it never changes after creation and
  tile writers never rewrite it (they write with ``consolidated=False``). Readers find the
  records from the file system (:func:`completed_tiles`, :func:`completion_records`); through
  the root, zarr-python trusts the consolidated metadata and sees none (open the group
  ``<store>/completed`` itself, or pass ``use_consolidated=False``).
  :func:`consolidate` rewrites it, atomically, from the node files (a store made before
  consolidation, or after editing metadata by hand); ``zarr.consolidate_metadata`` would do
  too, but sorts the arrays by name and adds every record (unbounded, and stale once a tile is
  rewritten). zarr-python warns on every v3 consolidation that consolidated metadata is not
  (yet) in the v3 spec (zarr-specs#309): the warning is silenced where the store writes it, as
  readers that do not know the extension (GDAL) read the per-node files, which stay complete.
- **Variable order:** xarray lists the arrays in the order zarr yields them: that of the
  consolidated metadata (the order of the directory listing without it; the order the arrays
  were written decides nothing). The store writes it in model band order
  (``tamrf_xr.bands.BANDS``), then the quality layers, then the coordinates.
- **Decoding with a plain** ``xr.open_zarr``: float32 stores (the default) and all quality
  layers decode to float32 (NaN where nothing was written), as GDAL reads them. int16 bands
  decode to **float64**: xarray chooses the decoded type from the Python type of
  ``scale_factor``/``add_offset`` (``xarray.coding.variables._choose_float_dtype``), and
  JSON attributes (Zarr's only attribute encoding, unlike netCDF's typed attributes) always
  read back as float64; xarray's Zarr backend has no other dtype hint. Within CF int16
  packing there is no way around it (another meaning for the attributes, no CF scale, would
  lose GDAL's scale/offset; a scale-offset codec is unread by GDAL 3.10 and turns NaN into a
  value; float16 has 1/2048 relative precision): hence the bit-rounded float32 default. The
  int16 store keeps CF packing, which GDAL reads (scale, offset, nodata), and
  :func:`open_level3` returns float32; analysts on plain xarray cast it
  (``ds[name].astype("float32")``).
  The ``*_days_to_clear`` layers carry CF units ``day`` rather than ``days``: xarray treats
  ``days`` as a time-like unit and would decode them to int64 with -2**63 where nothing was
  written.
- **Georeferencing:** CF ``spatial_ref`` grid mapping (``pipelines.georef``) plus GDAL's
  ``_CRS`` attribute on each (y, x) array: GDAL's Zarr v3 reader takes the CRS from ``_CRS``
  only (GDAL 3.10 ignores the CF grid mapping in v3 arrays); its v2 reader takes it from
  either. GDAL derives the transform from the ``x``/``y`` coordinate arrays.

- **Where:** a local directory or any fsspec URL (``s3://bucket/prefix/1234.zarr``), through
  :class:`pipelines.storage.Location`. Locally, a record is committed by a POSIX ``rename``
  after its data were flushed (``fsync``), and a new store appears by renaming a complete
  template into place. On an object store each object is one PUT (whole or absent): a tile's
  record is PUT after all its chunks, and a new store is uploaded from a local template with
  its root metadata last; a store prefix without its root metadata is an interrupted creation,
  which the next :func:`create_store` replaces.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import json
import os
import re
import shutil
import socket
import tempfile
import uuid
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import dask.array as da
import dask.base
import numcodecs
import numpy as np
import pandas as pd
import xarray as xr
import zarr
from pyproj import CRS
from zarr.codecs import BloscCodec, ZstdCodec
from zarr.errors import ZarrUserWarning

from pipelines.band_encoding import INT16_FILL, band_attrs, int16_encoding
from pipelines.georef import grid_coords, with_grid_mapping
from pipelines.grid import GridSpec, GridTile
from pipelines.output_errors import writing
from pipelines.storage import Location
from tamrf_xr.bands import BANDS
from tamrf_xr.grid import RasterGrid
from tamrf_xr.inference.quality import QUALITY_ATTRS, QUALITY_VARIABLES

__all__ = [
    "FORMAT_VERSION",
    "QUALITY_ATTRS",
    "QUALITY_VARIABLES",
    "Level3Config",
    "Level3Definition",
    "completed_tiles",
    "completion_records",
    "consolidate",
    "create_store",
    "missing_tiles",
    "open_level3",
    "read_definition",
    "read_provenance",
    "round_mantissa",
    "write_tile",
]

FORMAT_VERSION = "1"
"""Version of this store layout; bumped when a reader would misread an older store."""


DEFAULT_MAX_TIME_CHUNK = 24
_DEFINITION_ATTR = "tamrf:level3"
_PROVENANCE_ATTR = "tamrf:provenance"
_RECORD_ATTR = "tamrf:completed_tile"
_COMPLETED = "completed"
_INT16_LIMIT = 32767  # -32768 is the fill value
_BAND_NAMES = tuple(band.name for band in BANDS)
_ZarrFormat = Literal[2, 3]
_ATTRIBUTES_FILE: dict[int, str] = {2: ".zattrs", 3: "zarr.json"}
"""Per Zarr format, the file of a node that holds its attributes."""
_CONSOLIDATED_FILE: dict[int, str] = {2: ".zmetadata", 3: "zarr.json"}
"""Per Zarr format, the root file that holds the consolidated metadata."""
_NODE_FILES = ("zarr.json", ".zgroup", ".zarray", ".zattrs")
"""The metadata files of a Zarr node (v3, then v2)."""
_COORDINATES = ("time", "y", "x", "spatial_ref")
_V3_CONSOLIDATION_WARNING = re.escape(
    "Consolidated metadata is currently not part in the Zarr format 3 specification"
)
"""The start of zarr-python's (3.1) warning on every v3 consolidation."""


# ------------------------------------------------------------------------------- types


@dataclass(frozen=True)
class Level3Config:
    """How a store encodes and chunks the data."""

    encoding: Literal["float32", "int16"] = "float32"
    """float32 (the default): IEEE float32, each value's mantissa rounded to
    ``reflectance_keep_bits`` / ``temperature_keep_bits`` bits (:func:`round_mantissa`), so
    that every reader (xarray, zarr, GDAL) reads float32. int16: CF scale/offset per band,
    quantised to 1e-4 / 0.01 K (at most 5e-5 / 0.005 K off), the smallest store (about 0.8 x
    the default's, half of exact float32's); plain ``xr.open_zarr`` decodes it to float64,
    :func:`open_level3` to float32."""
    reflectance_keep_bits: int | None = 12
    """float32 only: mantissa bits kept (0..23) of reflectance bands; None: exact float32.
    The error is at most 2**-(k+1) of the value: 12 bits, 1.2e-4 relative, i.e. at most
    3.1e-5 for reflectances in 0.25..0.5 (3.7e-5 at 0.3 by the relative bound) and 6.1e-5 in
    0.5..1, near int16's 5e-5, and finer than int16 below 0.25 (1.5e-5 in 0.125..0.25).
    Ignored (set to None) for int16."""
    temperature_keep_bits: int | None = 16
    """float32 only: mantissa bits kept (0..23) of temperature bands; None: exact float32.
    16 bits: 2**-17 (7.6e-6) relative, at most 0.002 K in 256..512 K (0.0025 K at 330 K by
    the relative bound), better than int16's 0.005 K. Ignored (set to None) for int16."""
    time_chunk: int | None = None
    """Dates per chunk; None: all dates when there are at most 24, else 24."""
    compression: Literal["blosc-zstd", "zstd", "none"] = "blosc-zstd"
    """blosc-zstd: Blosc with zstd, bit shuffle for float32 arrays and byte shuffle for
    int16 ones; zstd: the zstd codec alone (zarr's codecs in v3, numcodecs' in v2)."""
    compression_level: int = 3
    """0..9 (Blosc's range, also used for zstd)."""
    zarr_format: _ZarrFormat = 3
    """3 (the default); 2 for readers on GDAL < 3.11, such as QGIS builds of 2025, whose
    Zarr driver cannot read zarr-python 3's v3 arrays."""

    def __post_init__(self) -> None:
        if self.encoding not in ("float32", "int16"):
            raise ValueError(f"encoding={self.encoding!r}: use 'float32' or 'int16'")
        for field in ("reflectance_keep_bits", "temperature_keep_bits"):
            bits = getattr(self, field)
            if self.encoding == "int16":  # CF packing fixes the precision
                object.__setattr__(self, field, None)
            elif bits is not None and (
                isinstance(bits, bool) or not isinstance(bits, int) or not 0 <= bits <= 23
            ):
                raise ValueError(
                    f"{field}={bits!r}: use 0..23 mantissa bits, or None for exact float32"
                )
        if self.time_chunk is not None and self.time_chunk < 1:
            raise ValueError(f"time_chunk={self.time_chunk}: use a positive number or None")
        if self.compression not in ("blosc-zstd", "zstd", "none"):
            raise ValueError(
                f"compression={self.compression!r}: use 'blosc-zstd', 'zstd' or 'none'"
            )
        if not 0 <= self.compression_level <= 9:
            raise ValueError(f"compression_level={self.compression_level}: use 0..9")
        if self.zarr_format not in (2, 3):
            raise ValueError(f"zarr_format={self.zarr_format!r}: use 3 (default) or 2")

    def keep_bits(self, quantity: str) -> int | None:
        """Mantissa bits kept for bands of ``quantity`` (``reflectance`` or
        ``temperature``); None: not rounded (exact float32, or int16)."""
        if quantity == "temperature":
            return self.temperature_keep_bits
        return self.reflectance_keep_bits

    def resolved(self, n_times: int) -> Level3Config:
        """This config with ``time_chunk`` decided for a store of ``n_times`` dates."""
        chunk = self.time_chunk or min(n_times, DEFAULT_MAX_TIME_CHUNK)
        return dataclasses.replace(self, time_chunk=min(chunk, n_times))


@dataclass(frozen=True)
class Level3Definition:
    """Everything a store was created with (except provenance): its grid, dates and config.

    The store spans the bounding box of its tiles, anchored at a tile corner, so chunk
    (j, i) in space is exactly the tile in row ``j`` and column ``i`` of that box.
    """

    epsg: int
    spec: GridSpec
    tiles: tuple[tuple[int, int], ...]
    """(column, row) of every tile, sorted north to south then west to east."""
    times: tuple[str, ...]
    """Output dates, ISO 8601 (UTC, naive), strictly increasing."""
    config: Level3Config
    """With ``time_chunk`` resolved."""

    @property
    def grid_tiles(self) -> list[GridTile]:
        return [GridTile(self.epsg, column, row, self.spec) for column, row in self.tiles]

    @property
    def tile_ids(self) -> list[str]:
        return [tile.tile_id for tile in self.grid_tiles]

    @property
    def time_index(self) -> pd.DatetimeIndex:
        return pd.DatetimeIndex([pd.Timestamp(t) for t in self.times]).astype("datetime64[ns]")

    @functools.cached_property  # region() needs it per tile: once, not once per tile
    def bounds(self) -> tuple[float, float, float, float]:
        """(west, south, east, north) in metres of the store's CRS."""
        size = self.spec.tile_size_m
        columns = [c for c, _ in self.tiles]
        rows = [r for _, r in self.tiles]
        return (
            min(columns) * size,
            min(rows) * size,
            (max(columns) + 1) * size,
            (max(rows) + 1) * size,
        )

    @property
    def grid(self) -> RasterGrid:
        """The store's 10 m grid (the bounding box of its tiles)."""
        return RasterGrid(self.epsg, self.bounds, self.spec.pixel_m)

    @property
    def shape(self) -> tuple[int, int, int]:
        """(time, y, x) of every band."""
        return (len(self.times), *self.grid.shape)

    def region(self, tile: GridTile) -> dict[str, slice]:
        """The tile's index ranges in the store (whole chunks)."""
        west, _, _, north = self.bounds
        px = self.spec.tile_px
        j = round((north - tile.bounds[3]) / self.spec.tile_size_m)
        i = round((tile.bounds[0] - west) / self.spec.tile_size_m)
        return {
            "time": slice(0, len(self.times)),
            "y": slice(j * px, (j + 1) * px),
            "x": slice(i * px, (i + 1) * px),
        }

    def to_attrs(self) -> dict[str, Any]:
        """JSON form stored in the root attributes (derived fields are for readers)."""
        return {
            "format_version": FORMAT_VERSION,
            "epsg": self.epsg,
            "tile_size_m": self.spec.tile_size_m,
            "pixel_m": self.spec.pixel_m,
            "tiles": [list(t) for t in self.tiles],
            "tile_ids": self.tile_ids,
            "bounds": list(self.bounds),
            "times": list(self.times),
            "config": dataclasses.asdict(self.config),
        }

    @classmethod
    def from_attrs(cls, attrs: Mapping[str, Any]) -> Level3Definition:
        if attrs.get("format_version") != FORMAT_VERSION:
            raise ValueError(
                f"Level-3 format version {attrs.get('format_version')!r} is not "
                f"{FORMAT_VERSION!r}: read it with the tamrf-xr version that wrote it"
            )
        return cls(
            epsg=int(attrs["epsg"]),
            spec=GridSpec(float(attrs["tile_size_m"]), float(attrs["pixel_m"])),
            tiles=tuple((int(c), int(r)) for c, r in attrs["tiles"]),
            times=tuple(attrs["times"]),
            # Stores written before bit rounding have no keep-bits fields: their float32
            # values are exact (None), and int16 ignores them.
            config=Level3Config(
                **{"reflectance_keep_bits": None, "temperature_keep_bits": None, **attrs["config"]}
            ),
        )


# --------------------------------------------------------------------------- creation


def create_store(
    path: str | Path | Location,
    tiles: Sequence[GridTile],
    times: Iterable[Any],
    config: Level3Config | None = None,
    attrs: Mapping[str, Any] | None = None,
) -> Path | str:
    """Create the template of a Level-3 store, or accept an identical existing one (resume).

    Writes metadata (with its consolidated copy) and coordinates only. The template is
    built beside ``path`` and renamed into place, so a store is never half created and
    concurrent creators agree.

    Args:
        path: the store directory or URL (must not exist, be empty, or be this very store).
        tiles: output tiles, all of one EPSG and one :class:`GridSpec`.
        times: output dates (anything ``pandas.Timestamp`` reads), strictly increasing, whole
            seconds.
        config: encoding, chunking, compression.
        attrs: provenance (JSON-serialisable): input items and their scaling rules, model
            checksum and config, software versions, run parameters. Stored as given under
            ``tamrf:provenance``; part of what must match on resume, so keep per-run values
            (start time, host) out of it.

    Returns:
        ``path`` (a ``Path`` when local, else the URL).

    Raises:
        ValueError: invalid tiles or times, or ``path`` holds a store made with other
            parameters or something else.
    """
    location = Location.of(path)
    definition = _define(tiles, times, config or Level3Config())
    provenance = _json_value(dict(attrs or {}), "attrs")
    if not location.is_local:
        return _create_remote_store(location, definition, provenance)
    path = location.local_path
    if _is_nonempty(path):
        _check_same(location, definition, provenance)
        return path
    staging = path.with_name(f".{path.name}.{uuid.uuid4().hex}.incomplete")
    try:
        _write_template(staging, definition, provenance)
        try:
            staging.rename(path)  # atomic; replaces an empty directory
        except OSError:
            if not _is_nonempty(path):
                raise
            _check_same(location, definition, provenance)  # another creator won the race
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return path


def _create_remote_store(location: Location, definition: Level3Definition, provenance: dict) -> str:
    """:func:`create_store` on an object store: the template is built locally, then uploaded
    with the root metadata last (its presence is what makes the prefix a store)."""
    zarr_format = definition.config.zarr_format
    root_files = (".zgroup", ".zattrs", ".zmetadata") if zarr_format == 2 else ("zarr.json",)
    if location.is_nonempty():
        if (location / root_files[-1]).is_file():
            _check_same(location, definition, provenance)
            return location.url
        if (location / _COMPLETED).is_dir():
            raise ValueError(
                f"{location} has completion records but no root metadata: it is not a store "
                "this version can resume; delete the prefix or choose another --out-dir"
            )
        location.remove()  # an interrupted creation: no tile was ever written into it
    with tempfile.TemporaryDirectory(prefix="tamrf-level3-template-") as directory:
        staging = Path(directory) / "store.zarr"
        _write_template(staging, definition, provenance)
        location.upload_tree(staging, last=root_files)
    return location.url


def _write_template(staging: Path, definition: Level3Definition, provenance: dict) -> None:
    """Write a complete new store (metadata, coordinates, consolidated metadata) at
    ``staging``, a local directory that must not exist."""
    zarr_format = definition.config.zarr_format
    template, encoding = _template(definition, provenance)
    template.to_zarr(
        staging,
        mode="w-",
        compute=False,
        encoding=encoding,
        zarr_format=zarr_format,
        consolidated=False,
    )
    zarr.open_group(staging, mode="r+", zarr_format=zarr_format).create_group(
        _COMPLETED, attributes={"description": "one group per written tile"}
    )
    _write_consolidated(Location.of(staging), zarr_format)  # complete before it appears


def _define(
    tiles: Sequence[GridTile], times: Iterable[Any], config: Level3Config
) -> Level3Definition:
    tiles = list(tiles)
    if not tiles:
        raise ValueError("no tiles: a Level-3 store needs at least one output tile")
    epsgs = sorted({t.epsg for t in tiles})
    if len(epsgs) > 1:
        raise ValueError(
            f"tiles span several CRSs (EPSG {epsgs}); a store holds one UTM zone: "
            "create one store per EPSG (group the tiles by tile.epsg)"
        )
    specs = {t.spec for t in tiles}
    if len(specs) > 1:
        raise ValueError(f"tiles use several grid specs {specs}: use one GridSpec per store")
    ids = [t.tile_id for t in tiles]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise ValueError(f"duplicate tiles {duplicates}: list each tile once")
    index = _time_index(times)
    ordered = sorted(tiles, key=lambda t: (-t.row, t.column))
    return Level3Definition(
        epsg=epsgs[0],
        spec=tiles[0].spec,
        tiles=tuple((t.column, t.row) for t in ordered),
        times=tuple(ts.isoformat() for ts in index),
        config=config.resolved(len(index)),
    )


def _time_index(times: Iterable[Any]) -> pd.DatetimeIndex:
    index = pd.DatetimeIndex([pd.Timestamp(t) for t in times])
    if index.tz is not None:
        index = index.tz_convert("UTC").tz_localize(None)
    if len(index) == 0:
        raise ValueError("no output dates: a Level-3 store needs at least one date")
    if not index.is_monotonic_increasing or not index.is_unique:
        raise ValueError(f"output dates must be strictly increasing; got {list(index)}")
    if (index != index.floor("s")).any():
        raise ValueError("output dates must be whole seconds (the store encodes seconds)")
    return index


def _template(definition: Level3Definition, provenance: dict) -> tuple[xr.Dataset, dict]:
    """The lazy (dask zeros, never computed) dataset and the encoding of a new store."""
    n_t, height, width = definition.shape
    west, _, _, north = definition.bounds
    pixel = definition.spec.pixel_m
    px = definition.spec.tile_px
    chunks3 = (definition.config.time_chunk, px, px)
    template = xr.Dataset(coords=grid_coords(definition.grid))
    template = template.assign_coords(time=("time", definition.time_index))
    encoding: dict[str, dict] = {}
    for band in BANDS:
        lazy = da.zeros((n_t, height, width), dtype=np.float32, chunks=chunks3)
        template[band.name] = (("time", "y", "x"), lazy, _band_attrs(definition.config, band))
        encoding[band.name] = _variable_encoding(definition.config, band.quantity, chunks3)
    for name, dims in QUALITY_VARIABLES.items():
        chunks = chunks3 if dims[0] == "time" else (px, px)
        shape = (n_t, height, width) if dims[0] == "time" else (height, width)
        lazy = da.zeros(shape, dtype=np.int16, chunks=chunks)
        attrs = dict(QUALITY_ATTRS[name])
        if attrs.get("units") == "days":  # the UDUNITS name: xarray decodes "days" to int64
            attrs["units"] = "day"
        template[name] = (dims, lazy, attrs)
        encoding[name] = _variable_encoding(definition.config, None, chunks)
    template = with_grid_mapping(template, definition.epsg, west, north, pixel)
    gdal_crs = _gdal_crs(definition.epsg)
    for name in (*_BAND_NAMES, *QUALITY_VARIABLES):
        template[name].attrs["_CRS"] = gdal_crs
    template.attrs.update(
        {
            "title": "tamrf-xr Level-3: TAMRF prediction of 18 bands at 10 m",
            "Conventions": "CF-1.10",
            "tamrf:level3_format_version": FORMAT_VERSION,
            _DEFINITION_ATTR: definition.to_attrs(),
            _PROVENANCE_ATTR: provenance,
        }
    )
    # Whole seconds (checked): exact, and independent of the dates' spacing.
    template.time.encoding.update({"units": "seconds since 1970-01-01", "dtype": "int64"})
    return template, encoding


def _band_attrs(config: Level3Config, band: Any) -> dict[str, Any]:
    """A band's attributes; for rounded float32, the precision a reader can count on."""
    attrs = band_attrs(band)
    bits = config.keep_bits(band.quantity) if config.encoding == "float32" else None
    if bits is not None:
        attrs["tamrf:keep_bits"] = bits
        attrs["tamrf:max_relative_error"] = 2.0 ** -(bits + 1)
        attrs["comment"] = (
            f"float32, mantissa rounded to {bits} of 23 bits (round half to even): "
            f"relative error at most 2**-{bits + 1}"
        )
    return attrs


def _variable_encoding(config: Level3Config, quantity: str | None, chunks: tuple) -> dict:
    """Zarr/CF encoding of a band (``quantity`` set) or a quality layer (``None``)."""
    if quantity is None:
        cf = {"dtype": "int16", "_FillValue": INT16_FILL}
    elif config.encoding == "int16":
        cf = int16_encoding(quantity)
    else:
        cf = {"dtype": "float32", "_FillValue": np.float32(np.nan)}
    # Zarr v3 keeps its own fill_value apart from CF's _FillValue: without it unwritten
    # chunks would read as 0 (a reflectance of 0, or 300 K) instead of missing. In v2,
    # xarray writes _FillValue as the array's fill_value itself (and refuses the key).
    fill = {"fill_value": cf["_FillValue"]} if config.zarr_format == 3 else {}
    compressors = _compressors(config, bitshuffle=cf["dtype"] == "float32")
    return {**cf, **fill, "chunks": chunks, "compressors": compressors}


def _compressors(config: Level3Config, bitshuffle: bool = False) -> list | None:
    """The codecs of ``config.compression``: zarr's v3 codecs, or numcodecs' for v2 (which
    xarray, like zarr-python 3, takes under the same ``compressors`` key). Blosc shuffles
    bits for float32 arrays (``bitshuffle``: the rounded-off mantissa bits are zero bit
    planes) and bytes for int16 ones."""
    level, v3 = config.compression_level, config.zarr_format == 3
    if config.compression == "none":
        return None
    if config.compression == "zstd":
        return [ZstdCodec(level=level) if v3 else numcodecs.Zstd(level=level)]
    if v3:
        shuffle_v3 = "bitshuffle" if bitshuffle else "shuffle"
        return [BloscCodec(cname="zstd", clevel=level, shuffle=shuffle_v3)]
    shuffle = numcodecs.Blosc.BITSHUFFLE if bitshuffle else numcodecs.Blosc.SHUFFLE
    return [numcodecs.Blosc(cname="zstd", clevel=level, shuffle=shuffle)]


def _gdal_crs(epsg: int) -> dict[str, str]:
    """GDAL's Zarr ``_CRS`` attribute (the only place its v3 reader takes a CRS from)."""
    return {
        "wkt": CRS.from_epsg(epsg).to_wkt(),
        "url": f"http://www.opengis.net/def/crs/EPSG/0/{epsg}",
    }


def _check_same(path: Location, definition: Level3Definition, provenance: dict) -> None:
    existing, existing_provenance = _read_root(path)
    wanted = _comparable(definition, provenance)
    found = _comparable(existing, existing_provenance)
    differing = sorted(k for k in wanted if wanted[k] != found.get(k))
    if differing:
        # Config fields are scalars: say what they are (e.g. the Zarr format).
        details = "".join(
            f"; {k}: {found.get(k)!r} in the store, {wanted[k]!r} asked"
            for k in differing
            if k.startswith("config.")
        )
        raise ValueError(
            f"{path} is a Level-3 store created with other parameters (differing: "
            f"{', '.join(differing)}{details}). To resume it, call create_store with the "
            f"parameters it was created with (its '{_DEFINITION_ATTR}' and "
            f"'{_PROVENANCE_ATTR}' attributes); to start over, delete it ({_removal(path)}); for "
            "another product, choose another path"
        )


def _comparable(definition: Level3Definition, provenance: dict) -> dict[str, Any]:
    """What must match on resume, config fields apart so that an error names them."""
    attrs = definition.to_attrs()
    config = attrs.pop("config")
    return {**attrs, **{f"config.{k}": v for k, v in config.items()}, "provenance": provenance}


# ----------------------------------------------------------------------------- reading


def read_definition(path: str | Path | Location) -> Level3Definition:
    """The definition of the Level-3 store at ``path`` (a directory or URL).

    Raises:
        ValueError: ``path`` is not a Level-3 store.
    """
    return _read_root(Location.of(path))[0]


def read_provenance(path: str | Path | Location) -> dict[str, Any]:
    """The provenance the store was created with (``create_store(attrs=...)``), as stored.

    Raises:
        ValueError: ``path`` is not a Level-3 store.
    """
    return _read_root(Location.of(path))[1]


def _read_root(path: Location) -> tuple[Level3Definition, dict]:
    try:
        zarr_format = _zarr_format_of(path)
        attrs = _read_attributes(path, zarr_format)
        definition = Level3Definition.from_attrs(attrs[_DEFINITION_ATTR])
        provenance = attrs[_PROVENANCE_ATTR]
    except (OSError, KeyError, TypeError, json.JSONDecodeError) as exc:
        raise ValueError(
            f"{path} is not a Level-3 store (no readable '{_DEFINITION_ATTR}' in its "
            "zarr.json or .zattrs): create one with pipelines.level3.create_store or fix "
            "the path"
        ) from exc
    if definition.config.zarr_format != zarr_format:
        raise ValueError(
            f"{path} says it is Zarr v{definition.config.zarr_format} but is laid out as "
            f"v{zarr_format}: the store is damaged, recreate it"
        )
    return definition, provenance


def _zarr_format_of(group: Location) -> _ZarrFormat:
    """The Zarr format of the group at ``group``, from its metadata file."""
    if (group / "zarr.json").is_file():
        return 3
    if (group / ".zgroup").is_file():
        return 2
    raise FileNotFoundError(f"{group} has no zarr.json (Zarr v3) nor .zgroup (Zarr v2)")


def _read_attributes(node: Location, zarr_format: _ZarrFormat) -> dict[str, Any]:
    """The attributes of a Zarr node."""
    return _attributes_in((node / _ATTRIBUTES_FILE[zarr_format]).read_json(), zarr_format)


def _attributes_in(document: dict[str, Any], zarr_format: _ZarrFormat) -> dict[str, Any]:
    """The attributes held by a node's attributes file (v3 ``zarr.json``, v2 ``.zattrs``)."""
    return document["attributes"] if zarr_format == 3 else document


def _is_consolidated(path: Location, zarr_format: _ZarrFormat) -> bool:
    """Whether the store has consolidated metadata (stores made before it have none)."""
    if zarr_format == 2:
        return (path / _CONSOLIDATED_FILE[2]).is_file()
    root = (path / _CONSOLIDATED_FILE[3]).read_json()
    return root.get("consolidated_metadata") is not None


def open_level3(path: str | Path | Location, complete_only: bool = True) -> xr.Dataset:
    """Open a store (a directory or URL) lazily, decoded: every band and quality layer
    float32, NaN where no value was written (dims (time, y, x) or (y, x), dask chunks =
    store chunks).

    Args:
        path: the store.
        complete_only: read only the tiles that have a completion record: every other tile
            reads as NaN, as if nothing were written there (the default: the way to read a
            store that a run may still be writing). A tile writes its chunks, then its
            record, so without it a reader of a store being written sees tiles in the middle
            of their write (some chunks new, others old or not there yet), and tiles whose
            write failed half-way. The records are listed once, here (one listing of
            ``completed/``, no record read: a local store of 400 tiles opens in 46 ms
            instead of 27, where reading its records would add 51; a complete tile's
            chunks are then read as they are, no copy). A tile completed after this call
            reads as NaN until the store is opened again. False: every chunk present, for a
            store known to be finished.
    """
    location = Location.of(path)
    definition = read_definition(location)  # a clear error for anything that is not a store
    zarr_format = definition.config.zarr_format
    # decode_timedelta=False: *_days_to_clear layers of stores that say units "days" (older
    # ones) stay day counts (xarray decodes them to int64, with -2**63 where not written).
    ds = xr.open_zarr(
        location.zarr_store(),
        zarr_format=zarr_format,
        consolidated=_is_consolidated(location, zarr_format),  # no warning for older stores
        decode_timedelta=False,
    )
    ds = ds[[*_BAND_NAMES, *QUALITY_VARIABLES]]  # model order, whatever the store's order
    # CF decoding of int16 with a float scale gives float64; the model's values are float32.
    for name in (*_BAND_NAMES, *QUALITY_VARIABLES):
        ds[name] = ds[name].astype(np.float32)
    if complete_only:
        ds = _only_complete_tiles(ds, definition, _recorded_tile_ids(location, zarr_format))
    return ds


def _only_complete_tiles(
    ds: xr.Dataset, definition: Level3Definition, complete: set[str]
) -> xr.Dataset:
    """``ds`` with every tile not in ``complete`` all NaN. Per chunk, as the store's spatial
    chunks are its tiles: a complete tile's chunks pass through as read (no copy), another
    tile's read as NaN."""
    px = definition.spec.tile_px
    _, height, width = definition.shape
    tiles = np.zeros((height // px, width // px), dtype=bool)  # (tile rows, tile columns)
    for tile in definition.grid_tiles:
        if tile.tile_id in complete:
            region = definition.region(tile)
            tiles[region["y"].start // px, region["x"].start // px] = True

    def keep_complete(block: np.ndarray, block_id: tuple[int, ...]) -> np.ndarray:
        return block if tiles[block_id[-2:]] else np.full_like(block, np.nan)

    # Named from the source array and the tiles: tokenizing the function per variable
    # (a pickle of it and its tiles each time) would cost more than the open itself.
    token = dask.base.tokenize(tiles)

    def masked(data: da.Array) -> da.Array:
        return data.map_blocks(keep_complete, name=f"complete-only-{token}-{data.name}",
                               dtype=data.dtype)  # fmt: skip

    # copy(data=...) swaps the arrays without merging or aligning variables (20 ms more)
    return ds.copy(data={name: masked(variable.data) for name, variable in ds.data_vars.items()})


def completed_tiles(path: str | Path | Location) -> set[str]:
    """Ids of the tiles whose completion record exists (data fully written before it)."""
    location = Location.of(path)
    return _recorded_tile_ids(location, read_definition(location).config.zarr_format)


def _record_files(location: Location, zarr_format: _ZarrFormat) -> list[str]:
    """The commit files of the store's completion records, sorted (one listing, fresh: a
    reader that lists again sees the records written since)."""
    completed = location / _COMPLETED
    completed.fs.invalidate_cache(completed.path)  # object stores cache listings
    # The attributes file is the commit: a v2 record with .zgroup only is not done.
    return sorted(completed.fs.glob(f"{completed.path}/*/{_ATTRIBUTES_FILE[zarr_format]}"))


def _recorded_tile_ids(location: Location, zarr_format: _ZarrFormat) -> set[str]:
    """Ids of the tiles whose record exists: the names of the record groups."""
    return {file.rstrip("/").split("/")[-2] for file in _record_files(location, zarr_format)}


def completion_records(path: str | Path | Location) -> dict[str, dict[str, Any]]:
    """The completion record of every written tile, by tile id (sorted), as written:
    ``tile_id``, ``epsg``, ``bounds``, ``written_at`` (UTC), ``host``, ``pid`` and
    ``provenance`` (what the writer passed to :func:`write_tile`).

    Read from the file system, one file per record, so a record written after the store's
    metadata was consolidated is found as well.
    """
    location = Location.of(path)
    zarr_format = read_definition(location).config.zarr_format
    files = _record_files(location, zarr_format)
    # One batch of reads (concurrent on object stores), not a request per record in turn.
    documents = location.fs.cat(files) if files else {}
    records = {}
    for content in documents.values():
        record = _attributes_in(json.loads(content), zarr_format)[_RECORD_ATTR]
        records[record["tile_id"]] = record
    return dict(sorted(records.items()))


def missing_tiles(
    path: str | Path | Location, tiles: Iterable[GridTile] | None = None
) -> list[GridTile]:
    """``tiles`` (default: all of the store's, in store order) that have no completion record."""
    done = completed_tiles(path)
    candidates = read_definition(path).grid_tiles if tiles is None else list(tiles)
    return [tile for tile in candidates if tile.tile_id not in done]


# ----------------------------------------------------------------------------- writing


def write_tile(
    path: str | Path | Location,
    tile: GridTile,
    dataset: xr.Dataset,
    provenance: Mapping[str, Any] | Callable[[], Mapping[str, Any]] | None = None,
) -> Path | str:
    """Write one tile into the store, then its completion record.

    Safe to run for different tiles in several processes at once, and to repeat for a tile
    (the chunks and the record are replaced: the old record goes first, so a rewrite that
    fails half-way leaves the tile missing, never complete with mixed chunks).

    Args:
        path: a store made by :func:`create_store` (a directory or URL).
        tile: one of the store's tiles.
        dataset: the tile on its 10 m grid, ``attrs["epsg"]`` set, coordinates ``time``
            (the store's dates), ``y``, ``x`` (pixel centres, metres) and variables: every
            band of ``tamrf_xr.bands.BANDS`` by name, float (time, y, x), NaN allowed;
            the int16 :data:`QUALITY_VARIABLES`. NumPy or dask backed.
        provenance: per-tile facts for the record (JSON-serialisable), e.g. the items used:
            a mapping, checked before anything is written; or a function without arguments
            returning it, called once the tile's data chunks are written (and flushed), for
            facts known only once the data were computed, such as the assets found broken
            while reading a dask-backed ``dataset``. The record is then written from what it
            returns; if it raises or returns something that is not JSON-serialisable, the
            data stay written but no record follows (the tile counts as missing).

    Returns:
        The completion record's file (a ``Path``, or its URL on an object store).

    Raises:
        ValueError: the tile or the dataset do not match the store (EPSG, tile, dates,
            coordinates, variables) or a value cannot be encoded; nothing is written then
            (for dask input the range is checked while writing: no record follows a failure).
            Also a ``provenance`` that is not JSON-serialisable (a function's result: after
            the data were written).
        pipelines.output_errors.OutputWriteError: the store's file system is full, read-only
            or over quota (the stage and the path named); the tile has no record then.
    """
    path = Location.of(path)
    definition = read_definition(path)
    _check_tile(definition, tile)
    data = _prepared(definition, tile, dataset)
    # A mapping is checked before anything is written; a function is called after the data.
    record_provenance = (
        None if callable(provenance) else _json_value(dict(provenance or {}), "provenance")
    )
    zarr_format = definition.config.zarr_format
    # A full or read-only file system stops the run with the stage and the path named
    # (pipelines.output_errors); the record is never written without the data.
    with writing(f"writing tile {tile.tile_id} chunks", path):
        _withdraw_tile(path, definition, tile)
        data.to_zarr(
            path.zarr_store(),
            region=definition.region(tile),
            mode="r+",
            zarr_format=zarr_format,
            consolidated=False,
            write_empty_chunks=False,
        )
        _fsync_tile_chunks(path, definition, tile)
    if record_provenance is None:  # a function: it may report what computing them found
        record_provenance = _json_value(dict(provenance() or {}), "provenance()")
    with writing(f"writing the completion record of tile {tile.tile_id}", path):
        return _write_record(path, tile, record_provenance, zarr_format).native()


def _check_tile(definition: Level3Definition, tile: GridTile) -> None:
    if tile.epsg != definition.epsg:
        raise ValueError(
            f"tile {tile.tile_id} is in EPSG:{tile.epsg} but the store is in "
            f"EPSG:{definition.epsg}: write it into the store of its UTM zone"
        )
    if tile.spec != definition.spec:
        raise ValueError(f"tile {tile.tile_id} uses {tile.spec}, the store {definition.spec}")
    west, south, east, north = definition.bounds
    tw, ts, te, tn = tile.bounds
    if tw < west or te > east or ts < south or tn > north:
        raise ValueError(
            f"tile {tile.tile_id} (bounds {tile.bounds}) is outside the store "
            f"(bounds {definition.bounds}): write it into a store that covers it"
        )
    if (tile.column, tile.row) not in definition.tiles:
        raise ValueError(
            f"tile {tile.tile_id} is inside the store's box but not one of its tiles "
            f"{definition.tile_ids}: add it when creating the store"
        )


def _prepared(definition: Level3Definition, tile: GridTile, dataset: xr.Dataset) -> xr.Dataset:
    """The dataset's variables, checked, cast and stripped of coordinates, attributes and
    encodings, so that the region write touches data chunks only."""
    epsg = dataset.attrs.get("epsg")
    if epsg is None or int(epsg) != definition.epsg:
        raise ValueError(
            f"dataset attrs['epsg'] is {epsg!r} but the store is in EPSG:{definition.epsg}: "
            f"write the tile computed on the store's grid (tile {tile.tile_id})"
        )
    _check_variables(dataset)
    _check_coords(definition, tile, dataset)
    time_chunk = definition.config.time_chunk
    variables = {}
    for name in (*_BAND_NAMES, *QUALITY_VARIABLES):
        variable = dataset[name]
        dims = ("time", "y", "x") if name in _BAND_NAMES else QUALITY_VARIABLES[name]
        if variable.dims != dims:
            raise ValueError(f"variable {name} has dims {variable.dims}; expected {dims}")
        data = variable.data
        if isinstance(data, da.Array):  # dask chunks must be the store's (whole chunks)
            data = data.rechunk(tuple(time_chunk if d == "time" else -1 for d in dims))
        variables[name] = (dims, _checked_values(definition, name, data))
    return xr.Dataset(variables)


def _check_variables(dataset: xr.Dataset) -> None:
    expected = {*_BAND_NAMES, *QUALITY_VARIABLES}
    present = set(dataset.data_vars)
    missing, extra = sorted(expected - present), sorted(present - expected)
    if missing or extra:
        raise ValueError(
            f"dataset variables do not match the store: missing {missing}, unexpected "
            f"{extra}; expected the 18 bands of tamrf_xr.bands.BANDS and "
            f"{list(QUALITY_VARIABLES)}"
        )


def _check_coords(definition: Level3Definition, tile: GridTile, dataset: xr.Dataset) -> None:
    times = pd.DatetimeIndex(dataset["time"].values) if "time" in dataset.coords else None
    expected_times = definition.time_index
    if times is None or len(times) != len(expected_times) or (times != expected_times).any():
        got = [] if times is None else [str(t) for t in times]
        raise ValueError(
            f"dataset times {got} are not the store's dates "
            f"{[str(t) for t in expected_times]}: predict exactly the store's dates, in order"
        )
    expected = dict(zip(("y", "x"), tile.grid().coords(), strict=True))
    for axis in ("y", "x"):
        got = dataset[axis].values if axis in dataset.coords else np.array([])
        want = expected[axis]
        if got.shape != want.shape or not np.allclose(got, want, rtol=0, atol=1e-3):
            raise ValueError(
                f"dataset {axis} coordinates are not the pixel centres of tile {tile.tile_id} "
                f"({len(want)} values from {want[0]} by {want[1] - want[0]}): compute the "
                "tile on its own 10 m grid (GridTile.grid().coords())"
            )


def _checked_values(definition: Level3Definition, name: str, data: Any) -> Any:
    """``data`` cast to its stored type, with a range check that the int16 encoding
    would otherwise turn into wrapped-around values, and for float32 its mantissa rounded
    to the config's keep bits (run per block for dask)."""
    keep_bits = None
    if name in QUALITY_VARIABLES:
        if not np.issubdtype(data.dtype, np.integer):
            raise ValueError(f"{name} has dtype {data.dtype}: provide integers (int16)")
        low, high, dtype = -_INT16_LIMIT, _INT16_LIMIT, np.int16
    elif definition.config.encoding == "int16":
        cf = int16_encoding(_band_quantity(name))
        low = cf["add_offset"] - _INT16_LIMIT * cf["scale_factor"]
        high = cf["add_offset"] + _INT16_LIMIT * cf["scale_factor"]
        dtype = np.float32
    else:
        low, high, dtype = -np.inf, np.inf, np.float32
        keep_bits = definition.config.keep_bits(_band_quantity(name))

    def check(block: np.ndarray) -> np.ndarray:
        values = np.asarray(block)
        with np.errstate(over="ignore"):  # float64 beyond float32's range: inf, refused below
            stored = values.astype(dtype, copy=False)
        if keep_bits is not None:
            stored = round_mantissa(stored, keep_bits)
        bad = (values < low) | (values > high)
        if np.issubdtype(values.dtype, np.floating):
            # inf, and finite values that float32 (or its rounding) turns into inf
            bad |= np.isinf(values) | np.isinf(stored)
        if bad.any():
            if np.isfinite(low):
                what = f"values outside {low:g}..{high:g}"
                hint = ", or store float32 (Level3Config(encoding='float32'))"
            else:
                what, hint = "infinite values (or beyond float32's range)", ""
            raise ValueError(
                f"{name} has {int(bad.sum())} {what} (first: {values[bad].flat[0]}), which "
                f"the store cannot encode: check the model output{hint}"
            )
        return stored

    if isinstance(data, da.Array):
        return data.map_blocks(check, dtype=dtype)
    return check(data)


def round_mantissa(values: np.ndarray, keep_bits: int) -> np.ndarray:
    """``values`` as float32 with the mantissa rounded to its top ``keep_bits`` bits.

    Bit rounding (as numcodecs' ``BitRound`` and xbitinfo do, but applied to the values
    rather than as a codec, so that the result is plain float32 for every reader): the low
    ``23 - keep_bits`` bits of each float32 mantissa are rounded off, half to even, and
    left zero, which compressors (Blosc with bit shuffle) turn into a smaller store. The
    result differs from the float32 value ``x`` by at most half a unit of the kept last
    bit, i.e. ``2**-(keep_bits + 1) * abs(x)`` (12 bits: 1.2e-4 relative; 16 bits:
    7.6e-6); a value whose rounding carries out of the mantissa goes to the next power of
    two (beyond float32's largest finite value: inf). NaN and inf are returned unchanged;
    subnormals are rounded in the same bit pattern (an absolute error below 2**-150).

    Args:
        values: any real array (cast to float32 first).
        keep_bits: mantissa bits to keep, 0..23; 23 returns the float32 values unchanged.

    Returns:
        A new float32 array of ``values``' shape.
    """
    if isinstance(keep_bits, bool) or not isinstance(keep_bits, (int, np.integer)):
        raise TypeError(f"keep_bits={keep_bits!r}: use an int 0..23")
    if not 0 <= keep_bits <= 23:
        raise ValueError(f"keep_bits={keep_bits}: use 0..23 (float32 has 23 mantissa bits)")
    floats = np.array(values, dtype=np.float32)  # a copy: the input is never modified
    drop = 23 - int(keep_bits)
    if drop == 0:
        return floats
    bits = floats.view(np.uint32)
    # Round half to even: add just under half a kept unit, plus the kept last bit.
    half_minus_one = np.uint32((1 << (drop - 1)) - 1)
    last_kept = (bits >> np.uint32(drop)) & np.uint32(1)
    rounded = (bits + half_minus_one + last_kept) & np.uint32(~((1 << drop) - 1) & 0xFFFFFFFF)
    return np.where(np.isnan(floats), floats, rounded.view(np.float32))


def _band_quantity(name: str) -> str:
    return next(band.quantity for band in BANDS if band.name == name)


def _tile_chunk_files(
    path: Location, definition: Level3Definition, tile: GridTile
) -> list[Location]:
    """The files (objects) that hold the tile's chunks (existing or not), in every array."""
    group = zarr.open_group(path.zarr_store(), mode="r", zarr_format=definition.config.zarr_format)
    region = definition.region(tile)
    px = definition.spec.tile_px
    j, i = region["y"].start // px, region["x"].start // px
    n_time_chunks = -(-len(definition.times) // definition.config.time_chunk)
    files = []
    for name in (*_BAND_NAMES, *QUALITY_VARIABLES):
        array = group[name]  # its metadata encodes v2 (t.j.i) or v3 (c/t/j/i) chunk keys
        if len(array.shape) == 3:
            keys = [array.metadata.encode_chunk_key((t, j, i)) for t in range(n_time_chunks)]
        else:
            keys = [array.metadata.encode_chunk_key((j, i))]
        files += [path / name / key for key in keys]
    return files


def _fsync_tile_chunks(path: Location, definition: Level3Definition, tile: GridTile) -> None:
    """Flush the tile's chunk files to disk, so that its record never outlives its data
    in a machine crash (a process crash needs no flush). Objects are durable once PUT."""
    if not path.is_local:
        return
    for chunk in _tile_chunk_files(path, definition, tile):
        if chunk.local_path.exists():  # all-NaN chunks are not written
            _fsync(chunk.local_path)


def _withdraw_tile(path: Location, definition: Level3Definition, tile: GridTile) -> None:
    """Before a tile is (re)written: remove its completion record (the commit file first,
    flushed), then its old chunks. A rewrite that fails half-way then leaves a tile without
    a record (missing, computed again), never old and new chunks under an old record; and
    chunks the new data leave unwritten (all NaN) do not keep old values."""
    record = path / _COMPLETED / tile.tile_id
    commit = record / _ATTRIBUTES_FILE[definition.config.zarr_format]
    chunks = _tile_chunk_files(path, definition, tile)
    if not path.is_local:
        commit.remove()  # before the chunks: one DELETE, then the rest in batches
        record.remove()
        found = [c.path for c in chunks if c.fs.exists(c.path)] if chunks else []
        if found:
            path.fs.rm(found)
        return
    if commit.local_path.exists():
        commit.local_path.unlink()
        _fsync(record.local_path)
    if record.local_path.exists():
        shutil.rmtree(record.local_path)
    for chunk in chunks:
        chunk.local_path.unlink(missing_ok=True)


def _write_record(
    path: Location, tile: GridTile, provenance: dict, zarr_format: _ZarrFormat
) -> Location:
    """Atomically write the Zarr group ``completed/<tile_id>`` whose attributes are the
    record, and return its attributes file (the commit: v3 ``zarr.json``, v2 ``.zattrs``)."""
    record = {
        "tile_id": tile.tile_id,
        "epsg": tile.epsg,
        "bounds": list(tile.bounds),
        "written_at": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "provenance": provenance,
    }
    directory = path / _COMPLETED / tile.tile_id
    directory.make_dirs()
    for name, document in _group_documents({_RECORD_ATTR: record}, zarr_format).items():
        (directory / name).write_json(document)
    if directory.is_local:
        _fsync(directory.local_path)
    return directory / _ATTRIBUTES_FILE[zarr_format]


def _group_documents(attributes: dict, zarr_format: _ZarrFormat) -> dict[str, dict]:
    """The metadata files of a Zarr group with ``attributes``, the attributes file last."""
    if zarr_format == 3:
        return {"zarr.json": {"zarr_format": 3, "node_type": "group", "attributes": attributes}}
    return {".zgroup": {"zarr_format": 2}, ".zattrs": attributes}


# --------------------------------------------------------------- consolidated metadata


def consolidate(path: str | Path | Location) -> Path | str:
    """Rewrite the store's consolidated metadata from its node files, atomically.

    :func:`create_store` writes it and nothing a run does changes it (the completion records
    are not part of it), so this is for the end of a run: it gives a store made before
    consolidation its consolidated metadata, and refreshes it after metadata files were
    edited by hand. Readers never see a partial file; tile writers never call it.

    Returns:
        The file that holds it: the root ``zarr.json`` (v3) or ``.zmetadata`` (v2).

    Raises:
        ValueError: ``path`` is not a Level-3 store.
    """
    location = Location.of(path)
    return _write_consolidated(location, read_definition(location).config.zarr_format).native()


def _write_consolidated(path: Location, zarr_format: _ZarrFormat) -> Location:
    """Write the consolidated metadata of the root, its arrays and the ``completed`` group
    without its records, in model band order (:func:`_node_rank`); return its file."""
    name = _CONSOLIDATED_FILE[zarr_format]
    with tempfile.TemporaryDirectory(prefix="tamrf-level3-metadata-") as directory:
        # zarr consolidates a whole hierarchy in place and writes the file non-atomically:
        # let it work on a copy of the metadata files of the root and its children only.
        mirror = Path(directory)
        children = [c for c in path.children() if not c.name.startswith(".") and c.is_dir()]
        for node, relative in ((path, "."), *((c, c.name) for c in children)):
            for file_name in _NODE_FILES:
                if (node / file_name).is_file():
                    (mirror / relative).mkdir(parents=True, exist_ok=True)
                    (mirror / relative / file_name).write_bytes((node / file_name).read_bytes())
        with warnings.catch_warnings():
            # zarr-python warns on every v3 consolidation that consolidated metadata is not
            # part of the v3 spec yet (zarr-specs#309). Known and accepted: zarr-python and
            # xarray read it (one request opens the store); readers that do not know it
            # (GDAL) read the per-node files, which stay complete.
            warnings.filterwarnings("ignore", _V3_CONSOLIDATION_WARNING, ZarrUserWarning)
            zarr.consolidate_metadata(mirror, zarr_format=zarr_format)
        document = json.loads((mirror / name).read_text())
    # zarr sorts the nodes by name; xarray lists the variables in the order written here.
    holder = document["consolidated_metadata"] if zarr_format == 3 else document
    entries = holder["metadata"].items()
    holder["metadata"] = dict(sorted(entries, key=lambda item: _node_rank(item[0], zarr_format)))
    (path / name).write_json(document)
    return path / name


def _node_rank(key: str, zarr_format: _ZarrFormat) -> tuple[int, int, str]:
    """Sort key of a consolidated metadata entry: the root, the bands in model order, the
    quality layers, the coordinates, then anything else by name. v2 keys are files
    (``LS_B1/.zarray``), v3 keys nodes (``LS_B1``)."""
    node = key.rpartition("/")[0] if zarr_format == 2 else key
    order = (*_BAND_NAMES, *QUALITY_VARIABLES, *_COORDINATES)
    if node == "":
        return (0, 0, "")
    if node in order:
        return (1, order.index(node), node)
    return (2, 0, node)


# ----------------------------------------------------------------------------- helpers


def _fsync(file: Path) -> None:
    descriptor = os.open(file, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _json_value(value: dict, what: str) -> dict:
    """``value`` as it reads back from JSON (tuples become lists), or a clear error."""
    try:
        return json.loads(json.dumps(value, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise ValueError(
            f"{what} must be JSON-serialisable (str, number, bool, None, list, dict; no "
            f"NaN, datetime or numpy values): {exc}"
        ) from exc


def _is_nonempty(path: Path) -> bool:
    return Location.of(path).is_nonempty()


def _removal(path: Location) -> str:
    """The command that deletes a store, for error messages."""
    return f"rm -r {path}" if path.is_local else f"delete every object under {path}"
