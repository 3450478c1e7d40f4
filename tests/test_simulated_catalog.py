"""Simulated products on disk: COGs + static STAC (Earth Search v1 form) + truth Zarr.

Real files, real STAC API servers, no mocks. Every expected value is computed here, from the
in-memory simulator (``Simulation``), the published decoding rules or shapely/pyproj, never
from the writer's own code paths.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pystac
import pytest
import rasterio
import shapely
from affine import Affine
from pyproj import CRS, Transformer
from pystac_client import Client
from shapely.geometry import box, shape
from stac_expectations import expected_ids, parse_time
from typer.testing import CliRunner

from flows.cli import app
from pipelines.demo.simulated_catalog import SimulatedCatalog, write_simulated_catalog
from pipelines.demo.stac_servers import PgstacServer, RustacServer, StacServer, pgstac_availability
from pipelines.demo.truth_store import open_truth
from pipelines.stac_validation import validate_stac
from tamrf_xr.bands import BANDS, LANDSAT_BANDS, S2_BANDS
from tamrf_xr.simulate import LandCover, Simulation, SimulationConfig

S2 = "sentinel-2-l2a"
LANDSAT = "landsat-c2-l2"

# Spans 2022-01-25 (processing baseline 04.00: +1000 DN unless Earth Search removed it), so
# both S2 encodings appear; a high L2SR fraction gives Landsat items with and without ST.
CONFIG = SimulationConfig(
    seed=5,
    width_px=96,
    height_px=96,
    start=dt.date(2022, 1, 5),
    end=dt.date(2022, 2, 20),
    landsat_l2sr_fraction=0.3,
)
# Southern hemisphere: S2 in 32755, Landsat in the northern zone 32655 (negative northings).
SOUTH = SimulationConfig(
    seed=5,
    center_lon=147.0,
    center_lat=-35.0,
    width_px=60,
    height_px=60,
    start=dt.date(2022, 6, 1),
    end=dt.date(2022, 6, 30),
)
# A region larger than one tile/scene: 2.4 km wide, 1.5 km tiles every 1.2 km, small scenes.
TILED = SimulationConfig(
    seed=2,
    width_px=240,
    height_px=240,
    start=dt.date(2022, 6, 1),
    end=dt.date(2022, 6, 20),
    s2_tile_size_m=1500.0,
    s2_tile_step_m=1200.0,
    landsat_scene_size_m=(1800.0, 1900.0),
    landsat_row_step_m=1500.0,
    landsat_path_step_m=1400.0,
)
TINY = SimulationConfig(
    seed=1, width_px=36, height_px=36, start=dt.date(2022, 6, 1), end=dt.date(2022, 6, 8)
)

S2_ASSETS = {
    "blue", "green", "red", "rededge1", "rededge2", "rededge3", "nir", "nir08", "swir16",
    "swir22", "scl",
}  # fmt: skip
LANDSAT_ASSETS = {
    "coastal", "blue", "green", "red", "nir08", "swir16", "swir22", "qa_pixel", "qa_radsat",
    "qa_aerosol",
}  # fmt: skip
S2_ID = re.compile(r"^S2([AB])_(\d{2})([C-X])([A-Z]{2})_(\d{8})_0_L2A$")
LANDSAT_ID = re.compile(r"^LC0([89])_(L2S[PR])_(\d{3})(\d{3})_(\d{8})_02_T1$")

# Published decoding constants (Earth Search / USGS), written out here on purpose.
S2_DN_SCALE = 1e-4
LS_SR_SCALE, LS_SR_OFFSET = 2.75e-5, -0.2
LS_ST_SCALE, LS_ST_OFFSET = 0.00341802, 149.0

# Landsat QA_PIXEL bits: fill, cirrus, cloud shadow, snow, clear.
QA_FILL, QA_CIRRUS, QA_SHADOW, QA_SNOW, QA_CLEAR = 0, 2, 4, 5, 6

_WRITE_SCRIPT = (
    "import sys; from pathlib import Path; "
    "from pipelines.demo.simulated_catalog import write_simulated_catalog; "
    "from tamrf_xr.simulate import SimulationConfig; "
    "write_simulated_catalog(SimulationConfig.from_json(sys.argv[1]), Path(sys.argv[2]))"
)


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def relative_files(root: Path) -> list[str]:
    """Every file under ``root``, as sorted POSIX paths relative to it."""
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def item_files(catalog: Path) -> list[Path]:
    """The item JSON files of a static catalog written by the simulator."""
    return [
        path
        for path in sorted(catalog.parent.rglob("*.json"))
        if path.name not in {"catalog.json", "collection.json"}
    ]


def load_items(catalog: Path) -> dict[str, pystac.Item]:
    """Items by id exactly as written (pystac would otherwise migrate ``proj:epsg`` to
    projection v2 ``proj:code``), with resolvable asset hrefs."""
    items = [
        pystac.Item.from_dict(json.loads(path.read_text()), href=str(path), migrate=False)
        for path in item_files(catalog)
    ]
    return {item.id: item for item in items}


def asset_path(item: pystac.Item, key: str) -> Path:
    """The file an item's asset points to."""
    return Path(item.assets[key].get_absolute_href())


def read_asset(item: pystac.Item, key: str) -> np.ndarray:
    with rasterio.open(asset_path(item, key)) as dataset:
        return dataset.read(1)


def band_info(item: pystac.Item, key: str) -> dict[str, Any]:
    return item.assets[key].extra_fields["raster:bands"][0]


def s2_has_dn_offset(item: pystac.Item) -> bool:
    """Whether the DNs still carry the +1000 of processing baseline 04.00 (the decoding rule)."""
    applied = item.properties.get("earthsearch:boa_offset_applied", False)
    return item.properties["s2:processing_baseline"] >= "04.00" and not applied


def decode_s2(dn: np.ndarray, item: pystac.Item) -> np.ndarray:
    """Reflectance of S2 DNs: DN/1e4, or (DN-1000)/1e4 when the offset is still in the DNs."""
    return (dn.astype(np.float64) - (1000.0 if s2_has_dn_offset(item) else 0.0)) * S2_DN_SCALE


def decode_landsat(dn: np.ndarray, thermal: bool) -> np.ndarray:
    """Landsat C2 L2 surface reflectance, or surface temperature in Kelvin."""
    if thermal:
        return dn.astype(np.float64) * LS_ST_SCALE + LS_ST_OFFSET
    return dn.astype(np.float64) * LS_SR_SCALE + LS_SR_OFFSET


def pixel_centres(transform: list[float], shape_: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """(x, y) of every pixel centre of a north-up raster, each (rows, cols)."""
    a, _, c, _, e, f = transform[:6]
    rows, cols = shape_
    xs = c + (np.arange(cols) + 0.5) * a
    ys = f + (np.arange(rows) + 0.5) * e
    return np.meshgrid(xs, ys)


def geometry_in(item: dict[str, Any] | pystac.Item, epsg: int) -> shapely.Geometry:
    """The item's lon/lat geometry reprojected to ``epsg``."""
    geometry = item.geometry if isinstance(item, pystac.Item) else item["geometry"]
    to_crs = Transformer.from_crs(4326, epsg, always_xy=True)

    def project(xy: np.ndarray) -> np.ndarray:
        return np.column_stack(to_crs.transform(xy[:, 0], xy[:, 1]))

    return shapely.transform(shape(geometry), project)


def write_in_subprocess(config: SimulationConfig, out: Path, repo_root: Path) -> None:
    """Write a product from a fresh interpreter with a fixed, different hash seed."""
    env = {**os.environ, "PYTHONHASHSEED": "4242"}
    done = subprocess.run(
        [sys.executable, "-c", _WRITE_SCRIPT, config.to_json(), str(out)],
        cwd=repo_root,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr


# --------------------------------------------------------------------------------------------
# Products, written once per module
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def product(tmp_path_factory: pytest.TempPathFactory) -> SimulatedCatalog:
    """CONFIG written with its truth store."""
    return write_simulated_catalog(CONFIG, tmp_path_factory.mktemp("main") / "product")


@pytest.fixture(scope="module")
def simulation() -> Simulation:
    return Simulation(CONFIG)


@pytest.fixture(scope="module")
def items(product: SimulatedCatalog) -> dict[str, pystac.Item]:
    return load_items(product.catalog)


@pytest.fixture(scope="module")
def south(tmp_path_factory: pytest.TempPathFactory) -> SimulatedCatalog:
    return write_simulated_catalog(
        SOUTH, tmp_path_factory.mktemp("south") / "product", with_truth=False
    )


@pytest.fixture(scope="module")
def tiled(tmp_path_factory: pytest.TempPathFactory) -> SimulatedCatalog:
    return write_simulated_catalog(
        TILED, tmp_path_factory.mktemp("tiled") / "product", with_truth=False
    )


@pytest.fixture(scope="module")
def tiled_item_dicts(tiled: SimulatedCatalog) -> list[dict[str, Any]]:
    """The tiled product's item JSON documents, as written."""
    return [json.loads(path.read_text()) for path in item_files(tiled.catalog)]


# --------------------------------------------------------------------------------------------
# 1. Determinism
# --------------------------------------------------------------------------------------------


def test_same_config_gives_byte_identical_products(
    product: SimulatedCatalog, tmp_path_factory: pytest.TempPathFactory, repo_root: Path
) -> None:
    """Another process (other hash seed), another directory name: the very same bytes."""
    twin = tmp_path_factory.mktemp("twin") / "other-name"
    write_in_subprocess(CONFIG, twin, repo_root)
    files = relative_files(product.root)
    assert relative_files(twin) == files
    # Everything is there: COGs of both sensors, STAC JSON, Zarr metadata and chunks.
    assert any(f.endswith(".tif") for f in files) and any(f.endswith(".TIF") for f in files)
    assert "stac/catalog.json" in files and "simulation.json" in files
    assert "truth.zarr/zarr.json" in files
    assert any(re.fullmatch(r"truth\.zarr/S2_B4/c/\d+/\d+/\d+", f) for f in files)
    different = [f for f in files if (product.root / f).read_bytes() != (twin / f).read_bytes()]
    assert different == []


def test_other_seed_gives_other_cogs(
    product: SimulatedCatalog, tmp_path_factory: pytest.TempPathFactory
) -> None:
    other = write_simulated_catalog(
        dataclasses.replace(CONFIG, seed=CONFIG.seed + 1),
        tmp_path_factory.mktemp("seed") / "product",
        with_truth=False,
    )

    def band_cog_hashes(root: Path) -> set[str]:
        # Reflectance / temperature bands only: a QA band can be all zeros whatever the seed.
        cogs = [p for p in (root / "cogs").rglob("*") if p.suffix in {".tif", ".TIF"}]
        bands = [p for p in cogs if p.stem not in {"SCL"} and "_QA" not in p.stem]
        assert len(bands) > 20
        return {hashlib.sha256(p.read_bytes()).hexdigest() for p in bands}

    assert band_cog_hashes(product.root).isdisjoint(band_cog_hashes(other.root))
    assert (product.root / "simulation.json").read_text() != (
        other.root / "simulation.json"
    ).read_text()


# --------------------------------------------------------------------------------------------
# 2. COGs: readable, cloud-optimized, described by their STAC metadata, lossless
# --------------------------------------------------------------------------------------------


def test_items_are_the_simulated_acquisitions(
    product: SimulatedCatalog, items: dict[str, pystac.Item], simulation: Simulation
) -> None:
    expected = {a.item_id: a.collection for a in simulation.acquisitions}
    assert {i: item.collection_id for i, item in items.items()} == expected
    counts = {S2: 0, LANDSAT: 0}
    for collection_id in expected.values():
        counts[collection_id] += 1
    assert product.item_counts == counts
    assert SimulatedCatalog.at(product.root).item_counts == counts
    # Every item file is reachable from the catalog's links.
    linked = pystac.Catalog.from_file(str(product.catalog)).get_items(recursive=True)
    assert {item.id for item in linked} == set(items)


def test_cogs_match_stac_metadata_and_simulation(
    items: dict[str, pystac.Item], simulation: Simulation
) -> None:
    checked = 0
    for acquisition in simulation.acquisitions:
        stac_item = items[acquisition.item_id]
        simulated = simulation.item(acquisition)
        assert set(stac_item.assets) == set(simulated.assets)
        epsg = stac_item.properties["proj:epsg"]  # item level, as Earth Search v1
        for key, raster in simulated.assets.items():
            asset = stac_item.assets[key]
            bands = band_info(stac_item, key)
            with rasterio.open(asset_path(stac_item, key)) as ds:
                assert ds.driver == "GTiff" and ds.count == 1
                assert ds.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
                assert ds.crs.to_epsg() == epsg == raster.epsg
                assert ds.transform == Affine(*asset.extra_fields["proj:transform"])
                assert ds.shape == tuple(asset.extra_fields["proj:shape"])
                assert ds.dtypes[0] == bands["data_type"]
                assert ds.nodata == bands.get("nodata")
                data = ds.read(1)
            assert data.dtype == raster.data.dtype
            np.testing.assert_array_equal(data, raster.data, err_msg=f"{acquisition.item_id}/{key}")
            checked += 1
    assert checked > 200


# --------------------------------------------------------------------------------------------
# 3. STAC documents: valid, Earth Search v1 form, decodable
# --------------------------------------------------------------------------------------------


def test_stac_documents_validate(product: SimulatedCatalog) -> None:
    documents = sorted((product.root / "stac").rglob("*.json"))
    kinds = {"Catalog": 0, "Collection": 0, "Feature": 0}
    for path in documents:
        document = json.loads(path.read_text())
        validate_stac(document)
        assert document["stac_version"] == "1.0.0"
        kinds[document["type"]] += 1
        for asset in document.get("assets", {}).values():
            href = asset["href"]  # relative, so that the product can move
            assert not href.startswith("/") and "://" not in href
            assert (path.parent / href).resolve().is_file()
    assert kinds == {"Catalog": 1, "Collection": 2, "Feature": sum(product.item_counts.values())}


def test_earth_search_ids_and_asset_keys(items: dict[str, pystac.Item]) -> None:
    corrections = set()
    for item_id, item in items.items():
        props = item.properties
        if item.collection_id == S2:
            match = S2_ID.fullmatch(item_id)
            assert match, item_id
            unit, zone, band, square, day = match.groups()
            assert props["platform"] == f"sentinel-2{unit.lower()}"
            assert (props["mgrs:utm_zone"], props["mgrs:latitude_band"]) == (int(zone), band)
            assert props["mgrs:grid_square"] == square
            assert set(item.assets) == S2_ASSETS
        else:
            assert item.collection_id == LANDSAT
            match = LANDSAT_ID.fullmatch(item_id)
            assert match, item_id
            unit, correction, path, row, day = match.groups()
            assert props["platform"] == f"landsat-{unit}"
            assert props["landsat:correction"] == correction
            assert (props["landsat:wrs_path"], props["landsat:wrs_row"]) == (path, row)
            thermal = {"lwir11"} if correction == "L2SP" else set()
            assert set(item.assets) == LANDSAT_ASSETS | thermal
            corrections.add(correction)
        assert item.datetime is not None and f"{item.datetime:%Y%m%d}" == day
    assert corrections == {"L2SP", "L2SR"}


def test_s2_offset_declarations(items: dict[str, pystac.Item]) -> None:
    seen = set()
    for item in items.values():
        if item.collection_id != S2:
            continue
        baseline = item.properties["s2:processing_baseline"]
        assert "earthsearch:boa_offset_applied" in item.properties
        applied = item.properties["earthsearch:boa_offset_applied"]
        for key in S2_ASSETS - {"scl"}:
            bands = band_info(item, key)
            assert bands["scale"] == S2_DN_SCALE
            assert bands["offset"] == (-0.1 if baseline >= "04.00" else 0.0)
        seen.add((baseline, applied if baseline >= "04.00" else None))
    # Both encodings and both flavours of baseline 04.00 are in the product.
    assert seen == {("03.01", None), ("04.00", True), ("04.00", False)}


def test_landsat_scale_offset_declarations(items: dict[str, pystac.Item]) -> None:
    for item in items.values():
        if item.collection_id != LANDSAT:
            continue
        for band in LANDSAT_BANDS:
            if band.asset_key not in item.assets:
                continue
            info = band_info(item, band.asset_key)
            if band.quantity == "temperature":
                assert (info["scale"], info["offset"]) == (LS_ST_SCALE, LS_ST_OFFSET)
            else:
                assert (info["scale"], info["offset"]) == (LS_SR_SCALE, LS_SR_OFFSET)


def test_decoded_dns_are_the_observed_values(
    items: dict[str, pystac.Item], simulation: Simulation
) -> None:
    """The decoding rule applied to the COGs gives the sensors' physical values back, to
    within half a DN, on every valid pixel above the clipping floor (DN 1)."""
    s2_by_key = {b.asset_key: b for b in S2_BANDS}
    for acquisition in simulation.acquisitions:
        item = items[acquisition.item_id]
        observation = simulation.observe(acquisition)
        if item.collection_id == S2:
            for key, band in s2_by_key.items():
                dn = read_asset(item, key)
                res = band.native_resolution
                rows, cols = simulation.window(acquisition, res)
                physical = (observation.bands_10m if res == 10 else observation.bands_20m)[
                    band.name
                ][rows, cols]
                valid = dn > 1
                error = np.abs(decode_s2(dn, item) - physical)[valid]
                assert error.max() <= 0.5 * S2_DN_SCALE + 1e-6, (item.id, key)
        else:
            rows, cols = simulation.window(acquisition, 30.0)
            for band in LANDSAT_BANDS:
                if band.asset_key not in item.assets:
                    continue
                thermal = band.quantity == "temperature"
                dn = read_asset(item, band.asset_key)
                physical = (
                    observation.temperature_k if thermal else observation.reflectance[band.name]
                )[rows, cols]
                valid = dn > 1
                step = LS_ST_SCALE if thermal else LS_SR_SCALE
                error = np.abs(decode_landsat(dn, thermal) - physical)[valid]
                assert error.max() <= 0.5 * step + 1e-5, (item.id, band.asset_key)


def test_decoded_s2_matches_truth_on_clear_pixels(
    items: dict[str, pystac.Item], simulation: Simulation
) -> None:
    """S2 10 m bands vs the ground truth where SCL says vegetation, bare soil or water."""
    channel = {b.name: i for i, b in enumerate(BANDS)}
    pooled: dict[str, list[np.ndarray]] = {}
    for acquisition in simulation.acquisitions:
        item = items[acquisition.item_id]
        if item.collection_id != S2:
            continue
        scl = np.repeat(np.repeat(read_asset(item, "scl"), 2, axis=0), 2, axis=1)
        clear = np.isin(scl, (4, 5, 6))
        truth = simulation.truth(acquisition.day_index)
        rows, cols = simulation.window(acquisition, 10.0)
        for band in S2_BANDS:
            if band.native_resolution != 10:
                continue
            decoded = decode_s2(read_asset(item, band.asset_key), item)
            error = np.abs(decoded - truth[channel[band.name]][rows, cols])[clear]
            if error.size >= 100:
                # A wrong offset rule would be 0.1 off on every pixel of the item.
                assert error.mean() < 0.03, (item.id, band.asset_key, error.mean())
            pooled.setdefault(band.name, []).append(error)
    assert len(pooled) == 4
    for name, errors in pooled.items():
        error = np.concatenate(errors)
        assert error.size > 5000 and error.mean() < 0.01, (name, error.mean())


# --------------------------------------------------------------------------------------------
# 4-5. Geometry: southern hemisphere, several tiles/scenes, footprints
# --------------------------------------------------------------------------------------------


def test_southern_hemisphere_crs(south: SimulatedCatalog) -> None:
    south_items = load_items(south.catalog)
    assert {i.collection_id for i in south_items.values()} == {S2, LANDSAT}
    for item in south_items.values():
        with rasterio.open(asset_path(item, "red")) as ds:
            epsg, bounds = ds.crs.to_epsg(), ds.bounds
        assert epsg == item.properties["proj:epsg"]
        if item.collection_id == S2:
            assert epsg == 32755 and 6.1e6 < bounds.bottom < bounds.top < 6.2e6
        else:
            assert epsg == 32655 and -3.9e6 < bounds.bottom < bounds.top < -3.8e6


def test_southern_landsat_and_s2_cover_the_same_ground(south: SimulatedCatalog) -> None:
    """A Landsat pixel centre, reprojected from 32655 to 32755, lands on an S2 pixel centre
    (northing + 10,000,000 m) inside the S2 rasters, and both sensors' pixels there hold what
    the simulator observed at that place of the region."""
    simulation = Simulation(SOUTH)
    grid = simulation.grid
    to_south = Transformer.from_crs(32655, 32755, always_xy=True)
    south_items = load_items(south.catalog)
    s2_items = [i for i in south_items.values() if i.collection_id == S2]
    checked = 0
    for acquisition in simulation.acquisitions:
        item = south_items[acquisition.item_id]
        if item.collection_id != LANDSAT:
            continue
        asset = item.assets["red"]
        x, y = pixel_centres(asset.extra_fields["proj:transform"], asset.extra_fields["proj:shape"])
        assert (y < 0).all()
        xs, ys = to_south.transform(x, y)
        np.testing.assert_allclose(xs, x, atol=1e-6)
        np.testing.assert_allclose(ys, y + 10_000_000.0, atol=1e-6)
        # Position in the region's 10 m grid (the S2 / truth grid): exactly a pixel centre.
        west, _, _, north = grid.bounds
        col, row = (xs - west) / 10.0 - 0.5, (north - ys) / 10.0 - 0.5
        np.testing.assert_allclose(col, np.round(col), atol=1e-6)
        np.testing.assert_allclose(row, np.round(row), atol=1e-6)
        row, col = np.round(row).astype(int), np.round(col).astype(int)
        assert row.min() >= 0 and col.min() >= 0
        assert row.max() < grid.shape[0] and col.max() < grid.shape[1]
        # ... and it is the sample the simulated Landsat took there (centre of its 3x3 block).
        assert ((row % 3 == 1) & (col % 3 == 1)).all()
        dn = read_asset(item, "red")
        observed = simulation.observe(acquisition).reflectance["LS_B4"][row // 3, col // 3]
        valid = dn > 1
        error = np.abs(decode_landsat(dn, thermal=False) - observed)[valid]
        assert error.size > 50 and error.max() <= 0.5 * LS_SR_SCALE + 1e-5
        # Every S2 raster containing the point has a pixel centre there.
        for s2_item in s2_items:
            s2_asset = s2_item.assets["red"]
            a, _, x_west, _, e, y_north = s2_asset.extra_fields["proj:transform"][:6]
            c, r = (xs.ravel() - x_west) / a, (ys.ravel() - y_north) / e
            rows_, cols_ = s2_asset.extra_fields["proj:shape"]
            inside = (c >= 0) & (c < cols_) & (r >= 0) & (r < rows_)
            np.testing.assert_allclose(c[inside] % 1, 0.5, atol=1e-6)
            np.testing.assert_allclose(r[inside] % 1, 0.5, atol=1e-6)
            checked += int(inside.sum())
    assert checked > 1000


def edge_directions(geometry: shapely.Polygon) -> np.ndarray:
    """Directions (degrees from grid north, modulo 90) of the polygon's edges."""
    d = np.diff(np.asarray(geometry.exterior.coords), axis=0)
    return np.degrees(np.arctan2(d[:, 0], d[:, 1])) % 90.0


def test_several_tiles_and_scenes_overlap_like_real_footprints(
    tiled: SimulatedCatalog, tiled_item_dicts: list[dict[str, Any]]
) -> None:
    grid = Simulation(TILED).grid
    region = box(*grid.bounds)
    s2 = [i for i in tiled_item_dicts if i["collection"] == S2]
    landsat = [i for i in tiled_item_dicts if i["collection"] == LANDSAT]
    tiles = {i["properties"]["grid:code"] for i in s2}
    scenes = {(i["properties"]["landsat:wrs_path"], i["properties"]["landsat:wrs_row"])
              for i in landsat}  # fmt: skip
    assert len(tiles) >= 4 and len({p for p, _ in scenes}) >= 2 and len({r for _, r in scenes}) >= 2

    def utm(item: dict[str, Any]) -> shapely.Geometry:
        return geometry_in(item, grid.epsg)

    # S2: tiles of one datastrip overlap along strips as wide as size - step (300 m).
    overlap_m = TILED.s2_tile_size_m - TILED.s2_tile_step_m
    by_time: dict[str, list[dict[str, Any]]] = {}
    for item in s2:
        by_time.setdefault(item["properties"]["datetime"], []).append(item)
    for same_strip in by_time.values():
        overlaps = 0
        for k, a in enumerate(same_strip):
            for b in same_strip[k + 1 :]:
                if shape(a["geometry"]).intersection(shape(b["geometry"])).area == 0:
                    continue
                west, south_, east, north = utm(a).intersection(utm(b)).bounds
                assert min(east - west, north - south_) == pytest.approx(overlap_m, abs=0.5)
                overlaps += 1
        assert len(same_strip) < 2 or overlaps > 0
    # All tiles together cover the region, and nothing outside it.
    s2_union = shapely.union_all([utm(i) for i in s2])
    assert s2_union.area == pytest.approx(region.area, rel=1e-6)
    assert s2_union.difference(region.buffer(0.01)).area == pytest.approx(0, abs=1e-3)

    # Landsat: consecutive rows of a path (one day) overlap, and so do neighbouring paths
    # (other days); scene edges follow the tilted ground track.
    def path_row(item: dict[str, Any]) -> tuple[int, int]:
        props = item["properties"]
        return int(props["landsat:wrs_path"]), int(props["landsat:wrs_row"])

    row_laps = path_laps = 0
    for k, a in enumerate(landsat):
        (pa, ra), ga = path_row(a), shape(a["geometry"])
        tilt = np.abs(edge_directions(utm(a)) - TILED.landsat_track_tilt_deg)
        assert tilt.min() < 0.01, a["id"]
        for b in landsat[k + 1 :]:
            (pb, rb), gb = path_row(b), shape(b["geometry"])
            same_day = a["properties"]["datetime"][:10] == b["properties"]["datetime"][:10]
            if pa == pb and abs(ra - rb) == 1 and same_day:
                assert ga.intersection(gb).area > 0
                row_laps += 1
            elif abs(pa - pb) == 1 and ra == rb and ga.intersection(gb).area > 0:
                path_laps += 1
    assert row_laps > 0 and path_laps > 0


@pytest.mark.parametrize("which", ["tiled", "south"])
def test_footprints_hold_exactly_the_valid_pixels(
    which: str, request: pytest.FixtureRequest
) -> None:
    """Reproject each item geometry to its rasters' CRS: pixel centres inside it are data,
    pixel centres outside are nodata (centres within 0.5 m of the edge are not judged)."""
    written: SimulatedCatalog = request.getfixturevalue(which)
    judged = 0
    for item in load_items(written.catalog).values():
        epsg = item.properties["proj:epsg"]
        footprint = geometry_in(item, epsg)
        edge = footprint.boundary
        keys = ("red", "scl") if item.collection_id == S2 else ("red", "qa_pixel")
        for key in keys:
            asset = item.assets[key]
            x, y = pixel_centres(
                asset.extra_fields["proj:transform"], asset.extra_fields["proj:shape"]
            )
            data = read_asset(item, key)
            if key == "qa_pixel":
                valid = (data >> QA_FILL) & 1 == 0
            else:
                valid = data != band_info(item, key)["nodata"]
            inside = shapely.contains_xy(footprint, x, y)
            near_edge = shapely.distance(edge, shapely.points(x, y)) < 0.5
            assert near_edge.mean() < 0.02
            mismatch = (inside != valid) & ~near_edge
            assert not mismatch.any(), (item.id, key, int(mismatch.sum()))
            assert valid.any() and inside.any()
            judged += int((~near_edge).sum())
    assert judged > 10_000


# --------------------------------------------------------------------------------------------
# 6. Truth store
# --------------------------------------------------------------------------------------------


def test_truth_store(product: SimulatedCatalog, simulation: Simulation) -> None:
    import rioxarray  # noqa: F401  (registers .rio: a consumer's view of the georeferencing)

    ds = open_truth(product.truth)
    band_names = [b.name for b in BANDS]
    assert set(ds.data_vars) == {*band_names, "landcover", "unit_id"}
    for name in band_names:
        assert ds[name].dims == ("time", "y", "x")
        assert ds[name].attrs["grid_mapping"] == "spatial_ref"
    expected_days = pd.date_range(CONFIG.start, CONFIG.end, freq="D")
    assert list(pd.DatetimeIndex(ds.time.values)) == list(expected_days)

    stored = np.stack([ds[name].values for name in band_names], axis=1)  # (t, 18, H, W)
    assert stored.shape == (CONFIG.days, 18, CONFIG.height_px, CONFIG.width_px)
    tolerance = np.array(
        [0.005 + 1e-4 if b.quantity == "temperature" else 0.5e-4 + 1e-6 for b in BANDS]
    )[:, None, None]
    for day in range(CONFIG.days):
        error = np.abs(stored[day] - simulation.truth(day))
        assert (error <= tolerance).all(), (day, float(error.max()))

    landcover = ds["landcover"]
    classes = list(LandCover)
    assert list(landcover.attrs["flag_values"]) == [c.value for c in classes]
    assert landcover.attrs["flag_meanings"].split() == [c.name.lower() for c in classes]
    np.testing.assert_array_equal(landcover.values, simulation.landscape.landcover)

    grid = simulation.grid
    spatial_ref = ds["spatial_ref"].attrs
    assert CRS.from_wkt(spatial_ref["crs_wkt"]) == CRS.from_epsg(grid.epsg)
    x0, dx, rx, y0, ry, dy = (float(v) for v in spatial_ref["GeoTransform"].split())
    assert (dx, rx, ry, dy) == (10.0, 0.0, 0.0, -10.0)
    assert (x0, y0) == (grid.bounds[0], grid.bounds[3])
    np.testing.assert_allclose(ds.x.values, x0 + dx * (np.arange(ds.sizes["x"]) + 0.5))
    np.testing.assert_allclose(ds.y.values, y0 + dy * (np.arange(ds.sizes["y"]) + 0.5))
    assert ds["S2_B4"].rio.crs.to_epsg() == grid.epsg
    assert ds["S2_B4"].rio.transform() == Affine(dx, rx, x0, ry, dy, y0)


def test_truth_store_cadence(tmp_path: Path) -> None:
    """With ``truth_every_days`` the store holds every n-th day from the first, exactly."""
    config = dataclasses.replace(TINY, truth_every_days=3)
    written = write_simulated_catalog(config, tmp_path / "product")
    ds = open_truth(written.truth)
    days = [config.start + dt.timedelta(days=i) for i in (0, 3, 6)]
    assert list(pd.DatetimeIndex(ds.time.values)) == list(pd.DatetimeIndex(days))
    simulation = Simulation(config)
    for t, day in enumerate((0, 3, 6)):
        stored = np.stack([ds[b.name].values[t] for b in BANDS])
        np.testing.assert_allclose(stored, simulation.truth(day), atol=0.0051)


# --------------------------------------------------------------------------------------------
# 7. Overwrite safety
# --------------------------------------------------------------------------------------------


def _snapshot(root: Path) -> dict[str, bytes]:
    return {name: (root / name).read_bytes() for name in relative_files(root)}


def test_refuses_a_non_empty_directory(tmp_path: Path) -> None:
    out = tmp_path / "product"
    out.mkdir()
    (out / "keep.txt").write_text("precious")
    with pytest.raises(FileExistsError, match="overwrite"):
        write_simulated_catalog(TINY, out, with_truth=False)
    assert _snapshot(out) == {"keep.txt": b"precious"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["product"]  # no staging left


def test_writes_into_an_empty_directory(tmp_path: Path) -> None:
    out = tmp_path / "product"
    out.mkdir()
    written = write_simulated_catalog(TINY, out, with_truth=False)
    assert written.catalog.is_file() and written.truth is None
    assert not (written.root / "truth.zarr").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["product"]


def test_overwrite_replaces_only_once_the_new_product_is_complete(tmp_path: Path) -> None:
    out = tmp_path / "product"
    first = write_simulated_catalog(TINY, out, with_truth=False)
    before = _snapshot(out)
    second_config = dataclasses.replace(TINY, seed=TINY.seed + 1)

    class InterruptedRunError(Exception):
        """Stands for Ctrl-C or a crash in the middle of a run."""

    def interrupt(stage: str, done: int, total: int) -> None:
        if done == 2:
            raise InterruptedRunError

    with pytest.raises(InterruptedRunError):
        write_simulated_catalog(
            second_config, out, overwrite=True, with_truth=False, progress=interrupt
        )
    assert _snapshot(out) == before  # the old product survived the interrupted run
    assert SimulatedCatalog.at(out).item_counts == first.item_counts
    staging = tmp_path / ".product.incomplete"
    assert not staging.exists()  # removed on any failure: it would only fill the disk
    assert SimulatedCatalog.at(out).root == out

    (out / "stray.txt").write_text("from the old product")
    second = write_simulated_catalog(second_config, out, overwrite=True, with_truth=False)
    assert not staging.exists()
    assert "stray.txt" not in relative_files(out)
    assert SimulationConfig.from_json((out / "simulation.json").read_text()) == second_config
    assert SimulatedCatalog.at(out).item_counts == second.item_counts


def test_leftover_staging_is_removed_and_never_a_product(tmp_path: Path) -> None:
    out = tmp_path / "product"
    staging = tmp_path / ".product.incomplete"
    (staging / "stac").mkdir(parents=True)
    (staging / "stac" / "catalog.json").write_text('{"half": "written"}')
    (staging / "leftover.txt").write_text("interrupted")
    with pytest.raises(FileNotFoundError, match="not a simulated product"):
        SimulatedCatalog.at(out)  # the staging dir does not stand in for the product
    written = write_simulated_catalog(TINY, out, with_truth=False)
    assert not staging.exists()
    files = relative_files(out)
    assert "leftover.txt" not in files
    assert json.loads((out / "stac" / "catalog.json").read_text())["type"] == "Catalog"
    assert written.root == out and written.catalog == out / "stac" / "catalog.json"


def test_at_describes_a_product_and_rejects_other_directories(
    product: SimulatedCatalog, tmp_path: Path
) -> None:
    described = SimulatedCatalog.at(product.root)
    assert described == product
    for not_a_product in (tmp_path, tmp_path / "missing", product.root / "cogs"):
        with pytest.raises(FileNotFoundError, match=r"not a simulated product.*tamrf simulate"):
            SimulatedCatalog.at(not_a_product)


# --------------------------------------------------------------------------------------------
# 8. Round trip through the STAC API servers
# --------------------------------------------------------------------------------------------


def search_queries(items: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Searches that each select a strict, non-empty part of the product."""
    times = sorted({i["properties"]["datetime"] for i in items})
    third = len(times) // 3
    # Ends are item datetimes themselves: both must be included.
    window = f"{times[third]}/{times[2 * third]}"
    region = shapely.union_all([shape(i["geometry"]) for i in items])
    west, south_, east, north = region.bounds
    corner = [
        west - 0.01,
        south_ - 0.01,
        west + 0.3 * (east - west),
        south_ + 0.3 * (north - south_),
    ]
    return {
        "collections-s2": {"collections": [S2]},
        "collections-landsat": {"collections": [LANDSAT]},
        "datetime": {"datetime": window, "collections": [S2, LANDSAT]},
        "bbox": {"bbox": corner, "collections": [S2, LANDSAT]},
        "bbox+collections": {"bbox": corner, "collections": [LANDSAT]},
        "bbox+datetime+collections": {"bbox": corner, "datetime": window, "collections": [S2]},
    }


def _require_pgstac() -> None:
    availability = pgstac_availability()
    if not availability:
        pytest.skip(f"pgstac unavailable: {availability.reason}")


@pytest.fixture(
    scope="module",
    params=["rustac", pytest.param("pgstac", marks=pytest.mark.pgstac)],
)
def served(request: pytest.FixtureRequest, tiled: SimulatedCatalog) -> Iterator[StacServer]:
    """The tiled product's catalog behind a real STAC API."""
    if request.param == "pgstac":
        _require_pgstac()
        server: StacServer = PgstacServer(tiled.catalog)
    else:
        server = RustacServer(tiled.catalog)
    with server:
        yield server


def test_search_queries_discriminate(tiled_item_dicts: list[dict[str, Any]]) -> None:
    """Guard: every query below selects some items, but not all of them."""
    for name, query in search_queries(tiled_item_dicts).items():
        expected = expected_ids(tiled_item_dicts, **query)
        assert 0 < len(expected) < len(tiled_item_dicts), name
    window = search_queries(tiled_item_dicts)["datetime"]["datetime"]
    ends = {i["id"] for i in tiled_item_dicts if i["properties"]["datetime"] in window.split("/")}
    assert ends and ends <= expected_ids(tiled_item_dicts, datetime=window)


@pytest.mark.parametrize(
    "name",
    [
        "collections-s2",
        "collections-landsat",
        "datetime",
        "bbox",
        "bbox+collections",
        "bbox+datetime+collections",
    ],
)
def test_served_searches(
    served: StacServer, tiled_item_dicts: list[dict[str, Any]], name: str
) -> None:
    query = search_queries(tiled_item_dicts)[name]
    found = [i.id for i in Client.open(served.url).search(max_items=None, **query).items()]
    assert len(found) == len(set(found))
    assert set(found) == expected_ids(tiled_item_dicts, **query)


def served_item_dicts(server: StacServer) -> dict[str, dict[str, Any]]:
    """Every item the server holds, as the JSON it sends (pystac objects would migrate it)."""
    search = Client.open(server.url).search(collections=[S2, LANDSAT], max_items=None)
    out: dict[str, dict[str, Any]] = {}
    for item in search.items_as_dicts():
        assert item["id"] not in out
        out[item["id"]] = item
    return out


def test_served_items_point_to_the_cogs(
    served: StacServer, tiled: SimulatedCatalog, tiled_item_dicts: list[dict[str, Any]]
) -> None:
    on_disk = {i["id"]: i for i in tiled_item_dicts}
    assert {c.id for c in Client.open(served.url).get_collections()} == {S2, LANDSAT}
    served_items = served_item_dicts(served)
    assert set(served_items) == set(on_disk)
    cogs = (tiled.root / "cogs").resolve()
    for item_id, item in served_items.items():
        written = on_disk[item_id]
        assert item["collection"] == written["collection"]
        assert shape(item["geometry"]).equals_exact(shape(written["geometry"]), 1e-9)
        when = item["properties"]["datetime"]
        assert parse_time(when) == parse_time(written["properties"]["datetime"])
        assert set(item["assets"]) == set(written["assets"])
        for key, asset in item["assets"].items():
            path = Path(asset["href"])
            assert path.is_absolute() and path.is_file(), asset["href"]
            assert path.resolve().is_relative_to(cogs / item["collection"] / item_id)
            assert path.name == Path(written["assets"][key]["href"]).name
            others = {k: v for k, v in asset.items() if k != "href"}
            assert others == {k: v for k, v in written["assets"][key].items() if k != "href"}


def test_served_items_keep_their_earth_search_form(
    served: StacServer, tiled_item_dicts: list[dict[str, Any]]
) -> None:
    served_items = served_item_dicts(served)
    for written in tiled_item_dicts:
        item = served_items[written["id"]]
        assert item["stac_version"] == written["stac_version"]
        assert item["stac_extensions"] == written["stac_extensions"]
        assert item["properties"] == written["properties"]


# --------------------------------------------------------------------------------------------
# 9. CLI
# --------------------------------------------------------------------------------------------


def _tamrf(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args), env={"COLUMNS": "500"})
    return result.exit_code, " ".join(result.output.split())


def test_cli_simulate(tmp_path: Path) -> None:
    out = tmp_path / "cli-product"
    small = ("--size-px", "36", "--start", "2022-06-01", "--end", "2022-06-20", "--no-progress")
    code, output = _tamrf("simulate", str(out), *small)
    assert code == 0, output
    catalog = out.absolute() / "stac" / "catalog.json"
    assert f"catalog: {catalog}" in output and catalog.is_file()
    assert (out / "truth.zarr" / "zarr.json").is_file()
    counts = SimulatedCatalog.at(out).item_counts
    for collection_id, n in counts.items():
        assert n > 0 and f"{n} {collection_id} items" in output
    before = _snapshot(out)

    code, output = _tamrf("simulate", str(out), *small, "--seed", "3")
    assert code == 2 and "--overwrite" in output and "already exists" in output
    assert _snapshot(out) == before

    code, output = _tamrf("simulate", str(out), *small, "--seed", "3", "--overwrite", "--no-truth")
    assert code == 0, output
    assert not (out / "truth.zarr").exists()
    assert SimulationConfig.from_json((out / "simulation.json").read_text()).seed == 3


def test_cli_rejects_a_size_that_does_not_nest(tmp_path: Path) -> None:
    out = tmp_path / "bad"
    code, output = _tamrf("simulate", str(out), "--size-px", "37", "--no-progress")
    assert code != 0 and "multiple of 6" in output
    assert not out.exists()


def test_module_constants_are_consistent() -> None:
    """Guard on this module's own hand-written tables."""
    assert {b.asset_key for b in S2_BANDS} | {"scl"} == S2_ASSETS
    assert {b.asset_key for b in LANDSAT_BANDS} - {"lwir11"} | {
        "qa_pixel",
        "qa_radsat",
        "qa_aerosol",
    } == LANDSAT_ASSETS
