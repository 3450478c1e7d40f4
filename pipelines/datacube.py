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

Items of one sensor acquired the same (local solar) day, e.g. overlapping S2 tiles or adjacent
Landsat rows, are merged into one date: each pixel comes from the first item (by time, then id)
that has data there. The quality layers are read, merged and cleaned on a margin around the
grid (the halo of the morphology and of the bicubic kernel), so that adjacent grids get the
same values and masks as one large grid would.

Only the date filter (``min_valid_fraction > 0``) reads anything when a cube is built, and it
reads the quality layers alone; band data are read when the cube is computed.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import dask.array as da
import numpy as np
import pystac
import xarray as xr
from pyproj import CRS

from pipelines.asset_reader import BrokenAssetLog, read_assets, stac_item_dicts
from pipelines.catalogs import CatalogProfile, ScalingRule
from pipelines.georef import with_grid_mapping
from pipelines.grid import LANDSAT_FACTOR, NEST_M
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


def _merge(values: da.Array, has_data: da.Array, groups: list[list[int]]) -> da.Array:
    """(item, ...) -> (date, ...): per pixel, the first item of the date with data there.

    ``values`` is (item, band, y, x) or (item, y, x); ``has_data`` is (item, y, x).
    """
    merged = []
    for group in groups:
        out, covered = values[group[0]], has_data[group[0]]
        for index in group[1:]:
            take = covered if values.ndim == 3 else covered[None]
            out = da.where(take, out, values[index])
            covered = covered | has_data[index]
        merged.append(out)
    return da.stack(merged)


def _scale(raw: da.Array, rules: list[list[ScalingRule]]) -> da.Array:
    """(item, band, y, x) DNs -> float32 values with each item's rule for each band."""
    scale = np.array([[r.scale for r in row] for row in rules], np.float32)[..., None, None]
    offset = np.array([[r.offset for r in row] for row in rules], np.float32)[..., None, None]
    nodata = np.array(
        [[np.nan if r.nodata is None else r.nodata for r in row] for row in rules], np.float32
    )[..., None, None]
    return da.where(raw == nodata, np.float32(np.nan), raw * scale + offset).astype(np.float32)


def _crop(array: da.Array, halo_px: int) -> da.Array:
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
                "hrefs": {b: assets[k]["href"] for b, k in asset_keys.items() if k in assets},
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


def _drop_sparse_dates(ds: xr.Dataset, minimum: float) -> xr.Dataset:
    """Drop the dates whose clear fraction is below ``minimum``, recording each with a reason."""
    if minimum <= 0 or ds.sizes["time"] == 0:
        return ds
    fractions = ds["clear_fraction"].values  # reads the quality layers only
    keep = fractions >= minimum
    dropped = [
        {
            "date": str(np.datetime_as_string(ds["time"].values[i], unit="s")),
            "item_ids": str(ds["item_ids"].values[i]),
            "clear_fraction": round(float(fractions[i]), 6),
            "reason": (
                "no data over the grid"
                if fractions[i] == 0
                else f"clear fraction {fractions[i]:.3f} < min_valid_fraction {minimum}"
            ),
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
    bands_10 = [b for b in S2_BANDS if b.native_resolution == 10.0]
    bands_20 = [b for b in S2_BANDS if b.native_resolution == 20.0]
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
    halo_m = _halo_m(_s2_halo_px(config.masks) + 2 * UPSAMPLE_HALO)
    halo10 = round(halo_m / grid.resolution)
    env = profile.gdal_env([d["assets"][keys["S2_B2"]]["href"] for d in ordered])

    def read(band_keys: list[str], resolution: float, resampling: str) -> da.Array:
        return read_assets(
            ordered, band_keys, grid.at(resolution).grown(halo_m), resampling=resampling,
            gdal_env=env, broken_log=broken_log,
        ).data  # fmt: skip

    rules = [profile.s2_scaling(doc) for doc in ordered]
    raw10 = read([keys[b.name] for b in bands_10], 10.0, config.s2_resampling)
    raw20 = read([keys[b.name] for b in bands_20], 20.0, config.s2_resampling)
    scl = read([keys["SCL"]], 20.0, "nearest")[:, 0]
    values10 = _scale(raw10, [[r] * len(bands_10) for r in rules])
    values20 = _scale(raw20, [[r] * len(bands_20) for r in rules])

    has10 = da.isfinite(values10).any(axis=1)
    has20 = da.isfinite(scl) & (scl != 0)
    merged10 = _merge(values10, has10, groups)
    merged20 = _merge(values20, has20, groups)
    merged_scl = _merge(scl, has20, groups)

    upsampled = merged20.map_blocks(
        upsample_bicubic, 2, dtype=np.float32,
        chunks=(*merged20.chunks[:2], tuple(2 * c for c in merged20.chunks[2]),
                tuple(2 * c for c in merged20.chunks[3])),
    )  # fmt: skip
    scl10 = da.repeat(da.repeat(merged_scl, 2, axis=-2), 2, axis=-1)
    invalid = scl10.map_blocks(
        lambda block: s2_invalid(np.nan_to_num(block, nan=0).astype(np.uint8), config.masks),
        dtype=bool,
    )
    by_name = {b.name: merged10[:, i] for i, b in enumerate(bands_10)}
    by_name |= {b.name: upsampled[:, i] for i, b in enumerate(bands_20)}
    observations = _crop(da.stack([by_name[n] for n in names], axis=1), halo10)
    clear = _crop(~invalid, halo10)
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
    masks = config.masks
    halo_m = _halo_m(LANDSAT_FACTOR * (masks.landsat_fill_dilation_px + masks.landsat_dilation_px))
    halo30 = round(halo_m / resolution)
    env = profile.gdal_env([d["assets"][keys["LS_B1"]]["href"] for d in ordered])
    spec = grid.at(resolution).grown(halo_m)

    raw = read_assets(
        ordered, [keys[n] for n in names], spec, resampling=config.landsat_resampling,
        gdal_env=env, broken_log=broken_log,
    ).data  # fmt: skip
    qa_keys = ["QA_PIXEL", "QA_RADSAT", "QA_AEROSOL"]
    qa = read_assets(
        ordered, [keys.get(k, "qa_aerosol") for k in qa_keys], spec, resampling="nearest",
        gdal_env=env, broken_log=broken_log,
    ).data  # fmt: skip
    rules = [profile.landsat_scaling(n) for n in names]
    values = _scale(raw, [rules] * len(ordered))

    qa_pixel = qa[:, 0]
    has = da.isfinite(qa_pixel) & (da.fmod(qa_pixel, 2) == 0)  # bit 0: fill
    merged = _merge(values, has, groups)
    merged_qa = _merge(qa, has, groups)

    def invalid_block(block: np.ndarray) -> np.ndarray:
        pixel = np.nan_to_num(block[:, 0], nan=1).astype(np.uint16)  # no data = fill
        radsat = np.nan_to_num(block[:, 1], nan=0).astype(np.uint16)
        aerosol = np.nan_to_num(block[:, 2], nan=0).astype(np.uint8)
        return landsat_invalid(pixel, radsat, aerosol, masks)

    invalid = merged_qa.rechunk({1: 3}).map_blocks(invalid_block, drop_axis=1, dtype=bool)
    observations = _crop(merged, halo30)
    clear = _crop(~invalid, halo30)
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
