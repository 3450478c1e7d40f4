"""Validity masks from SCL and QA bands: simulated products (known truth) and real Landsat QA."""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path

import numpy as np
import pytest
import rasterio
from scipy import ndimage

from tamrf_xr.masking import MaskConfig, landsat_invalid, s2_invalid
from tamrf_xr.simulate import Simulation, SimulationConfig
from tamrf_xr.simulate.weather import CLOUD_THICK_OPACITY


@pytest.fixture(scope="module")
def simulation() -> Simulation:
    return Simulation(
        SimulationConfig(
            seed=4,
            width_px=120,
            height_px=120,
            start=dt.date(2022, 3, 1),
            end=dt.date(2022, 4, 30),
            cloud_cover_mean=0.5,
        )
    )


def _block_any(mask: np.ndarray, factor: int) -> np.ndarray:
    h, w = mask.shape
    return mask.reshape(h // factor, factor, w // factor, factor).any(axis=(1, 3))


def _partly_cloudy(simulation: Simulation, sensor: str):
    """A fully covered (no swath edge) acquisition with clouds over part of the region."""
    for acquisition in simulation.acquisitions:
        cover = simulation.weather.cloud_cover[acquisition.day_index]
        partly = acquisition.sensor == sensor and 0.2 < cover < 0.7
        if partly and simulation.item(acquisition).valid_fraction == 1.0:
            return acquisition
    raise AssertionError("no partly cloudy acquisition")


def test_s2_mask_covers_every_cloud_and_shadow_with_a_margin(simulation: Simulation):
    acquisition = _partly_cloudy(simulation, "sentinel-2")
    scl = simulation.item(acquisition).assets["scl"].data
    clouds = simulation.clouds(acquisition)
    bare = s2_invalid(scl, MaskConfig(s2_opening_px=0, s2_closing_px=0, s2_dilation_px=0))
    cleaned = s2_invalid(scl, MaskConfig(s2_dilation_px=5))  # 5 px at 20 m = 100 m
    rows, cols = simulation.window(acquisition, 20.0)
    cloud = _block_any(clouds.opacity >= CLOUD_THICK_OPACITY, 2)[rows, cols]
    shadow = _block_any(clouds.shadow >= 0.2, 2)[rows, cols]
    assert cloud.any() and not bare.all()
    assert bare[cloud | shadow].all() and cleaned[cloud | shadow].all()
    assert cleaned.sum() > bare.sum()  # the dilation adds a margin
    # Nothing far from clouds, shadows and nodata is masked.
    near = ndimage.binary_dilation(bare, iterations=8)
    assert not cleaned[~near].any()


def test_s2_morphology_removes_specks_and_fills_holes():
    scl = np.full((60, 60), 4, dtype=np.uint8)
    scl[10, 10] = 8  # an isolated false cloud pixel
    scl[30:50, 30:50] = 9
    scl[40, 40] = 4  # a one-pixel hole in a cloud
    scl[:, 58:] = 0  # nodata border
    mask = s2_invalid(scl, MaskConfig(s2_opening_px=1, s2_closing_px=2, s2_dilation_px=0))
    assert not mask[10, 10] and mask[40, 40] and mask[:, 58:].all()
    snowy = np.full((8, 8), 11, dtype=np.uint8)
    assert not s2_invalid(snowy).any()
    assert s2_invalid(snowy, MaskConfig(snow_is_invalid=True)).all()
    stacked = s2_invalid(np.stack([scl, snowy.repeat(8, 0).repeat(8, 1)[:60, :60]]))
    assert stacked.shape == (2, 60, 60)


def test_landsat_mask_from_qa_bits(simulation: Simulation):
    acquisition = _partly_cloudy(simulation, "landsat")
    item = simulation.item(acquisition)
    qa = item.assets["qa_pixel"].data
    mask = landsat_invalid(qa, item.assets["qa_radsat"].data, item.assets["qa_aerosol"].data,
                           MaskConfig(high_aerosol_is_invalid=False))  # fmt: skip
    cloud = ((qa >> 3) & 1).astype(bool)
    clear = ((qa >> 6) & 1).astype(bool) & ~((qa >> 4) & 1).astype(bool)
    assert cloud.any() and mask[cloud].all()
    assert not mask[clear & ~np.isin(qa, [1])].all()
    radsat = np.zeros_like(qa)
    radsat[0, 0] = 1 << 2
    clear_qa = np.full((4, 4), 21824, dtype=np.uint16)
    assert landsat_invalid(clear_qa, radsat[:4, :4])[0, 0] and not landsat_invalid(clear_qa).any()
    high_aerosol = np.full((4, 4), (3 << 6) | 2, dtype=np.uint8)
    assert landsat_invalid(clear_qa, qa_aerosol=high_aerosol).all()
    assert not landsat_invalid(clear_qa, qa_aerosol=high_aerosol,
                               config=MaskConfig(high_aerosol_is_invalid=False)).any()  # fmt: skip
    filled = clear_qa.copy()
    filled[:, 0] = 1
    assert landsat_invalid(filled)[:, :2].all() and not landsat_invalid(filled)[:, 3].any()


@pytest.mark.realdata
def test_real_landsat_qa_pixel_decodes(real_data_dir: Path):
    files = sorted((real_data_dir / "deep-harmonization-l8" / "L8_L2SP_SR_QA").glob("*_SR.tif"))
    assert len(files) == 3
    for path in files:
        with rasterio.open(path) as dataset:
            qa = dataset.read(7).astype(np.uint16)
            red = dataset.read(3) * 2.75e-05 - 0.2
        mask = landsat_invalid(qa)
        # The README says ~100 % clear: clear land 21824 / clear water 21952 dominate.
        assert np.isin(qa, [21824, 21952]).mean() > 0.9
        assert mask.mean() < 0.1
        assert 0.0 < float(np.median(red[~mask])) < 0.4


def test_bad_config_is_a_clear_error():
    with pytest.raises(ValueError, match="s2_dilation_px"):
        MaskConfig(s2_dilation_px=-1)
    assert dataclasses.replace(MaskConfig(), snow_is_invalid=True).snow_is_invalid


def test_disk_dilation_by_distance_transform_equals_binary_dilation():
    from scipy import ndimage

    from tamrf_xr.masking import _dilate_disk, _disk

    rng = np.random.default_rng(1)
    for radius in (1, 3, 25):
        mask = rng.random((97, 131)) > 0.995
        expected = ndimage.binary_dilation(mask, structure=_disk(radius))
        np.testing.assert_array_equal(_dilate_disk(mask, radius), expected)
    assert not _dilate_disk(np.zeros((5, 5), bool), 3).any()
