"""The evaluation operators (tamrf_xr.evaluation) on cases with known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage

from tamrf_xr.bands import S2_BANDS
from tamrf_xr.evaluation import (
    degradation_kernels,
    degrade,
    frequency_restoration,
    masked_dates,
    nrmse,
    radial_profile_db,
    rmse_per_date_band,
    spectral_angle_deg,
)

# -- degradation -----------------------------------------------------------------------------


def test_kernel_sizes_are_shared_per_sensor_and_sum_to_one() -> None:
    s2, landsat = degradation_kernels("sentinel-2"), degradation_kernels("landsat")
    assert s2.shape == (10, 5, 5) and landsat.shape == (8, 19, 19)  # ceil(20/10), ceil(90/10)
    np.testing.assert_allclose(s2.sum(axis=(1, 2)), 1.0, rtol=1e-6)
    np.testing.assert_allclose(landsat.sum(axis=(1, 2)), 1.0, rtol=1e-6)
    for kernel, band in zip(s2, S2_BANDS, strict=True):  # MTF 1: an exact identity
        if band.native_resolution == 10:
            assert kernel[2, 2] == 1.0 and kernel.sum() == 1.0


def test_a_30_m_kernel_has_the_mtf_at_nyquist() -> None:
    """Independently: the Landsat B1 kernel's discrete-time Fourier transform at the Nyquist
    frequency of 30 m equals its MTF, 0.3 (its 19 px support truncates nothing)."""
    kernel = degradation_kernels("landsat")[0].astype(np.float64)
    f = 10.0 * 0.5 / 30.0  # cycles per 10 m pixel
    offsets = np.arange(kernel.shape[0]) - kernel.shape[0] // 2
    response = (kernel.sum(axis=0) * np.cos(2 * math.pi * f * offsets)).sum()
    assert abs(response - 0.3) < 0.01


def test_the_lst_kernel_is_the_spec_gaussian_truncated_to_19_px() -> None:
    """LST at 90 m, MTF 0.2: sigma = sqrt(-ln 0.2 / 2) / (pi * 0.5 / 90) = 51.4 m, sampled at
    10 m on the shared 19 x 19 support (which truncates it at 1.75 sigma), normalised."""
    sigma = math.sqrt(-math.log(0.2) / 2) / (math.pi * 0.5 / 90.0)
    assert sigma == pytest.approx(51.40, abs=0.01)
    i, j = np.mgrid[-9:10, -9:10]
    expected = np.exp(-(100.0 * (i**2 + j**2)) / (2 * sigma**2))
    expected /= expected.sum()
    np.testing.assert_allclose(degradation_kernels("landsat")[7], expected, atol=1e-7)


def test_degrade_keeps_constants_identity_bands_and_takes_landsat_block_centres() -> None:
    rng = np.random.default_rng(0)
    image = rng.uniform(0, 0.5, (2, 10, 30, 33)).astype(np.float32)
    out = degrade(image, "sentinel-2")
    assert out.shape == image.shape
    ten = [i for i, b in enumerate(S2_BANDS) if b.native_resolution == 10]
    np.testing.assert_array_equal(out[:, ten], image[:, ten])  # identity, exactly
    twenty = [i for i, b in enumerate(S2_BANDS) if b.native_resolution == 20]
    assert not np.allclose(out[:, twenty], image[:, twenty])
    constant = np.full((1, 8, 30, 30), 0.25, np.float32)
    landsat = degrade(constant, "landsat")
    assert landsat.shape == (1, 8, 10, 10)
    np.testing.assert_allclose(landsat, 0.25, rtol=1e-5)


def test_degrade_is_a_reflect_padded_convolution_then_centre_sampling() -> None:
    """Against scipy.ndimage.correlate (mode 'mirror' = reflect without repeating the edge)."""
    rng = np.random.default_rng(1)
    image = rng.uniform(0, 1, (8, 27, 24)).astype(np.float32)
    kernels = degradation_kernels("landsat")
    expected = np.stack([
        ndimage.correlate(image[b].astype(np.float64), kernels[b].astype(np.float64),
                          mode="mirror")[1::3, 1::3]
        for b in range(8)
    ])  # fmt: skip
    np.testing.assert_allclose(degrade(image, "landsat"), expected, atol=1e-5)


def test_degrade_rejects_wrong_bands_and_sizes() -> None:
    with pytest.raises(ValueError, match="model band order"):
        degrade(np.zeros((8, 30, 30)), "sentinel-2")
    with pytest.raises(ValueError, match="multiples of 3"):
        degrade(np.zeros((8, 31, 30)), "landsat")
    with pytest.raises(ValueError, match="unknown sensor"):
        degrade(np.zeros((8, 30, 30)), "modis")


# -- RMSE, nRMSE, SAM ------------------------------------------------------------------------


def test_rmse_by_hand_with_the_border_and_clear_rules() -> None:
    reference = np.zeros((2, 1, 6, 6))
    prediction = np.zeros((2, 1, 6, 6))
    prediction[0, 0, 1:5, 1:5] = [[3, 4, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]]
    prediction[:, :, 0, :] = 100.0  # in the border: ignored
    clear = np.ones((2, 6, 6), bool)
    clear[1] = False  # date 1: no clear pixel
    rmse, pixels = rmse_per_date_band(prediction, reference, clear, border_px=1)
    assert pixels.tolist() == [[16], [0]]
    assert rmse[0, 0] == pytest.approx(math.sqrt((9 + 16) / 16))
    assert np.isnan(rmse[1, 0])
    clear[0, 1, 1] = False  # the pixel with error 3 is cloudy: not scored
    rmse, pixels = rmse_per_date_band(prediction, reference, clear, border_px=1)
    assert pixels[0, 0] == 15 and rmse[0, 0] == pytest.approx(math.sqrt(16 / 15))


def test_nrmse_and_spectral_angle_by_hand() -> None:
    reference = np.full((1, 2, 4, 4), 0.2)
    prediction = reference.copy()
    prediction[:, 0] = 0.3  # error 0.1 on band 0, 0 on band 1
    clear = np.ones((1, 4, 4), bool)
    np.testing.assert_allclose(nrmse(prediction, reference, clear, 0), [[0.5, 0.0]])
    # every pixel: vectors (0.3, 0.2) and (0.2, 0.2)
    expected = math.degrees(math.atan2(0.2, 0.3) - math.atan2(0.2, 0.2))
    assert spectral_angle_deg(prediction, reference, clear, 0)[0] == pytest.approx(abs(expected))
    assert spectral_angle_deg(2 * reference, reference, clear, 0)[0] == pytest.approx(0, abs=1e-5)


def test_border_larger_than_the_image_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="border of 30 px"):
        rmse_per_date_band(np.zeros((1, 1, 40, 40)), np.zeros((1, 1, 40, 40)),
                           np.ones((1, 40, 40), bool))  # fmt: skip


# -- frequency restoration -------------------------------------------------------------------


def test_frequency_restoration_signs_and_gain_invariance() -> None:
    rng = np.random.default_rng(2)
    sharp = ndimage.gaussian_filter(rng.normal(size=(64, 64)), 1.0)
    blurred = ndimage.gaussian_filter(sharp, 2.0)
    assert frequency_restoration(sharp, sharp) == pytest.approx(0.0, abs=1e-12)
    assert frequency_restoration(2.5 * sharp, sharp) == pytest.approx(0.0, abs=1e-9)
    assert frequency_restoration(blurred, sharp) < -3.0  # lost detail
    assert frequency_restoration(sharp, blurred) > 3.0  # restored detail
    stack = frequency_restoration(np.stack([sharp, blurred]), np.stack([sharp, sharp]))
    assert stack.shape == (2,) and stack[0] == pytest.approx(0.0, abs=1e-12) and stack[1] < 0


def test_radial_profile_rings_by_hand() -> None:
    """A 16 px image: rings 2, 4, 6 of width 1/16 cycle/px (DC ring dropped, every other
    ring), starting at 0 dB; white noise has a flat expected spectrum."""
    profile = radial_profile_db(np.random.default_rng(3).normal(size=(16, 16)))
    assert profile.shape == (3,) and profile[0] == 0.0
    flat = np.mean([radial_profile_db(np.random.default_rng(s).normal(size=(64, 64)))
                    for s in range(20)], axis=0)  # fmt: skip
    assert np.abs(flat).max() < 1.0


# -- masking strategies ----------------------------------------------------------------------


def test_gaps_hide_dates_strictly_inside_the_windows() -> None:
    s2 = np.array([0, 30, 31, 59, 60, 61, 90, 95, 150, 200])
    landsat = np.array([45, 60, 91, 155])
    hidden_s2, hidden_landsat = masked_dates("GAPS", s2, landsat, gap_days=30)
    # windows (30, 60), (90, 120), (150, 180), ...: boundaries stay inputs
    assert s2[hidden_s2].tolist() == [31, 59, 95]
    assert landsat[hidden_landsat].tolist() == [45, 91, 155]


def test_forecast_backcast_and_sensor_strategies() -> None:
    s2, landsat = np.array([10, 100, 200]), np.array([100, 150])
    forecast = masked_dates("FORECAST", s2, landsat, split_day=100)
    assert forecast[0].tolist() == [False, False, True] and forecast[1].tolist() == [False, True]
    backcast = masked_dates("BACKCAST", s2, landsat, split_day=100)
    assert backcast[0].tolist() == [True, False, False] and backcast[1].tolist() == [False, False]
    assert (
        masked_dates("NOHR", s2, landsat)[0].all()
        and not masked_dates("NOHR", s2, landsat)[1].any()
    )
    assert (
        masked_dates("NOLR", s2, landsat)[1].all()
        and not masked_dates("NOLR", s2, landsat)[0].any()
    )


def test_random_hides_ceil_n_r_dates_per_sensor() -> None:
    s2, landsat = np.arange(7), np.arange(3)
    hidden = masked_dates("RANDOM", s2, landsat, rate=0.3, rng=np.random.default_rng(0))
    assert hidden[0].sum() == 3 and hidden[1].sum() == 1  # ceil(2.1), ceil(0.9)
    with pytest.raises(ValueError, match="unknown masking strategy"):
        masked_dates("CLOUDS", s2, landsat)


# -- baselines -------------------------------------------------------------------------------


def test_linear_interpolation_is_exact_on_a_linear_in_time_series() -> None:
    from tamrf_xr.evaluation import linear_temporal_interpolation

    days = np.array([0.0, 10.0, 25.0, 40.0, 70.0])
    slope = np.random.default_rng(4).uniform(-0.01, 0.01, (2, 5, 6))
    values = 0.2 + days[:, None, None, None] * slope[None]  # (t, b, h, w)
    clear = np.ones((5, 5, 6), bool)
    clear[2] = False  # a cloudy date in the middle: interpolated across
    clear[4, 0, 0] = False  # this pixel's last clear date is day 40
    queries = np.array([5.0, 25.0, 33.0, 40.0, 60.0])
    out = linear_temporal_interpolation(values, clear, days, queries)
    expected = 0.2 + queries[:, None, None, None] * slope[None]
    inside = np.ones_like(out, bool)
    inside[-1, :, 0, 0] = False  # day 60 for pixel (0, 0): beyond its last clear date
    np.testing.assert_allclose(out[inside], expected[inside], atol=1e-6)
    np.testing.assert_allclose(out[-1, :, 0, 0], values[3, :, 0, 0], atol=1e-7)  # held


def test_linear_interpolation_extends_the_ends_and_leaves_unobserved_pixels_nan() -> None:
    from tamrf_xr.evaluation import linear_temporal_interpolation

    values = np.array([0.1, 0.3], np.float32)[:, None, None, None] * np.ones((2, 1, 2, 2))
    clear = np.ones((2, 2, 2), bool)
    clear[:, 1, 1] = False
    out = linear_temporal_interpolation(values, clear, np.array([10.0, 20.0]),
                                        np.array([0.0, 15.0, 30.0]))  # fmt: skip
    np.testing.assert_allclose(out[:, 0, 0, 0], [0.1, 0.2, 0.3], atol=1e-7)
    assert np.isnan(out[:, 0, 1, 1]).all()


def test_bicubic_of_a_constant_is_the_constant() -> None:
    from tamrf_xr.evaluation import bicubic_upsampling

    out = bicubic_upsampling(np.full((2, 7, 5), 0.37, np.float32), 3)
    assert out.shape == (2, 21, 15)
    np.testing.assert_allclose(out, 0.37, rtol=1e-6)


def test_starfm_fusion_is_exact_when_landsat_sees_the_same_uniform_change() -> None:
    """S2 changes by a band-wise constant between dates, and Landsat sees that change: the
    nearest clear S2 date plus the (upsampled) Landsat change is the truth."""
    from tamrf_xr.bands import S2_BANDS
    from tamrf_xr.evaluation import starfm_fusion
    from tamrf_xr.evaluation.baselines import S2_TO_LANDSAT

    rng = np.random.default_rng(5)
    landsat_names = ["LS_B1", "LS_B2", "LS_B3", "LS_B4", "LS_B5", "LS_B6", "LS_B7", "LS_B10"]
    landsat_change = rng.uniform(-0.05, 0.05, 8)  # per Landsat band, from day 0 to day 20
    s2_change = np.array([landsat_change[landsat_names.index(S2_TO_LANDSAT[b.name])]
                          for b in S2_BANDS])  # fmt: skip
    s2_day0 = rng.uniform(0.05, 0.4, (10, 12, 12)).astype(np.float32)
    s2 = np.stack([s2_day0, s2_day0 + 5 * s2_change[:, None, None]])  # days 0 and 100
    s2_clear = np.ones((2, 12, 12), bool)
    s2_clear[1, :6] = False  # half of day 100 cloudy: those pixels use day 0 anyway
    landsat0 = rng.uniform(0.05, 0.4, (8, 4, 4))
    landsat = np.stack([landsat0, landsat0 + landsat_change[:, None, None]])  # days 0, 20
    out = starfm_fusion(s2, s2_clear, np.array([0.0, 100.0]), landsat,
                        np.ones((2, 4, 4), bool), np.array([0.0, 20.0]), 20.0)  # fmt: skip
    expected = s2_day0 + s2_change[:, None, None]
    np.testing.assert_allclose(out, expected, atol=1e-5)


def test_dms_recovers_a_tree_shaped_relation_and_its_residuals_average_back() -> None:
    """LST a step function of NIR (what a tree learns exactly), reflectance constant within
    each 3 x 3 block: the sharpened LST is exact; on arbitrary data, residual correction
    makes each 30 m block average to the observed LST."""
    from tamrf_xr.evaluation import dms_thermal_sharpening

    rng = np.random.default_rng(6)
    coarse_nir = rng.uniform(0.1, 0.5, (10, 10))
    predictors = np.stack([np.full((30, 30), 0.05), np.full((30, 30), 0.08),
                           np.full((30, 30), 0.06),
                           coarse_nir.repeat(3, 0).repeat(3, 1)])  # fmt: skip
    lst = np.where(coarse_nir > 0.3, 295.0, 310.0)
    clear30, clear10 = np.ones((10, 10), bool), np.ones((30, 30), bool)
    out = dms_thermal_sharpening(lst, clear30, predictors, clear10, min_samples_leaf=1)
    np.testing.assert_allclose(out, lst.repeat(3, 0).repeat(3, 1), atol=1e-4)

    fine = rng.uniform(0.05, 0.5, (4, 30, 30))
    noisy = rng.uniform(280, 320, (10, 10))
    sharpened = dms_thermal_sharpening(noisy, clear30, fine, clear10)
    block_means = sharpened.reshape(10, 3, 10, 3).mean(axis=(1, 3))
    np.testing.assert_allclose(block_means, noisy, atol=1e-3)
    without = dms_thermal_sharpening(noisy, clear30, fine, clear10, residual_correction=False)
    assert np.abs(without.reshape(10, 3, 10, 3).mean(axis=(1, 3)) - noisy).max() > 1.0
