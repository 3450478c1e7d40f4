"""Surface spectra and their integration over each band's spectral response.

Endmember spectra are piecewise-linear reflectance curves (400-2500 nm) with the shapes of
laboratory spectra: the green peak and red-edge of vegetation, the rising curve of soil,
near-zero water in the NIR/SWIR, the SWIR drop of snow and clouds. Each band sees a spectrum
through a Gaussian spectral response of its centre and width, so the Landsat and Sentinel-2
bands of the same name differ the way they do in reality (Landsat B5 is narrow at 865 nm,
S2 B8 wide at 833 nm; S2 has three red-edge bands that Landsat lacks).
"""

from __future__ import annotations

import numpy as np

from tamrf_xr.bands import BANDS, Band

__all__ = ["ENDMEMBERS", "REFLECTANCE_BANDS", "band_reflectances"]

# (wavelength nm, reflectance) nodes
ENDMEMBERS: dict[str, tuple[tuple[float, float], ...]] = {
    "green_vegetation": (
        (400, 0.030), (450, 0.035), (500, 0.045), (550, 0.100), (600, 0.060), (650, 0.035),
        (680, 0.030), (700, 0.090), (720, 0.220), (740, 0.360), (760, 0.440), (800, 0.480),
        (900, 0.490), (1000, 0.480), (1100, 0.460), (1300, 0.400), (1450, 0.200),
        (1600, 0.300), (1800, 0.250), (1950, 0.080), (2100, 0.180), (2200, 0.160),
        (2300, 0.120), (2500, 0.060),
    ),
    "conifer": (
        (400, 0.020), (500, 0.030), (550, 0.055), (650, 0.025), (690, 0.030), (720, 0.100),
        (740, 0.180), (800, 0.280), (900, 0.290), (1300, 0.220), (1450, 0.100),
        (1600, 0.140), (1950, 0.040), (2200, 0.060), (2500, 0.040),
    ),
    "dry_vegetation": (
        (400, 0.060), (500, 0.090), (600, 0.150), (680, 0.190), (750, 0.260), (900, 0.320),
        (1200, 0.380), (1450, 0.280), (1600, 0.400), (1950, 0.200), (2100, 0.360),
        (2200, 0.320), (2300, 0.300), (2500, 0.250),
    ),
    "soil": (
        (400, 0.060), (500, 0.100), (600, 0.160), (700, 0.210), (800, 0.250), (900, 0.270),
        (1200, 0.310), (1450, 0.280), (1600, 0.340), (1950, 0.270), (2200, 0.320),
        (2500, 0.300),
    ),
    "water": (
        (400, 0.070), (450, 0.065), (500, 0.060), (550, 0.055), (600, 0.035), (650, 0.025),
        (700, 0.018), (750, 0.010), (800, 0.008), (900, 0.006), (1600, 0.003),
        (2200, 0.002), (2500, 0.002),
    ),
    "asphalt": (
        (400, 0.050), (600, 0.070), (800, 0.090), (1200, 0.110), (1600, 0.130),
        (2200, 0.130), (2500, 0.120),
    ),
    "roof": (
        (400, 0.180), (500, 0.220), (600, 0.260), (700, 0.280), (900, 0.300), (1600, 0.340),
        (2200, 0.300), (2500, 0.280),
    ),
    "snow": (
        (400, 0.950), (600, 0.950), (800, 0.900), (1000, 0.750), (1250, 0.450),
        (1450, 0.100), (1600, 0.050), (1800, 0.080), (2200, 0.030), (2500, 0.020),
    ),
    "cloud": (
        (400, 0.550), (600, 0.580), (900, 0.580), (1250, 0.500), (1600, 0.400),
        (2200, 0.250), (2500, 0.200),
    ),
}  # fmt: skip

REFLECTANCE_BANDS: tuple[Band, ...] = tuple(b for b in BANDS if b.quantity == "reflectance")
"""The 17 reflective bands (the 18 model bands minus Landsat B10)."""

_WAVELENGTHS_NM = np.arange(380.0, 2600.0, 1.0)


def _spectral_response(band: Band) -> np.ndarray:
    sigma = band.fwhm_um * 1000.0 / (2.0 * np.sqrt(2.0 * np.log(2.0)))
    response = np.exp(-0.5 * ((_WAVELENGTHS_NM - band.center_wavelength_um * 1000.0) / sigma) ** 2)
    return response / response.sum()


def band_reflectances(endmember: str) -> np.ndarray:
    """Reflectance of one endmember in each of :data:`REFLECTANCE_BANDS`.

    Returns:
        float64 array of shape (17,), model order with Landsat B10 left out.
    """
    try:
        nodes = np.asarray(ENDMEMBERS[endmember], dtype=np.float64)
    except KeyError:
        raise ValueError(f"unknown endmember {endmember!r}; known: {sorted(ENDMEMBERS)}") from None
    spectrum = np.interp(_WAVELENGTHS_NM, nodes[:, 0], nodes[:, 1])
    return np.array([(_spectral_response(b) * spectrum).sum() for b in REFLECTANCE_BANDS])
