"""What each sensor records: atmosphere, PSF blur, resampling to native grids, noise, masks.

Order of operations, as in a real instrument: clouds and shadows are part of the scene the
optics see, so they are mixed into the surface signal first; the band's PSF (a Gaussian with
the spec's MTF at Nyquist) blurs the scene; detectors sample it on the native grid (20 m:
mean of 2x2 blocks; 30 m: the centre of each 3x3 block, as in the spec's degradation
operator); radiometric noise is added last. The masks are what a perfect cloud screening of
each product would flag, at the product's native resolution.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from tamrf_xr.bands import LANDSAT_BANDS, S2_BANDS, Band
from tamrf_xr.degrade import psf_sigma_m
from tamrf_xr.simulate.landscape import Landscape
from tamrf_xr.simulate.spectra import band_reflectances
from tamrf_xr.simulate.surface import LST_CHANNEL
from tamrf_xr.simulate.weather import CLOUD_THICK_OPACITY, CloudScene

__all__ = [
    "LandsatObservation",
    "S2Observation",
    "observe_landsat",
    "observe_s2",
    "scl_codes",
]

SHADOW_DARKENING = 0.65
"""Fraction of direct light removed in a full cloud shadow (diffuse light remains)."""
SHADOW_COOLING_K = 4.0
THIN_CLOUD_OPACITY = 0.02
"""Opacity from which a cloud edge is visible (thin cloud / cirrus flags)."""
SHADOW_FLAG_STRENGTH = 0.2
"""Shadow strength from which a pixel is flagged as cloud shadow."""
_S2_NOISE = {10.0: 0.003, 20.0: 0.004}
_LANDSAT_SR_NOISE = 0.003
_LST_NOISE_K = 0.3

_S2_CHANNELS = [i for i in range(18) if i > LST_CHANNEL]
_LANDSAT_CHANNELS = list(range(LST_CHANNEL + 1))


def scl_codes() -> dict[int, str]:
    """Sentinel-2 L2A scene classification codes."""
    return {
        0: "no_data", 1: "saturated_or_defective", 2: "dark_area_pixels", 3: "cloud_shadows",
        4: "vegetation", 5: "not_vegetated", 6: "water", 7: "unclassified",
        8: "cloud_medium_probability", 9: "cloud_high_probability", 10: "thin_cirrus",
        11: "snow",
    }  # fmt: skip


@dataclass(frozen=True)
class S2Observation:
    """One S2 datastrip over the whole region, physical values, before DN encoding/nodata."""

    bands_10m: dict[str, np.ndarray]
    """Reflectance at 10 m, (H, W) float32, keyed by band name (``S2_B2``...)."""
    bands_20m: dict[str, np.ndarray]
    """Reflectance at 20 m, (H/2, W/2) float32."""
    scl: np.ndarray
    """(H/2, W/2) uint8 scene classification (without the nodata code)."""
    cloud: np.ndarray
    """(H/2, W/2) bool: some opaque cloud in the 20 m pixel (true mask, for evaluation)."""
    shadow: np.ndarray
    """(H/2, W/2) bool: cloud shadow and no opaque cloud."""


@dataclass(frozen=True)
class LandsatObservation:
    """One Landsat overpass over the whole region at 30 m, physical values."""

    reflectance: dict[str, np.ndarray]
    """SR bands, (H/3, W/3) float32, keyed by band name (``LS_B1``...)."""
    temperature_k: np.ndarray
    """(H/3, W/3) float32 surface temperature (B10)."""
    qa_pixel: np.ndarray
    """(H/3, W/3) uint16 QA_PIXEL bits (without fill)."""
    qa_radsat: np.ndarray
    """(H/3, W/3) uint16 radiometric saturation bits."""
    qa_aerosol: np.ndarray
    """(H/3, W/3) uint8 SR_QA_AEROSOL bits (without fill)."""
    cloud: np.ndarray
    shadow: np.ndarray


def _atmosphere(truth: np.ndarray, clouds: CloudScene, channels: list[int]) -> np.ndarray:
    """Mix shadows and clouds into the surface signal of the given channels.

    Returns (len(channels), H, W) float32.
    """
    cloud_reflectance = band_reflectances("cloud").astype(np.float32)
    alpha, shadow = clouds.opacity, clouds.shadow
    out = np.empty((len(channels), *alpha.shape), dtype=np.float32)
    for k, c in enumerate(channels):
        surface = truth[c]
        if c == LST_CHANNEL:
            shaded = surface - SHADOW_COOLING_K * shadow
            out[k] = (1 - alpha) * shaded + alpha * clouds.cloud_top_temperature_k
        else:
            r = c if c < LST_CHANNEL else c - 1  # index among the 17 reflective bands
            shaded = surface * (1 - SHADOW_DARKENING * shadow)
            out[k] = (1 - alpha) * shaded + alpha * cloud_reflectance[r]
    return out


def _blur(image: np.ndarray, band: Band) -> np.ndarray:
    sigma_px = psf_sigma_m(band.mtf, band.native_resolution) / 10.0
    if sigma_px == 0:
        return image
    # 'mirror' = reflect without repeating the edge pixel (the spec's padding).
    return ndimage.gaussian_filter(image, sigma_px, mode="mirror", truncate=3.5)


def _block_mean(image: np.ndarray, factor: int) -> np.ndarray:
    h, w = image.shape
    return image.reshape(h // factor, factor, w // factor, factor).mean(axis=(1, 3))


def _block_any(mask: np.ndarray, factor: int) -> np.ndarray:
    h, w = mask.shape
    return mask.reshape(h // factor, factor, w // factor, factor).any(axis=(1, 3))


def _block_centre(image: np.ndarray, factor: int) -> np.ndarray:
    return image[factor // 2 :: factor, factor // 2 :: factor]


def _masks(clouds: CloudScene, factor: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(opaque cloud, thin cloud, shadow) at a native resolution, conservative like real screens:
    a native pixel is cloud if any of its 10 m sub-pixels is."""
    opaque = _block_any(clouds.opacity >= CLOUD_THICK_OPACITY, factor)
    thin = _block_any(clouds.opacity >= THIN_CLOUD_OPACITY, factor) & ~opaque
    shadow = _block_any(clouds.shadow >= SHADOW_FLAG_STRENGTH, factor) & ~opaque
    return opaque, thin, shadow


def _majority(mask: np.ndarray, factor: int) -> np.ndarray:
    return _block_mean(mask.astype(np.float32), factor) > 0.5


def observe_s2(
    truth: np.ndarray,
    clouds: CloudScene,
    landscape: Landscape,
    snow_fraction: np.ndarray,
    rng: np.random.Generator,
    noise_scale: float = 1.0,
) -> S2Observation:
    """Sentinel-2 L2A over the region.

    Args:
        truth: (18, H, W) float32 ground truth of the day (model channel order).
        clouds: the day's clouds under the S2 sun.
        landscape: the static landscape (water mask for SCL).
        snow_fraction: (H, W) float32 snow cover of the day.
        rng: noise generator of this datastrip.
        noise_scale: multiplier of the radiometric noise.
    """
    scene = _atmosphere(truth, clouds, _S2_CHANNELS)
    bands_10m, bands_20m = {}, {}
    for k, band in enumerate(S2_BANDS):
        image = _blur(scene[k], band)
        if band.native_resolution == 20.0:
            image = _block_mean(image, 2)
        noise = rng.standard_normal(image.shape, dtype=np.float32) * np.float32(
            _S2_NOISE[band.native_resolution] * noise_scale
        )
        target = bands_20m if band.native_resolution == 20.0 else bands_10m
        target[band.name] = (image + noise).astype(np.float32)

    opaque, thin, shadow = _masks(clouds, 2)
    high = _block_any(clouds.opacity >= 0.6, 2)
    red, nir = _block_mean(bands_10m["S2_B4"], 2), _block_mean(bands_10m["S2_B8"], 2)
    ndvi = (nir - red) / np.maximum(nir + red, 1e-6)
    scl = np.where(ndvi > 0.4, 4, 5).astype(np.uint8)
    scl[_majority(landscape.is_water, 2)] = 6
    scl[_majority(snow_fraction > 0.5, 2)] = 11
    scl[shadow] = 3
    scl[thin] = 10
    scl[opaque] = 8
    scl[high] = 9
    return S2Observation(bands_10m, bands_20m, scl, opaque, shadow)


# QA_PIXEL bit positions (Landsat Collection 2).
QA_FILL, QA_DILATED, QA_CIRRUS, QA_CLOUD, QA_SHADOW, QA_SNOW, QA_CLEAR, QA_WATER = range(8)
_CONF_CLOUD, _CONF_SHADOW, _CONF_SNOW, _CONF_CIRRUS = 8, 10, 12, 14
_LOW, _MEDIUM, _HIGH = 1, 2, 3


def observe_landsat(
    truth: np.ndarray,
    clouds: CloudScene,
    landscape: Landscape,
    snow_fraction: np.ndarray,
    rng: np.random.Generator,
    noise_scale: float = 1.0,
) -> LandsatObservation:
    """Landsat-8/9 Collection 2 Level 2 over the region at 30 m (arguments: see observe_s2)."""
    scene = _atmosphere(truth, clouds, _LANDSAT_CHANNELS)
    observed = {}
    for k, band in enumerate(LANDSAT_BANDS):
        image = _block_centre(_blur(scene[k], band), 3)
        noise_std = _LST_NOISE_K if band.quantity == "temperature" else _LANDSAT_SR_NOISE
        noise = rng.standard_normal(image.shape, dtype=np.float32) * np.float32(
            noise_std * noise_scale
        )
        observed[band.name] = (image + noise).astype(np.float32)
    temperature = observed.pop("LS_B10")
    reflectance = observed

    opaque, thin, shadow = _masks(clouds, 3)
    # Dilated cloud: 3 Landsat pixels around opaque clouds (CFMask's default buffer).
    dilated = ndimage.binary_dilation(opaque, iterations=3) & ~opaque
    snow = _majority(snow_fraction > 0.5, 3) & ~opaque
    water = _majority(landscape.is_water, 3)

    def bit(mask: np.ndarray, position: int) -> np.ndarray:
        return mask.astype(np.uint16) << np.uint16(position)

    def confidence(high: np.ndarray, position: int, medium: np.ndarray | None = None):
        level = np.where(high, _HIGH, _LOW)
        if medium is not None:
            level = np.where(medium & ~high, _MEDIUM, level)
        return level.astype(np.uint16) << np.uint16(position)

    clear = ~(opaque | dilated)
    qa = (
        bit(dilated, QA_DILATED) | bit(thin, QA_CIRRUS) | bit(opaque, QA_CLOUD)
        | bit(shadow, QA_SHADOW) | bit(snow, QA_SNOW) | bit(clear, QA_CLEAR)
        | bit(water & clear, QA_WATER)
        | confidence(opaque, _CONF_CLOUD, medium=thin) | confidence(shadow, _CONF_SHADOW)
        | confidence(snow, _CONF_SNOW) | confidence(thin, _CONF_CIRRUS)
    ).astype(np.uint16)  # fmt: skip

    # L1 saturation of the visible bands on very bright targets (snow, bright cloud tops).
    radsat = np.zeros(opaque.shape, dtype=np.uint16)
    for position, name in enumerate(("LS_B1", "LS_B2", "LS_B3", "LS_B4")):
        radsat |= bit(reflectance[name] >= 0.9, position)

    # SR_QA_AEROSOL: bit 1 valid retrieval, bit 2 water, bits 6-7 aerosol level (high near clouds).
    near_cloud = ndimage.binary_dilation(opaque | thin, iterations=5)
    level = np.where(near_cloud, 3, 1).astype(np.uint8)
    aerosol = (np.uint8(1 << 1) | (water.astype(np.uint8) << 2) | (level << 6)).astype(np.uint8)
    return LandsatObservation(
        reflectance=reflectance,
        temperature_k=temperature,
        qa_pixel=qa,
        qa_radsat=radsat,
        qa_aerosol=aerosol,
        cloud=opaque,
        shadow=shadow,
    )
