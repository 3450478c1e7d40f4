"""Ground truth of one day: all 18 bands at 10 m, cloud-free.

Reflectance is a linear mixture of the pixel's green canopy and its background, weighted by
the day's vegetation fraction, then blended with snow. Land surface temperature is the air
temperature plus solar heating of the non-vegetated fraction (vegetation transpires and stays
near air temperature); water follows a damped, lagged seasonal cycle; snow stays below 0 C.
"""

from __future__ import annotations

import functools

import numpy as np

from tamrf_xr.simulate.landscape import Landscape
from tamrf_xr.simulate.spectra import band_reflectances
from tamrf_xr.simulate.weather import DailyWeather, seasonal_day

__all__ = ["render_truth", "vegetation_fraction"]

LST_CHANNEL = 7
"""Index of Landsat B10 (surface temperature) in model channel order."""


def _logistic(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))  # overflow-free logistic


def vegetation_fraction(landscape: Landscape, seasonal_doy: float) -> np.ndarray:
    """Green vegetation cover of every pixel on one (hemisphere-corrected) day of year.

    Returns:
        (H, W) float32 in [0, 1].
    """
    p = landscape.phenology
    d = np.float32(seasonal_doy)
    rise = _logistic((d - p.sos) / p.k_up)
    fall = _logistic((d - p.eos) / p.k_down)
    v = p.vmin + (p.vmax - p.vmin) * np.clip(rise - fall, 0, 1)
    v = v + p.winter * (1 - rise) + p.winter * _logistic((d - p.sow) / 8.0)
    return np.clip(v, 0.0, 1.0).astype(np.float32)


def render_truth(
    landscape: Landscape, weather: DailyWeather, day_index: int, latitude: float
) -> np.ndarray:
    """All 18 bands of one day.

    Returns:
        (18, H, W) float32 in model channel order: reflectance (0-1) for the 17 reflective
        bands, Kelvin for channel 7 (Landsat B10).
    """
    date = weather.dates[day_index]
    doy = seasonal_day(date, latitude)
    v = vegetation_fraction(landscape, doy)
    snow = (weather.snow_cover[day_index] * landscape.snow_susceptibility).astype(np.float32)

    reflectance = landscape.background + v * (landscape.green - landscape.background)
    if snow.any():
        reflectance = (1 - snow) * reflectance + snow * _snow_spectrum()[:, None, None]

    air = np.float32(weather.air_temperature_k[day_index])
    sun = np.float32(weather.solar_forcing[day_index])
    heating = ((1 - v) * landscape.heating_k + v * 2.0) * sun
    lst = air + heating + landscape.temperature_offset_k
    # Water: thermal inertia damps and delays the seasonal cycle.
    water_k = 284.0 + 0.6 * (air - 284.0) + 1.0
    lst = np.where(landscape.is_water, water_k, lst)
    lst = np.where(snow > 0.5, np.minimum(lst, 272.5), lst)

    out = np.empty((18, *v.shape), dtype=np.float32)
    out[:LST_CHANNEL] = reflectance[:LST_CHANNEL]
    out[LST_CHANNEL] = lst
    out[LST_CHANNEL + 1 :] = reflectance[LST_CHANNEL:]
    return out


@functools.cache
def _snow_spectrum() -> np.ndarray:
    return band_reflectances("snow").astype(np.float32)
