"""Weather: daily cloud cover, air temperature and snow; cloud and shadow fields of one day.

Daily cloud cover follows a persistent (AR(1)) latent process mapped onto a Beta law whose
mean is the requested cover, so cloudy days come in spells and some days are entirely clear
or entirely overcast. The cloud field of a day is a thresholded multi-scale texture whose
threshold makes the covered fraction of the region exactly that day's cover; opacity ramps up
from the cloud edges (thin edges, thick cores). Shadows are the cloud field displaced away from
the sun by the cloud height times the tangent of the solar zenith angle.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage, special, stats

from tamrf_xr.simulate.config import SimulationConfig
from tamrf_xr.simulate.fields import rng_for, smooth_field

__all__ = [
    "CloudScene",
    "DailyWeather",
    "cloud_scene",
    "daily_weather",
    "seasonal_day",
    "sun_angles",
]

CLOUD_THICK_OPACITY = 0.3
"""Opacity from which a cloud counts as (opaque) cloud rather than a thin/cirrus edge."""
_EDGE_WIDTH = 0.6  # field std units over which opacity rises from 0 to 1
_CLOUD_GRID_FACTOR = 3  # cloud fields are drawn at 30 m and interpolated to 10 m


@dataclass(frozen=True)
class DailyWeather:
    """Region-wide weather of each simulated day (arrays of length ``config.days``)."""

    dates: tuple[dt.date, ...]
    cloud_cover: np.ndarray
    """Fraction of the region under cloud (opacity > 0), 0-1."""
    air_temperature_k: np.ndarray
    snow_cover: np.ndarray
    """Fraction of open land under snow, 0-1."""
    cloud_height_m: np.ndarray
    solar_forcing: np.ndarray
    """0-1 seasonal strength of midday sunshine (heats bare surfaces)."""


def seasonal_day(date: dt.date, latitude: float) -> float:
    """Day of year shifted by half a year in the southern hemisphere (seasons flip)."""
    doy = date.timetuple().tm_yday
    return float((doy + 182) % 365) if latitude < 0 else float(doy)


def daily_weather(config: SimulationConfig) -> DailyWeather:
    """Draw the weather of every simulated day."""
    rng = rng_for(config.seed, "weather")
    n = config.days
    dates = tuple(config.start + dt.timedelta(days=i) for i in range(n))

    rho = math.exp(-1.0 / config.cloud_persistence_days)
    latent = np.empty(n)
    latent[0] = rng.standard_normal()
    innovations = rng.standard_normal(n)
    for i in range(1, n):
        latent[i] = rho * latent[i - 1] + math.sqrt(1 - rho**2) * innovations[i]
    mean = config.cloud_cover_mean
    if mean <= 0.0 or mean >= 1.0:
        cover = np.full(n, mean)
    else:
        a, b = (
            mean * config.cloud_cover_concentration,
            (1 - mean) * config.cloud_cover_concentration,
        )
        cover = stats.beta.ppf(special.ndtr(latent), a, b)
        # Real scenes are either really clear or really overcast at the ends of the law.
        cover = np.where(cover < 0.01, 0.0, np.where(cover > 0.99, 1.0, cover))
    seasonal = np.array([seasonal_day(d, config.center_lat) for d in dates])
    if config.cloudy_season is not None:
        first, last = config.cloudy_season
        doy = np.array([d.timetuple().tm_yday for d in dates])
        in_season = (
            (doy >= first) & (doy <= last) if first <= last else (doy >= first) | (doy <= last)
        )
        cover = np.where(in_season, np.maximum(cover, 0.95 + 0.05 * (cover > 0.5)), cover)

    # Air temperature at overpass time: seasonal cycle (cooler towards the poles) + anomalies.
    mean_k = 286.0 - 0.35 * (abs(config.center_lat) - 44.0)
    amplitude = 3.0 + 7.0 * min(abs(config.center_lat) / 45.0, 1.5)
    anomaly = np.empty(n)
    anomaly[0] = rng.standard_normal() * 2.5
    rho_t = math.exp(-1.0 / 3.0)
    for i in range(1, n):
        anomaly[i] = rho_t * anomaly[i - 1] + math.sqrt(1 - rho_t**2) * 2.5 * rng.standard_normal()
    air = mean_k + amplitude * np.cos(2 * np.pi * (seasonal - 200) / 365.25) + anomaly
    air -= 2.0 * cover  # overcast mornings are cooler

    # Degree-day snow pack: falls on cold overcast days, melts above freezing.
    depth, snow = 0.0, np.empty(n)
    for i in range(n):
        if air[i] < 273.5 and cover[i] > 0.7:
            depth += 6.0
        depth = max(0.0, depth - max(0.0, 1.5 * (air[i] - 273.15)))
        snow[i] = min(1.0, depth / 10.0)

    solar = 0.5 + 0.5 * np.cos(2 * np.pi * (seasonal - 172) / 365.25)
    return DailyWeather(
        dates=dates,
        cloud_cover=cover.astype(np.float64),
        air_temperature_k=air,
        snow_cover=snow,
        cloud_height_m=rng.uniform(800, 3000, size=n),
        solar_forcing=solar,
    )


def sun_angles(latitude: float, longitude: float, when: dt.datetime) -> tuple[float, float]:
    """Solar (elevation, azimuth) in degrees at a UTC time; azimuth clockwise from north.

    Standard declination / hour-angle formulas (accurate to about a degree, plenty for shadows
    and item metadata).
    """
    doy = when.timetuple().tm_yday
    hours = when.hour + when.minute / 60 + when.second / 3600
    declination = math.radians(23.44) * math.sin(2 * math.pi * (284 + doy) / 365.0)
    hour_angle = math.radians(15.0 * (hours + longitude / 15.0 - 12.0))
    lat = math.radians(latitude)
    sin_el = math.sin(lat) * math.sin(declination) + math.cos(lat) * math.cos(
        declination
    ) * math.cos(hour_angle)
    elevation = math.asin(max(-1.0, min(1.0, sin_el)))
    azimuth = math.atan2(
        -math.sin(hour_angle),
        math.tan(declination) * math.cos(lat) - math.sin(lat) * math.cos(hour_angle),
    )
    return math.degrees(elevation), math.degrees(azimuth) % 360.0


@dataclass(frozen=True)
class CloudScene:
    """Clouds and shadows over the region at one acquisition, on the 10 m grid (H, W)."""

    opacity: np.ndarray
    """float32 0-1: 0 clear sky, small values thin cloud edges, 1 opaque cloud."""
    shadow: np.ndarray
    """float32 0-1: strength of the cloud shadow on the ground (0 where under the cloud itself
    is counted as cloud, not shadow)."""
    cloud_top_temperature_k: float


def cloud_scene(
    config: SimulationConfig,
    weather: DailyWeather,
    day_index: int,
    shape: tuple[int, int],
    sun_elevation_deg: float,
    sun_azimuth_deg: float,
) -> CloudScene:
    """Cloud and shadow fields of one day as seen under the given sun.

    The cloud field depends only on (seed, day), so every acquisition of that day (S2 tiles,
    Landsat scenes) sees the same clouds; only the shadows move with the sun.
    """
    height, width = shape
    cover = float(weather.cloud_cover[day_index])
    zeros = np.zeros(shape, dtype=np.float32)
    top_k = float(weather.air_temperature_k[day_index] - 6.5e-3 * weather.cloud_height_m[day_index])
    if cover <= 0.0:
        return CloudScene(zeros, zeros.copy(), top_k)
    if cover >= 1.0:
        return CloudScene(np.ones(shape, dtype=np.float32), zeros, top_k)

    # Shadow displacement (metres, then 10 m pixels): away from the sun, h * tan(zenith).
    zenith = math.radians(90.0 - max(sun_elevation_deg, 5.0))
    length_px = weather.cloud_height_m[day_index] * math.tan(zenith) / 10.0
    away = math.radians(sun_azimuth_deg + 180.0)
    shift_cols, shift_rows = length_px * math.sin(away), -length_px * math.cos(away)
    margin = math.ceil(max(abs(shift_rows), abs(shift_cols))) + 3
    margin += (-margin) % _CLOUD_GRID_FACTOR

    rng = rng_for(config.seed, "clouds", day_index)
    big = (height + 2 * margin, width + 2 * margin)
    coarse = (big[0] // _CLOUD_GRID_FACTOR, big[1] // _CLOUD_GRID_FACTOR)
    scale = rng.uniform(15.0, 50.0)  # 450 m - 1.5 km cells at 30 m
    field = ndimage.zoom(smooth_field(rng, coarse, scale), _CLOUD_GRID_FACTOR, order=1)
    field = field[: big[0], : big[1]]
    inside = field[margin : margin + height, margin : margin + width]
    threshold = np.quantile(inside, 1.0 - cover)
    opacity_big = np.clip((field - threshold) / _EDGE_WIDTH, 0.0, 1.0).astype(np.float32)
    opacity = opacity_big[margin : margin + height, margin : margin + width]
    # The shadow at p is cast by the cloud at p - shift (towards the sun).
    rows = np.arange(height)[:, None] + margin - shift_rows
    cols = np.arange(width)[None, :] + margin - shift_cols
    caster = ndimage.map_coordinates(
        opacity_big, [np.broadcast_to(rows, shape), np.broadcast_to(cols, shape)], order=1
    )
    shadow = np.where(opacity < CLOUD_THICK_OPACITY, caster, 0.0).astype(np.float32)
    return CloudScene(np.ascontiguousarray(opacity), shadow, top_k)
