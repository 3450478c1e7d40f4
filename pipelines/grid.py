"""The output grid: UTM tiles at 10 m, Landsat on the aligned 30 m grid.

Level-3 products live on a fixed grid: square UTM tiles anchored at multiples of the tile
size (so two runs over overlapping areas produce the same tiles), 10 m pixels whose edges
every third one coincide with a 30 m Landsat pixel edge. An area that crosses UTM zones is
split by zone (never warped into one CRS); south of the equator tiles use the southern zone
codes (327xx) with positive northings, whatever CRS the inputs come in.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import shapely
import shapely.errors
from shapely.geometry import box, mapping, shape
from shapely.geometry.base import BaseGeometry

from tamrf_xr.grid import RasterGrid

__all__ = [
    "NEST_M",
    "GridSpec",
    "GridTile",
    "aoi_geometry",
    "cube_margin_px",
    "tiles_for_aoi",
    "utm_zones",
]

LANDSAT_FACTOR = 3
NEST_M = 60.0
"""Grid edges on multiples of 60 m make the 10, 20 and 30 m grids nest exactly."""


@dataclass(frozen=True)
class GridSpec:
    """Tiling of every UTM zone."""

    tile_size_m: float = 9_900.0
    """Tile side; a multiple of 30 m so tiles hold whole Landsat pixels (990 x 990 at 10 m)."""
    pixel_m: float = 10.0

    def __post_init__(self) -> None:
        landsat_m = self.pixel_m * LANDSAT_FACTOR
        if (
            self.tile_size_m <= 0
            or abs(self.tile_size_m / landsat_m - round(self.tile_size_m / landsat_m)) > 1e-9
        ):
            raise ValueError(
                f"tile_size_m={self.tile_size_m} must be a positive multiple of {landsat_m} m "
                "so that tiles hold whole Landsat pixels"
            )

    @property
    def tile_px(self) -> int:
        return round(self.tile_size_m / self.pixel_m)


def cube_margin_px(margin_px: int) -> int:
    """A model margin (10 m pixels) rounded up to the 60 m step on which the 10, 20 and 30 m
    grids of a cube nest."""
    return 6 * math.ceil(margin_px / 6)


@dataclass(frozen=True)
class GridTile:
    """One output tile."""

    epsg: int
    column: int
    """Tile index along x (x0 = column * tile_size)."""
    row: int
    """Tile index along y (north edge = (row + 1) * tile_size)."""
    spec: GridSpec

    @property
    def tile_id(self) -> str:
        return f"{self.epsg}_{self.column:+05d}_{self.row:+05d}"

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(west, south, east, north) in the tile's CRS."""
        size = self.spec.tile_size_m
        return (
            self.column * size,
            self.row * size,
            (self.column + 1) * size,
            (self.row + 1) * size,
        )

    def grid(
        self,
        resolution: float | None = None,
        margin_px: int = 0,
        clip_to: tuple[float, float, float, float] | None = None,
    ) -> RasterGrid:
        """The tile's raster grid at ``resolution`` (default the tiling's 10 m).

        Args:
            resolution: pixel size of the grid returned (it must divide its bounds).
            margin_px: pixels of the tiling (10 m) added on every side, a multiple of 6
                (60 m) so that the 10, 20 and 30 m grids still nest (a cube's context).
            clip_to: (west, south, east, north) in the tile CRS to cut the grid down to,
                snapped outwards to multiples of 60 m first (e.g. a simulated region).
        """
        if margin_px % 6:
            raise ValueError(f"margin_px={margin_px} must be a multiple of 6 (60 m)")
        grid = RasterGrid(self.epsg, self.bounds, self.spec.pixel_m)
        grid = grid.grown(margin_px * self.spec.pixel_m)
        if clip_to is not None:
            w, s, e, n = clip_to
            down = [math.floor(v / NEST_M) * NEST_M for v in (w, s)]
            up = [math.ceil(v / NEST_M) * NEST_M for v in (e, n)]
            grid = grid.clipped((*down, *up))
        return grid if resolution is None else grid.at(resolution)

    def prediction_grids(
        self, margin_px: int, clip_to: tuple[float, float, float, float] | None = None
    ) -> tuple[RasterGrid, RasterGrid]:
        """(cube, output): the 10 m grid of the tile's cubes, grown once by the model's
        margin (rounded up to 60 m), and the area the tile predicts inside it (the tile,
        clipped as :meth:`grid` clips). Both are cut by ``clip_to``."""
        cube = self.grid(margin_px=cube_margin_px(margin_px), clip_to=clip_to)
        return cube, self.grid(clip_to=clip_to)

    def transform(self, resolution: float | None = None) -> tuple[float, ...]:
        """Affine (a, b, c, d, e, f) of the tile at ``resolution`` (default 10 m)."""
        return self.grid(resolution).transform

    def shape(self, resolution: float | None = None) -> tuple[int, int]:
        """(rows, cols) at ``resolution`` (default 10 m)."""
        return self.grid(resolution).shape

    @property
    def landsat_resolution(self) -> float:
        return self.spec.pixel_m * LANDSAT_FACTOR

    def lonlat_polygon(self) -> BaseGeometry:
        """The tile's outline in lon/lat."""
        from pipelines.georef import reproject_geometry, split_at_antimeridian

        outline = reproject_geometry(box(*self.bounds), self.epsg, 4326, self.spec.tile_size_m / 20)
        return split_at_antimeridian(outline)


def aoi_geometry(aoi: dict | Iterable[float] | BaseGeometry) -> BaseGeometry:
    """An AOI in lon/lat from a GeoJSON geometry, Feature or FeatureCollection (the union of
    its features), a bbox or a shapely geometry.

    Raises:
        ValueError: not a geometry, non-finite or out-of-range coordinates, no area (a point,
            a line), a polygon that crosses itself, or one that crosses the antimeridian; the
            message says how to fix it. Nothing is repaired silently.
    """
    if isinstance(aoi, BaseGeometry):
        geometry = aoi
    elif isinstance(aoi, dict):
        geometry = _geojson_geometry(aoi)
    else:
        return _bbox_geometry(aoi)  # a box in range: finite, valid, with an area
    _check_aoi(geometry)
    return geometry


def _bbox_geometry(bbox: Iterable[float]) -> BaseGeometry:
    """The box of ``(west, south, east, north)`` in degrees."""
    values = [float(v) for v in bbox]
    if len(values) != 4:
        raise ValueError(f"a bbox is (west, south, east, north); got {values}: give four "
                         "numbers W,S,E,N in degrees (--bbox W,S,E,N)")  # fmt: skip
    if not all(math.isfinite(v) for v in values):
        raise ValueError(f"bbox {values} has a non-finite value: give four finite numbers "
                         "W,S,E,N in degrees")  # fmt: skip
    west, south, east, north = values
    in_range = min(west, east) >= -180 and max(west, east) <= 180 and -90 <= south < north <= 90
    if in_range and west > east:
        raise ValueError(
            f"bbox {values} is not (west, south, east, north) with west < east: if the area "
            f"crosses the antimeridian, split it at 180 degrees into two AOIs (--bbox "
            f"{west:g},{south:g},180,{north:g} and --bbox -180,{south:g},{east:g},{north:g}, or "
            "one --aoi MultiPolygon with a part on each side); else swap west and east"
        )
    if not (in_range and west < east):
        raise ValueError(
            f"bbox {values} is not (west, south, east, north) in degrees with west < east "
            "and south < north: give longitudes in -180..180 and latitudes in -90..90"
        )
    return box(west, south, east, north)


def _check_aoi(geometry: BaseGeometry) -> None:
    """Finite lon/lat coordinates, an area, no crossing of the antimeridian, valid."""
    kind = mapping(geometry)["type"] if not geometry.is_empty else "geometry"
    coordinates = shapely.get_coordinates(geometry)
    if not np.isfinite(coordinates).all():
        raise ValueError(f"the AOI {kind} has non-finite coordinates (NaN or infinity): fix "
                         "the file")  # fmt: skip
    if geometry.is_empty:
        raise ValueError("the AOI is empty or invalid: it has no coordinates; give a Polygon or "
                         "MultiPolygon in lon/lat, or --bbox W,S,E,N")  # fmt: skip
    west, south, east, north = geometry.bounds
    if west < -180 or east > 180 or south < -90 or north > 90:
        raise ValueError(
            f"the AOI's bounds {geometry.bounds} are not longitudes/latitudes in degrees: "
            "GeoJSON AOIs are in WGS 84 (EPSG:4326); reproject the file (longitudes just "
            "beyond +-180: the AOI crosses the antimeridian; split it there into two parts)"
        )
    _check_antimeridian(geometry)
    if not geometry.is_valid:
        # Not repaired here: make_valid turns a bow tie into two triangles and buffer(0) drops
        # one of them; either is a different area than the one the user drew.
        raise ValueError(
            f"the AOI is empty or invalid: its {kind} is not a valid polygon "
            f"({shapely.is_valid_reason(geometry)}; e.g. a bow tie whose edges cross): fix the "
            "polygon (shapely.make_valid(geometry) shows a valid reading of it; check that it "
            "is the area meant) and give it again"
        )
    if geometry.area == 0:
        raise ValueError(f"the AOI is empty or invalid: a {kind} has no area; give a Polygon "
                         "or MultiPolygon in lon/lat, or --bbox W,S,E,N")  # fmt: skip


def _check_antimeridian(geometry: BaseGeometry) -> None:
    """Refuse a polygon with an edge longer than 180 degrees of longitude (not counting an
    edge along a parallel from -180 to 180, the side of a band around the globe).

    In GeoJSON an edge is straight in lon/lat, so an edge from 179 to -179 runs the long way
    round, across the whole map: such an AOI was almost always meant to cross the
    antimeridian. It is refused with the fix (split at 180 degrees into one part on each
    side, RFC 7946 3.1.9) rather than split here: a polygon whose vertices jump by more than
    180 degrees may also be a mistake, and only its author knows which area was meant. A
    split AOI is supported as it is: its parts fall in UTM zones 60 and 1 (one store each).
    """
    for ring in shapely.get_rings(shapely.get_parts(geometry)):
        longitudes = shapely.get_coordinates(ring)[:, 0]
        on_antimeridian = np.abs(longitudes) == 180
        jumps = np.flatnonzero(
            (np.abs(np.diff(longitudes)) > 180) & ~(on_antimeridian[:-1] & on_antimeridian[1:])
        )
        if jumps.size:
            a, b = longitudes[jumps[0]], longitudes[jumps[0] + 1]
            raise ValueError(
                f"the AOI crosses the antimeridian (an edge goes from {a:g} to {b:g} degrees of "
                "longitude, the long way round the globe as GeoJSON reads it): split it at 180 "
                "degrees into a MultiPolygon with one part on each side (RFC 7946, 3.1.9), or "
                "into two AOIs"
            )


def _geojson_geometry(document: dict) -> BaseGeometry:
    """The shapely geometry of a GeoJSON object (a clear error for anything else)."""
    kind = document.get("type")
    if kind == "FeatureCollection":
        parts = [_geojson_geometry(f) for f in document.get("features") or []]
        if not parts:
            raise _not_geojson("the FeatureCollection has no features")
        for part in parts:  # before the union: an invalid part would make it fail or lie
            _check_aoi(part)
        return shapely.union_all(parts)
    if kind == "Feature" and not document.get("geometry"):
        raise _not_geojson("the Feature has no geometry")
    try:
        with warnings.catch_warnings():
            # NaN coordinates warn here; _check_aoi refuses them with the fix.
            warnings.simplefilter("ignore", RuntimeWarning)
            return shape(document["geometry"] if kind == "Feature" else document)
    except (KeyError, TypeError, AttributeError, ValueError, shapely.errors.ShapelyError) as error:
        raise _not_geojson(f"{type(error).__name__}: {error}") from None


def _not_geojson(reason: str) -> ValueError:
    return ValueError(
        f"the AOI is not a usable GeoJSON geometry, Feature or FeatureCollection in lon/lat "
        f"({reason}): fix the file or give --bbox W,S,E,N"
    )


def utm_zones(aoi: BaseGeometry) -> list[tuple[int, BaseGeometry]]:
    """(EPSG, part of the AOI) for every UTM zone (and hemisphere) the AOI touches."""
    west, _, east, _ = aoi.bounds
    parts = []
    for zone in range(int((west + 180) // 6) + 1, int((min(east, 179.999999) + 180) // 6) + 2):
        zone_west = -180 + (zone - 1) * 6
        for hemisphere, (lat0, lat1) in ((32600, (0.0, 84.0)), (32700, (-80.0, 0.0))):
            part = aoi.intersection(box(zone_west, lat0, zone_west + 6, lat1))
            if not part.is_empty and part.area > 0:
                parts.append((hemisphere + zone, part))
    if not parts:
        raise ValueError(f"the AOI {aoi.bounds} is outside UTM coverage (80S..84N)")
    return parts


def tiles_for_aoi(
    aoi: dict | Iterable[float] | BaseGeometry, spec: GridSpec | None = None
) -> list[GridTile]:
    """Every grid tile that intersects the AOI, zone by zone, sorted by (EPSG, row, column)."""
    # Here, not at the top: pipelines.georef imports xarray (0.3 s), which the AOI checks
    # that `tamrf run` makes first (aoi_geometry, in well under 2 s) do not need.
    from pipelines.georef import reproject_geometry

    spec = spec or GridSpec()
    geometry = aoi_geometry(aoi)
    tiles = []
    size = spec.tile_size_m
    for epsg, part in utm_zones(geometry):
        local = reproject_geometry(part, 4326, epsg, 0.01)
        west, south, east, north = local.bounds
        # Vectorised over the zone's candidate tiles: a continent has ~10^5 of them.
        columns, rows = np.meshgrid(
            np.arange(math.floor(west / size), math.ceil(east / size)),
            np.arange(math.floor(south / size), math.ceil(north / size)),
        )
        columns, rows = columns.ravel(), rows.ravel()
        boxes = shapely.box(columns * size, rows * size, (columns + 1) * size, (rows + 1) * size)
        shapely.prepare(local)
        hit = shapely.intersects(local, boxes)
        # Touching along an edge is not holding part of the AOI: keep a positive overlap.
        edge = hit & ~shapely.contains_properly(local, boxes)
        hit[edge] = shapely.area(shapely.intersection(boxes[edge], local)) > 0
        tiles += [GridTile(epsg, int(c), int(r), spec) for c, r in zip(columns[hit], rows[hit],
                                                                         strict=True)]  # fmt: skip
    return sorted(tiles, key=lambda t: (t.epsg, -t.row, t.column))
