"""The production command on REAL Earth Search v1 item documents, with local stand-in COGs.

The item documents are real (``../shared/data/real/stac-items``, six ``sentinel-2-l2a`` items
of 2025-07-31, one datatake over UTM 24S plus one scene in 20S); only their asset hrefs are
replaced by small local GeoTIFFs written on each item's own pixel grid, with DNs encoded by
THE ITEM's scaling rule (its ``earthsearch:boa_offset_applied`` flag and processing
baseline, as the ``earth-search-v1`` profile decides it). A local STAC API (``rustac serve``)
serves them, and ``tamrf run`` / ``tamrf plan`` run against it as against Earth Search.
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
import shapely
from cli_process import tamrf
from pyproj import Transformer
from shapely.geometry import box, shape
from typer.testing import CliRunner

from pipelines.catalogs import EARTH_SEARCH_V1
from pipelines.demo.cog import write_cog
from pipelines.demo.stac_servers import CatalogContent, RustacServer
from tamrf_xr.bands import S2_BANDS

ITEMS_FILE = Path("stac-items/from_pystac-client_cassettes/earth-search-v1_sentinel-2-l2a.json")
S2_COLLECTION = "sentinel-2-l2a"
LANDSAT_COLLECTION = "landsat-c2-l2"
DATE = "2025-07-31"
EPSG = 32724

# Two adjacent MGRS tiles of one orbit (same datatake) that overlap by ~10 km in x.
FIRST, SECOND = "S2B_24MXV_20250731_0_L2A", "S2B_24MWV_20250731_0_L2A"
"""FIRST is acquired 2 s before SECOND: on a merged date its pixels win where it has data."""

TILE_M = 1500.0  # output tiles (a multiple of 30 m, and of 60 m so every tile nests)
AOI_HALF_M = 600.0  # a 1.2 x 1.2 km AOI
COG_MARGIN_M = 1000.0  # stand-in rasters cover the AOI plus this
MARGIN_PX = 60  # the inference margin of the default InferenceConfig (600 m)

# A vegetation-like surface reflectance spectrum (dense green canopy).
SPECTRUM = {"S2_B2": 0.035, "S2_B3": 0.065, "S2_B4": 0.040, "S2_B5": 0.100, "S2_B6": 0.250,
            "S2_B7": 0.310, "S2_B8": 0.340, "S2_B8A": 0.355, "S2_B11": 0.200,
            "S2_B12": 0.095}  # fmt: skip
CLOUD = {"S2_B2": 0.42, "S2_B3": 0.41, "S2_B4": 0.43, "S2_B5": 0.44, "S2_B6": 0.45,
         "S2_B7": 0.45, "S2_B8": 0.46, "S2_B8A": 0.46, "S2_B11": 0.33, "S2_B12": 0.22}  # fmt: skip
GAIN = {FIRST: 1.0, SECOND: 0.97}
"""A small radiometric difference between the two items (view geometry), so that the test
can tell which item a merged pixel came from."""
SCL_VEGETATION, SCL_CLOUD_HIGH = 4, 9
CLOUD_RADIUS_M = 120.0


# ---------------------------------------------------------------------------------------------
# Geometry of the scene (all in EPSG:32724 metres)
# ---------------------------------------------------------------------------------------------


def real_items(real_data_dir: Path) -> dict[str, dict[str, Any]]:
    """The six real item documents, by id."""
    document = json.loads((real_data_dir / ITEMS_FILE).read_text())
    return {f["id"]: f for f in document["features"]}


def to_utm(geometry: shapely.Geometry, epsg: int = EPSG) -> shapely.Geometry:
    forward = Transformer.from_crs(4326, epsg, always_xy=True)
    dense = shapely.segmentize(geometry, 0.005)
    return shapely.transform(dense, lambda xy: np.column_stack(forward.transform(*xy.T)))


def to_lonlat(geometry: shapely.Geometry, epsg: int = EPSG) -> shapely.Geometry:
    back = Transformer.from_crs(epsg, 4326, always_xy=True)
    dense = shapely.segmentize(geometry, 100.0)
    return shapely.transform(dense, lambda xy: np.column_stack(back.transform(*xy.T)))


def aoi_centre(items: Mapping[str, Mapping[str, Any]]) -> tuple[float, float]:
    """A point of the overlap of FIRST and SECOND (computed from their real footprints) on a
    vertical tile edge and in the middle of a tile row, so that the AOI spans two tiles."""
    overlap = to_utm(shape(items[FIRST]["geometry"]).intersection(shape(items[SECOND]["geometry"])))
    point = overlap.representative_point()
    x = round(point.x / TILE_M) * TILE_M
    y = (math.floor(point.y / TILE_M) + 0.5) * TILE_M
    assert overlap.contains(box(x, y, x, y).buffer(AOI_HALF_M + COG_MARGIN_M + 1000.0))
    return x, y


def aoi_bbox(centre: tuple[float, float]) -> tuple[float, float, float, float]:
    """The lon/lat bbox (W, S, E, N) of the 1.2 km square around ``centre``, shrunk by 30 m so
    that the bbox, once in UTM, stays inside the tile row."""
    x, y = centre
    half = AOI_HALF_M - 30.0
    return to_lonlat(box(x - half, y - half, x + half, y + half)).bounds


def swath_edge(x: np.ndarray, y: np.ndarray, centre: tuple[float, float]) -> np.ndarray:
    """True outside FIRST's simulated swath: west of a slanted line 250 m west of the AOI
    centre (in the western output tile)."""
    cx, cy = centre
    return x - 0.25 * (y - cy) < cx - 250.0


def cloud_centre(centre: tuple[float, float]) -> tuple[float, float]:
    """A small cloud of FIRST, in the eastern tile."""
    return centre[0] + 305.0, centre[1] + 305.0


def clear_point(centre: tuple[float, float]) -> tuple[float, float]:
    """A pixel centre where FIRST has data and no cloud (eastern tile, far from the cloud)."""
    return centre[0] + 305.0, centre[1] - 395.0


def gap_point(centre: tuple[float, float]) -> tuple[float, float]:
    """A pixel centre outside FIRST's swath (SECOND fills it on the merged date)."""
    return centre[0] - 505.0, centre[1] + 5.0


# ---------------------------------------------------------------------------------------------
# Stand-in COGs
# ---------------------------------------------------------------------------------------------


def reflectance(band: str, x: np.ndarray, y: np.ndarray, gain: float = 1.0) -> np.ndarray:
    """The surface reflectance of the scene at UTM points: the spectrum with a spatial
    texture (fields and hedges) that every band shares."""
    texture = 1.0 + 0.18 * np.sin(x / 173.0) * np.cos(y / 241.0) + 0.06 * np.sin((x + y) / 47.0)
    return SPECTRUM[band] * texture * gain


def encode(values: np.ndarray, item: Mapping[str, Any]) -> np.ndarray:
    """Reflectance -> uint16 DNs by the item's own rule (DN = (value - offset) / scale);
    valid DNs are >= 1 (0 is nodata)."""
    rule = EARTH_SEARCH_V1.s2_scaling(item)
    dn = np.rint((values - rule.offset) / rule.scale)
    return np.clip(dn, 1, 65535).astype(np.uint16)


def decoded(values: np.ndarray, item: Mapping[str, Any]) -> np.ndarray:
    """What the encoded DNs mean (reflectance quantised by the DN step)."""
    rule = EARTH_SEARCH_V1.s2_scaling(item)
    return encode(values, item).astype(np.float64) * rule.scale + rule.offset


def asset_window(
    asset: Mapping[str, Any], bounds: tuple[float, float, float, float]
) -> tuple[tuple[float, ...], int, int]:
    """(transform, rows, cols) of the part of an asset's real pixel grid (its
    ``proj:transform``/``proj:shape``) that covers ``bounds``, snapped outwards to its pixels."""
    a, _, c, _, e, f = asset["proj:transform"][:6]
    rows_all, cols_all = asset["proj:shape"]
    west, south, east, north = bounds
    col0, col1 = math.floor((west - c) / a), math.ceil((east - c) / a)
    row0, row1 = math.floor((f - north) / -e), math.ceil((f - south) / -e)
    col0, row0 = max(col0, 0), max(row0, 0)
    col1, row1 = min(col1, cols_all), min(row1, rows_all)
    assert col1 > col0 and row1 > row0, f"{bounds} is outside the asset's grid"
    return (a, 0.0, c + col0 * a, 0.0, e, f + row0 * e), row1 - row0, col1 - col0


def pixel_centres(
    transform: Sequence[float], rows: int, cols: int
) -> tuple[np.ndarray, np.ndarray]:
    a, _, c, _, e, f = transform
    x = c + (np.arange(cols) + 0.5) * a
    y = f + (np.arange(rows) + 0.5) * e
    return np.meshgrid(x, y)


def write_stand_in_item(
    item: Mapping[str, Any],
    directory: Path,
    bounds: tuple[float, float, float, float],
    centre: tuple[float, float],
    *,
    swath: bool,
    cloud: bool,
) -> dict[str, Any]:
    """A copy of the real ``item`` whose profile assets (10 bands + SCL) are local COGs on the
    item's own grids over ``bounds``; every other field is the real document's.

    ``swath``: DN 0 (all bands and SCL) outside a simulated swath edge. ``cloud``: a cloud
    (SCL 9, bright reflectance) at :func:`cloud_centre`.
    """
    out = copy.deepcopy(dict(item))
    epsg = int(item["properties"]["proj:epsg"])
    directory.mkdir(parents=True, exist_ok=True)
    keys = EARTH_SEARCH_V1.s2_asset_keys()
    gain = GAIN.get(item["id"], 1.0)
    for name, key in keys.items():
        asset = item["assets"][key]
        transform, rows, cols = asset_window(asset, bounds)
        x, y = pixel_centres(transform, rows, cols)
        outside = swath_edge(x, y, centre) if swath else np.zeros(x.shape, bool)
        cx, cy = cloud_centre(centre)
        cloudy = (np.hypot(x - cx, y - cy) < CLOUD_RADIUS_M) if cloud else np.zeros(x.shape, bool)
        if name == "SCL":
            data = np.where(cloudy, SCL_CLOUD_HIGH, SCL_VEGETATION).astype(np.uint8)
        else:
            values = np.where(cloudy, CLOUD[name], reflectance(name, x, y, gain))
            data = encode(values, item)
        data[outside] = 0
        path = directory / f"{key}.tif"
        write_cog(path, data, epsg, transform, nodata=0)
        out["assets"][key] = {**asset, "href": str(path)}
    return out


def collection_document(collection_id: str, items: Sequence[Mapping[str, Any]]) -> dict:
    """A minimal valid STAC 1.0 Collection (extent of ``items``; a whole-world extent when
    there are none, like an empty collection of a real catalog)."""
    if items:
        bboxes = np.array([i["bbox"] for i in items])
        spatial = [*bboxes[:, :2].min(axis=0), *bboxes[:, 2:].max(axis=0)]
        times = sorted(i["properties"]["datetime"] for i in items)
        temporal = [times[0], times[-1]]
    else:
        spatial, temporal = [-180.0, -90.0, 180.0, 90.0], ["2013-04-11T00:00:00Z", None]
    return {
        "type": "Collection",
        "stac_version": "1.0.0",
        "id": collection_id,
        "description": f"{collection_id}: real Earth Search v1 items served locally",
        "license": "proprietary",
        "extent": {"spatial": {"bbox": [[float(v) for v in spatial]]},
                   "temporal": {"interval": [temporal]}},
        "links": [],
    }  # fmt: skip


def serve(items: Sequence[Mapping[str, Any]], source: Path) -> RustacServer:
    """A (not started) local STAC API with the items in ``sentinel-2-l2a`` and an empty
    ``landsat-c2-l2`` collection, as Earth Search has both."""
    content = CatalogContent(
        source=source,
        collections=(collection_document(S2_COLLECTION, items),
                     collection_document(LANDSAT_COLLECTION, [])),
        items=tuple({**i, "collection": S2_COLLECTION} for i in items),
    )  # fmt: skip
    return RustacServer(content)


# ---------------------------------------------------------------------------------------------
# Test A: a run on the two overlapping real items
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def scene(real_data_dir: Path, tmp_path_factory) -> Iterator[dict[str, Any]]:
    """The two real items with stand-in COGs, served; the AOI; the geometry of the scene."""
    items = real_items(real_data_dir)
    centre = aoi_centre(items)
    x, y = centre
    reach = AOI_HALF_M + COG_MARGIN_M
    bounds = (x - reach, y - reach, x + reach, y + reach)
    root = tmp_path_factory.mktemp("real-items-catalog")
    local = [
        write_stand_in_item(items[FIRST], root / FIRST, bounds, centre, swath=True, cloud=True),
        write_stand_in_item(items[SECOND], root / SECOND, bounds, centre, swath=False, cloud=False),
    ]
    with serve(local, root / "catalog.json") as server:
        yield {"url": server.url, "real": items, "local": {i["id"]: i for i in local},
               "centre": centre, "bbox": aoi_bbox(centre)}  # fmt: skip


@pytest.mark.realdata
def test_stand_in_assets_sit_on_the_items_own_grids(scene):
    """The COGs are in the item's CRS, on its 10 m / 20 m pixel grids (offsets from the
    real assets' proj:transform are whole pixels), nodata 0; the documents are the real ones
    but for the asset hrefs."""
    for item_id, item in scene["local"].items():
        real = scene["real"][item_id]
        for key in EARTH_SEARCH_V1.s2_asset_keys().values():
            asset = real["assets"][key]
            with rasterio.open(item["assets"][key]["href"]) as dataset:
                assert dataset.crs.to_epsg() == real["properties"]["proj:epsg"]
                a, _, c, _, e, f = asset["proj:transform"][:6]
                assert dataset.transform.a == a and dataset.transform.e == e
                assert (dataset.transform.c - c) % a == 0 and (dataset.transform.f - f) % e == 0
                assert dataset.nodata == 0
        # every other field is the real document's
        assert {k: v for k, v in item.items() if k != "assets"} == {
            k: v for k, v in real.items() if k != "assets"
        }
        assert item["assets"].keys() == real["assets"].keys()


@pytest.fixture(scope="module")
def production(scene, prefect_harness, tmp_path_factory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("real-items-run")
    bbox = ",".join(f"{v:.7f}" for v in scene["bbox"])
    result = tamrf(
        ["run", "--catalog", "earth-search-v1", "--catalog-url", scene["url"], "--bbox", bbox,
         "--start", DATE, "--end", DATE, "--dates", DATE, "--tile-size-m", f"{TILE_M:g}",
         "--tiles-in-flight", "2", "--workers", "1", "--out-dir", str(out), "--no-progress"],
    )  # fmt: skip
    return {"result": result, "out": out}


def run_summary(production: Mapping[str, Any]) -> dict[str, Any]:
    """The run's summary, once the command succeeded (else its output, as the failure)."""
    result = production["result"]
    assert result.exit_code == 0, result.output
    return json.loads((production["out"] / "run-summary.json").read_text())


@pytest.mark.realdata
def test_run_on_real_items_succeeds_and_finds_them(production):
    summary = run_summary(production)
    found = summary["collections"]
    assert sorted(found[S2_COLLECTION]["ids"]) == sorted([FIRST, SECOND])
    assert found[LANDSAT_COLLECTION]["count"] == 0
    assert len(summary["level3"]["tiles"]) == 2, "the AOI straddles one tile edge"
    assert summary["level3"]["produced_now"] == summary["level3"]["tiles"]
    assert summary["level3"]["failed"] == [] and summary["broken_assets"] == []


@pytest.mark.realdata
def test_same_day_items_are_one_date_in_every_tile(production):
    summary = run_summary(production)
    assert len(summary["tiles"]) == 2
    for tile in summary["tiles"]:
        s2 = next(c for c in tile["cubes"] if c["sensor"] == "sentinel-2")
        assert s2["items"] == 2, tile
        assert s2["dates"] == [DATE], tile
        assert s2["dropped_dates"] == []
        landsat = next(c for c in tile["cubes"] if c["sensor"] == "landsat")
        assert landsat["items"] == 0 and landsat["dates"] == []


@pytest.mark.realdata
def test_provenance_records_each_real_items_scaling_rule(production, scene):
    """The key check: per tile, the item ids and the rule the profile decided for each REAL
    document (from its own flag and baseline)."""
    from pipelines.level3 import completion_records

    summary = run_summary(production)
    records = completion_records(summary["level3"]["store"])
    assert sorted(records) == sorted(summary["level3"]["tiles"])
    expected = {i: EARTH_SEARCH_V1.s2_scaling(scene["real"][i]).name for i in (FIRST, SECOND)}
    for item_id, rule in expected.items():
        flag = scene["real"][item_id]["properties"]["earthsearch:boa_offset_applied"]
        assert rule == ("s2-earthsearch-boa-offset-applied" if flag
                        else "s2-earthsearch-boa-offset-in-dn")  # fmt: skip
    for tile_id, record in records.items():
        provenance = record["provenance"]
        assert provenance["status"] == "predicted"
        inputs = provenance["inputs"]["sentinel-2"]
        assert sorted(i["id"] for i in inputs) == sorted(expected), tile_id
        for entry in inputs:
            rules = {band["rule"] for band in entry["scaling"].values()}
            assert rules == {expected[entry["id"]]}, (tile_id, entry["id"])
            assert set(entry["scaling"]) == {b.name for b in S2_BANDS}
        assert provenance["inputs"]["landsat"] == []


def aoi_mask(ds, bbox: Sequence[float]) -> np.ndarray:
    """(y, x) mask of the store pixels whose centres are inside the AOI."""
    outline = to_utm(box(*bbox))
    xx, yy = np.meshgrid(ds.x.values, ds.y.values)
    return shapely.contains_xy(outline, xx, yy)


@pytest.mark.realdata
def test_level3_store_has_values_over_the_aoi(production, scene):
    import rioxarray  # noqa: F401 (registers .rio)

    from pipelines.level3 import open_level3

    summary = run_summary(production)
    ds = open_level3(summary["level3"]["store"])
    assert ds.rio.crs.to_epsg() == EPSG
    assert [str(t)[:10] for t in ds.time.values] == [DATE]
    inside = aoi_mask(ds, scene["bbox"])
    assert inside.sum() > 0.95 * (2 * (AOI_HALF_M - 30.0) / 10) ** 2
    for band in ("S2_B4", "S2_B8", "S2_B11"):
        values = ds[band].isel(time=0).values
        assert np.isfinite(values[inside]).all(), band


@pytest.mark.realdata
def test_cube_decodes_the_real_items_encoding_once(scene):
    """Reflectance of a 10 m band at clear pixels equals what the COGs encode by the item's
    rule: the offset rule is applied once (applying it twice, or the assets' raster:bands
    offset on top, would be off by 0.1). Also: FIRST wins where it has data, SECOND fills
    FIRST's swath gap, and FIRST's cloud is masked."""
    from pipelines.datacube import CubeConfig, assemble_s2
    from pipelines.grid import GridSpec, tiles_for_aoi

    local = [scene["local"][FIRST], scene["local"][SECOND]]
    tiles = tiles_for_aoi(list(scene["bbox"]), GridSpec(tile_size_m=TILE_M))
    assert len(tiles) == 2
    checks = [
        (clear_point(scene["centre"]), FIRST, True),
        (gap_point(scene["centre"]), SECOND, True),
        (cloud_centre(scene["centre"]), FIRST, False),
    ]
    for (x, y), source, clear in checks:
        tile = next(t for t in tiles if box(*t.bounds).contains(box(x, y, x, y)))
        cube = assemble_s2(local, tile.grid(), EARTH_SEARCH_V1, CubeConfig(min_valid_fraction=0))
        assert cube.sizes["time"] == 1 and int(cube.n_items[0]) == 2
        pixel = cube.sel(x=x, y=y, method="nearest").isel(time=0)
        assert abs(float(pixel.x) - x) < 5 and abs(float(pixel.y) - y) < 5
        assert bool(pixel["valid"]) is clear, (source, x, y)
        if not clear:
            continue
        item = scene["real"][source]
        xs, ys = np.array([float(pixel.x)]), np.array([float(pixel.y)])
        other = SECOND if source == FIRST else FIRST
        for band in ("S2_B2", "S2_B4", "S2_B8"):
            want = decoded(reflectance(band, xs, ys, GAIN[source]), item)[0]
            got = float(pixel["observations"].sel(band=band))
            assert got == pytest.approx(want, abs=1e-4), (source, band)
            # the other item's value differs by more than that: the test tells them apart
            assert abs(decoded(reflectance(band, xs, ys, GAIN[other]), item)[0] - want) > 5e-4


# ---------------------------------------------------------------------------------------------
# Test B: a plan over several real footprints (metadata only)
# ---------------------------------------------------------------------------------------------

PLAN_BBOX = (-39.95, -4.74, -38.85, -4.62)
"""~120 x 13 km over parts of 24MUV, 24MVV and 24MWV (real footprints of the datatake)."""
FLOP_RATE_GFLOPS = 50.0


@pytest.mark.realdata
def test_plan_assigns_real_items_to_tiles_by_footprint(real_data_dir, tmp_path):
    from flows.cli import app

    items = real_items(real_data_dir)
    far = "S2B_20EPT_20250731_0_L2A"
    assert far in items
    with serve(list(items.values()), tmp_path / "catalog.json") as server:
        result = CliRunner().invoke(
            app,
            ["plan", "--catalog", "earth-search-v1", "--catalog-url", server.url,
             "--bbox", ",".join(str(v) for v in PLAN_BBOX), "--start", DATE, "--end", DATE,
             "--dates", DATE, "--flop-rate", f"{FLOP_RATE_GFLOPS:g}",
             "--out-dir", str(tmp_path / "out"), "--json", str(tmp_path / "plan.json")],
        )  # fmt: skip
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert not (tmp_path / "out").exists(), "a plan writes nothing"
    plan = json.loads((tmp_path / "plan.json").read_text())

    def grown_outline(tile: Mapping[str, Any]) -> Any:
        west, south, east, north = tile["bounds"]
        m = MARGIN_PX * 10
        return to_lonlat(box(west - m, south - m, east + m, north + m), tile["epsg"])

    # The search covers the tiles grown by the margin, not only the AOI: an item that
    # reaches only the margins of the AOI's tiles still feeds their edge pixels.
    area = shapely.union_all([grown_outline(t) for t in plan["tiles"]])
    searched = {i for i, item in items.items() if shape(item["geometry"]).intersects(area)}
    assert {"S2B_24MUV_20250731_0_L2A", "S2B_24MVV_20250731_0_L2A",
            "S2B_24MWV_20250731_0_L2A"} <= searched  # fmt: skip
    assert far not in searched
    assert plan["items_found"] == {S2_COLLECTION: len(searched), LANDSAT_COLLECTION: 0}
    assert plan["flop_rate_gflops"] == FLOP_RATE_GFLOPS
    assert plan["output_dates"] == [DATE]

    footprints = {i: shape(items[i]["geometry"]) for i in searched}
    counts = set()
    for tile in plan["tiles"]:
        assert tile["epsg"] == EPSG
        west, _, east, _ = tile["bounds"]
        outline = grown_outline(tile)
        expected = sorted(i for i, footprint in footprints.items() if footprint.intersects(outline))
        assert sorted(tile["s2_items"]) == expected, tile["tile"]
        assert far not in tile["s2_items"]
        assert tile["landsat_items"] == []
        assert tile["s2_dates"] == ([DATE] if expected else [])
        size = round((east - west) / 10) + 2 * MARGIN_PX
        assert tile["cube_shape"] == [size, size]
        assert tile["estimated_s"] == pytest.approx(tile["gflops"] / FLOP_RATE_GFLOPS, abs=0.1)
        counts.add(len(expected))
    assert {1, 2} <= counts, "assignment is by footprint, not every item to every tile"
    total = plan["total"]
    assert total["tiles"] == len(plan["tiles"]) == total["to_compute"]
    assert total["estimated_s"] == pytest.approx(total["gflops"] / FLOP_RATE_GFLOPS, abs=0.1)
