"""Datacube assembly against the simulator, served by the real local STAC APIs.

Expected values are rebuilt here from the simulator's own arrays (never from the COGs the cube
reads): each item's DNs on its window of the region grid, scaled by the rule its metadata
calls for, merged item by item in (time, id) order. Where no resampling is involved (S2 10 m
bands, SCL, Landsat on an aligned grid, the southern false-northing shift) the cube must match
exactly; the 20 m bands must equal the bicubic x2 of the expected 20 m image.
"""

from __future__ import annotations

import datetime as dt
import functools
import http.server
import json
import shutil
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np
import pytest
from pyproj import Transformer

from pipelines import asset_reader, datacube
from pipelines.asset_reader import BrokenAssetLog, BrokenAssetWarning
from pipelines.catalogs import LOCAL, PLANETARY_COMPUTER
from pipelines.datacube import (
    CubeConfig,
    assemble_landsat,
    assemble_s2,
    broken_assets,
    check_cube_grid,
    solar_date,
)
from pipelines.demo.simulated_catalog import SimulatedCatalog, write_simulated_catalog
from pipelines.demo.stac_servers import create_server, load_static_catalog, pgstac_availability
from pipelines.search import SearchRequest, search_items
from tamrf_xr.bands import LANDSAT_BANDS, S2_BANDS
from tamrf_xr.grid import RasterGrid
from tamrf_xr.masking import MaskConfig, landsat_invalid, s2_invalid
from tamrf_xr.resample import upsample_bicubic
from tamrf_xr.simulate import Simulation, SimulationConfig
from tamrf_xr.simulate.geometry import LANDSAT_COLLECTION, S2_COLLECTION

KEEP_ALL = CubeConfig(min_valid_fraction=0.0)

# The region straddles the east edge of one simulated S2 tile and lies inside the next one
# (tiles overlap by 9.8 km), so every S2 date has two items to merge.
NORTH = SimulationConfig(
    seed=3, center_lon=1.8823, center_lat=43.6085, width_px=120, height_px=120,
    start=dt.date(2022, 6, 1), end=dt.date(2022, 7, 15),
)  # fmt: skip
# Southern hemisphere: Landsat products in the northern zone (326xx, negative northings).
SOUTH = SimulationConfig(
    seed=5, center_lon=-44.04, center_lat=-20.07, width_px=60, height_px=60,
    start=dt.date(2022, 6, 1), end=dt.date(2022, 7, 15),
)  # fmt: skip


@pytest.fixture(scope="module")
def north(tmp_path_factory: pytest.TempPathFactory) -> tuple[Simulation, SimulatedCatalog]:
    product = write_simulated_catalog(
        NORTH, tmp_path_factory.mktemp("north") / "p", with_truth=False
    )
    return Simulation(NORTH), product


@pytest.fixture(scope="module")
def north_items(north) -> list[dict[str, Any]]:
    return list(load_static_catalog(north[1].catalog).items)


def by_collection(items: list[dict[str, Any]], collection: str) -> list[dict[str, Any]]:
    return [i for i in items if i["collection"] == collection]


def region_grid(simulation: Simulation) -> RasterGrid:
    return simulation.grid  # the region's 10 m grid


# --------------------------------------------------------------------------------------------
# Expected values from the simulator
# --------------------------------------------------------------------------------------------


def expected_merged(
    simulation: Simulation,
    docs: list[dict[str, Any]],
    asset_key: str,
    resolution: float,
    scale: Any,
    has_data: Any,
) -> dict[dt.date, np.ndarray]:
    """Per date: the region image of one asset, items merged in (time, id) order.

    ``scale(doc, dn)`` turns DNs into values; ``has_data(doc, dn)`` says where an item has data.
    """
    acquisitions = {a.item_id: a for a in simulation.acquisitions}
    rows, cols = simulation.grid.at(resolution).shape
    out: dict[dt.date, np.ndarray] = {}
    for doc in sorted(docs, key=lambda d: (d["properties"]["datetime"], d["id"])):
        acquisition = acquisitions[doc["id"]]
        raster = simulation.item(acquisition).assets.get(asset_key)
        image = out.setdefault(solar_date(doc), np.full((rows, cols), np.nan, np.float32))
        if raster is None:
            continue
        window = simulation.window(acquisition, resolution)
        target = image[window]
        take = has_data(doc, raster.data) & np.isnan(target)
        target[take] = scale(doc, raster.data)[take]
    return out


def upsampled_with_empty_surroundings(image: np.ndarray) -> np.ndarray:
    """Bicubic x2 of a region image with no data around it (what the cube sees at the edge
    of the simulated world): NaN spreads over the outer 3 pixels at 10 m."""
    padded = np.pad(image, 2, constant_values=np.nan)
    return upsample_bicubic(padded, 2)[4:-4, 4:-4]


def computed_with_warnings(cube) -> tuple[Any, list[warnings.WarningMessage]]:
    """The computed cube and the broken-asset warnings issued meanwhile."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", BrokenAssetWarning)
        cube = cube.compute()
    return cube, [w for w in caught if issubclass(w.category, BrokenAssetWarning)]


def s2_scale(doc: dict[str, Any], dn: np.ndarray) -> np.ndarray:
    rule = LOCAL.s2_scaling(doc)
    return dn.astype(np.float32) * np.float32(rule.scale) + np.float32(rule.offset)


def identity(doc: dict[str, Any], dn: np.ndarray) -> np.ndarray:
    return dn.astype(np.float32)


def nonzero(doc: dict[str, Any], dn: np.ndarray) -> np.ndarray:
    return dn != 0


def cube_dates(cube) -> list[dt.date]:
    """The solar date of each cube date, from the item records."""
    by_id = {r["id"]: dt.date.fromisoformat(r["date"]) for r in json.loads(cube.attrs["items"])}
    return [by_id[str(ids).split()[0]] for ids in cube.item_ids.values]


# --------------------------------------------------------------------------------------------
# Served by the local STAC APIs
# --------------------------------------------------------------------------------------------

BACKENDS = ["rustac", pytest.param("pgstac", marks=pytest.mark.pgstac)]


@pytest.fixture(scope="module", params=BACKENDS)
def served_items(request: pytest.FixtureRequest, north) -> Iterator[dict[str, list[Any]]]:
    """Items of the north region found through a real STAC API search."""
    if request.param == "pgstac":
        availability = pgstac_availability()
        if not availability:
            pytest.skip(f"pgstac unavailable: {availability.reason}")
    simulation, product = north
    with create_server(product.catalog, request.param) as server:
        found = search_items(
            server.url,
            SearchRequest(
                collections=(S2_COLLECTION, LANDSAT_COLLECTION),
                bbox=simulation.grid.lonlat_bbox(),
                start=NORTH.start,
                end=NORTH.end,
            ),
        )
    yield found


def test_s2_cube_from_a_stac_api_matches_the_simulator(served_items, north) -> None:
    simulation, _ = north
    items = served_items[S2_COLLECTION]
    cube = assemble_s2(items, region_grid(simulation), LOCAL, KEEP_ALL).compute()
    docs = [i.to_dict() for i in items]

    assert cube.sizes["time"] == len({solar_date(d) for d in docs})
    assert (cube.n_items.values == 2).sum() >= 5, "dates of the main orbit merge two tiles"
    dates = cube_dates(cube)
    for k, band in enumerate(S2_BANDS):
        expected = expected_merged(
            simulation, docs, band.asset_key, band.native_resolution, s2_scale, nonzero
        )
        for t, date in enumerate(dates):
            got = cube.observations.values[t, k]
            if band.native_resolution == 10.0:
                np.testing.assert_array_equal(got, expected[date], err_msg=f"{band.name} {date}")
            else:
                np.testing.assert_allclose(
                    got, upsampled_with_empty_surroundings(expected[date]), rtol=0, atol=2e-7,
                    err_msg=f"{band.name} {date}",
                )  # fmt: skip

    scl = expected_merged(simulation, docs, "scl", 20.0, identity, nonzero)
    for t, date in enumerate(dates):
        scl10 = np.nan_to_num(scl[date], nan=0).astype(np.uint8).repeat(2, 0).repeat(2, 1)
        # No data (SCL 0) around the region, further than the morphology reaches.
        clear = ~s2_invalid(np.pad(scl10, 40), MaskConfig())[40:-40, 40:-40]
        np.testing.assert_array_equal(cube.valid.values[t], clear & np.isfinite(
            cube.observations.values[t]).all(axis=0))  # fmt: skip
        assert cube.clear_fraction.values[t] == pytest.approx(clear.mean(), abs=1e-6)


def test_landsat_cube_from_a_stac_api_equals_the_static_one(served_items, north, north_items):
    """Items as the API returns them (pystac, possibly reordered) give the same cube as the
    static catalog's documents, which the next tests check against the simulator."""
    simulation, _ = north
    grid = region_grid(simulation)
    served = assemble_landsat(served_items[LANDSAT_COLLECTION], grid, LOCAL, KEEP_ALL).compute()
    static = assemble_landsat(by_collection(north_items, LANDSAT_COLLECTION), grid, LOCAL,
                              KEEP_ALL).compute()  # fmt: skip
    assert served.sizes["time"] > 0
    np.testing.assert_array_equal(served.observations.values, static.observations.values)
    np.testing.assert_array_equal(served.valid.values, static.valid.values)
    assert list(served.item_ids.values) == list(static.item_ids.values)


def test_s2_cube_is_physically_right(north, north_items) -> None:
    """Independent of the merge bookkeeping: valid pixels are cloud-free and near the truth."""
    simulation, _ = north
    cube = assemble_s2(by_collection(north_items, S2_COLLECTION), region_grid(simulation), LOCAL,
                       KEEP_ALL).compute()  # fmt: skip
    acquisitions = {a.item_id: a for a in simulation.acquisitions}
    checked = 0
    for t, ids in enumerate(cube.item_ids.values):
        acquisition = acquisitions[str(ids).split()[0]]
        valid = cube.valid.values[t]
        if valid.mean() < 0.05:
            continue
        clouds = simulation.clouds(acquisition)
        assert not (valid & (clouds.opacity > 0.5)).any(), "a cloudy pixel is marked valid"
        truth = simulation.truth(acquisition.day_index)[8:]  # S2 channels of the model order
        error = np.abs(cube.observations.values[t] - truth)[:, valid]
        # Sensor noise, MTF blur and thin haze, nothing more: a wrong scaling rule (0.1 off) or
        # a shifted grid would be far beyond this.
        assert np.median(error) < 0.01, (ids, np.median(error, axis=1))
        checked += 1
    assert checked >= 3


def test_landsat_cube_matches_the_simulator(north, north_items) -> None:
    simulation, _ = north
    docs = by_collection(north_items, LANDSAT_COLLECTION)
    cube = assemble_landsat(docs, region_grid(simulation), LOCAL, KEEP_ALL).compute()
    assert cube.sizes["y"] == simulation.grid.shape[0] // 3
    dates = cube_dates(cube)
    for k, band in enumerate(LANDSAT_BANDS):
        rule = LOCAL.landsat_scaling(band.name)

        def scale(doc, dn, rule=rule):
            return dn.astype(np.float32) * np.float32(rule.scale) + np.float32(rule.offset)

        expected = expected_merged(simulation, docs, band.asset_key, 30.0, scale, nonzero)
        for t, date in enumerate(dates):
            np.testing.assert_array_equal(cube.observations.values[t, k], expected[date])
    qa = {
        key: expected_merged(simulation, docs, key, 30.0, identity, lambda d, dn: dn % 2 == 0)
        for key in ("qa_pixel", "qa_radsat", "qa_aerosol")
    }
    l2sr = 0
    for t, date in enumerate(dates):
        # Fill (bit 0) around the region, as the cube sees beyond the simulated world.
        invalid = landsat_invalid(
            np.pad(np.nan_to_num(qa["qa_pixel"][date], nan=1), 4, constant_values=1).astype(
                np.uint16),
            np.pad(np.nan_to_num(qa["qa_radsat"][date], nan=0), 4).astype(np.uint16),
            np.pad(np.nan_to_num(qa["qa_aerosol"][date], nan=0), 4).astype(np.uint8),
        )[4:-4, 4:-4]  # fmt: skip
        reflectance = np.isfinite(cube.observations.values[t, :7]).all(axis=0)
        np.testing.assert_array_equal(cube.valid.values[t], ~invalid & reflectance)
        if "L2SR" in str(cube.item_ids.values[t]):
            l2sr += 1
            assert np.isnan(cube.observations.values[t, 7]).all(), "L2SR has no thermal band"
    # Kelvin, not DN: land surface temperatures of a French summer.
    lst = cube.observations.values[:, 7][cube.valid.values]
    lst = lst[np.isfinite(lst)]
    assert 280 < np.median(lst) < 330


def test_southern_landsat_is_reprojected_from_negative_northings(tmp_path: Path) -> None:
    product = write_simulated_catalog(SOUTH, tmp_path / "south", with_truth=False)
    simulation = Simulation(SOUTH)
    docs = by_collection(list(load_static_catalog(product.catalog).items), LANDSAT_COLLECTION)
    assert simulation.grid.epsg == 32723
    assert {d["properties"]["proj:epsg"] for d in docs} == {32623}
    assert all(d["assets"]["red"]["proj:transform"][5] < 0 for d in docs), "negative northings"
    cube = assemble_landsat(docs, region_grid(simulation), LOCAL, KEEP_ALL).compute()
    assert cube.attrs["epsg"] == 32723 and cube.spatial_ref.attrs["crs_wkt"].count("32723")
    red = LANDSAT_BANDS.index(next(b for b in LANDSAT_BANDS if b.name == "LS_B4"))
    rule = LOCAL.landsat_scaling("LS_B4")

    def scale(doc, dn):
        return dn.astype(np.float32) * np.float32(rule.scale) + np.float32(rule.offset)

    expected = expected_merged(simulation, docs, "red", 30.0, scale, nonzero)
    for t, date in enumerate(cube_dates(cube)):
        np.testing.assert_array_equal(cube.observations.values[t, red], expected[date])
    # Bilinear warping with a CRS change gives the same pixels on grids of any size (no seams).
    west, south, east, north = simulation.grid.bounds
    for part_bounds in ((west, south, west + 300.0, north), (west + 300.0, south, east, north)):
        part_grid = RasterGrid(32723, part_bounds, 10.0)
        part = assemble_landsat(docs, part_grid, LOCAL, KEEP_ALL).compute()
        np.testing.assert_array_equal(
            part.observations.values, cube.sel(x=part.x).observations.values
        )
    lon, lat = Transformer.from_crs(32723, 4326, always_xy=True).transform(
        float(cube.x.mean()), float(cube.y.mean())
    )
    assert lon == pytest.approx(-44.04, abs=0.01) and lat == pytest.approx(-20.07, abs=0.01)


# --------------------------------------------------------------------------------------------
# Dates, tiles, laziness
# --------------------------------------------------------------------------------------------


def test_sparse_dates_are_dropped_with_a_reason(north, north_items) -> None:
    simulation, _ = north
    docs = by_collection(north_items, S2_COLLECTION)
    grid = region_grid(simulation)
    everything = assemble_s2(docs, grid, LOCAL, KEEP_ALL)
    fractions = everything.clear_fraction.values
    threshold = float(np.median(fractions[fractions > 0]))
    kept = assemble_s2(docs, grid, LOCAL, CubeConfig(min_valid_fraction=threshold))
    dropped = json.loads(kept.attrs["dropped_dates"])

    assert list(kept.item_ids.values) == list(everything.item_ids.values[fractions >= threshold])
    assert sorted(d["item_ids"] for d in dropped) == sorted(
        everything.item_ids.values[fractions < threshold]
    )
    for record in dropped:
        assert record["clear_fraction"] < threshold
        assert "no data" in record["reason"] or "min_valid_fraction" in record["reason"]
    assert (kept.clear_fraction.values >= threshold).all()
    assert 0 < kept.sizes["time"] < everything.sizes["time"]


def test_adjacent_grids_are_seamless(north, north_items) -> None:
    """Two halves of the region give exactly the whole region's values and masks."""
    simulation, _ = north
    docs = by_collection(north_items, S2_COLLECTION)
    west, south, east, north_edge = simulation.grid.bounds
    middle = west + 600.0
    whole = assemble_s2(docs, region_grid(simulation), LOCAL, KEEP_ALL).compute()
    left = assemble_s2(docs, RasterGrid(32631, (west, south, middle, north_edge), 10.0), LOCAL,
                       KEEP_ALL).compute()  # fmt: skip
    right = assemble_s2(docs, RasterGrid(32631, (middle, south, east, north_edge), 10.0), LOCAL,
                        KEEP_ALL).compute()  # fmt: skip
    for part in (left, right):
        window = whole.sel(x=part.x)
        np.testing.assert_array_equal(part.observations.values, window.observations.values)
        np.testing.assert_array_equal(part.valid.values, window.valid.values)


def test_assembly_is_lazy_and_the_date_filter_reads_quality_layers_only(
    north, tmp_path: Path
) -> None:
    simulation, product = north
    copy = tmp_path / "product"
    shutil.copytree(product.root, copy)
    docs = by_collection(list(load_static_catalog(copy / "stac" / "catalog.json").items),
                         S2_COLLECTION)  # fmt: skip
    # Remove every band file, keep SCL: building a filtered cube must not notice.
    for tif in (copy / "cogs" / S2_COLLECTION).rglob("*.tif"):
        if tif.name != "SCL.tif":
            tif.unlink()
    with warnings.catch_warnings():
        warnings.simplefilter("error", BrokenAssetWarning)  # reading a band would fail here
        cube = assemble_s2(docs, region_grid(simulation), LOCAL, CubeConfig(0.2))
    assert isinstance(cube.observations.data, da.Array)
    assert cube.sizes["time"] > 0
    cube, caught = computed_with_warnings(cube)
    # one warning per band file of the kept dates' items: the dropped dates are never read
    assert len(caught) == len(S2_BANDS) * int(cube.n_items.sum())
    assert np.isnan(cube.observations.values).all() and not cube.valid.values.any()


@pytest.mark.parametrize(
    "collection, assemble, kernel, quality",
    [(S2_COLLECTION, assemble_s2, "s2_invalid", ("SCL.tif",)),
     (LANDSAT_COLLECTION, assemble_landsat, "landsat_invalid",
      ("_QA_PIXEL.TIF", "_QA_RADSAT.TIF", "_SR_QA_AEROSOL.TIF"))],
)  # fmt: skip
def test_the_date_filter_and_the_cube_read_and_mask_the_quality_layers_once(
    north, north_items, monkeypatch: pytest.MonkeyPatch, collection, assemble, kernel, quality
) -> None:
    simulation, _ = north
    docs = by_collection(north_items, collection)
    grid = region_grid(simulation)
    fractions = assemble(docs, grid, LOCAL, KEEP_ALL).clear_fraction.values
    threshold = float(np.median(fractions[fractions > 0]))

    masked, read = [], []
    mask_kernel = getattr(datacube, kernel)
    monkeypatch.setattr(datacube, kernel, lambda *a, **k: masked.append(1) or mask_kernel(*a, **k))
    reader_read = asset_reader.RecordingRioReader.read

    def counted_read(self, window, **kwargs):
        read.append(self.url)
        return reader_read(self, window, **kwargs)

    monkeypatch.setattr(asset_reader.RecordingRioReader, "read", counted_read)
    cube = assemble(docs, grid, LOCAL, CubeConfig(min_valid_fraction=threshold))
    assert 0 < cube.sizes["time"] < len(fractions)
    assert len(masked) == len(fractions), "the filter masks every date, once"
    assert all(url.endswith(quality) for url in read), "building reads quality layers only"
    cube = cube.compute()
    assert len(masked) == len(fractions), "computing the cube reuses the filter's masks"
    quality_reads = [url for url in read if url.endswith(quality)]
    assert len(quality_reads) == len(set(quality_reads)) == len(docs) * len(quality)
    np.testing.assert_array_equal(
        cube.valid.values,
        assemble(docs, grid, LOCAL, KEEP_ALL).valid.values[fractions >= threshold],
    )


def test_a_distributed_client_keeps_the_filters_masks_and_gives_the_same_cube(
    north, north_items
) -> None:
    from distributed import Client, LocalCluster

    simulation, _ = north
    docs = by_collection(north_items, S2_COLLECTION)
    grid, config = region_grid(simulation), CubeConfig(min_valid_fraction=0.2)
    local = assemble_s2(docs, grid, LOCAL, config).compute(scheduler="threads")
    cluster = LocalCluster(n_workers=1, threads_per_worker=2, dashboard_address=None)
    with cluster, Client(cluster) as client:
        cube = assemble_s2(docs, grid, LOCAL, config)
        assert client.who_has(), "the filter's masks are kept on the workers"
        cube = cube.compute()
    assert cube.attrs["dropped_dates"] == local.attrs["dropped_dates"]
    np.testing.assert_array_equal(cube.observations.values, local.observations.values)
    np.testing.assert_array_equal(cube.valid.values, local.valid.values)


def test_empty_series_gives_an_empty_cube(north) -> None:
    simulation, _ = north
    cube = assemble_landsat([], region_grid(simulation), LOCAL)
    assert cube.observations.shape == (0, 8, 40, 40) and cube.valid.shape == (0, 40, 40)


# --------------------------------------------------------------------------------------------
# Broken assets and bad input
# --------------------------------------------------------------------------------------------


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture()
def http_product(north, tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A copy of the north product served over HTTP on 127.0.0.1 (assets read with /vsicurl)."""
    copy = tmp_path / "product"
    shutil.copytree(north[1].root, copy)
    handler = functools.partial(QuietHandler, directory=str(copy))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield copy, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_broken_assets_become_nodata_with_a_warning_and_a_record(
    north, http_product, tmp_path: Path
) -> None:
    simulation, _ = north
    root, base = http_product
    docs = by_collection(list(load_static_catalog(root / "stac" / "catalog.json").items),
                         S2_COLLECTION)  # fmt: skip
    # Read from the local files: GDAL caches what it reads over HTTP, and the served copies
    # must be first read once broken.
    intact = assemble_s2(docs, region_grid(simulation), LOCAL, KEEP_ALL).compute()
    for doc in docs:
        for asset in doc["assets"].values():
            asset["href"] = base + "/" + Path(asset["href"]).relative_to(root).as_posix()

    broken = {}  # item id -> (band, how)
    victims = sorted(docs, key=lambda d: d["id"])[:6:2]
    for doc, how in zip(victims, ("missing (HTTP 404)", "truncated", "corrupt"), strict=True):
        path = root / doc["assets"]["red"]["href"][len(base) + 1 :]
        if how.startswith("missing"):
            path.unlink()
        elif how == "truncated":
            data = path.read_bytes()
            path.write_bytes(data[: len(data) // 3])
        else:
            data = bytearray(path.read_bytes())
            data[:64] = b"\x00" * 64
            path.write_bytes(bytes(data))
        broken[doc["id"]] = ("S2_B4", how)

    log = BrokenAssetLog(tmp_path / "broken")
    cube = assemble_s2(docs, region_grid(simulation), LOCAL, KEEP_ALL, broken_log=log)
    assert broken_assets(cube) == [], "nothing is read before compute"
    cube, caught = computed_with_warnings(cube)
    records = broken_assets(cube)
    assert {r["item_id"]: r["band"] for r in records} == {k: v[0] for k, v in broken.items()}
    assert {str(w.message).split("'")[1] for w in caught} == {r["href"] for r in records}
    red = [b.name for b in S2_BANDS].index("S2_B4")
    for t, ids in enumerate(cube.item_ids.values):
        ids = str(ids).split()
        if any(i in broken for i in ids):
            # the broken item's pixels are gone (the other tile of the day may still fill them)
            assert np.isnan(cube.observations.values[t, red]).sum() > np.isnan(
                intact.observations.values[t, red]).sum()  # fmt: skip
            assert (
                cube.valid.values[t].sum() < intact.valid.values[t].sum()
                or not intact.valid.values[t].any()
            )
        else:
            np.testing.assert_array_equal(
                cube.observations.values[t], intact.observations.values[t]
            )
            np.testing.assert_array_equal(cube.valid.values[t], intact.valid.values[t])


def test_bad_grids_and_catalogs_are_clear_errors(north_items, north) -> None:
    simulation, _ = north
    with pytest.raises(ValueError, match="not a projected CRS"):
        check_cube_grid(RasterGrid(4326, (0.0, 0.0, 60.0, 60.0), 10.0))
    with pytest.raises(ValueError, match="multiples of 60"):
        assemble_s2([], RasterGrid(32631, (10.0, 0.0, 610.0, 600.0), 10.0), LOCAL)
    with pytest.raises(ValueError, match="multiples of 60"):
        assemble_landsat([], RasterGrid(32631, (10.0, 0.0, 610.0, 600.0), 10.0), LOCAL)
    s2 = by_collection(north_items, S2_COLLECTION)
    with pytest.raises(ValueError, match=r"no asset\(s\) \['B02'.*profile"):
        assemble_s2(s2, region_grid(simulation), PLANETARY_COMPUTER)
    with pytest.raises(ValueError, match="not a Landsat collection"):
        assemble_landsat(s2, region_grid(simulation), LOCAL)
    unknown_crs = json.loads(json.dumps(s2[0]))
    del unknown_crs["properties"]["proj:epsg"]
    with pytest.raises(ValueError, match="neither proj:epsg nor"):
        assemble_s2([unknown_crs], region_grid(simulation), LOCAL)


def test_stac_1_1_proj_code_items_give_the_same_cube(north, north_items) -> None:
    simulation, _ = north
    s2 = by_collection(north_items, S2_COLLECTION)[:4]
    recoded = json.loads(json.dumps(s2))
    for doc in recoded:
        doc["properties"]["proj:code"] = f"EPSG:{doc['properties'].pop('proj:epsg')}"
    a = assemble_s2(s2, region_grid(simulation), LOCAL, KEEP_ALL).observations.values
    b = assemble_s2(recoded, region_grid(simulation), LOCAL, KEEP_ALL).observations.values
    np.testing.assert_array_equal(a, b)


def test_each_items_scaling_rule_is_recorded(north_items, north) -> None:
    simulation, _ = north
    s2 = by_collection(north_items, S2_COLLECTION)
    cube = assemble_s2(s2, region_grid(simulation), LOCAL, KEEP_ALL)
    records = {r["id"]: r for r in json.loads(cube.attrs["items"])}
    assert set(records) == {d["id"] for d in s2}
    names = set()
    for doc in s2:
        rule = records[doc["id"]]["scaling"]["S2_B4"]
        applied = doc["properties"]["earthsearch:boa_offset_applied"]
        assert rule["offset"] == (0.0 if applied else pytest.approx(-0.1))
        names.add(rule["rule"])
    assert names == {"s2-earthsearch-boa-offset-applied", "s2-earthsearch-boa-offset-in-dn"}
