"""The output grid: UTM tiles at 10 m on a 30 m-aligned Landsat grid, split by zone."""

from __future__ import annotations

import math

import numpy as np
import pytest
from pyproj import Transformer
from shapely.geometry import box

from pipelines.grid import GridSpec, GridTile, aoi_geometry, tiles_for_aoi
from tamrf_xr.grid import RasterGrid


def test_tiles_are_anchored_and_landsat_aligned():
    tiles = tiles_for_aoi([1.40, 43.55, 1.50, 43.65])
    assert tiles and {t.epsg for t in tiles} == {32631}
    for tile in tiles:
        west, south, east, north = tile.bounds
        assert north - south == 9900
        assert west % 30 == 0 and north % 30 == 0 and east - west == 9900
        assert tile.shape() == (990, 990) and tile.shape(30.0) == (330, 330)
        a, _, c, _, e, f = tile.transform(30.0)
        assert (a, e) == (30.0, -30.0) and (c, f) == (west, north)
    # Same tiles whatever the AOI: the grid is fixed.
    inner = tiles_for_aoi([1.45, 43.60, 1.46, 43.61])
    assert set(inner) <= set(tiles)


def test_tiles_cover_the_aoi_and_nothing_far_from_it():
    aoi = box(1.40, 43.55, 1.50, 43.65)
    tiles = tiles_for_aoi(aoi)
    covered = tiles[0].lonlat_polygon()
    for tile in tiles[1:]:
        covered = covered.union(tile.lonlat_polygon())
    assert covered.buffer(1e-9).contains(aoi)
    assert all(tile.lonlat_polygon().intersects(aoi) for tile in tiles)


def test_an_aoi_across_two_zones_is_split_not_warped():
    tiles = tiles_for_aoi([5.9, 45.0, 6.1, 45.1])  # zone 31 | zone 32 at 6 degrees east
    assert {t.epsg for t in tiles} == {32631, 32632}
    to_lonlat = {e: Transformer.from_crs(e, 4326, always_xy=True) for e in (32631, 32632)}
    for tile in tiles:
        west, south, east, north = tile.bounds
        lon, _ = to_lonlat[tile.epsg].transform((west + east) / 2, (south + north) / 2)
        assert (lon < 6.05) if tile.epsg == 32631 else (lon > 5.95)


def test_southern_hemisphere_uses_southern_zone_codes():
    tiles = tiles_for_aoi([147.0, -35.05, 147.05, -35.0])
    assert {t.epsg for t in tiles} == {32755}
    assert all(t.bounds[1] > 0 for t in tiles)  # positive northings (false northing 10,000 km)
    equator = tiles_for_aoi([10.0, -0.01, 10.01, 0.01])
    assert {t.epsg for t in equator} == {32632, 32732}


def test_bad_aois_and_specs_are_clear_errors():
    with pytest.raises(ValueError, match="west < east"):
        aoi_geometry([2.0, 43.0, 1.0, 44.0])
    with pytest.raises(ValueError, match=r"\(west, south, east, north\)"):
        aoi_geometry([1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="multiple of 30"):
        GridSpec(tile_size_m=1000.0)
    geojson = {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [
        [[1.4, 43.5], [1.5, 43.5], [1.5, 43.6], [1.4, 43.5]]]}}  # fmt: skip
    assert aoi_geometry(geojson).area > 0
    assert GridTile(32631, 37, 488, GridSpec()).tile_id == "32631_+0037_+0488"


# -- RasterGrid: the one implementation of pixel arithmetic -----------------------------------

GRID = RasterGrid(32631, (600_000.0, 4_999_400.0, 600_900.0, 5_000_000.0), 10.0)


def test_raster_grid_coords_are_pixel_centres():
    assert GRID.shape == (60, 90)
    assert GRID.transform == (10.0, 0.0, 600_000.0, 0.0, -10.0, 5_000_000.0)
    y, x = GRID.coords()
    assert y.dtype == x.dtype == np.float64 and (y.size, x.size) == GRID.shape
    assert (x[0], x[-1], y[0], y[-1]) == (600_005.0, 600_895.0, 4_999_995.0, 4_999_405.0)
    np.testing.assert_array_equal(np.diff(x), 10.0)
    np.testing.assert_array_equal(np.diff(y), -10.0)
    # Bit for bit what the pipelines computed before (corner + (i + 0.5) * pixel).
    np.testing.assert_array_equal(x, 600_000.0 + (np.arange(90) + 0.5) * 10.0)
    np.testing.assert_array_equal(y, 5_000_000.0 - (np.arange(60) + 0.5) * 10.0)
    a, _, c, _, e, f = GRID.transform
    assert (a * 0.5 + c, e * 0.5 + f) == (x[0], y[0])


def test_derived_raster_grids_keep_the_pixels_aligned():
    coarse = GRID.at(30.0)
    assert coarse.bounds == GRID.bounds and coarse.shape == (20, 30)
    y30, x30 = coarse.coords()
    y10, x10 = GRID.coords()
    np.testing.assert_array_equal(x30, x10[1::3])  # a 30 m centre is the middle 10 m centre
    np.testing.assert_array_equal(y30, y10[1::3])

    grown = GRID.grown(60.0)
    assert grown.bounds == (599_940.0, 4_999_340.0, 600_960.0, 5_000_060.0)
    assert grown.shape == (72, 102)
    np.testing.assert_array_equal(grown.coords()[1][6:-6], x10)
    assert GRID.grown(-100.0).shape == (40, 70)

    clipped = GRID.clipped((600_123.0, 4_999_000.0, 600_300.0, 4_999_777.7))
    assert clipped.bounds == (600_120.0, 4_999_400.0, 600_300.0, 4_999_780.0)  # snapped out
    cols = GRID.window(clipped.bounds)[1]
    np.testing.assert_array_equal(clipped.coords()[1], x10[cols])
    assert GRID.window(clipped.bounds) == (slice(22, 60), slice(12, 30))
    assert GRID.clipped((0.0, 0.0, 1e7, 1e7)) == GRID
    assert GRID.nests(20.0) and not GRID.nests(60.0)  # 4_999_400 is no multiple of 60 m
    assert GRID.clipped((600_000.0, 4_999_440.0, 600_900.0, 4_999_980.0)).nests(60.0)


def test_raster_grid_lonlat_bbox_encloses_the_grid():
    west, south, east, north = GRID.lonlat_bbox()
    to_lonlat = Transformer.from_crs(32631, 4326, always_xy=True)
    for x, y in ((600_000.0, 4_999_400.0), (600_900.0, 5_000_000.0), (600_450.0, 5_000_000.0)):
        lon, lat = to_lonlat.transform(x, y)
        assert west - 1e-9 <= lon <= east + 1e-9 and south - 1e-9 <= lat <= north + 1e-9


def test_bad_raster_grids_are_clear_errors():
    with pytest.raises(ValueError, match="empty grid"):
        RasterGrid(32631, (10.0, 0.0, 0.0, 60.0), 10.0)
    with pytest.raises(ValueError, match="empty grid"):
        RasterGrid(32631, (0.0, 0.0, 60.0, 60.0), 0.0)
    with pytest.raises(ValueError, match="must be finite"):
        RasterGrid(32631, (0.0, 0.0, math.inf, 60.0), 10.0)
    with pytest.raises(ValueError, match=r"whole number of 10\.0 m pixels"):
        RasterGrid(32631, (0.0, 0.0, 65.0, 60.0), 10.0)
    with pytest.raises(ValueError, match=r"\(west, south, east, north\)"):
        RasterGrid(32631, (0.0, 0.0, 60.0), 10.0)
    with pytest.raises(ValueError, match=r"whole number of 40\.0 m pixels"):
        GRID.at(40.0)
    with pytest.raises(ValueError, match="multiple of the pixel size"):
        GRID.grown(15.0)
    with pytest.raises(ValueError, match="do not overlap"):
        GRID.clipped((0.0, 0.0, 100.0, 100.0))
    with pytest.raises(ValueError, match="not on the 10 m pixel edges"):
        GRID.window((600_005.0, 4_999_400.0, 600_100.0, 4_999_500.0))
    with pytest.raises(ValueError, match="not inside"):
        GRID.window((599_990.0, 4_999_400.0, 600_100.0, 4_999_500.0))


def _old_cube_grid_bounds(tile, margin_px, clip_to=None):
    """A tile's cube bounds as the pipelines computed them before :meth:`GridTile.grid`."""
    m = margin_px * tile.spec.pixel_m
    west, south, east, north = tile.bounds
    bounds = (west - m, south - m, east + m, north + m)
    if clip_to is not None:
        w, s, e, n = clip_to
        snapped = (math.floor(w / 60) * 60, math.floor(s / 60) * 60,
                   math.ceil(e / 60) * 60, math.ceil(n / 60) * 60)  # fmt: skip
        bounds = (max(bounds[0], snapped[0]), max(bounds[1], snapped[1]),
                  min(bounds[2], snapped[2]), min(bounds[3], snapped[3]))  # fmt: skip
    return bounds


def test_tile_grid_is_the_cube_grid_of_a_tile():
    tile = GridTile(32631, 37, 488, GridSpec())
    grid = tile.grid()
    assert grid == RasterGrid(32631, tile.bounds, 10.0)
    assert grid.transform == tile.transform() and grid.shape == tile.shape() == (990, 990)
    assert tile.grid(30.0).shape == tile.shape(30.0) == (330, 330)
    assert tile.grid(margin_px=60).bounds == _old_cube_grid_bounds(tile, 60)
    assert tile.grid(margin_px=60).shape == (1110, 1110)
    clip = (370_123.4, 4_832_005.0, 375_000.1, 4_900_000.0)
    for margin in (0, 60):
        got = tile.grid(margin_px=margin, clip_to=clip)
        assert got.bounds == _old_cube_grid_bounds(tile, margin, clip)
        assert got.nests(60.0) and got.resolution == 10.0
    # Snapped outwards to 60 m, then cut; the margin stays where the clip does not reach.
    assert tile.grid(margin_px=60, clip_to=clip).bounds == (370_080.0, 4_831_980.0,
                                                           375_060.0, 4_841_700.0)  # fmt: skip
    assert tile.grid(30.0, margin_px=6, clip_to=clip).shape == (306, 166)
    with pytest.raises(ValueError, match="multiple of 6"):
        tile.grid(margin_px=5)
    with pytest.raises(ValueError, match="do not overlap"):
        tile.grid(clip_to=(0.0, 0.0, 60.0, 60.0))
