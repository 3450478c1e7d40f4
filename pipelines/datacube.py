"""Analysis-ready Sentinel-2 and Landsat datacubes on the output grid (lazy, dask-backed).

From STAC items of one sensor to an ``xarray.Dataset`` on a 10 m
:class:`~tamrf_xr.grid.RasterGrid` (checked by :func:`check_cube_grid`):

- ``observations`` (time, band, y, x) float32: reflectance, and LST in Kelvin for ``LS_B10``,
  each item's DNs scaled by the rule its catalog profile decides for it (recorded per item);
  NaN where there is no data. Sentinel-2 at 10 m (its 20 m bands read at 20 m, then bicubic x2,
  see :mod:`tamrf_xr.resample`), Landsat at 30 m.
- ``valid`` (time, y, x) bool: clear of cloud, shadow, fill and saturation after the
  morphological clean-up of :mod:`tamrf_xr.masking`, with data in every reflectance band.
  ``LS_B10`` is NaN on L2SR dates (no thermal band) without making the date invalid.
- ``clear_fraction`` (time,): the share of the grid that the quality layers call clear.
- per-date coordinates ``item_ids``, ``platform``, ``cloud_cover`` (mean of the items'
  ``eo:cloud_cover``), ``n_items``; attributes recording every item, its assets and scaling rule,
  and the dates dropped for too little clear area (with the reason).

A broken asset (404, truncated or corrupt) reads as no data (:mod:`pipelines.asset_reader`):
a reflectance band's date keeps its other bands (``valid`` is False where a band has no data);
a date whose clear-sky layer (S2 ``SCL``, Landsat ``QA_PIXEL``) is unreadable for every item
has no clear pixel, so the date filter drops it with that reason (its pixels cannot be told
from clouds); without the filter (``min_valid_fraction`` 0) it stays, every pixel invalid.

Items of one sensor acquired the same (local solar) day, e.g. overlapping S2 tiles or adjacent
Landsat rows, are merged into one date: each pixel comes from the first item (by time, then id)
that has data there. Each layer is read on the grid grown by the halo its processing needs
(the quality layers: the morphology's; S2 20 m bands: the bicubic kernel's; 10 m and Landsat
bands: none), so that adjacent grids get the same values and masks as one large grid would.
Assets on the grid's pixel lattice are read with plain windowed reads, others are warped (see
:mod:`pipelines.asset_reader`); each date is one read task per group of layers and one task
each for its merge, masks and observations.

The quality layers (S2 SCL; Landsat QA_PIXEL, QA_RADSAT, QA_AEROSOL) are read and cleaned
once per cube. Without the date filter (``min_valid_fraction`` 0) building a cube reads
nothing; computing it reads every layer once, the masks serving ``valid`` and
``clear_fraction`` alike. With the filter, building the cube reads the quality layers alone and
keeps the masks (and the per-pixel choice of item for the merge) in memory, or on the workers
of an active distributed client (``dask.persist``): the filter's clear fractions come from
them, and computing the cube reads only the band data of the dates kept.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import dask
import dask.array as da
import numpy as np
import pystac
import xarray as xr
from pyproj import CRS

from pipelines.asset_reader import BrokenAssetLog, read_assets, stac_item_dicts
from pipelines.catalogs import CatalogProfile, ScalingRule
from pipelines.georef import with_grid_mapping
from pipelines.grid import LANDSAT_FACTOR, NEST_M
from pipelines.redaction import redact_url
from tamrf_xr.bands import LANDSAT_BANDS, S2_BANDS
from tamrf_xr.grid import RasterGrid
from tamrf_xr.masking import MaskConfig, landsat_invalid, s2_invalid
from tamrf_xr.resample import UPSAMPLE_HALO, upsample_bicubic

__all__ = [
    "CubeConfig",
    "assemble_landsat",
    "assemble_s2",
    "broken_assets",
    "check_cube_grid",
    "cube_summary",
    "solar_date",
]


@dataclass(frozen=True)
class CubeConfig:
    """How cubes are assembled."""

    min_valid_fraction: float = 0.25
    """Dates whose clear share of the grid is below this are dropped (the training rule of the
    model: a date counts when >= 25 % of its pixels are clear); 0 keeps every date and keeps
    assembly entirely lazy."""
    s2_resampling: str = "nearest"
    """Warping of S2 bands whose native grid differs from the output grid (another CRS or
    offset); assets already on the grid are copied, never resampled."""
    landsat_resampling: str = "bilinear"
    """Warping of Landsat bands onto the output 30 m grid (USGS grids are offset by 15 m from
    a 30 m-anchored grid). Quality layers are always read with nearest."""
    masks: MaskConfig = field(default_factory=MaskConfig)

    def __post_init__(self) -> None:
        if not 0.0 <= self.min_valid_fraction <= 1.0:
            raise ValueError(f"min_valid_fraction must be in [0, 1], got {self.min_valid_fraction}")


def check_cube_grid(grid: RasterGrid) -> None:
    """Raise unless ``grid`` can carry a cube: a projected CRS in metres, and edges on
    multiples of 60 m (for a 10 m grid; scaled with its resolution) so that the 10, 20 and
    30 m grids nest. :meth:`pipelines.grid.GridTile.grid` builds such grids."""
    crs = CRS.from_epsg(grid.epsg)
    unit = crs.axis_info[0].unit_name if crs.axis_info else ""
    if not crs.is_projected or unit not in ("metre", "meter"):
        raise ValueError(
            f"EPSG:{grid.epsg} ({crs.name}) is not a projected CRS in metres: cubes live on "
            "UTM grids (e.g. EPSG:32631); take the tile CRS from pipelines.grid.tiles_for_aoi"
        )
    step = NEST_M * grid.resolution / 10.0
    if not grid.nests(step):
        raise ValueError(
            f"grid bounds {grid.bounds} are not on multiples of {step:g} m, so the 10, 20 "
            "and 30 m grids would not nest: snap them (GridTile.grid bounds always are)"
        )


def solar_date(item: Mapping[str, Any]) -> dt.date:
    """The local solar date of an item (UTC time shifted by the longitude of its centre), so
    that one overpass is one date even where it straddles midnight UTC."""
    when = dt.datetime.fromisoformat(item["properties"]["datetime"].replace("Z", "+00:00"))
    bbox = item["bbox"]
    west, east = bbox[0], bbox[len(bbox) // 2]  # 2-D and 3-D bboxes
    return (when + dt.timedelta(hours=((west + east) / 2) / 15.0)).date()


# ---------------------------------------------------------------------------------------------
# Item checks and grouping
# ---------------------------------------------------------------------------------------------


def _check_items(
    docs: Sequence[Mapping[str, Any]],
    collections: Sequence[str],
    required: Mapping[str, str],
    profile: CatalogProfile,
    sensor: str,
) -> None:
    for doc in docs:
        if doc.get("collection") not in collections:
            raise ValueError(
                f"item {doc.get('id')!r} is in collection {doc.get('collection')!r}, not a "
                f"{sensor} collection of profile {profile.name!r} ({list(collections)}): pass "
                f"{sensor} items only, or choose the profile of their catalog"
            )
        missing = sorted(k for k in required.values() if k not in doc.get("assets", {}))
        if missing:
            raise ValueError(
                f"item {doc.get('id')!r} has no asset(s) {missing} that catalog profile "
                f"{profile.name!r} expects (its assets: {sorted(doc.get('assets', {}))}): "
                "choose the profile of the catalog these items come from"
            )


def _groups(docs: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[list[int]]]:
    """Items sorted by (solar date, time, id) and the indices of each date's items."""
    ordered = sorted(docs, key=lambda d: (solar_date(d), d["properties"]["datetime"], d["id"]))
    groups: dict[dt.date, list[int]] = {}
    for index, doc in enumerate(ordered):
        groups.setdefault(solar_date(doc), []).append(index)
    return ordered, list(groups.values())


def _per_date(kernel: Callable[..., np.ndarray], shape: tuple[int, ...], dtype: Any,
              *arrays: da.Array) -> da.Array:  # fmt: skip
    """(date, *shape): one task per date, ``kernel(*blocks)[None]`` on the date's blocks.

    Every array in ``arrays`` has one chunk per date along axis 0 (the date's items, or the
    date itself) and one chunk along its other axes; ``kernel`` returns an array of ``shape``.
    """
    args: list[Any] = []
    for n, array in enumerate(arrays):
        args += [array, ("date", *(f"in{n}-{axis}" for axis in range(1, array.ndim)))]
    out_axes = tuple(f"out-{axis}" for axis in range(len(shape)))
    return da.blockwise(
        functools.partial(_with_date_axis, kernel), ("date", *out_axes), *args,
        new_axes=dict(zip(out_axes, shape, strict=True)), adjust_chunks={"date": 1},
        align_arrays=False, concatenate=False, dtype=dtype,
        meta=np.empty((0,) * (len(shape) + 1), dtype),
    )  # fmt: skip


def _with_date_axis(kernel: Callable[..., np.ndarray], *blocks: Any) -> np.ndarray:
    return kernel(*(_only_block(b) for b in blocks))[None]


def _only_block(block: Any) -> np.ndarray:
    """The block that blockwise passes in nested lists, one level per axis that the output
    lacks: one block each here (concatenating them would copy every input)."""
    while isinstance(block, list):
        (block,) = block
    return block


def _first_with_data(has_data: np.ndarray) -> np.ndarray:
    """(item, h, w) bool -> (h, w) uint8: per pixel, the first item of the date with data
    there; the last item where none has (whose values, NaN or not, the date then shows)."""
    first = np.argmax(has_data, axis=0).astype(np.uint8)  # argmax: the first True, else 0
    first[~has_data.any(axis=0)] = has_data.shape[0] - 1
    return first


def _take(values: np.ndarray, source: np.ndarray) -> np.ndarray:
    """(item, ..., h, w) -> (..., h, w): each pixel from the item ``source`` (h, w) names."""
    if values.shape[0] == 1:
        return values[0]
    index = source.astype(np.intp).reshape(1, *(1,) * (values.ndim - 3), *source.shape)
    return np.take_along_axis(values, index, axis=0)[0]


def _scaling_table(rules: list[list[ScalingRule]], sizes: list[int]) -> da.Array:
    """(item, band, 3) float32 scale, offset and no-data DN (NaN: none), chunked by date."""
    table = np.array(
        [[(r.scale, r.offset, np.nan if r.nodata is None else r.nodata) for r in row]
         for row in rules], np.float32,
    )  # fmt: skip
    return da.from_array(table, chunks=(tuple(sizes), -1, -1))


def _scale(raw: np.ndarray, table: np.ndarray) -> np.ndarray:
    """(item, band, h, w) DNs -> float32 ``DN * scale + offset``, NaN where DN is no data.

    ``table`` is (item, band or 1, 3) (see :func:`_scaling_table`)."""
    scale, offset, nodata = (table[..., i, None, None] for i in range(3))
    values = np.multiply(raw, scale)
    values += offset
    values[raw == nodata] = np.nan
    return values


def _crop(array: np.ndarray, halo_px: int) -> np.ndarray:
    """(..., h, w) -> (..., h - 2 halo_px, w - 2 halo_px), a view."""
    if halo_px == 0:
        return array
    return array[..., halo_px:-halo_px, halo_px:-halo_px]


def _halo_m(pixels_10m: int) -> float:
    """A halo of at least ``pixels_10m`` 10 m pixels, rounded up to the 60 m nesting step."""
    return math.ceil(pixels_10m * 10.0 / NEST_M) * NEST_M


# ---------------------------------------------------------------------------------------------
# Dataset building (shared by both sensors)
# ---------------------------------------------------------------------------------------------


def _date_metadata(ordered: list[dict[str, Any]], groups: list[list[int]]) -> dict[str, Any]:
    def mean_cover(group: list[int]) -> float:
        covers = [ordered[i]["properties"].get("eo:cloud_cover") for i in group]
        covers = [c for c in covers if c is not None]
        return float(np.mean(covers)) if covers else float("nan")

    times = [
        np.datetime64(
            dt.datetime.fromisoformat(
                ordered[g[0]]["properties"]["datetime"].replace("Z", "+00:00")
            ).replace(tzinfo=None),
            "ns",
        )
        for g in groups
    ]
    return {
        "time": ("time", np.array(times, dtype="datetime64[ns]")),
        "item_ids": ("time", np.array([" ".join(ordered[i]["id"] for i in g) for g in groups])),
        "platform": (
            "time",
            np.array(
                [
                    " ".join(sorted({str(ordered[i]["properties"].get("platform")) for i in g}))
                    for g in groups
                ]
            ),
        ),
        "cloud_cover": ("time", np.array([mean_cover(g) for g in groups], np.float32)),
        "n_items": ("time", np.array([len(g) for g in groups], np.int16)),
    }


def _item_records(
    ordered: list[dict[str, Any]],
    asset_keys: Mapping[str, str],
    rules: list[dict[str, ScalingRule]],
) -> list[dict[str, Any]]:
    records = []
    for doc, item_rules in zip(ordered, rules, strict=True):
        assets = doc.get("assets", {})
        records.append(
            {
                "id": doc["id"],
                "collection": doc.get("collection"),
                "datetime": doc["properties"]["datetime"],
                "date": solar_date(doc).isoformat(),
                "platform": doc["properties"].get("platform"),
                # Redacted: the records are kept (tile records, logs), signatures must not be.
                "hrefs": {
                    b: redact_url(assets[k]["href"]) for b, k in asset_keys.items() if k in assets
                },
                "scaling": {b: r.to_dict() for b, r in item_rules.items()},
            }
        )
    return records


def _dataset(
    *,
    sensor: str,
    grid: RasterGrid,
    resolution: float,
    bands: Sequence[str],
    units: Sequence[str],
    observations: da.Array,
    valid: da.Array,
    clear: da.Array,
    ordered: list[dict[str, Any]],
    groups: list[list[int]],
    records: list[dict[str, Any]],
    profile: CatalogProfile,
    config: CubeConfig,
    broken_log: BrokenAssetLog | None,
) -> xr.Dataset:
    spec = grid.at(resolution)
    y, x = spec.coords()
    coords = {"band": list(bands), "units": ("band", list(units)), "y": y, "x": x}
    coords |= _date_metadata(ordered, groups) if groups else {
        "time": ("time", np.array([], "datetime64[ns]")), "item_ids": ("time", np.array([], str)),
        "platform": ("time", np.array([], str)), "cloud_cover": ("time", np.array([], np.float32)),
        "n_items": ("time", np.array([], np.int16))}  # fmt: skip
    ds = xr.Dataset(
        {
            "observations": (("time", "band", "y", "x"), observations),
            "valid": (("time", "y", "x"), valid),
            "clear_fraction": ("time", clear.mean(axis=(-2, -1)).astype(np.float32)),
        },
        coords=coords,
        attrs={
            "sensor": sensor,
            "catalog_profile": profile.name,
            "epsg": grid.epsg,
            "resolution_m": resolution,
            "min_valid_fraction": config.min_valid_fraction,
            "items": json.dumps(records),
            "dropped_dates": "[]",
            "broken_asset_log": "" if broken_log is None else str(broken_log.directory),
        },
    )
    ds["observations"].attrs = {
        "long_name": f"{sensor} surface reflectance (1) and surface temperature (K)",
        "_nodata": "NaN",
    }
    ds["valid"].attrs = {"long_name": "clear observation with data in every reflectance band"}
    ds["clear_fraction"].attrs = {"long_name": "share of the grid clear in the quality layers"}
    west, _, _, north = spec.bounds
    ds = with_grid_mapping(ds, grid.epsg, west, north, resolution)
    return _drop_sparse_dates(ds, config.min_valid_fraction)


_CLEAR_SKY_LAYER = {"sentinel-2": "SCL", "landsat": "QA_PIXEL"}
"""The quality layer that tells clear pixels from clouds and fill, per sensor."""


def _drop_sparse_dates(ds: xr.Dataset, minimum: float) -> xr.Dataset:
    """Drop the dates whose clear fraction is below ``minimum``, recording each with a reason."""
    if minimum <= 0 or ds.sizes["time"] == 0:
        return ds
    fractions = ds["clear_fraction"].values  # from the masks persisted by _read_once
    # Read by now: the quality layers that failed are in the broken-asset log.
    layer = _CLEAR_SKY_LAYER[ds.attrs["sensor"]]
    unreadable = {a["item_id"] for a in broken_assets(ds) if a["band"] == layer}

    def reason(i: int) -> str:
        ids = str(ds["item_ids"].values[i]).split()
        blind = [item for item in ids if item in unreadable]
        if blind and len(blind) == len(ids):
            return (f"quality layer {layer} unreadable (broken asset of {', '.join(blind)}): "
                    "its clear pixels cannot be told from clouds")  # fmt: skip
        why = (
            "no data over the grid"
            if fractions[i] == 0
            else f"clear fraction {fractions[i]:.3f} < min_valid_fraction {minimum}"
        )
        return why + (f"; quality layer {layer} unreadable for {', '.join(blind)}" if blind else "")

    keep = fractions >= minimum
    dropped = [
        {
            "date": str(np.datetime_as_string(ds["time"].values[i], unit="s")),
            "item_ids": str(ds["item_ids"].values[i]),
            "clear_fraction": round(float(fractions[i]), 6),
            "reason": reason(i),
        }
        for i in np.flatnonzero(~keep)
    ]
    out = ds.isel(time=np.flatnonzero(keep))
    out["clear_fraction"] = ("time", fractions[keep].astype(np.float32), ds.clear_fraction.attrs)
    out.attrs["dropped_dates"] = json.dumps(dropped)
    return out


def _empty(shape: tuple[int, ...], dtype: Any) -> da.Array:
    """A lazy array with no dates (one chunk: dask's automatic chunking divides by the
    zero-length axis on large grids)."""
    return da.zeros(shape, dtype=dtype, chunks=-1)


# ---------------------------------------------------------------------------------------------
# Sentinel-2
# ---------------------------------------------------------------------------------------------


def _s2_halo_px(masks: MaskConfig) -> int:
    """10 m pixels of SCL that reach a mask pixel through opening, closing and dilation."""
    return 2 * masks.s2_opening_px + 2 * masks.s2_closing_px + masks.s2_dilation_px


def _s2_halos_m(masks: MaskConfig) -> tuple[float, float]:
    """Halos (m) read around the grid: of the SCL (the morphology's reach, and at least the
    20 m bands' halo, which the SCL's merge serves), and of the 20 m bands (the bicubic
    kernel's). The 10 m bands need none: every step on them is per pixel."""
    bands20 = _halo_m(2 * UPSAMPLE_HALO)
    return max(_halo_m(_s2_halo_px(masks)), bands20), bands20


def _s2_source(scl: np.ndarray) -> np.ndarray:
    """(item, 1, h, w) SCL of a date's items -> (h, w) uint8: the item each 20 m pixel
    comes from (SCL 0 is no data)."""
    return _first_with_data(np.isfinite(scl[:, 0]) & (scl[:, 0] != 0))


def _s2_clear(scl: np.ndarray, source: np.ndarray, *, masks: MaskConfig, halo10: int
              ) -> np.ndarray:  # fmt: skip
    """(item, 1, h, w) SCL at 20 m, (1, h, w) :func:`_s2_source` -> (2h - 2 halo10,
    2w - 2 halo10) bool clear at 10 m (classes at 20 m, morphology at 10 m)."""
    merged = np.nan_to_num(_take(scl[:, 0], source[0]), nan=0).astype(np.uint8)
    return ~_crop(s2_invalid(merged, masks, factor=2), halo10)


_S2_10M = [i for i, b in enumerate(S2_BANDS) if b.native_resolution == 10]
_S2_20M = [i for i, b in enumerate(S2_BANDS) if b.native_resolution == 20]


def _runs(indices: list[int]) -> list[tuple[int, int]]:
    """[3, 4, 5, 7, 8, 9] -> [(3, 6), (7, 10)]: runs of consecutive indices as slices."""
    runs: list[tuple[int, int]] = []
    for i in indices:
        if runs and runs[-1][1] == i:
            runs[-1] = (runs[-1][0], i + 1)
        else:
            runs.append((i, i + 1))
    return runs


def _scale_into(raw: np.ndarray, table: np.ndarray, out: np.ndarray) -> None:
    """:func:`_scale` of one item's (band, h, w) DNs, ``table`` (band or 1, 3), into ``out``."""
    scale, offset, nodata = (table[..., i, None, None] for i in range(3))
    np.multiply(raw, scale, out=out)
    out += offset
    if not np.isnan(nodata).all():  # a NaN no-data value matches no DN
        out[np.broadcast_to(raw == nodata, out.shape)] = np.nan


def _s2_observations(raw10: np.ndarray, raw20: np.ndarray, source20: np.ndarray,
                     table: np.ndarray, *, halo20: int, scl_margin: int) -> np.ndarray:  # fmt: skip
    """A date's reflectance, (band, H, W) float32 in model order, from its items' DNs:
    ``raw10`` (item, 4, H, W) on the grid, ``raw20`` (item, 6, H/2 + 2 halo20, ...) on the
    20 m grid grown by ``halo20`` pixels, ``source20`` (1, ...) (:func:`_s2_source`) on the
    SCL's grid, ``scl_margin`` pixels wider, ``table`` (item, 1, 3) (:func:`_scale`).

    10 m bands come from the first item with data in any of them; 20 m bands from the item
    with SCL data, upsampled on the grid plus the bicubic kernel's reach (the outputs kept
    never read the edge pixels that the upsampling repeats). Each band is written straight
    into the date's block (one item: scaled there; 20 m bands: upsampled there).
    """
    out = np.empty((len(S2_BANDS), *raw10.shape[-2:]), np.float32)
    if raw10.shape[0] == 1:
        first = 0
        for start, stop in _runs(_S2_10M):
            _scale_into(raw10[0, first : first + stop - start], table[0], out[start:stop])
            first += stop - start
    else:
        values10 = _scale(raw10, table)
        out[_S2_10M] = _take(values10, _first_with_data(np.isfinite(values10).any(axis=1)))
    merged20 = _take(_scale(raw20, table), _crop(source20[0], scl_margin))
    merged20 = _crop(merged20, halo20 - UPSAMPLE_HALO)
    first = 0
    for start, stop in _runs(_S2_20M):
        upsample_bicubic(merged20[first : first + stop - start], 2, crop=2 * UPSAMPLE_HALO,
                         out=out[start:stop])  # fmt: skip
        first += stop - start
    return out


def _read_once(config: CubeConfig, *arrays: da.Array) -> tuple[da.Array, ...]:
    """``arrays`` (derived from the quality layers), persisted when the date filter is on:
    the filter's clear fractions, the cube's ``valid`` and the merging of the date's items
    then use the masks computed once (kept in memory, or on the workers of an active
    distributed client), and the quality layers are never read again."""
    if config.min_valid_fraction <= 0:
        return arrays
    return dask.persist(*arrays)


def assemble_s2(
    items: Sequence[pystac.Item | Mapping[str, Any]],
    grid: RasterGrid,
    profile: CatalogProfile,
    config: CubeConfig | None = None,
    broken_log: BrokenAssetLog | None = None,
) -> xr.Dataset:
    """The Sentinel-2 L2A cube of ``items`` at 10 m (see the module docstring).

    Args:
        items: S2 items of ``profile``'s catalog (pystac items or dicts).
        grid: the 10 m output grid (see :func:`check_cube_grid`).
        profile: the catalog's conventions (asset keys, scaling).
        config: assembly options.
        broken_log: where unreadable assets are recorded.

    Returns:
        Dataset with ``observations`` (time, band=10, y, x), ``valid`` (time, y, x) and
        ``clear_fraction`` (time,); ``band`` in model order (S2_B2 ... S2_B12).

    Raises:
        ValueError: a grid that cannot carry a cube, items of another collection, or items
            without the profile's assets.
    """
    check_cube_grid(grid)
    config = config or CubeConfig()
    docs = stac_item_dicts(items)
    keys = profile.s2_asset_keys()
    _check_items(docs, profile.s2_collections, keys, profile, "Sentinel-2")
    names = [b.name for b in S2_BANDS]
    rows, cols = grid.shape
    if not docs:
        return _dataset(
            sensor="sentinel-2", grid=grid, resolution=grid.resolution, bands=names,
            units=["1"] * len(names), observations=_empty((0, len(names), rows, cols), np.float32),
            valid=_empty((0, rows, cols), bool), clear=_empty((0, rows, cols), bool),
            ordered=[], groups=[], records=[], profile=profile, config=config,
            broken_log=broken_log,
        )  # fmt: skip

    ordered, groups = _groups(docs)
    sizes = [len(g) for g in groups]
    scl_halo_m, halo20_m = _s2_halos_m(config.masks)
    env = profile.gdal_env([d["assets"][keys["S2_B2"]]["href"] for d in ordered])

    def read(resolution: float, halo_m: float, bands: list[str], resampling: str) -> da.Array:
        """(item, band, y, x) DNs on the grid grown by ``halo_m``, one chunk per date."""
        return read_assets(
            ordered, [keys[b] for b in bands], grid.at(resolution).grown(halo_m),
            resampling=resampling, item_chunks=sizes, gdal_env=env, broken_log=broken_log,
        ).data  # fmt: skip

    scl = read(20.0, scl_halo_m, ["SCL"], "nearest")
    h20, w20 = scl.shape[-2:]
    source20 = _per_date(_s2_source, (h20, w20), np.uint8, scl)
    kernel = functools.partial(_s2_clear, masks=config.masks, halo10=round(scl_halo_m / 10.0))
    clear = _per_date(kernel, (rows, cols), bool, scl, source20)
    source20, clear = _read_once(config, source20, clear)

    by_resolution = {r: [b.name for b in S2_BANDS if b.native_resolution == r] for r in (10, 20)}
    rules = [profile.s2_scaling(doc) for doc in ordered]
    observations = _per_date(
        functools.partial(_s2_observations, halo20=round(halo20_m / 20.0),
                          scl_margin=round((scl_halo_m - halo20_m) / 20.0)),
        (len(names), rows, cols), np.float32,
        read(10.0, 0.0, by_resolution[10], config.s2_resampling),
        read(20.0, halo20_m, by_resolution[20], config.s2_resampling), source20,
        _scaling_table([[r] for r in rules], sizes),
    )  # fmt: skip
    valid = clear & da.isfinite(observations).all(axis=1)

    records = _item_records(ordered, keys, [dict.fromkeys(names, r) for r in rules])
    return _dataset(
        sensor="sentinel-2", grid=grid, resolution=grid.resolution, bands=names,
        units=["1"] * len(names), observations=observations, valid=valid, clear=clear,
        ordered=ordered, groups=groups, records=records, profile=profile, config=config,
        broken_log=broken_log,
    )  # fmt: skip


# ---------------------------------------------------------------------------------------------
# Landsat
# ---------------------------------------------------------------------------------------------


def _landsat_source(qa: np.ndarray) -> np.ndarray:
    """(item, 3, h, w) QA_PIXEL, QA_RADSAT, QA_AEROSOL of a date's items -> (h, w) uint8: the
    item each pixel comes from (QA_PIXEL bit 0 is fill)."""
    pixel = qa[:, 0]
    return _first_with_data(np.isfinite(pixel) & (np.fmod(pixel, 2) == 0))


def _landsat_clear(qa: np.ndarray, source: np.ndarray, *, masks: MaskConfig, halo30: int
                   ) -> np.ndarray:  # fmt: skip
    """(item, 3, h, w) quality layers, (1, h, w) :func:`_landsat_source` -> (h - 2 halo30,
    w - 2 halo30) bool clear."""
    merged = _take(qa, source[0])
    pixel = np.nan_to_num(merged[0], nan=1).astype(np.uint16)  # no data = fill
    radsat = np.nan_to_num(merged[1], nan=0).astype(np.uint16)
    aerosol = np.nan_to_num(merged[2], nan=0).astype(np.uint8)
    return ~_crop(landsat_invalid(pixel, radsat, aerosol, masks), halo30)


def _landsat_observations(raw: np.ndarray, source: np.ndarray, table: np.ndarray, *,
                          halo30: int) -> np.ndarray:  # fmt: skip
    """A date's (band, H, W) float32 values from its items' (item, band, H, W) DNs on the
    grid, each pixel from the item that ``source`` (1, H + 2 halo30, W + 2 halo30)
    (:func:`_landsat_source`, on the quality layers' grid) names."""
    return _take(_scale(raw, table), _crop(source[0], halo30))


def assemble_landsat(
    items: Sequence[pystac.Item | Mapping[str, Any]],
    grid: RasterGrid,
    profile: CatalogProfile,
    config: CubeConfig | None = None,
    broken_log: BrokenAssetLog | None = None,
) -> xr.Dataset:
    """The Landsat-8/9 C2 L2 cube of ``items`` at 30 m on ``grid``'s bounds.

    Items in another CRS (southern-hemisphere scenes in the northern UTM zone with negative
    northings, a neighbouring zone) are warped onto the grid's CRS. Arguments, return value
    and errors as :func:`assemble_s2`; ``band`` is LS_B1 ... LS_B7, LS_B10 (Kelvin).
    """
    check_cube_grid(grid)
    config = config or CubeConfig()
    if profile.landsat_collection is None:
        raise ValueError(f"catalog profile {profile.name!r} has no Landsat collection")
    docs = stac_item_dicts(items)
    keys = profile.landsat_asset_keys()
    optional = {"LS_B10", "QA_AEROSOL"}  # L2SR items lack lwir11; some catalogs lack aerosol
    _check_items(
        docs, (profile.landsat_collection,),
        {b: k for b, k in keys.items() if b not in optional}, profile, "Landsat",
    )  # fmt: skip
    names = [b.name for b in LANDSAT_BANDS]
    units = ["K" if b.quantity == "temperature" else "1" for b in LANDSAT_BANDS]
    resolution = grid.resolution * LANDSAT_FACTOR
    rows, cols = grid.at(resolution).shape
    if not docs:
        return _dataset(
            sensor="landsat", grid=grid, resolution=resolution, bands=names, units=units,
            observations=_empty((0, len(names), rows, cols), np.float32),
            valid=_empty((0, rows, cols), bool), clear=_empty((0, rows, cols), bool),
            ordered=[], groups=[], records=[], profile=profile, config=config,
            broken_log=broken_log,
        )  # fmt: skip

    ordered, groups = _groups(docs)
    sizes = [len(g) for g in groups]
    masks = config.masks
    halo_m = _halo_m(LANDSAT_FACTOR * (masks.landsat_fill_dilation_px + masks.landsat_dilation_px))
    halo30 = round(halo_m / resolution)
    env = profile.gdal_env([d["assets"][keys["LS_B1"]]["href"] for d in ordered])

    def read(halo_m: float, asset_keys: list[str], resampling: str) -> da.Array:
        """(item, asset, y, x) DNs on the grid grown by ``halo_m``, one chunk per date."""
        return read_assets(
            ordered, asset_keys, grid.at(resolution).grown(halo_m), resampling=resampling,
            item_chunks=sizes, gdal_env=env, broken_log=broken_log,
        ).data  # fmt: skip

    # The quality layers are read with the halo of the mask's dilation; the bands need none.
    qa_keys = [keys.get(k, "qa_aerosol") for k in ("QA_PIXEL", "QA_RADSAT", "QA_AEROSOL")]
    qa = read(halo_m, qa_keys, "nearest")
    source = _per_date(_landsat_source, qa.shape[-2:], np.uint8, qa)
    kernel = functools.partial(_landsat_clear, masks=masks, halo30=halo30)
    clear = _per_date(kernel, (rows, cols), bool, qa, source)
    source, clear = _read_once(config, source, clear)

    rules = [profile.landsat_scaling(n) for n in names]
    observations = _per_date(
        functools.partial(_landsat_observations, halo30=halo30), (len(names), rows, cols),
        np.float32, read(0.0, [keys[n] for n in names], config.landsat_resampling), source,
        _scaling_table([rules] * len(ordered), sizes),
    )  # fmt: skip
    reflectance = [i for i, b in enumerate(LANDSAT_BANDS) if b.quantity != "temperature"]
    valid = clear & da.isfinite(observations[:, reflectance]).all(axis=1)

    records = _item_records(ordered, keys, [dict(zip(names, rules, strict=True))] * len(ordered))
    return _dataset(
        sensor="landsat", grid=grid, resolution=resolution, bands=names, units=units,
        observations=observations, valid=valid, clear=clear, ordered=ordered, groups=groups,
        records=records, profile=profile, config=config, broken_log=broken_log,
    )  # fmt: skip


def cube_summary(cube: xr.Dataset) -> dict[str, Any]:
    """What a run reports of one cube: dates kept and dropped (with reasons), items, clear
    share. Reads the quality layers if the cube was built without the date filter."""
    return {
        "sensor": cube.attrs["sensor"],
        "items": len(json.loads(cube.attrs["items"])),
        "dates": [str(np.datetime_as_string(t, unit="D")) for t in cube.time.values],
        "mean_clear_fraction": round(float(cube.clear_fraction.mean()), 4)
        if cube.sizes["time"]
        else None,
        "dropped_dates": json.loads(cube.attrs["dropped_dates"]),
    }


# ---------------------------------------------------------------------------------------------
# Broken assets
# ---------------------------------------------------------------------------------------------


def broken_assets(cube: xr.Dataset) -> list[dict[str, str]]:
    """The broken assets of a computed cube: item id, date, band, href and the error.

    Records appear as the cube's data are read (a lazy cube has none yet).
    """
    directory = cube.attrs.get("broken_asset_log")
    if not directory:
        return []
    by_href = {}
    for record in json.loads(cube.attrs["items"]):
        for band, href in record["hrefs"].items():
            by_href[href] = {"item_id": record["id"], "date": record["date"], "band": band}
    out = []
    for entry in BrokenAssetLog(directory).records():
        if entry["url"] in by_href:
            out.append({**by_href[entry["url"]], "href": entry["url"], "error": entry["error"]})
    return out
