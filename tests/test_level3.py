"""Tests for pipelines.level3 (the Level-3 Zarr store, v3 or v2) and pipelines.level3_stac.

Real stores in tmp_path, no mocks. Tiles are 600 m (60 x 60 px at 10 m) so that a store of
2 x 2 tiles and 5 dates is a few megabytes. Tests of what differs between Zarr v2 and v3
(files, chunk keys, fill values, records, GDAL) run on both formats.
"""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
import re
import shutil
import warnings
from pathlib import Path

import dask
import numcodecs
import numpy as np
import pandas as pd
import pytest
import rasterio
import rioxarray  # also registers the .rio accessor
import shapely
import typer
import xarray as xr
import zarr
from affine import Affine
from pyproj import CRS
from shapely.geometry import shape
from typer.testing import CliRunner

from flows.cli_info import info
from pipelines.georef import grid_coords
from pipelines.grid import GridSpec, GridTile
from pipelines.level3 import (
    QUALITY_VARIABLES,
    Level3Config,
    completed_tiles,
    completion_records,
    consolidate,
    create_store,
    missing_tiles,
    open_level3,
    read_definition,
    round_mantissa,
    write_tile,
)
from pipelines.level3_info import describe_store, format_store_description
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
METADATA_FILES = {"zarr.json", ".zarray", ".zattrs", ".zgroup", ".zmetadata"}


def fake_tile(tile: GridTile, seed: int, times: pd.DatetimeIndex = TIMES) -> xr.Dataset:
    """A plausible model output for ``tile``: smooth reflectance 0..0.6 with some slightly
    negative values, LST 260-325 K, cloud-gap NaN squares, quality layers with -1."""
    rng = np.random.default_rng(seed)
    n = len(times)
    yy, xx = np.mgrid[0:PX, 0:PX] / PX
    field = 0.5 + 0.5 * np.sin(6 * xx + rng.uniform(0, 6)) * np.cos(5 * yy)  # (y, x) 0..1
    ds = xr.Dataset(coords=grid_coords(tile.grid()))
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


EXACT_FLOAT32 = {
    "encoding": "float32",
    "reflectance_keep_bits": None,
    "temperature_keep_bits": None,
}
KEEP_BITS = {"reflectance": 12, "temperature": 16}  # Level3Config's defaults


def bit_rounding_bound(values: np.ndarray, quantity: str) -> np.ndarray:
    """Level3Config's stated bound: 2**-(k+1) of the value's magnitude."""
    return 2.0 ** -(KEEP_BITS[quantity] + 1) * np.abs(values.astype(np.float64))


@BOTH_FORMATS
def test_float32_round_trip_is_exact(tmp_path: Path, zarr_format: int) -> None:
    """keep_bits None: the model's float32 values, bit for bit."""
    store = new_store(tmp_path, **EXACT_FLOAT32, zarr_format=zarr_format)
    assert read_definition(store).config.reflectance_keep_bits is None
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
def test_default_store_reads_as_float32_within_the_rounding_bound(
    tmp_path: Path, zarr_format: int
) -> None:
    """The default (float32, mantissa rounded to 12 / 16 bits): a plain xr.open_zarr gives
    float32 bands without any warning, each value the rounded model value (so within
    2**-13 / 2**-17 of it), NaN where the model gave NaN or nothing was written."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        store = new_store(tmp_path, zarr_format=zarr_format)
        written = TILES[:3]
        inputs = {tile.tile_id: fake_tile(tile, seed) for seed, tile in enumerate(written)}
        for tile in written[:2]:
            write_tile(store, tile, inputs[tile.tile_id])
        # dask input: rounded per block, with the same result
        write_tile(store, written[2], inputs[written[2].tile_id].chunk({"time": 2}))
        ds = xr.open_zarr(store)
    config = read_definition(store).config
    assert (config.encoding, config.reflectance_keep_bits, config.temperature_keep_bits) == (
        "float32", 12, 16,
    )  # fmt: skip
    assert {ds[name].dtype for name in ds.data_vars} == {np.dtype(np.float32)}
    for band in BANDS:
        assert ds[band.name].attrs["tamrf:keep_bits"] == KEEP_BITS[band.quantity]
        assert ds[band.name].attrs["tamrf:max_relative_error"] == 2.0 ** -(
            KEEP_BITS[band.quantity] + 1
        )
        assert array_metadata(store, band.name, zarr_format)["fill_value"] == "NaN"
    worst = {"reflectance": 0.0, "temperature": 0.0}
    for tile in written:
        part = ds.isel(region(tile))
        for band in BANDS:
            expected = inputs[tile.tile_id][band.name].values
            got = part[band.name].values
            np.testing.assert_array_equal(np.isnan(got), np.isnan(expected), err_msg=band.name)
            np.testing.assert_array_equal(
                got, round_mantissa(expected, KEEP_BITS[band.quantity]), err_msg=band.name
            )
            error = np.abs(got.astype(np.float64) - expected)
            assert np.nanmax(error - bit_rounding_bound(expected, band.quantity)) <= 0
            worst[band.quantity] = max(worst[band.quantity], float(np.nanmax(error)))
        for name in QUALITY_VARIABLES:
            np.testing.assert_array_equal(part[name].values, inputs[tile.tile_id][name].values)
    # In absolute terms (reflectance below 1, temperature 256..512 K): near int16's 5e-5,
    # better than its 0.005 K.
    assert worst["reflectance"] <= 2**-14 and worst["temperature"] <= 2**-9, worst
    never_written = ds.isel(region(TILES[3]))
    for name in never_written.data_vars:
        assert np.isnan(never_written[name].values).all(), name
    for name in ds.data_vars:  # open_level3 reads the same
        np.testing.assert_array_equal(ds[name].values, open_level3(store)[name].values)


def band_bytes(store: Path) -> int:
    """Bytes of the bands' chunk files (the quality layers are the same in every encoding)."""
    names = {band.name for band in BANDS}
    return sum(
        p.stat().st_size
        for p in store.rglob("*")
        if p.is_file() and p.relative_to(store).parts[0] in names and p.name not in METADATA_FILES
    )


def test_default_store_is_at_most_twice_int16_and_smaller_than_exact_float32(
    tmp_path: Path,
) -> None:
    """2 dates x 120 x 120 px x 18 bands of smooth fields plus noise (fake_tile). Measured
    (zarr-python 3.1, Blosc zstd level 3): default 840 kB, int16 656 kB, exact float32
    1566 kB, i.e. default / int16 = 1.28 and default / exact = 0.54 (exact / int16 = 2.39).
    Bit shuffle does it: with byte shuffle the default store would be 954 kB (1.45 x int16).
    The same in v2 (numcodecs' Blosc, same settings)."""
    times = TIMES[:2]
    sizes = {}
    for label, config in (
        ("default", {}),
        ("int16", {"encoding": "int16"}),
        ("exact", EXACT_FLOAT32),
    ):
        store = create_store(tmp_path / f"{label}.zarr", TILES, times, Level3Config(**config))
        for seed, tile in enumerate(TILES):
            write_tile(store, tile, fake_tile(tile, seed, times))
        sizes[label] = band_bytes(store)
    assert sizes["default"] <= 2 * sizes["int16"], sizes
    assert sizes["default"] < 0.7 * sizes["exact"], sizes
    assert 1.1 < sizes["default"] / sizes["int16"] < 1.5, sizes  # as measured: 1.28


# ------------------------------------------------------------------------- bit rounding


def test_round_mantissa_zeroes_the_low_bits_within_the_bound() -> None:
    """Over the reflectance (-0.1..1.6) and temperature (180..350 K) ranges, for several
    keep bits: the low 23 - k mantissa bits are zero, the error is at most half a kept unit
    (2**-(k+1) relative), round half to even, and the same as numcodecs' BitRound codec."""
    rng = np.random.default_rng(0)
    samples = {
        "reflectance": rng.uniform(-0.1, 1.6, 200_000),
        "temperature": rng.uniform(180.0, 350.0, 200_000),
    }
    for values in samples.values():
        original = values.copy()
        as_float32 = values.astype(np.float32)
        for k in (0, 1, 7, 12, 16, 22):
            rounded = round_mantissa(values, k)
            assert rounded.dtype == np.float32 and rounded.shape == values.shape
            low_bits = np.uint32((1 << (23 - k)) - 1)
            assert not (rounded.view(np.uint32) & low_bits).any(), k
            error = np.abs(rounded.astype(np.float64) - as_float32)
            assert (error <= 2.0 ** -(k + 1) * np.abs(as_float32)).all(), k
            codec = numcodecs.BitRound(keepbits=k)
            expected = np.frombuffer(codec.encode(as_float32.copy()), dtype=np.float32)
            np.testing.assert_array_equal(rounded, expected, err_msg=f"k={k}")
        np.testing.assert_array_equal(values, original)  # the input is left alone
    # The stated precision of the defaults: 12 bits near reflectance 0.3, 16 bits near 330 K.
    for around, k, bound in ((0.3, 12, 3.7e-5), (330.0, 16, 0.0025)):
        values = np.linspace(0.99 * around, 1.01 * around, 100_001).astype(np.float32)
        assert np.abs(round_mantissa(values, k).astype(np.float64) - values).max() <= bound
    # Ties go to the even kept mantissa: 1 + 2**-13 and 1 + 3 * 2**-13 at 12 bits.
    ties = np.array([1 + 2**-13, 1 + 3 * 2**-13, -(1 + 2**-13)], dtype=np.float32)
    np.testing.assert_array_equal(round_mantissa(ties, 12), [1.0, 1 + 2**-11, -1.0])


def test_round_mantissa_special_values_and_identity() -> None:
    special = np.array([np.nan, -np.nan, np.inf, -np.inf, 0.0, -0.0, 1e-45], dtype=np.float32)
    # NaNs with payload bits that rounding would otherwise clear (into inf) or carry.
    payload_nans = np.array([0x7F800001, 0x7FFFFFFF, 0xFFC00001], dtype=np.uint32).view(np.float32)
    for k in (0, 12, 16, 23):
        rounded = round_mantissa(special, k)
        assert np.isnan(rounded[:2]).all()
        np.testing.assert_array_equal(rounded[2:6], special[2:6])
        assert np.signbit(rounded[5])
        assert np.isnan(round_mantissa(payload_nans, k)).all(), k
    values = np.random.default_rng(1).normal(0.3, 0.2, (3, 40, 40)).astype(np.float32)
    identity = round_mantissa(values, 23)
    assert identity is not values
    np.testing.assert_array_equal(identity.view(np.uint32), values.view(np.uint32))
    # Beyond the kept precision of float32's largest value: inf (which the store refuses).
    assert round_mantissa(np.float32(np.finfo(np.float32).max), 12) == np.inf
    for bad in (24, -1):
        with pytest.raises(ValueError, match=r"keep_bits=.*0\.\.23"):
            round_mantissa(values, bad)
    with pytest.raises(TypeError, match="keep_bits"):
        round_mantissa(values, 12.0)  # type: ignore[arg-type]


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
    """What QGIS shows of an int16 store: one raster per variable, dates as bands,
    georeferenced, decoded; a tile never written is nodata (the Zarr fill_value)."""
    store = new_store(tmp_path, encoding="int16", zarr_format=zarr_format)
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


@pytest.mark.parametrize("zarr_format", [2, pytest.param(3, marks=GDAL_CANNOT_READ_V3)])
def test_gdal_reads_the_default_store_as_float32(tmp_path: Path, zarr_format: int) -> None:
    """The default store through GDAL (QGIS): float32 with no scale or offset, the rounded
    values themselves (Blosc with bit shuffle decodes in GDAL), NaN as nodata where the
    model gave NaN and where no tile was written."""
    store = new_store(tmp_path, zarr_format=zarr_format)
    dataset = fake_tile(TILES[0], 0)
    write_tile(store, TILES[0], dataset)
    west, north = TILES[0].bounds[0], TILES[0].bounds[3]
    written, unwritten = (slice(0, PX), slice(0, PX)), (slice(PX, None), slice(PX, None))
    for name, quantity in (("S2_B4", "reflectance"), ("LS_B10", "temperature")):
        with rasterio.open(f'ZARR:"{store}":/{name}') as src:
            assert src.dtypes[0] == "float32" and np.isnan(src.nodata)
            assert (src.scales[0], src.offsets[0]) == (1.0, 0.0)
            assert src.crs.to_epsg() == EPSG
            assert src.transform == Affine(10.0, 0.0, west, 0.0, -10.0, north)
            values = src.read()
        assert values.dtype == np.float32
        expected = round_mantissa(dataset[name].values, KEEP_BITS[quantity])
        assert np.isnan(expected).any()
        np.testing.assert_array_equal(values[:, written[0], written[1]], expected, err_msg=name)
        assert np.isnan(values[:, unwritten[0], unwritten[1]]).all(), name


def test_gdal_v2_reader_takes_the_crs_from_cf_or_crs_attribute(tmp_path: Path) -> None:
    """The v2 store carries both GDAL's _CRS and the CF grid mapping; GDAL < 3.11 reads
    either alone (its v3 reader reads _CRS only), so each is a full fallback. GDAL reads the
    consolidated .zmetadata first: the edited attributes are re-consolidated."""
    store = new_store(tmp_path, zarr_format=2)
    attributes_file = store / "S2_B4" / ".zattrs"
    attributes = json.loads(attributes_file.read_text())
    assert attributes["grid_mapping"] == "spatial_ref"
    assert CRS.from_wkt(attributes["_CRS"]["wkt"]).to_epsg() == EPSG
    for left_out in ("_CRS", "grid_mapping"):
        attributes_file.write_text(
            json.dumps({k: v for k, v in attributes.items() if k != left_out})
        )
        consolidate(store)
        consolidated = json.loads((store / ".zmetadata").read_text())["metadata"]
        assert left_out not in consolidated["S2_B4/.zattrs"]
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
    broken["S2_B8"] = broken["S2_B8"].where(broken.time < TIMES[4], np.inf)
    with dask.config.set(scheduler="synchronous"), pytest.raises(ValueError, match="infinite"):
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


@BOTH_FORMATS
def test_a_failed_rewrite_leaves_the_tile_missing_and_no_old_chunk_behind(
    tmp_path: Path, zarr_format: int
) -> None:
    """Rewriting a complete tile (its inputs changed) withdraws its record first: a rewrite
    that fails half-way leaves the tile missing, not complete over mixed chunks; and a chunk
    the new data leave all NaN (not written) does not keep the old values."""
    tile = TILES[0]
    config = Level3Config(time_chunk=2, zarr_format=zarr_format)
    store = create_store(tmp_path / "l3.zarr", TILES, TIMES, config, PROVENANCE)
    write_tile(store, tile, fake_tile(tile, 1))
    assert completed_tiles(store) == {tile.tile_id}

    broken = fake_tile(tile, 2).chunk({"time": 2})
    broken["S2_B8"] = broken["S2_B8"].where(broken.time < TIMES[4], np.inf)
    with dask.config.set(scheduler="synchronous"), pytest.raises(ValueError, match="infinite"):
        write_tile(store, tile, broken)
    assert completed_tiles(store) == set(), "a half-written tile is not complete"
    assert missing_tiles(store, [tile]) == [tile]

    emptier = fake_tile(tile, 3)
    emptier["S2_B4"] = emptier["S2_B4"].where(emptier.time > TIMES[1])  # dates 0-1 all NaN
    write_tile(store, tile, emptier)
    assert completed_tiles(store) == {tile.tile_id}
    red = open_level3(store)["S2_B4"].isel(**region(tile))
    assert np.isnan(red.values[:2]).all(), "no old values where the new tile has none"
    assert np.isfinite(red.values[2:]).any()


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


def without_keep_bits(document: object) -> object:
    """A JSON document as the version before bit rounding wrote it: no keep-bits fields."""
    if isinstance(document, dict):
        return {
            key: without_keep_bits(value)
            for key, value in document.items()
            if key not in ("reflectance_keep_bits", "temperature_keep_bits")
        }
    if isinstance(document, list):
        return [without_keep_bits(value) for value in document]
    return document


@BOTH_FORMATS
@pytest.mark.parametrize("encoding", ["int16", "float32"])
def test_a_store_written_before_bit_rounding_reads_and_resumes(
    tmp_path: Path, zarr_format: int, encoding: str
) -> None:
    """Layout "1" stores from before the keep-bits fields (int16, then the default, or exact
    float32) have none in their definition: they read as not rounded (None), so the layout
    version stays "1", and resume with the parameters they were made with."""
    old = Level3Config(
        encoding=encoding,  # type: ignore[arg-type]
        reflectance_keep_bits=None,
        temperature_keep_bits=None,
        zarr_format=zarr_format,  # type: ignore[arg-type]
    )
    store = create_store(tmp_path / "old.zarr", TILES, TIMES, old, PROVENANCE)
    inputs = {tile.tile_id: fake_tile(tile, seed) for seed, tile in enumerate(TILES[:2])}
    write_tile(store, TILES[0], inputs[TILES[0].tile_id])
    for name in (ATTRIBUTES_FILE[zarr_format], CONSOLIDATED_FILE[zarr_format]):
        document = json.loads((store / name).read_text())
        (store / name).write_text(json.dumps(without_keep_bits(document)))
    assert "keep_bits" not in (store / ATTRIBUTES_FILE[zarr_format]).read_text()

    assert read_definition(store).config == old.resolved(len(TIMES))
    assert describe_store(store)["format_version"] == "1"
    # The old call: int16 without keep bits (ignored anyway); exact float32 says None.
    again = Level3Config(encoding="int16", zarr_format=zarr_format) if encoding == "int16" else old
    assert create_store(store, TILES, TIMES, again, PROVENANCE) == store
    write_tile(store, TILES[1], inputs[TILES[1].tile_id])
    ds = open_level3(store)
    for tile in TILES[:2]:
        got = ds["S2_B4"].isel(region(tile)).values
        expected = inputs[tile.tile_id]["S2_B4"].values
        if encoding == "float32":  # still exact: no rounding in an old float32 store
            np.testing.assert_array_equal(got, expected)
        else:
            np.testing.assert_allclose(got, expected, atol=0.51 * REFLECTANCE_STEP)
    if encoding == "float32":  # today's default would round: refused, with the reason
        with pytest.raises(ValueError, match=r"config.reflectance_keep_bits: None in the store"):
            create_store(store, TILES, TIMES, Level3Config(zarr_format=zarr_format), PROVENANCE)


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
    store = new_store(tmp_path, encoding="int16")
    with pytest.raises(ValueError, match=r"missing \['S2_B4'\]"):
        write_tile(store, TILES[0], fake_tile(TILES[0], 0).drop_vars("S2_B4"))
    too_bright = fake_tile(TILES[0], 0)
    too_bright["S2_B2"][0, 0, 0] = 4.0  # would wrap around in int16
    with pytest.raises(ValueError, match=r"S2_B2 has 1 values outside .*float32"):
        write_tile(store, TILES[0], too_bright)
    assert completed_tiles(store) == set()
    # The default float32 store takes 4.0 but refuses inf (and what float32 makes inf).
    default = new_store(tmp_path, "default.zarr")
    before = store_files(default)
    for value in (np.inf, -np.inf, 1e39):
        infinite = fake_tile(TILES[0], 0)
        infinite["LS_B10"] = infinite["LS_B10"].astype(np.float64)
        infinite["LS_B10"][1, 2, 3] = value
        with pytest.raises(ValueError, match=r"LS_B10 has 1 infinite values"):
            write_tile(default, TILES[0], infinite)
    assert store_files(default) == before
    write_tile(default, TILES[0], too_bright)
    assert open_level3(default)["S2_B2"].values[0, 0, 0] == 4.0


def test_recreating_with_other_parameters_is_refused(tmp_path: Path) -> None:
    store = new_store(tmp_path)
    same = create_store(store, list(reversed(TILES)), list(TIMES), Level3Config(), PROVENANCE)
    assert same == store  # same parameters (tiles in any order): a no-op
    with pytest.raises(
        ValueError, match=r"other parameters \(differing: config.time_chunk, times;.*rm -r"
    ):
        create_store(store, TILES, TIMES[:4], Level3Config(), PROVENANCE)
    with pytest.raises(ValueError, match=r"differing: config.encoding, config.reflectance_keep"):
        create_store(store, TILES, TIMES, Level3Config(encoding="int16"), PROVENANCE)
    with pytest.raises(
        ValueError,
        match=r"differing: config.reflectance_keep_bits;.*: 12 in the store, 10 asked",
    ):
        create_store(store, TILES, TIMES, Level3Config(reflectance_keep_bits=10), PROVENANCE)
    for bad in (24, -1, 12.0, True):
        with pytest.raises(ValueError, match=r"temperature_keep_bits=.*use 0..23 .* None"):
            Level3Config(temperature_keep_bits=bad)  # type: ignore[arg-type]
    # int16 has no keep bits: whatever is passed, the config says None.
    assert Level3Config(encoding="int16", reflectance_keep_bits=8).reflectance_keep_bits is None
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


# ------------------------------------------------------------------------- analysts' side

BAND_NAMES = [b.name for b in BANDS]
CONSOLIDATED_FILE = {2: ".zmetadata", 3: "zarr.json"}  # where the consolidated metadata is


def consolidated_entries(store: Path, zarr_format: int) -> dict:
    """The consolidated metadata's entries, in file order (v2 keys are files, v3 nodes)."""
    document = json.loads((store / CONSOLIDATED_FILE[zarr_format]).read_text())
    holder = document["consolidated_metadata"] if zarr_format == 3 else document
    return holder["metadata"]


@BOTH_FORMATS
@pytest.mark.parametrize("encoding", ["int16", "float32"])
def test_plain_open_zarr_warns_nothing_lists_bands_in_order_and_decodes(
    tmp_path: Path, zarr_format: int, encoding: str
) -> None:
    """What an analyst gets from xr.open_zarr(store) without arguments: no warning (not even
    while the store is created and written), variables in model band order, then the quality
    layers; float32 for float32 stores and quality layers; float64 for int16 bands (xarray
    decodes CF packing to the type of the JSON scale_factor: see the module docstring)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        store = new_store(tmp_path, encoding=encoding, zarr_format=zarr_format)
        write_tile(store, TILES[1], fake_tile(TILES[1], 1))
        ds = xr.open_zarr(store)
    assert list(ds.data_vars) == [*BAND_NAMES, *QUALITY_VARIABLES]
    assert list(ds.coords) == ["time", "y", "x", "spatial_ref"]
    bands = np.float32 if encoding == "float32" else np.float64
    assert {ds[name].dtype for name in BAND_NAMES} == {np.dtype(bands)}
    assert {ds[name].dtype for name in QUALITY_VARIABLES} == {np.dtype(np.float32)}
    assert ds["s2_days_to_clear"].attrs["units"] == "day"  # "days" would decode to int64
    reference = open_level3(store)
    for name in ds.data_vars:
        np.testing.assert_array_equal(
            ds[name].values.astype(np.float32), reference[name].values, err_msg=name
        )
    unwritten = ds.isel(region(TILES[0]))
    for name in ("S2_B4", "LS_B10", "s2_days_to_clear", "landsat_clear_count"):
        assert np.isnan(unwritten[name].values).all(), name


@BOTH_FORMATS
def test_the_consolidated_metadata_alone_opens_the_store(tmp_path: Path, zarr_format: int) -> None:
    """One metadata read: with every array's own metadata files gone, xarray still opens the
    store, attributes and values included."""
    store = new_store(tmp_path, zarr_format=zarr_format)
    write_tile(store, TILES[0], fake_tile(TILES[0], 0))
    expected = open_level3(store).isel(region(TILES[0]))["S2_B4"].values
    for name in (*BAND_NAMES, *QUALITY_VARIABLES, "time", "y", "x", "spatial_ref"):
        for metadata_file in ("zarr.json", ".zarray", ".zattrs"):
            (store / name / metadata_file).unlink(missing_ok=True)
    assert not list(store.glob("S2_B4/zarr.json")) and not list(store.glob("S2_B4/.za*"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds = xr.open_zarr(store)
    assert list(ds.data_vars) == [*BAND_NAMES, *QUALITY_VARIABLES]
    assert ds["S2_B4"].attrs["grid_mapping"] == "spatial_ref"
    got = ds["S2_B4"].isel(region(TILES[0])).values.astype(np.float32)
    np.testing.assert_array_equal(got, expected)


@BOTH_FORMATS
def test_consolidated_metadata_is_zarrs_in_band_order_without_records(
    tmp_path: Path, zarr_format: int
) -> None:
    store = new_store(tmp_path, zarr_format=zarr_format)
    consolidated_file = store / CONSOLIDATED_FILE[zarr_format]
    at_creation = consolidated_file.read_bytes()
    for seed, tile in enumerate(TILES[:2]):
        write_tile(store, tile, fake_tile(tile, seed))
    assert consolidated_file.read_bytes() == at_creation  # tile writers never rewrite it
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # zarr's v3 warning is silenced where the store writes
        assert consolidate(store) == consolidated_file
    assert consolidated_file.read_bytes() == at_creation  # the records are not part of it

    ours = consolidated_entries(store, zarr_format)
    nodes = list(dict.fromkeys(key.rpartition("/")[0] if zarr_format == 2 else key for key in ours))
    root = [""] if zarr_format == 2 else []
    expected_order = [*BAND_NAMES, *QUALITY_VARIABLES, "time", "y", "x", "spatial_ref"]
    assert nodes == [*root, *expected_order, "completed"]
    # zarr's own consolidation of the same nodes: the same content, sorted by name.
    copy = tmp_path / "copy.zarr"
    shutil.copytree(store, copy)
    for record in (copy / "completed").iterdir():
        if record.is_dir():
            shutil.rmtree(record)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        zarr.consolidate_metadata(copy, zarr_format=zarr_format)
    zarrs = consolidated_entries(copy, zarr_format)
    assert ours == zarrs and list(ours) != list(zarrs)
    # The records stay readable from the file system, and by zarr from their own group.
    assert set(completion_records(store)) == {TILES[0].tile_id, TILES[1].tile_id}
    assert set(zarr.open_group(store / "completed", mode="r").group_keys()) == {
        TILES[0].tile_id,
        TILES[1].tile_id,
    }

    # A store made before consolidation: xarray warns and falls back; consolidate() fixes it.
    if zarr_format == 3:
        document = json.loads(consolidated_file.read_text())
        del document["consolidated_metadata"]
        consolidated_file.write_text(json.dumps(document))
    else:
        consolidated_file.unlink()
    with pytest.warns(RuntimeWarning, match="Failed to open Zarr store with consolidated"):
        xr.open_zarr(store)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert list(open_level3(store).data_vars) == [*BAND_NAMES, *QUALITY_VARIABLES]
        consolidate(store)
        assert list(xr.open_zarr(store).data_vars) == [*BAND_NAMES, *QUALITY_VARIABLES]
    assert consolidated_entries(store, zarr_format) == ours


@BOTH_FORMATS
def test_completion_records_and_provenance_computed_after_the_data(
    tmp_path: Path, zarr_format: int
) -> None:
    store = new_store(tmp_path, zarr_format=zarr_format, time_chunk=2)
    write_tile(store, TILES[0], fake_tile(TILES[0], 0), {"items": ["a"]})
    tile_keys = tile_chunk_keys(TILES[1], n_time_chunks=3, zarr_format=zarr_format)
    seen: dict[str, object] = {}

    def provenance() -> dict:
        """Called once: records what the store holds at that moment."""
        assert not seen, "called twice"
        seen["records"] = completed_tiles(store)
        seen["chunks written"] = tile_keys <= set(store_files(store))
        return {"broken_assets": [{"href": "https://x/B04.tif", "error": "HTTP 500"}]}

    lazy = fake_tile(TILES[1], 1).chunk({"time": 2})  # computed while writing
    write_tile(store, TILES[1], lazy, provenance)
    assert seen == {"records": {TILES[0].tile_id}, "chunks written": True}

    records = completion_records(store)
    assert list(records) == sorted([TILES[0].tile_id, TILES[1].tile_id])
    first, second = records[TILES[0].tile_id], records[TILES[1].tile_id]
    assert set(second) == {"tile_id", "epsg", "bounds", "written_at", "host", "pid", "provenance"}
    assert (first["provenance"], first["epsg"]) == ({"items": ["a"]}, EPSG)
    assert second["provenance"] == {
        "broken_assets": [{"href": "https://x/B04.tif", "error": "HTTP 500"}]
    }
    assert second["bounds"] == list(TILES[1].bounds)
    assert completed_tiles(store) == set(records)

    # A function's result that is not JSON: the data are written, but no record follows.
    with pytest.raises(ValueError, match=r"provenance\(\) must be JSON-serialisable"):
        write_tile(store, TILES[2], fake_tile(TILES[2], 2), lambda: {"at": pd.Timestamp(0)})
    assert tile_chunk_keys(TILES[2], 3, zarr_format) <= set(store_files(store))

    # A function that fails: its error, and no record either.
    def failing() -> dict:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        write_tile(store, TILES[3], fake_tile(TILES[3], 3), failing)
    assert completed_tiles(store) == {TILES[0].tile_id, TILES[1].tile_id}
    # A mapping is checked before anything is written.
    before = store_files(store)
    with pytest.raises(ValueError, match="provenance must be JSON-serialisable"):
        write_tile(store, TILES[3], fake_tile(TILES[3], 3), {"at": pd.Timestamp(0)})
    assert store_files(store) == before


RUN_PROVENANCE = {  # as flows.regional_run writes it, some keys left out
    "model": {
        "format": "tamrf-xr-checkpoint",
        "weights_sha256": "ab" * 32,
        "origin": {"kind": "untrained", "seed": 0},
    },
    "untrained_model": True,
    "collections": ["sentinel-2-l2a", "landsat-c2-l2"],
    "software": {"tamrf_xr": "0.1.0"},
}


def tile_record(s2: list[str], landsat: list[str], broken: list[str]) -> dict:
    """A record's provenance as pipelines.level3_production writes it."""
    return {
        "status": "predicted",
        "inputs": {
            "sentinel-2": [{"id": i, "scaling": "earth-search-boa-offset"} for i in s2],
            "landsat": [{"id": i, "scaling": "landsat-c2-l2"} for i in landsat],
        },
        "broken_assets": [{"item_id": i, "band": "B04", "error": "HTTP 404"} for i in broken],
    }


@pytest.fixture(scope="module")
def partly_written(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained run's store with 2 of its 4 tiles written (the first and the last)."""
    store = create_store(
        tmp_path_factory.mktemp("info") / "32631.zarr", TILES, TIMES, attrs=RUN_PROVENANCE
    )
    write_tile(store, TILES[3], fake_tile(TILES[3], 3), tile_record(["a", "b", "c"], ["L1"], ["b"]))
    write_tile(
        store, TILES[0], fake_tile(TILES[0], 0), tile_record(["b", "c", "d"], ["L1", "L2"], [])
    )
    return store


def test_describe_store_on_a_partly_written_store(partly_written: Path) -> None:
    info = describe_store(partly_written)
    assert json.loads(json.dumps(info)) == info  # JSON-able as it is
    assert info["path"] == str(partly_written.absolute())
    assert (info["zarr_format"], info["epsg"], info["format_version"]) == (3, EPSG, "1")
    assert info["tiles"] == {
        "count": 4,
        "complete": 2,
        "missing": 2,
        "complete_ids": [TILES[0].tile_id, TILES[3].tile_id],
        "missing_ids": [TILES[1].tile_id, TILES[2].tile_id],
    }
    assert info["untrained"] is True
    assert info["model"] == RUN_PROVENANCE["model"]
    assert info["run"] == {
        "collections": RUN_PROVENANCE["collections"],
        "software": {"tamrf_xr": "0.1.0"},
    }
    assert info["dates"] == {
        "first": "2024-03-01T00:00:00",
        "last": "2024-04-10T00:00:00",
        "count": 5,
        "all": [t.isoformat() for t in TIMES],
    }
    assert info["bounds"] == [620 * 600.0, 8029 * 600.0, 622 * 600.0, 8031 * 600.0]
    outline = shapely.union_all([tile.lonlat_polygon() for tile in TILES])
    np.testing.assert_allclose(info["bounds_lonlat"], outline.bounds, atol=1e-5)
    assert 1 < info["bounds_lonlat"][0] < 2 and 43 < info["bounds_lonlat"][1] < 44  # Toulouse
    assert info["shape"] == {"time": 5, "y": 2 * PX, "x": 2 * PX}
    assert (info["pixel_size_m"], info["tile_size_m"], info["tile_size_px"]) == (10.0, 600.0, PX)
    assert info["encoding"] == {
        "encoding": "float32",
        "reflectance_keep_bits": 12,
        "temperature_keep_bits": 16,
        "time_chunk": 5,
        "compression": "blosc-zstd",
        "compression_level": 3,
        "zarr_format": 3,
        "open_zarr_dtype": "float32",
    }
    inputs = info["inputs"]
    assert inputs["per_tile"][TILES[3].tile_id] == {
        "s2_items": 3,
        "landsat_items": 1,
        "items_by_sensor": {"sentinel-2": 3, "landsat": 1},
        "broken_assets": 1,
        "status": "predicted",
    }
    assert inputs["per_tile"][TILES[0].tile_id]["landsat_items"] == 2
    assert set(inputs["per_tile"]) == {TILES[0].tile_id, TILES[3].tile_id}
    # Distinct items over the tiles: S2 a, b, c, d; Landsat L1, L2.
    assert (inputs["s2_items"], inputs["landsat_items"], inputs["items"]) == (4, 2, 6)
    assert inputs["broken_assets"] == 1

    text = format_store_description(info)
    lines = text.splitlines()
    assert lines[-1] == "UNTRAINED model: values are not meaningful"
    columns = {re.match(r"\w+ +", line).end() for line in lines[:-1]}
    assert len(columns) == 1  # values aligned
    assert f"2 of 4 complete; missing: {TILES[1].tile_id}, {TILES[2].tile_id}" in text
    assert "5 from 2024-03-01T00:00:00 to 2024-04-10T00:00:00" in text
    assert "6 items over the complete tiles (4 Sentinel-2, 2 Landsat), 1 broken asset" in text
    assert "weights sha256 abababababab, from untrained (UNTRAINED)" in text
    assert (
        "encoding  float32 (mantissa rounded to 12 bits reflectance / 16 bits temperature; "
        "xr.open_zarr: float32), blosc-zstd level 3, 5 dates per chunk"
    ) in text
    # The other encodings, as they would read.
    for config, says in (
        ({"encoding": "int16"}, "int16 with CF scale/offset (xr.open_zarr: float64; "
                                "open_level3: float32), blosc"),
        (EXACT_FLOAT32, "float32, exact (xr.open_zarr: float32), blosc"),
        ({"temperature_keep_bits": None}, "float32 (mantissa rounded to 12 bits reflectance "
                                          "/ exact temperature; xr.open_zarr: float32)"),
    ):  # fmt: skip
        encoding = {**info["encoding"], **dataclasses.asdict(Level3Config(**config))}
        assert says in format_store_description({**info, "encoding": encoding}), config


def test_describe_store_without_run_provenance_and_on_a_non_store(tmp_path: Path) -> None:
    store = new_store(tmp_path, zarr_format=2)  # PROVENANCE: no untrained flag
    info = describe_store(store)
    assert (info["untrained"], info["zarr_format"], info["run"]) == (
        None,
        2,
        {"software": PROVENANCE["software"]},
    )
    assert info["tiles"]["complete_ids"] == [] and info["inputs"]["items"] == 0
    text = format_store_description(info)
    assert "UNTRAINED" not in text and "(training unknown)" in text
    assert "0 of 4 complete; missing: " in text
    for not_a_store in (tmp_path / "absent.zarr", tmp_path):
        with pytest.raises(
            ValueError, match=r"is not a Level-3 store.*create_store or fix the path"
        ):
            describe_store(not_a_store)


def info_app() -> typer.Typer:
    """A throwaway app with ``info`` as a subcommand, as flows.cli registers it."""
    app = typer.Typer()
    app.command("info")(info)

    @app.callback()
    def main() -> None:
        """tamrf"""

    return app


def test_info_command_prints_text_json_and_fails_cleanly(
    partly_written: Path, tmp_path: Path
) -> None:
    runner = CliRunner()
    text = runner.invoke(info_app(), ["info", str(partly_written)])
    assert text.exit_code == 0, text.output
    assert text.stdout == format_store_description(describe_store(partly_written)) + "\n"
    assert "UNTRAINED model: values are not meaningful" in text.stdout

    as_json = runner.invoke(info_app(), ["info", "--json", str(partly_written)])
    assert as_json.exit_code == 0, as_json.output
    assert json.loads(as_json.stdout) == describe_store(partly_written)

    (tmp_path / "notes.txt").write_text("not a store")
    failed = runner.invoke(info_app(), ["info", str(tmp_path)])
    assert failed.exit_code == 2 and failed.stdout == ""
    assert len(failed.stderr.splitlines()) == 1
    assert failed.stderr.startswith(f"error: {tmp_path} is not a Level-3 store")
