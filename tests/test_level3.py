"""Tests for pipelines.level3 (the Level-3 Zarr store, v3 or v2) and pipelines.level3_stac.

Real stores in tmp_path, no mocks. Tiles are 600 m (60 x 60 px at 10 m) so that a store of
2 x 2 tiles and 5 dates is a few megabytes. Tests of what differs between Zarr v2 and v3
(files, chunk keys, fill values, records, GDAL) run on both formats.
"""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path

import dask
import numpy as np
import pandas as pd
import pytest
import rasterio
import rioxarray  # also registers the .rio accessor
import xarray as xr
import zarr
from affine import Affine
from pyproj import CRS
from shapely.geometry import shape

from pipelines.georef import grid_coords
from pipelines.grid import GridSpec, GridTile
from pipelines.level3 import (
    QUALITY_VARIABLES,
    Level3Config,
    completed_tiles,
    create_store,
    missing_tiles,
    open_level3,
    read_definition,
    write_tile,
)
from pipelines.level3_stac import ZARR_MEDIA_TYPE, write_level3_collection
from pipelines.stac_validation import validate_stac
from tamrf_xr.bands import BANDS

EPSG = 32631
SPEC = GridSpec(tile_size_m=600.0)  # 60 x 60 px
PX = SPEC.tile_px
# 2 x 2 tiles near Toulouse, in store order (north to south, west to east).
TILES = [GridTile(EPSG, column, row, SPEC) for row in (8030, 8029) for column in (620, 621)]
TIMES = pd.date_range("2024-03-01", periods=5, freq="10D")
PROVENANCE = {
    "items": [{"id": "S2B_31TCJ_20240301_0_L2A", "scaling": "earth-search-boa-flag"}],
    "model": {"sha256": "0" * 64, "config": {"rrdb": 3}},
    "software": {"tamrf-xr": "0.1.0"},
}
REFLECTANCE_STEP, KELVIN_STEP = 1e-4, 0.01
BOTH_FORMATS = pytest.mark.parametrize("zarr_format", [2, 3])
ATTRIBUTES_FILE = {2: ".zattrs", 3: "zarr.json"}  # where a group keeps its attributes
METADATA_FILES = {"zarr.json", ".zarray", ".zattrs", ".zgroup"}


def fake_tile(tile: GridTile, seed: int, times: pd.DatetimeIndex = TIMES) -> xr.Dataset:
    """A plausible model output for ``tile``: smooth reflectance 0..0.6 with some slightly
    negative values, LST 260-325 K, cloud-gap NaN squares, quality layers with -1."""
    rng = np.random.default_rng(seed)
    n = len(times)
    yy, xx = np.mgrid[0:PX, 0:PX] / PX
    field = 0.5 + 0.5 * np.sin(6 * xx + rng.uniform(0, 6)) * np.cos(5 * yy)  # (y, x) 0..1
    ds = xr.Dataset(coords=grid_coords(tile.bounds[0], tile.bounds[3], PX, PX, SPEC.pixel_m))
    ds = ds.assign_coords(time=("time", times))
    for channel, band in enumerate(BANDS):
        season = np.linspace(0.9, 1.1, n)[:, None, None]
        if band.quantity == "temperature":
            values = 260.0 + 60.0 * field[None] * season
        else:
            values = (0.6 * field[None] - 0.02) * season * (1 + 0.03 * channel)
        values = values + rng.normal(0, 0.002, (n, PX, PX))
        values = values.astype(np.float32)
        for t in range(n):  # a cloud gap per date
            y0, x0 = rng.integers(0, PX - 10, 2)
            values[t, y0 : y0 + 10, x0 : x0 + 10] = np.nan
        ds[band.name] = (("time", "y", "x"), values)
    for name, dims in QUALITY_VARIABLES.items():
        shape_ = (n, PX, PX) if dims[0] == "time" else (PX, PX)
        ds[name] = (dims, rng.integers(-1, 40, shape_).astype(np.int16))
    ds.attrs["epsg"] = tile.epsg
    return ds


def store_files(store: Path) -> dict[str, bytes]:
    """Every file of the store but the completion records (which carry times and pids)."""
    return {
        p.relative_to(store).as_posix(): p.read_bytes()
        for p in sorted(store.rglob("*"))
        if p.is_file() and p.relative_to(store).parts[0] != "completed"
    }


def is_chunk(key: str) -> bool:
    """Whether a store file (path relative to the store) is a chunk, not metadata."""
    return key.rsplit("/", 1)[-1] not in METADATA_FILES


def chunk_key(name: str, index: tuple[int, ...], zarr_format: int) -> str:
    """A chunk's file: default keys, v3 ``c/t/j/i``, v2 ``t.j.i``."""
    if zarr_format == 3:
        return f"{name}/c/{'/'.join(map(str, index))}"
    return f"{name}/{'.'.join(map(str, index))}"


def tile_chunk_keys(tile: GridTile, n_time_chunks: int, zarr_format: int = 3) -> set[str]:
    """Chunk files a tile must write: chunk (j, i) = tile's place."""
    j = TILES[0].row - tile.row
    i = tile.column - TILES[0].column
    keys = set()
    for name in (*(b.name for b in BANDS), *QUALITY_VARIABLES):
        if name in QUALITY_VARIABLES and QUALITY_VARIABLES[name][0] != "time":
            keys.add(chunk_key(name, (j, i), zarr_format))
        else:
            keys |= {chunk_key(name, (t, j, i), zarr_format) for t in range(n_time_chunks)}
    return keys


def array_metadata(store: Path, name: str, zarr_format: int) -> dict:
    """shape, chunks and fill_value of an array, read from its metadata file."""
    if zarr_format == 3:
        meta = json.loads((store / name / "zarr.json").read_text())
        chunks = meta["chunk_grid"]["configuration"]["chunk_shape"]
    else:
        meta = json.loads((store / name / ".zarray").read_text())
        chunks = meta["chunks"]
    return {"shape": meta["shape"], "chunks": chunks, "fill_value": meta["fill_value"]}


def region(tile: GridTile) -> dict[str, slice]:
    j = TILES[0].row - tile.row
    i = tile.column - TILES[0].column
    return {"y": slice(j * PX, (j + 1) * PX), "x": slice(i * PX, (i + 1) * PX)}


def new_store(tmp_path: Path, name: str = "l3.zarr", **config) -> Path:
    return create_store(tmp_path / name, TILES, TIMES, Level3Config(**config), PROVENANCE)


# ------------------------------------------------------------------------- round trips


@BOTH_FORMATS
def test_float32_round_trip_is_exact(tmp_path: Path, zarr_format: int) -> None:
    store = new_store(tmp_path, encoding="float32", zarr_format=zarr_format)
    inputs = {tile.tile_id: fake_tile(tile, seed) for seed, tile in enumerate(TILES)}
    for tile in TILES:
        write_tile(store, tile, inputs[tile.tile_id])
    ds = open_level3(store)
    assert list(ds.data_vars) == [*(b.name for b in BANDS), *QUALITY_VARIABLES]
    assert all(ds[name].dtype == np.float32 for name in ds.data_vars)
    assert list(ds.time.values) == list(TIMES.values)
    for tile in TILES:
        part = ds.isel(region(tile))
        np.testing.assert_array_equal(part.x.values, inputs[tile.tile_id].x.values)
        np.testing.assert_array_equal(part.y.values, inputs[tile.tile_id].y.values)
        for name in inputs[tile.tile_id].data_vars:
            expected = inputs[tile.tile_id][name].values
            np.testing.assert_array_equal(part[name].values, expected, err_msg=name)


@BOTH_FORMATS
def test_int16_round_trip_within_half_a_step(tmp_path: Path, zarr_format: int) -> None:
    """Within half a quantisation step (plus float32 rounding); NaN stays NaN; a tile that
    was never written reads as NaN, not 0 (Zarr fill_value = CF _FillValue)."""
    store = new_store(tmp_path, encoding="int16", zarr_format=zarr_format)
    written = TILES[:3]
    inputs = {tile.tile_id: fake_tile(tile, seed) for seed, tile in enumerate(written)}
    for tile in written:
        write_tile(store, tile, inputs[tile.tile_id])
    ds = open_level3(store)
    for tile in written:
        part = ds.isel(region(tile))
        for band in BANDS:
            expected = inputs[tile.tile_id][band.name].values
            got = part[band.name].values
            assert got.dtype == np.float32
            np.testing.assert_array_equal(np.isnan(got), np.isnan(expected), err_msg=band.name)
            step = KELVIN_STEP if band.quantity == "temperature" else REFLECTANCE_STEP
            # Half a step, plus float32 rounding of the encoding and decoding arithmetic
            # (two spacings of the value); the error itself is taken in float64.
            tolerance = 0.5 * step + 2 * np.spacing(np.abs(expected))
            error = np.abs(got.astype(np.float64) - expected)
            assert np.nanmax(error - tolerance) <= 0, (band.name, np.nanmax(error))
            if band.quantity == "temperature":
                assert np.nanmax(error) <= 0.005 + 3.1e-5  # 0.005 K + 1 float32 ulp at 300 K
            assert np.nanmin(expected) < 0 or band.quantity == "temperature"
        for name in QUALITY_VARIABLES:
            np.testing.assert_array_equal(part[name].values, inputs[tile.tile_id][name].values)
    never_written = ds.isel(region(TILES[3]))
    for name in never_written.data_vars:
        assert np.isnan(never_written[name].values).all(), name
    # The mechanism, in both formats: the Zarr fill_value itself is the int16 _FillValue.
    for name in ("S2_B4", "LS_B10", "s2_days_to_clear", "s2_clear_count"):
        assert array_metadata(store, name, zarr_format)["fill_value"] == -32768, name
    # And a plain zarr read (no CF decoding) of an unwritten chunk gives it, not 0.
    raw = zarr.open_array(store / "S2_B4", mode="r", zarr_format=zarr_format)
    assert (raw[:, region(TILES[3])["y"], region(TILES[3])["x"]] == -32768).all()


# ------------------------------------------------------------------------- layout


def test_default_time_chunk_is_all_dates_up_to_24(tmp_path: Path) -> None:
    few = create_store(tmp_path / "few.zarr", TILES[:1], TIMES)
    many_times = pd.date_range("2024-01-01", periods=30, freq="5D")
    many = create_store(tmp_path / "many.zarr", TILES[:1], many_times)
    assert xr.open_zarr(few, consolidated=False)["S2_B4"].encoding["chunks"] == (5, PX, PX)
    assert xr.open_zarr(many, consolidated=False)["S2_B4"].encoding["chunks"] == (24, PX, PX)
    assert read_definition(many).config.time_chunk == 24


@BOTH_FORMATS
def test_chunks_are_tiles_and_a_tile_writes_only_its_chunks(
    tmp_path: Path, zarr_format: int
) -> None:
    # 5 dates -> 3 time chunks, the last partial
    store = new_store(tmp_path, time_chunk=2, zarr_format=zarr_format)
    meta = array_metadata(store, "S2_B4", zarr_format)
    assert meta["chunks"] == [2, PX, PX]
    assert meta["shape"] == [len(TIMES), 2 * PX, 2 * PX]
    template = store_files(store)
    # The template holds metadata and coordinates only: no data chunk of any variable.
    assert not [k for k in template if k.split("/")[0] not in ("x", "y", "time") and is_chunk(k)]
    assert {k for k in template if is_chunk(k)} == {
        chunk_key(name, (0,), zarr_format) for name in ("x", "y", "time")
    }

    before = template
    for seed, tile in enumerate([TILES[3], TILES[0]]):
        write_tile(store, tile, fake_tile(tile, seed))
        after = store_files(store)
        new = set(after) - set(before)
        assert new == tile_chunk_keys(tile, n_time_chunks=3, zarr_format=zarr_format), tile
        assert {k: after[k] for k in before} == before  # nothing else was touched
        before = after


# ------------------------------------------------------------------------- georeferencing


@pytest.mark.filterwarnings("ignore:Use `@` matmul:PendingDeprecationWarning:rioxarray")
@BOTH_FORMATS
def test_rioxarray_sees_crs_and_transform(tmp_path: Path, zarr_format: int) -> None:
    store = new_store(tmp_path, zarr_format=zarr_format)
    write_tile(store, TILES[0], fake_tile(TILES[0], 0))
    ds = xr.open_zarr(store, consolidated=False)  # xarray detects the format
    west, north = TILES[0].bounds[0], TILES[0].bounds[3]
    for name in ("S2_B4", "LS_B10", "s2_clear_count"):
        assert ds[name].attrs["grid_mapping"] == "spatial_ref"
        assert ds[name].rio.crs.to_epsg() == EPSG
        assert ds[name].rio.transform() == Affine(10.0, 0.0, west, 0.0, -10.0, north)
    assert CRS.from_wkt(ds["spatial_ref"].attrs["crs_wkt"]) == CRS.from_epsg(EPSG)
    assert ds["spatial_ref"].attrs["GeoTransform"].split() == [
        str(float(west)), "10.0", "0.0", str(float(north)), "0.0", "-10.0",
    ]  # fmt: skip
    assert ds.x.attrs["standard_name"] == "projection_x_coordinate"
    assert ds.y.attrs["units"] == "m"


GDAL_VERSION = tuple(int(part) for part in rasterio.__gdal_version__.split(".")[:2])
GDAL_CANNOT_READ_V3 = pytest.mark.skipif(
    GDAL_VERSION < (3, 11),
    reason=(
        f"GDAL {rasterio.__gdal_version__} (bundled with rasterio {rasterio.__version__}) "
        "implements a pre-final Zarr v3 draft: it knows the 'endian' codec but not the final "
        "spec's 'bytes' (nor v3 'zstd'), so it fails on every zarr-python 3 array with "
        "'Unsupported codec: bytes'. GDAL >= 3.11 reads them (OSGeo/gdal PR #11787); older "
        "GDAL reads Level3Config(zarr_format=2) stores (tested here)."
    ),
)


def gdal_decoded(src: rasterio.DatasetReader, band: int) -> np.ndarray:
    """A GDAL band as a GDAL client decodes it: nodata -> NaN, then scale and offset."""
    values = src.read(band).astype(np.float64)
    scaled = values * src.scales[band - 1] + src.offsets[band - 1]
    return np.where(values == src.nodata, np.nan, scaled)


@pytest.mark.filterwarnings("ignore:Use `@` matmul:PendingDeprecationWarning:rioxarray")
@pytest.mark.parametrize("zarr_format", [2, pytest.param(3, marks=GDAL_CANNOT_READ_V3)])
def test_gdal_sees_crs_geotransform_and_values(tmp_path: Path, zarr_format: int) -> None:
    """What QGIS shows: one raster per variable, dates as bands, georeferenced, decoded; a
    tile never written is nodata (the Zarr fill_value)."""
    store = new_store(tmp_path, zarr_format=zarr_format)
    dataset = fake_tile(TILES[0], 0)  # the north-west tile: its corner is the store's
    write_tile(store, TILES[0], dataset)
    west, north = TILES[0].bounds[0], TILES[0].bounds[3]
    written, unwritten = (slice(0, PX), slice(0, PX)), (slice(PX, None), slice(PX, None))
    for name, atol in (("S2_B4", 0.51 * REFLECTANCE_STEP), ("LS_B10", 0.51 * KELVIN_STEP)):
        with rasterio.open(f'ZARR:"{store}":/{name}') as src:
            assert src.crs.to_epsg() == EPSG
            assert src.transform == Affine(10.0, 0.0, west, 0.0, -10.0, north)
            assert (src.count, src.height, src.width) == (len(TIMES), 2 * PX, 2 * PX)
            assert src.dtypes[0] == "int16" and src.nodata == -32768
            # GDAL sees the dates only as numbers with CF units, per band.
            assert src.tags(2)["DIM_time_UNIT"] == "seconds since 1970-01-01"
            assert int(src.tags(2)["DIM_time_VALUE"]) == TIMES[1].timestamp()
            decoded = gdal_decoded(src, 2)
        expected = dataset[name].values[1]
        assert np.isnan(expected).any()  # a cloud gap: nodata in GDAL
        np.testing.assert_allclose(decoded[written], expected, atol=atol, err_msg=name)
        assert np.isnan(decoded[unwritten]).all(), name
    with rasterio.open(f'ZARR:"{store}":/s2_clear_count') as src:  # (y, x): one band
        assert (src.count, src.crs.to_epsg(), src.transform.c) == (1, EPSG, west)
        np.testing.assert_array_equal(src.read(1)[written], dataset["s2_clear_count"].values)
    # rioxarray through GDAL (rather than through xarray's Zarr backend) agrees.
    through_gdal = rioxarray.open_rasterio(f'ZARR:"{store}":/S2_B4', mask_and_scale=True)
    assert through_gdal.rio.crs.to_epsg() == EPSG
    assert through_gdal.rio.transform() == Affine(10.0, 0.0, west, 0.0, -10.0, north)
    np.testing.assert_allclose(
        through_gdal.values[1][written], dataset["S2_B4"].values[1], atol=0.51e-4
    )


def test_gdal_v2_reader_takes_the_crs_from_cf_or_crs_attribute(tmp_path: Path) -> None:
    """The v2 store carries both GDAL's _CRS and the CF grid mapping; GDAL < 3.11 reads
    either alone (its v3 reader reads _CRS only), so each is a full fallback."""
    store = new_store(tmp_path, zarr_format=2)
    attributes_file = store / "S2_B4" / ".zattrs"
    attributes = json.loads(attributes_file.read_text())
    assert attributes["grid_mapping"] == "spatial_ref"
    assert CRS.from_wkt(attributes["_CRS"]["wkt"]).to_epsg() == EPSG
    for left_out in ("_CRS", "grid_mapping"):
        attributes_file.write_text(
            json.dumps({k: v for k, v in attributes.items() if k != left_out})
        )
        with rasterio.open(f'ZARR:"{store}":/S2_B4') as src:
            assert src.crs.to_epsg() == EPSG, f"without {left_out}"


# ------------------------------------------------------------------------- resume, concurrency


@BOTH_FORMATS
def test_resumed_store_has_the_bytes_of_an_uninterrupted_one(
    tmp_path: Path, zarr_format: int
) -> None:
    inputs = {tile.tile_id: fake_tile(tile, seed) for seed, tile in enumerate(TILES)}
    config = Level3Config(time_chunk=2, zarr_format=zarr_format)
    straight = create_store(tmp_path / "straight.zarr", TILES, TIMES, config, PROVENANCE)
    for tile in TILES:
        write_tile(straight, tile, inputs[tile.tile_id])

    resumed = create_store(tmp_path / "resumed.zarr", TILES, TIMES, config, PROVENANCE)
    write_tile(resumed, TILES[1], inputs[TILES[1].tile_id])
    write_tile(resumed, TILES[2], inputs[TILES[2].tile_id])
    # A crash in the middle of tile 3: a dask input whose last time block cannot be encoded
    # fails after other chunks were written (synchronous scheduler: a fixed order).
    broken = inputs[TILES[3].tile_id].chunk({"time": 2})
    broken["S2_B8"] = broken["S2_B8"].where(broken.time < TIMES[4], 9.0)
    with dask.config.set(scheduler="synchronous"), pytest.raises(ValueError, match="outside"):
        write_tile(resumed, TILES[3], broken)
    tile_keys = tile_chunk_keys(TILES[3], n_time_chunks=3, zarr_format=zarr_format)
    partial = tile_keys & set(store_files(resumed))
    assert 0 < len(partial) < len(tile_keys)
    # "Restart": the same create_store call is a no-op, and says what is left.
    root = (resumed / ATTRIBUTES_FILE[zarr_format]).read_bytes()
    assert create_store(resumed, TILES, TIMES, config, PROVENANCE) == resumed
    assert (resumed / ATTRIBUTES_FILE[zarr_format]).read_bytes() == root
    assert completed_tiles(resumed) == {TILES[1].tile_id, TILES[2].tile_id}
    left = missing_tiles(resumed)
    assert left == [TILES[0], TILES[3]]
    assert missing_tiles(resumed, [TILES[3], TILES[1]]) == [TILES[3]]
    for tile in left:
        write_tile(resumed, tile, inputs[tile.tile_id])
    assert missing_tiles(resumed) == []

    straight_files, resumed_files = store_files(straight), store_files(resumed)
    assert tile_keys <= set(straight_files)
    assert straight_files.keys() == resumed_files.keys()
    differing = [k for k in straight_files if straight_files[k] != resumed_files[k]]
    assert differing == []


def _write_together(barrier, store: Path, tile: GridTile, dataset: xr.Dataset) -> None:
    barrier.wait(timeout=60)  # all four processes write at the same moment
    write_tile(store, tile, dataset)


def test_four_processes_write_four_tiles_at_once(tmp_path: Path) -> None:
    inputs = {tile.tile_id: fake_tile(tile, seed) for seed, tile in enumerate(TILES)}
    together = new_store(tmp_path, "together.zarr")
    context = multiprocessing.get_context("spawn")  # fresh interpreters, as dask workers
    barrier = context.Barrier(len(TILES))
    processes = [
        context.Process(target=_write_together, args=(barrier, together, t, inputs[t.tile_id]))
        for t in TILES
    ]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=120)
    assert [p.exitcode for p in processes] == [0] * len(TILES)

    assert completed_tiles(together) == {t.tile_id for t in TILES}
    records = sorted((together / "completed").glob("*/zarr.json"))
    assert len({json.loads(r.read_text())["attributes"]["tamrf:completed_tile"]["pid"]
                for r in records}) == len(TILES)  # fmt: skip
    alone = new_store(tmp_path, "alone.zarr")
    for tile in reversed(TILES):  # another order: same bytes (determinism)
        write_tile(alone, tile, inputs[tile.tile_id])
    assert store_files(together) == store_files(alone)


@BOTH_FORMATS
def test_completion_records_are_zarr_groups_committed_by_their_attributes(
    tmp_path: Path, zarr_format: int
) -> None:
    store = create_store(
        tmp_path / "l3.zarr", TILES[:2], TIMES, Level3Config(zarr_format=zarr_format)
    )
    record_file = write_tile(store, TILES[0], fake_tile(TILES[0], 0), {"items": ["a"]})
    directory = store / "completed" / TILES[0].tile_id
    assert record_file == directory / ATTRIBUTES_FILE[zarr_format]
    # v3: zarr.json alone; v2: .zgroup, then .zattrs (the commit). No temporary file left.
    expected = {"zarr.json"} if zarr_format == 3 else {".zgroup", ".zattrs"}
    assert {p.name for p in directory.iterdir()} == expected
    group = zarr.open_group(directory, mode="r", zarr_format=zarr_format)
    record = group.attrs["tamrf:completed_tile"]
    assert (record["tile_id"], record["provenance"]) == (TILES[0].tile_id, {"items": ["a"]})
    # A writer that died before its commit (v2: .zgroup written, .zattrs still a temporary
    # file; v3: only the temporary file) leaves no record.
    died = store / "completed" / TILES[1].tile_id
    died.mkdir()
    if zarr_format == 2:
        (died / ".zgroup").write_text(json.dumps({"zarr_format": 2}))
    commit = ATTRIBUTES_FILE[zarr_format]
    (died / f".{commit.lstrip('.')}.0123abcd.tmp").write_text(record_file.read_text()[:10])
    assert completed_tiles(store) == {TILES[0].tile_id}
    assert missing_tiles(store) == [TILES[1]]


# ------------------------------------------------------------------------- clear errors


def test_wrong_dates_are_refused_before_anything_is_written(tmp_path: Path) -> None:
    store = new_store(tmp_path)
    before = store_files(store)
    shifted = fake_tile(TILES[0], 0, times=TIMES + pd.Timedelta(days=1))
    with pytest.raises(ValueError, match="not the store's dates"):
        write_tile(store, TILES[0], shifted)
    fewer = fake_tile(TILES[0], 0, times=TIMES[:4])
    with pytest.raises(ValueError, match="not the store's dates"):
        write_tile(store, TILES[0], fewer)
    assert store_files(store) == before
    assert completed_tiles(store) == set()


def test_wrong_epsg_is_refused(tmp_path: Path) -> None:
    store = new_store(tmp_path)
    dataset = fake_tile(TILES[0], 0)
    dataset.attrs["epsg"] = 32632
    with pytest.raises(ValueError, match=r"attrs\['epsg'\] is 32632 .* EPSG:32631"):
        write_tile(store, TILES[0], dataset)
    other_zone = GridTile(32632, 620, 8030, SPEC)
    with pytest.raises(ValueError, match="EPSG:32632 but the store is in EPSG:32631"):
        write_tile(store, other_zone, fake_tile(other_zone, 0))
    with pytest.raises(ValueError, match="one store per EPSG"):
        create_store(tmp_path / "mixed.zarr", [TILES[0], other_zone], TIMES)
    assert not (tmp_path / "mixed.zarr").exists()


def test_tile_outside_the_store_is_refused(tmp_path: Path) -> None:
    store = create_store(tmp_path / "l3.zarr", TILES[:2], TIMES)  # the northern row only
    outside = TILES[2]
    with pytest.raises(ValueError, match="outside the store"):
        write_tile(store, outside, fake_tile(outside, 0))
    # Right tile argument, but the data of another tile: refused on coordinates.
    with pytest.raises(ValueError, match="x coordinates are not the pixel centres"):
        write_tile(store, TILES[0], fake_tile(TILES[1], 0))


def test_missing_variables_and_unencodable_values_are_refused(tmp_path: Path) -> None:
    store = new_store(tmp_path)
    with pytest.raises(ValueError, match=r"missing \['S2_B4'\]"):
        write_tile(store, TILES[0], fake_tile(TILES[0], 0).drop_vars("S2_B4"))
    too_bright = fake_tile(TILES[0], 0)
    too_bright["S2_B2"][0, 0, 0] = 4.0  # would wrap around in int16
    with pytest.raises(ValueError, match=r"S2_B2 has 1 values outside .*float32"):
        write_tile(store, TILES[0], too_bright)
    assert completed_tiles(store) == set()


def test_recreating_with_other_parameters_is_refused(tmp_path: Path) -> None:
    store = new_store(tmp_path)
    same = create_store(store, list(reversed(TILES)), list(TIMES), Level3Config(), PROVENANCE)
    assert same == store  # same parameters (tiles in any order): a no-op
    with pytest.raises(
        ValueError, match=r"other parameters \(differing: config.time_chunk, times;.*rm -r"
    ):
        create_store(store, TILES, TIMES[:4], Level3Config(), PROVENANCE)
    with pytest.raises(ValueError, match=r"differing: config.encoding;"):
        create_store(store, TILES, TIMES, Level3Config(encoding="float32"), PROVENANCE)
    # Another Zarr format, either way round: named, with what the store has.
    with pytest.raises(
        ValueError, match=r"differing: config.zarr_format; config.zarr_format: 3 in the store, 2"
    ):
        create_store(store, TILES, TIMES, Level3Config(zarr_format=2), PROVENANCE)
    v2 = create_store(tmp_path / "v2.zarr", TILES, TIMES, Level3Config(zarr_format=2), PROVENANCE)
    assert create_store(v2, TILES, TIMES, Level3Config(zarr_format=2), PROVENANCE) == v2
    assert read_definition(v2).config.zarr_format == 2
    with pytest.raises(ValueError, match=r"config.zarr_format: 2 in the store, 3 asked"):
        create_store(v2, TILES, TIMES, Level3Config(), PROVENANCE)
    with pytest.raises(ValueError, match="zarr_format=4: use 3"):
        Level3Config(zarr_format=4)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"differing: bounds, tile_ids, tiles"):
        create_store(store, TILES[:2], TIMES, Level3Config(), PROVENANCE)
    with pytest.raises(ValueError, match=r"differing: provenance"):
        create_store(store, TILES, TIMES, Level3Config(), {**PROVENANCE, "run": 2})
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("not a store")
    with pytest.raises(ValueError, match="not a Level-3 store"):
        create_store(tmp_path / "other", TILES, TIMES)


# ------------------------------------------------------------------------- STAC


def test_stac_collection_validates_and_outlines_the_tiles(tmp_path: Path) -> None:
    north = create_store(tmp_path / "stores" / "zone31-north.zarr", TILES[:2], TIMES)
    later = pd.date_range("2024-06-01", periods=3, freq="10D")
    spanish = [GridTile(32630, 800, 8000, SPEC), GridTile(32630, 801, 7999, SPEC)]
    other = create_store(tmp_path / "stores" / "zone30.zarr", spanish, later)
    write_tile(north, TILES[0], fake_tile(TILES[0], 0))

    collection_file = write_level3_collection([north, other], tmp_path / "stac")
    collection = json.loads(collection_file.read_text())
    validate_stac(collection)
    item_files = {p.stem: p for p in (tmp_path / "stac").glob("*/*.json")}
    assert set(item_files) == {"zone31-north", "zone30"}
    for name, store, tiles, dates in (
        ("zone31-north", north, TILES[:2], TIMES),
        ("zone30", other, spanish, later),
    ):
        item = json.loads(item_files[name].read_text())
        validate_stac(item)
        geometry = shape(item["geometry"])
        for tile in tiles:  # 1e-8 degrees (1 mm): the coordinates are rounded to 1e-9
            assert geometry.buffer(1e-8).contains(tile.lonlat_polygon()), tile.tile_id
        assert geometry.area < 1.01 * sum(t.lonlat_polygon().area for t in tiles)
        properties = item["properties"]
        assert properties["proj:epsg"] == tiles[0].epsg
        assert properties["tamrf:tile_ids"] == [t.tile_id for t in tiles]
        assert properties["tamrf:dates"] == [d.isoformat() for d in dates]
        assert properties["start_datetime"] == f"{dates[0].isoformat()}Z"
        assert properties["end_datetime"] == f"{dates[-1].isoformat()}Z"
        asset = item["assets"]["data"]
        assert asset["type"] == ZARR_MEDIA_TYPE and asset["roles"] == ["data"]
        assert (item_files[name].parent / asset["href"]).resolve() == store.resolve()
        assert [b["name"] for b in asset["bands"]][:18] == [b.name for b in BANDS]
    north_item = json.loads(item_files["zone31-north"].read_text())
    assert north_item["properties"]["tamrf:missing_tile_ids"] == [TILES[1].tile_id]
    assert collection["extent"]["temporal"]["interval"] == [
        [f"{TIMES[0].isoformat()}Z", f"{later[-1].isoformat()}Z"]
    ]
