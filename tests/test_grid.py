"""The output grid: UTM tiles at 10 m on a 30 m-aligned Landsat grid, split by zone."""

from __future__ import annotations

import pytest
from pyproj import Transformer
from shapely.geometry import box

from pipelines.grid import GridSpec, GridTile, aoi_geometry, tiles_for_aoi


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
