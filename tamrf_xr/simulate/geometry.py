"""Where and when the sensors look: the region grid, S2 tiles, Landsat scenes and calendars.

- Sentinel-2: axis-aligned MGRS-like tiles (109.8 km on a 100 km step, so neighbours overlap),
  S2A and S2B 10-day cycles offset by 5 days (5-day combined revisit) on the main relative
  orbit, plus an optional neighbouring orbit whose swath edge crosses the region.
- Landsat-8/9: WRS-2-like scenes, rectangles tilted with the ground track; rows of a path are
  imaged the same day and overlap; neighbouring paths are imaged 7 days apart; Landsat-9 flies
  8 days behind Landsat-8 (8-day combined revisit). Scene rasters are north-up bounding boxes
  with fill outside the tilted footprint, like the real products.
- Southern-hemisphere Landsat products use the NORTHERN UTM zone with negative northings.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import shapely
from pyproj import CRS, Transformer
from shapely.geometry import Polygon, box

from tamrf_xr.grid import RasterGrid
from tamrf_xr.simulate.config import SimulationConfig
from tamrf_xr.simulate.fields import rng_for

__all__ = [
    "PIXEL_M",
    "Acquisition",
    "landsat_epsg",
    "landsat_y_shift",
    "plan_acquisitions",
    "region_grid",
    "utm_epsg",
]

S2_COLLECTION = "sentinel-2-l2a"
LANDSAT_COLLECTION = "landsat-c2-l2"
_S2_LOCAL_SOLAR_HOUR = 10.5
_LANDSAT_LOCAL_SOLAR_HOUR = 10.2
_BASELINE_04_START = dt.date(2022, 1, 25)  # processing baseline 04.00: +1000 DN offset
_LAT_BANDS = "CDEFGHJKLMNPQRSTUVWX"
_COL_LETTERS = "ABCDEFGHJKLMNPQRSTUVWXYZ"
_ROW_LETTERS = "ABCDEFGHJKLMNPQRSTUV"
PIXEL_M = 10.0
"""Pixel size of the region's (truth) grid."""


def utm_epsg(lon: float, lat: float) -> int:
    """EPSG code of the WGS 84 UTM zone containing (lon, lat): 326zz north, 327zz south."""
    zone = min(int((lon + 180.0) // 6.0) + 1, 60)
    return (32600 if lat >= 0 else 32700) + zone


def landsat_epsg(epsg: int) -> int:
    """The CRS of Landsat products over a grid in ``epsg``: they use the northern zone code
    even south of the equator."""
    return epsg - 100 if epsg >= 32700 else epsg


def landsat_y_shift(epsg: int) -> float:
    """Add to a northing in ``epsg`` to get the Landsat product's (northern zone) northing."""
    return -10_000_000.0 if epsg >= 32700 else 0.0


def region_grid(config: SimulationConfig) -> RasterGrid:
    """The region's 10 m (truth) grid on its UTM zone: ``width_px`` x ``height_px`` pixels
    around the centre, west and north edges snapped to 60 m so the 10/20/30 m grids nest."""
    epsg = config.epsg or utm_epsg(config.center_lon, config.center_lat)
    to_utm = Transformer.from_crs(CRS.from_epsg(4326), CRS.from_epsg(epsg), always_xy=True)
    cx, cy = to_utm.transform(config.center_lon, config.center_lat)
    width_m, height_m = config.width_px * PIXEL_M, config.height_px * PIXEL_M
    west = math.floor((cx - width_m / 2) / 60.0) * 60.0
    north = math.ceil((cy + height_m / 2) / 60.0) * 60.0
    return RasterGrid(epsg, (west, north - height_m, west + width_m, north), PIXEL_M)


@dataclass(frozen=True)
class Acquisition:
    """One published item: a tile or scene seen on one day."""

    collection: Literal["sentinel-2-l2a", "landsat-c2-l2"]
    platform: str
    """``sentinel-2a``, ``sentinel-2b``, ``landsat-8`` or ``landsat-9``."""
    item_id: str
    grid_code: str
    """MGRS-like tile (``31TCJ``) or WRS-2 path+row (``199030``)."""
    day_index: int
    datetime: dt.datetime
    """Acquisition time, UTC."""
    bounds: tuple[float, float, float, float]
    """Raster extent in the region CRS (west, south, east, north), on the native grid."""
    footprint: Polygon
    """Polygon of valid data in the region CRS (inside ``bounds``)."""
    swath_key: str
    """Acquisitions with the same key share one datastrip: identical pixels where they overlap."""
    orbit: int
    """Relative orbit (S2) or WRS path (Landsat)."""
    processing_baseline: str | None = None
    boa_offset_applied: bool | None = None
    correction: str | None = None
    """``L2SP`` or ``L2SR`` (Landsat)."""

    @property
    def sensor(self) -> str:
        return "sentinel-2" if self.collection == S2_COLLECTION else "landsat"

    @property
    def date(self) -> dt.date:
        return self.datetime.date()


def _overpass(date: dt.date, lon: float, local_hour: float, jitter_s: float) -> dt.datetime:
    utc_hours = local_hour - lon / 15.0
    start = dt.datetime(date.year, date.month, date.day, tzinfo=dt.UTC)
    return start + dt.timedelta(hours=utc_hours, seconds=jitter_s)


def _snap_out(bounds: tuple[float, float, float, float], step: float, grid: RasterGrid):
    """Snap bounds outwards to the native grid anchored at the region corner, clipped to it."""
    w, s, e, n = bounds
    rw, rs, re, rn = grid.bounds
    w = rw + math.floor((w - rw) / step) * step
    e = rw + math.ceil((e - rw) / step) * step
    n = rn - math.floor((rn - n) / step) * step
    s = rn - math.ceil((rn - s) / step) * step
    return (max(w, rw), max(s, rs), min(e, re), min(n, rn))


def _tilted_rectangle(center: tuple[float, float], along: float, across: float, tilt: float):
    ua = np.array([math.cos(tilt), -math.sin(tilt)])  # across-track unit vector
    ul = np.array([math.sin(tilt), math.cos(tilt)])  # along-track unit vector
    c = np.asarray(center)
    corners = [c + sa * across / 2 * ua + sl * along / 2 * ul for sa, sl in
               ((-1, -1), (1, -1), (1, 1), (-1, 1))]  # fmt: skip
    return Polygon(corners)


def _swath_half_plane(grid: RasterGrid, coverage: float, tilt: float) -> Polygon:
    """Half-plane east of a tilted swath edge that leaves ``coverage`` of the width inside."""
    w, s, e, n = grid.bounds
    cx, cy = (w + e) / 2, (s + n) / 2
    width = e - w
    edge = width / 2 - coverage * width  # across-track coordinate of the edge
    far = 10 * max(width, n - s) + 1e6
    return _tilted_rectangle(
        (cx + (edge + far / 2) * math.cos(tilt), cy - (edge + far / 2) * math.sin(tilt)),
        far * 4,
        far,
        tilt,
    )


def plan_acquisitions(config: SimulationConfig, grid: RasterGrid) -> list[Acquisition]:
    """Every S2 and Landsat item over the region during the simulated period, sorted by time."""
    acquisitions = _plan_s2(config, grid) + _plan_landsat(config, grid)
    return sorted(acquisitions, key=lambda a: (a.datetime, a.collection, a.item_id))


def _latitude_band(lat: float) -> str:
    return _LAT_BANDS[min(max(int((lat + 80) // 8), 0), len(_LAT_BANDS) - 1)]


def _plan_s2(config: SimulationConfig, grid: RasterGrid) -> list[Acquisition]:
    rng = rng_for(config.seed, "s2-calendar")
    phase = int(rng.integers(0, 10))
    region = box(*grid.bounds)
    size, step = config.s2_tile_size_m, config.s2_tile_step_m
    w, s, e, n = grid.bounds
    tiles = []
    for i in range(math.floor((w - size) / step), math.floor(e / step) + 1):
        for j in range(math.floor((s - size) / step), math.floor(n / step) + 1):
            tile = box(i * step, j * step, i * step + size, j * step + size)
            if tile.intersects(region) and tile.intersection(region).area > 0:
                tiles.append((i, j, tile))
    zone = grid.epsg % 100
    band_letter = _latitude_band(config.center_lat)
    tilt = math.radians(config.landsat_track_tilt_deg)
    orbits = [(0, region, 0)]
    if config.s2_neighbour_orbit_coverage > 0:
        orbits.append((1, _swath_half_plane(grid, config.s2_neighbour_orbit_coverage, tilt), 3))
    base_orbit = int(rng.integers(1, 144))
    boa_rng = rng_for(config.seed, "s2-boa-offset")

    out = []
    for day_index in range(config.days):
        date = config.start + dt.timedelta(days=day_index)
        for orbit_index, swath, day_offset in orbits:
            cycle_day = (day_index + phase - day_offset) % 10
            if cycle_day not in (0, 5):
                continue
            platform = "sentinel-2a" if cycle_day == 0 else "sentinel-2b"
            when = _overpass(date, config.center_lon, _S2_LOCAL_SOLAR_HOUR, 10.0 * orbit_index)
            baseline = "04.00" if date >= _BASELINE_04_START else "03.01"
            offset_applied = (
                bool(boa_rng.random() < config.s2_boa_offset_applied_fraction)
                if baseline >= "04.00"
                else None
            )
            for i, j, tile in tiles:
                valid = tile.intersection(region).intersection(swath)
                if valid.is_empty or valid.area < 400.0 * 100:  # less than 100 pixels: no item
                    continue
                code = f"{zone:02d}{band_letter}{_COL_LETTERS[i % 24]}{_ROW_LETTERS[j % 20]}"
                bounds = _snap_out(tile.intersection(region).bounds, 20.0, grid)
                item_id = f"S2{platform[-1].upper()}_{code}_{date:%Y%m%d}_0_L2A"
                out.append(
                    Acquisition(
                        collection=S2_COLLECTION,
                        platform=platform,
                        item_id=item_id,
                        grid_code=code,
                        day_index=day_index,
                        datetime=when,
                        bounds=bounds,
                        footprint=shapely.normalize(valid),
                        swath_key=f"s2-{date:%Y%m%d}-{orbit_index}",
                        orbit=(base_orbit + 7 * orbit_index) % 143 + 1,
                        processing_baseline=baseline,
                        boa_offset_applied=offset_applied,
                    )
                )
    return out


def _plan_landsat(config: SimulationConfig, grid: RasterGrid) -> list[Acquisition]:
    rng = rng_for(config.seed, "landsat-calendar")
    phase = int(rng.integers(0, 16))
    tilt = math.radians(config.landsat_track_tilt_deg)
    along, across = config.landsat_scene_size_m
    path_step, row_step = config.landsat_path_step_m, config.landsat_row_step_m
    w, s, e, n = grid.bounds
    region = box(*grid.bounds)
    width = e - w
    ua = np.array([math.cos(tilt), -math.sin(tilt)])
    ul = np.array([math.sin(tilt), math.cos(tilt)])
    # Scene (path 0, row 0) is placed so that the next path east covers the requested fraction.
    coverage = config.landsat_neighbour_path_coverage
    a0 = (width / 2 - coverage * width) - (path_step - across / 2) if coverage > 0 else 0.0
    l0 = rng.uniform(-0.25, 0.25) * row_step
    center0 = np.array([(w + e) / 2, (s + n) / 2]) + a0 * ua + l0 * ul
    base_path = round(-config.center_lon * 233 / 360 + 199.94) % 233 + 1
    base_row = max(1, round(60 - config.center_lat * 0.69))
    reach = int(max(width, n - s) / min(path_step, row_step)) + 2

    scenes = []
    for p in range(-reach, reach + 1):
        for r in range(-reach, reach + 1):
            center = center0 + p * path_step * ua + r * row_step * ul
            footprint = _tilted_rectangle(tuple(center), along, across, tilt)
            valid = footprint.intersection(region)
            if not valid.is_empty and valid.area >= 900.0 * 100:
                scenes.append((p, r, valid))

    l2sr_rng = rng_for(config.seed, "landsat-l2sr")
    out = []
    for day_index in range(config.days):
        date = config.start + dt.timedelta(days=day_index)
        for p, r, valid in scenes:
            # Paths further east are imaged 7 days later in the 16-day cycle.
            cycle_day = (day_index + phase - 7 * p) % 16
            if cycle_day not in (0, 8):
                continue
            platform = "landsat-8" if cycle_day == 0 else "landsat-9"
            path, row = (base_path - p - 1) % 233 + 1, base_row - r
            when = _overpass(date, config.center_lon, _LANDSAT_LOCAL_SOLAR_HOUR, 24.0 * r)
            correction = "L2SR" if l2sr_rng.random() < config.landsat_l2sr_fraction else "L2SP"
            # Catalog ids drop the processing date that the USGS product id carries.
            item_id = f"LC{platform[-1]:0>2}_{correction}_{path:03d}{row:03d}_{date:%Y%m%d}_02_T1"
            out.append(
                Acquisition(
                    collection=LANDSAT_COLLECTION,
                    platform=platform,
                    item_id=item_id,
                    grid_code=f"{path:03d}{row:03d}",
                    day_index=day_index,
                    datetime=when,
                    bounds=_snap_out(valid.bounds, 30.0, grid),
                    footprint=shapely.normalize(valid),
                    swath_key=f"landsat-{date:%Y%m%d}-{p}",
                    orbit=path,
                    correction=correction,
                )
            )
    return out
