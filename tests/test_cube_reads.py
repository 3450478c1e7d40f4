"""Reads and kernels of cube assembly: plain windowed reads of assets on the grid's lattice
against GDAL's warper, and the faster kernels against their reference definitions.

The plain-read path must give what warping gave (same pixels, same no data, NaN beyond the
asset), and be taken only where the pixel lattices coincide.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
from pyproj import Transformer
from rasterio.transform import from_origin
from scipy import ndimage

from pipelines import asset_reader
from pipelines.asset_reader import read_assets
from tamrf_xr.grid import RasterGrid
from tamrf_xr.masking import MaskConfig, _disk, _per_image, s2_invalid
from tamrf_xr.resample import BICUBIC_A, _cubic_weights, upsample_bicubic

EPSG = 32631
WEST, NORTH = 600_000.0, 5_000_000.0
ROWS, COLS = 37, 53  # the asset: 10 m pixels from (WEST, NORTH)


def write_asset(path: Path, dtype: str, nodata: float | None, seed: int = 0) -> np.ndarray:
    """A single-band tiled GeoTIFF on a 10 m lattice, with no-data pixels if ``nodata``."""
    rng = np.random.default_rng(seed)
    data = rng.integers(1, 250, (ROWS, COLS)).astype(dtype)
    if nodata is not None:
        data[rng.random((ROWS, COLS)) < 0.1] = nodata
    profile = {"driver": "GTiff", "width": COLS, "height": ROWS, "count": 1, "dtype": dtype,
               "crs": f"EPSG:{EPSG}", "transform": from_origin(WEST, NORTH, 10.0, 10.0),
               "tiled": True, "blockxsize": 16, "blockysize": 16, "nodata": nodata}  # fmt: skip
    with rasterio.open(path, "w", **profile) as ds:
        ds.write(data, 1)
    return data


def item(href: Path) -> dict[str, Any]:
    to_lonlat = Transformer.from_crs(EPSG, 4326, always_xy=True)
    east, south = WEST + 10.0 * COLS, NORTH - 10.0 * ROWS
    lons, lats = to_lonlat.transform([WEST, east, WEST, east], [south, south, NORTH, NORTH])
    return {
        "type": "Feature", "stac_version": "1.0.0", "id": "asset", "geometry": None,
        "bbox": [min(lons), min(lats), max(lons), max(lats)],
        "properties": {"datetime": "2022-06-01T10:00:00Z", "proj:epsg": EPSG,
                       "proj:shape": [ROWS, COLS],
                       "proj:transform": [10.0, 0.0, WEST, 0.0, -10.0, NORTH]},
        "assets": {"band": {"href": str(href), "type": "image/tiff; application=geotiff"}},
    }  # fmt: skip


class Counter:
    """Counts the calls of ``function`` and forwards them."""

    def __init__(self, function: Any) -> None:
        self.function, self.calls = function, 0

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        return self.function(*args, **kwargs)


def read(href: Path, grid: RasterGrid, resampling: str, chunk_px: int | None = None) -> np.ndarray:
    return read_assets([item(href)], ["band"], grid, resampling=resampling,
                       chunk_px=chunk_px).values[0, 0]  # fmt: skip


def warped(monkeypatch: pytest.MonkeyPatch, *args: Any, **kwargs: Any) -> np.ndarray:
    """``read`` with every asset treated as off the lattice (GDAL's warper)."""
    with monkeypatch.context() as patch:
        patch.setattr(asset_reader._Lattice, "of", classmethod(lambda cls, ds, spec: None))
        return read(*args, **kwargs)


GRIDS = {
    "inside": (WEST + 50.0, NORTH - 300.0, WEST + 400.0, NORTH - 60.0),
    "beyond every edge": (WEST - 120.0, NORTH - 480.0, WEST + 600.0, NORTH + 60.0),
    "the asset's extent": (WEST, NORTH - 10.0 * ROWS, WEST + 10.0 * COLS, NORTH),
}


@pytest.mark.parametrize("resampling", ["nearest", "bilinear"])
@pytest.mark.parametrize("grid_name", sorted(GRIDS))
@pytest.mark.parametrize(
    "dtype, nodata", [("uint16", 0), ("uint8", 255), ("uint16", None), ("float32", -9999.0)]
)
def test_plain_reads_on_the_lattice_equal_warped_reads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, resampling: str, grid_name: str,
    dtype: str, nodata: float | None,
) -> None:  # fmt: skip
    href = tmp_path / "asset.tif"
    data = write_asset(href, dtype, nodata)
    grid = RasterGrid(EPSG, GRIDS[grid_name], 10.0)
    vrts = Counter(asset_reader.WarpedVRT)
    monkeypatch.setattr(asset_reader, "WarpedVRT", vrts)

    plain = read(href, grid, resampling)
    assert vrts.calls == 0, "an asset on the grid's lattice is read without a WarpedVRT"
    reference = warped(monkeypatch, href, grid, resampling)
    assert vrts.calls > 0

    np.testing.assert_array_equal(plain, reference)
    # and both are the asset's pixels, NaN for no data and beyond the asset
    west, _, _, north = grid.bounds
    expected = np.full(grid.shape, np.nan, np.float32)
    rows = np.arange(grid.shape[0]) + round((NORTH - north) / 10.0)
    cols = np.arange(grid.shape[1]) + round((west - WEST) / 10.0)
    inside_r, inside_c = (rows >= 0) & (rows < ROWS), (cols >= 0) & (cols < COLS)
    block = data[np.ix_(rows[inside_r], cols[inside_c])].astype(np.float32)
    if nodata is not None:
        block[block == np.float32(nodata)] = np.nan
    expected[np.ix_(inside_r, inside_c)] = block
    np.testing.assert_array_equal(plain, expected)


def test_plain_reads_in_chunks_equal_one_read(tmp_path: Path) -> None:
    href = tmp_path / "asset.tif"
    write_asset(href, "uint16", 0)
    grid = RasterGrid(EPSG, GRIDS["beyond every edge"], 10.0)
    np.testing.assert_array_equal(read(href, grid, "nearest", chunk_px=7),
                                  read(href, grid, "nearest"))  # fmt: skip


def test_grids_off_the_lattice_are_warped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    href = tmp_path / "asset.tif"
    write_asset(href, "uint16", 0)
    vrts = Counter(asset_reader.WarpedVRT)
    monkeypatch.setattr(asset_reader, "WarpedVRT", vrts)
    west, south, east, north = GRIDS["inside"]
    half_pixel = RasterGrid(EPSG, (west + 5.0, south, east + 5.0, north), 10.0)
    coarser = RasterGrid(EPSG, (west - 50.0, south, east - 40.0, north), 20.0)
    to_30n = Transformer.from_crs(EPSG, 32630, always_xy=True)
    (x0, x1), (y0, y1) = to_30n.transform([west, east], [south, north])
    other_crs = RasterGrid(32630, tuple(60.0 * round(v / 60.0) for v in (x0, y0, x1, y1)), 10.0)
    for grid in (half_pixel, coarser, other_crs):
        before = vrts.calls
        assert np.isfinite(read(href, grid, "nearest")).any()
        assert vrts.calls == before + 1, grid


# --------------------------------------------------------------------------------------------
# Kernels against their reference definitions
# --------------------------------------------------------------------------------------------


def gathered_bicubic(image: np.ndarray, factor: int) -> np.ndarray:
    """Bicubic upsampling by gathering the 4 taps of every output pixel (clipped indices)."""

    def along(image: np.ndarray, axis: int) -> np.ndarray:
        n = image.shape[axis]
        source = (np.arange(n * factor, dtype=np.float64) + 0.5) / factor - 0.5
        floor = np.floor(source)
        weights = _cubic_weights(source - floor, BICUBIC_A).astype(np.float32)
        taps = np.clip(floor.astype(np.int64)[:, None] + np.arange(-1, 3)[None, :], 0, n - 1)
        moved = np.moveaxis(image, axis, -1)
        out = np.zeros((*moved.shape[:-1], n * factor), dtype=np.float32)
        for k in range(4):
            out += moved[..., taps[:, k]] * weights[:, k]
        return np.moveaxis(out, -1, axis)

    return along(along(image.astype(np.float32), -2), -1)


@pytest.mark.parametrize("factor", [2, 3, 4])
def test_bicubic_is_bit_identical_to_gathering_taps(factor: int) -> None:
    rng = np.random.default_rng(factor)
    image = rng.normal(0.2, 0.3, (2, 19, 23)).astype(np.float32)
    image[0, 3:5, 7:9] = np.nan
    image[1, :, :4] = 0.0  # -0.0 products: the sums must keep the reference's signs
    expected = gathered_bicubic(image, factor)
    got = upsample_bicubic(image, factor)
    assert got.shape == (2, 19 * factor, 23 * factor)
    np.testing.assert_array_equal(got.view(np.uint32), expected.view(np.uint32))


@pytest.mark.parametrize("radius", [1, 2, 3])
def test_openings_and_closings_equal_scipy_on_the_edge_padded_image(radius: int) -> None:
    rng = np.random.default_rng(radius)
    masks = ndimage.binary_dilation(rng.random((3, 41, 37)) < 0.08, iterations=1)
    masks[1] = rng.random((41, 37)) < 0.5
    masks[2, :, :10] = True  # touching the border
    pad = 2 * radius
    for operation in (ndimage.binary_opening, ndimage.binary_closing):
        expected = [
            operation(np.pad(m, pad, mode="edge"), structure=_disk(radius))[pad:-pad, pad:-pad]
            for m in masks
        ]
        np.testing.assert_array_equal(_per_image(masks, operation, radius), np.stack(expected))


def test_s2_masks_from_the_20m_scl_equal_masks_of_the_repeated_scl() -> None:
    rng = np.random.default_rng(7)
    scl = rng.choice([0, 3, 4, 4, 4, 5, 8, 9, 11], size=(2, 45, 38)).astype(np.uint8)
    scl[1, 20:, :] = 4
    repeated = scl.repeat(2, axis=-2).repeat(2, axis=-1)
    for config in (MaskConfig(), MaskConfig(3, 1, 4, snow_is_invalid=True), MaskConfig(0, 0, 0)):
        np.testing.assert_array_equal(
            s2_invalid(scl, config, factor=2), s2_invalid(repeated, config)
        )


@pytest.mark.parametrize("factor", [2, 3, 4])
def test_cropped_bicubic_into_out_is_bit_identical_to_cropping_the_reference(factor: int) -> None:
    rng = np.random.default_rng(10 + factor)
    for shape in [(2, 19, 23), (1, 5, 6), (3, 8, 8)]:
        image = rng.normal(0.2, 0.3, shape).astype(np.float32)
        image[0, 1:3, 2:4] = np.nan
        image[-1, :, :3] = 0.0
        image[-1, 0, :] = -0.0
        expected_full = gathered_bicubic(image, factor)
        for crop in range(0, 8):
            if 2 * crop >= min(shape[-2:]) * factor:
                continue
            expected = expected_full[..., crop : shape[-2] * factor - crop,
                                     crop : shape[-1] * factor - crop]  # fmt: skip
            got = upsample_bicubic(image, factor, crop=crop)
            np.testing.assert_array_equal(got.view(np.uint32), expected.view(np.uint32))
            out = np.full((shape[0] + 2, *expected.shape[-2:]), 7.0, np.float32)
            assert upsample_bicubic(image, factor, crop=crop, out=out[1:-1]) is not None
            np.testing.assert_array_equal(out[1:-1].view(np.uint32), expected.view(np.uint32))
            assert (out[[0, -1]] == 7.0).all(), "nothing written outside ``out``"
    with pytest.raises(ValueError, match="crop"):
        upsample_bicubic(np.zeros((4, 4), np.float32), 2, crop=4)


def test_disk_dilation_of_full_and_empty_masks() -> None:
    from tamrf_xr.masking import _dilate_disk

    for value in (False, True):
        mask = np.full((9, 11), value)
        expected = ndimage.binary_dilation(mask, structure=_disk(3))
        np.testing.assert_array_equal(_dilate_disk(mask, 3), expected)


def reference_s2_observations(raw10, raw20, source20, table, *, halo20, scl_margin):
    """The definition: scale every item, merge, upsample the whole 20 m block, crop, stack."""
    from pipelines.datacube import _crop, _first_with_data, _scale, _take
    from tamrf_xr.bands import S2_BANDS
    from tamrf_xr.resample import UPSAMPLE_HALO

    values10 = _scale(raw10, table)
    merged10 = _take(values10, _first_with_data(np.isfinite(values10).any(axis=1)))
    merged20 = _take(_scale(raw20, table), _crop(source20[0], scl_margin))
    merged20 = _crop(merged20, halo20 - UPSAMPLE_HALO)
    upsampled = _crop(gathered_bicubic(merged20, 2), 2 * UPSAMPLE_HALO)
    by_resolution = {10.0: iter(merged10), 20.0: iter(upsampled)}
    return np.stack([next(by_resolution[b.native_resolution]) for b in S2_BANDS])


@pytest.mark.parametrize("items", [1, 2])
@pytest.mark.parametrize("nodata", [np.nan, 0.0])
def test_s2_observations_written_in_place_equal_the_definition(items: int, nodata: float) -> None:
    from pipelines.datacube import _s2_observations

    rng = np.random.default_rng(items)
    rows, cols, halo20, scl_margin = 24, 30, 3, 2
    raw10 = rng.integers(0, 5, (items, 4, rows, cols)).astype(np.float32)
    raw20 = rng.integers(0, 5, (items, 6, rows // 2 + 2 * halo20,
                                cols // 2 + 2 * halo20)).astype(np.float32)  # fmt: skip
    raw10[rng.random(raw10.shape) < 0.1] = np.nan
    raw20[rng.random(raw20.shape) < 0.05] = np.nan
    shape20 = (1, raw20.shape[-2] + 2 * scl_margin, raw20.shape[-1] + 2 * scl_margin)
    source20 = rng.integers(0, items, shape20).astype(np.uint8)
    table = np.array([[(0.5, -1.0, nodata)]] * items, np.float32)  # -1 + 0.5 * 2 = 0: zeros
    kwargs = {"halo20": halo20, "scl_margin": scl_margin}
    got = _s2_observations(raw10, raw20, source20, table, **kwargs)
    expected = reference_s2_observations(raw10, raw20, source20, table, **kwargs)
    np.testing.assert_array_equal(got.view(np.uint32), expected.view(np.uint32))
