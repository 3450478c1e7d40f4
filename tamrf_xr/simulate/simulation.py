"""A simulated region: ground truth on every day and every published item, in memory.

Pure computation (no files): :class:`Simulation` yields items as DN rasters with their
metadata; ``pipelines.demo.simulated_catalog`` writes them as COGs + STAC and the truth as Zarr.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import shapely
from pyproj import Transformer

from tamrf_xr.bands import LANDSAT_BANDS, S2_BANDS
from tamrf_xr.grid import RasterGrid
from tamrf_xr.simulate.config import SimulationConfig
from tamrf_xr.simulate.encoding import (
    encode_landsat_sr,
    encode_landsat_st,
    encode_s2,
)
from tamrf_xr.simulate.fields import rng_for
from tamrf_xr.simulate.geometry import (
    Acquisition,
    landsat_epsg,
    landsat_y_shift,
    plan_acquisitions,
    region_grid,
)
from tamrf_xr.simulate.landscape import Landscape, make_landscape
from tamrf_xr.simulate.sensors import (
    QA_FILL,
    LandsatObservation,
    S2Observation,
    observe_landsat,
    observe_s2,
)
from tamrf_xr.simulate.surface import render_truth
from tamrf_xr.simulate.weather import (
    CloudScene,
    DailyWeather,
    cloud_scene,
    daily_weather,
    sun_angles,
)

__all__ = ["AssetRaster", "SimulatedItem", "Simulation"]


@dataclass(frozen=True)
class AssetRaster:
    """One asset of one item: a DN raster on its native grid in the product's CRS."""

    data: np.ndarray
    """(rows, cols) uint16 or uint8."""
    resolution: float
    epsg: int
    transform: tuple[float, float, float, float, float, float]
    """Affine (a, b, c, d, e, f) as in GDAL/rasterio order ``Affine(a, b, c, d, e, f)``."""
    nodata: int | None


@dataclass(frozen=True)
class SimulatedItem:
    """Everything needed to publish one item."""

    acquisition: Acquisition
    assets: dict[str, AssetRaster]
    """Keyed by Earth Search v1 asset key (``red``, ``scl``, ``qa_pixel``...)."""
    sun_elevation: float
    sun_azimuth: float
    cloud_cover: float
    """Percentage of valid pixels flagged cloud (opaque or thin)."""
    valid_fraction: float
    """Fraction of the item's raster holding data (the rest is nodata / fill)."""
    class_percentages: dict[str, float] = field(default_factory=dict)
    """S2 only: ``s2:*_percentage`` statistics of the SCL."""


class Simulation:
    """A simulated region (see :class:`SimulationConfig`).

    Attributes:
        config: the configuration.
        grid: the 10 m truth grid.
        landscape: static surface description.
        weather: daily weather.
        acquisitions: every item of both sensors, sorted by time.
    """

    def __init__(self, config: SimulationConfig) -> None:
        self.config = config
        self.grid: RasterGrid = region_grid(config)
        self.landscape: Landscape = make_landscape(config.seed, *self.grid.shape)
        self.weather: DailyWeather = daily_weather(config)
        self.acquisitions: list[Acquisition] = plan_acquisitions(config, self.grid)
        lon, lat = Transformer.from_crs(self.grid.epsg, 4326, always_xy=True).transform(
            (self.grid.bounds[0] + self.grid.bounds[2]) / 2,
            (self.grid.bounds[1] + self.grid.bounds[3]) / 2,
        )
        self.center_lonlat = (float(lon), float(lat))
        self._cache: dict[tuple, object] = {}

    def truth(self, day_index: int) -> np.ndarray:
        """(18, H, W) float32 ground truth of one day (model channel order; B10 in Kelvin)."""
        if not 0 <= day_index < self.config.days:
            raise ValueError(f"day_index {day_index} outside 0..{self.config.days - 1}")
        return self._cached(
            ("truth", day_index),
            lambda: render_truth(self.landscape, self.weather, day_index, self.config.center_lat),
        )

    def _cached(self, key: tuple, compute):
        # Items come in time order, so the last few days/datastrips are all worth keeping.
        if key not in self._cache:
            if len(self._cache) >= 4:
                self._cache.pop(next(iter(self._cache)))
            self._cache[key] = compute()
        return self._cache[key]

    def snow_fraction(self, day_index: int) -> np.ndarray:
        """(H, W) float32 snow cover of one day."""
        return (self.weather.snow_cover[day_index] * self.landscape.snow_susceptibility).astype(
            np.float32
        )

    def sun(self, acquisition: Acquisition) -> tuple[float, float]:
        """Solar (elevation, azimuth) at the region centre at acquisition time."""
        lon, lat = self.center_lonlat
        return sun_angles(lat, lon, acquisition.datetime)

    def clouds(self, acquisition: Acquisition) -> CloudScene:
        """The day's clouds and the shadows they cast under this acquisition's sun."""
        elevation, azimuth = self.sun(acquisition)
        return cloud_scene(
            self.config,
            self.weather,
            acquisition.day_index,
            self.grid.shape,
            elevation,
            azimuth,
        )

    def observe(self, acquisition: Acquisition) -> S2Observation | LandsatObservation:
        """The whole-region observation of this acquisition's datastrip / overpass."""
        # Keyed by swath so that overlapping tiles of one datastrip share identical pixels.
        day = acquisition.day_index
        observe = observe_s2 if acquisition.sensor == "sentinel-2" else observe_landsat
        return self._cached(
            ("swath", acquisition.swath_key),
            lambda: observe(
                self.truth(day),
                self.clouds(acquisition),
                self.landscape,
                self.snow_fraction(day),
                rng_for(self.config.seed, "noise", acquisition.swath_key),
                self.config.noise_scale,
            ),
        )

    def items(self) -> Iterator[SimulatedItem]:
        """Every published item, in time order."""
        for acquisition in self.acquisitions:
            yield self.item(acquisition)

    def item(self, acquisition: Acquisition) -> SimulatedItem:
        """Encode one acquisition as the assets of its item."""
        observation = self.observe(acquisition)
        elevation, azimuth = self.sun(acquisition)
        if isinstance(observation, S2Observation):
            return self._s2_item(acquisition, observation, elevation, azimuth)
        return self._landsat_item(acquisition, observation, elevation, azimuth)

    # -- windows and footprints ---------------------------------------------------------

    def window(self, acquisition: Acquisition, resolution: float) -> tuple[slice, slice]:
        """(rows, cols) of the acquisition's raster in the region's grid at ``resolution``."""
        return self.grid.at(resolution).window(acquisition.bounds)

    def _valid(self, acquisition: Acquisition, resolution: float) -> np.ndarray:
        """Pixels whose centre lies in the footprint, on the item's native grid."""
        ys, xs = RasterGrid(self.grid.epsg, acquisition.bounds, resolution).coords()
        return shapely.contains_xy(acquisition.footprint, xs[None, :], ys[:, None])

    def _raster(self, acquisition, data, resolution, epsg, y_shift, nodata) -> AssetRaster:
        west, south, east, north = acquisition.bounds
        grid = RasterGrid(epsg, (west, south + y_shift, east, north + y_shift), resolution)
        return AssetRaster(np.ascontiguousarray(data), resolution, epsg, grid.transform, nodata)

    # -- Sentinel-2 ------------------------------------------------------------------------

    def _s2_item(self, acq, obs: S2Observation, elevation, azimuth) -> SimulatedItem:
        add_offset = acq.processing_baseline >= "04.00" and not acq.boa_offset_applied
        assets = {}
        for resolution, bands in ((10.0, obs.bands_10m), (20.0, obs.bands_20m)):
            rows, cols = self.window(acq, resolution)
            valid = self._valid(acq, resolution)
            for band in S2_BANDS:
                if band.name in bands:
                    dn = encode_s2(bands[band.name][rows, cols], valid, add_offset)
                    assets[band.asset_key] = self._raster(
                        acq, dn, resolution, self.grid.epsg, 0.0, 0
                    )
        rows, cols = self.window(acq, 20.0)
        valid = self._valid(acq, 20.0)
        scl = np.where(valid, obs.scl[rows, cols], 0).astype(np.uint8)
        assets["scl"] = self._raster(acq, scl, 20.0, self.grid.epsg, 0.0, 0)

        n_valid = max(int(valid.sum()), 1)
        classes = {
            "nodata_pixel": None, "saturated_defective_pixel": 1, "dark_features": 2,
            "cloud_shadow": 3, "vegetation": 4, "not_vegetated": 5, "water": 6,
            "unclassified": 7, "medium_proba_clouds": 8, "high_proba_clouds": 9,
            "thin_cirrus": 10, "snow_ice": 11,
        }  # fmt: skip
        percentages = {
            name: round(100.0 * float((scl == code).sum()) / n_valid, 6)
            for name, code in classes.items()
            if code is not None
        }
        percentages["nodata_pixel"] = round(100.0 * float((~valid).mean()), 6)
        cloudy = np.isin(scl, (8, 9, 10))
        return _summarised(acq, assets, valid, cloudy, elevation, azimuth, percentages)

    # -- Landsat ---------------------------------------------------------------------------

    def _landsat_item(self, acq, obs: LandsatObservation, elevation, azimuth) -> SimulatedItem:
        rows, cols = self.window(acq, 30.0)
        valid = self._valid(acq, 30.0)
        epsg, y_shift = landsat_epsg(self.grid.epsg), landsat_y_shift(self.grid.epsg)

        def raster(data: np.ndarray, nodata: int | None) -> AssetRaster:
            return self._raster(acq, data, 30.0, epsg, y_shift, nodata)

        assets = {}
        for band in LANDSAT_BANDS:
            if band.quantity == "temperature":
                if acq.correction == "L2SP":  # L2SR products carry no thermal band
                    assets[band.asset_key] = raster(
                        encode_landsat_st(obs.temperature_k[rows, cols], valid), 0
                    )
            else:
                dn = encode_landsat_sr(obs.reflectance[band.name][rows, cols], valid)
                assets[band.asset_key] = raster(dn, 0)
        qa = np.where(valid, obs.qa_pixel[rows, cols], np.uint16(1 << QA_FILL))
        assets["qa_pixel"] = raster(qa.astype(np.uint16), 1)
        assets["qa_radsat"] = raster(
            np.where(valid, obs.qa_radsat[rows, cols], 0).astype(np.uint16), None
        )
        aerosol = np.where(valid, obs.qa_aerosol[rows, cols], 1).astype(np.uint8)
        assets["qa_aerosol"] = raster(aerosol, 1)

        cloudy = ((qa >> 3) & 1 | (qa >> 2) & 1).astype(bool)  # cloud or cirrus
        return _summarised(acq, assets, valid, cloudy, elevation, azimuth, {})


def _summarised(acq, assets, valid, cloudy, elevation, azimuth, percentages) -> SimulatedItem:
    """The item with its cover statistics (percentages of the valid pixels)."""
    n_valid = max(int(valid.sum()), 1)
    return SimulatedItem(
        acquisition=acq,
        assets=assets,
        sun_elevation=elevation,
        sun_azimuth=azimuth,
        cloud_cover=round(100.0 * float((cloudy & valid).sum()) / n_valid, 6),
        valid_fraction=float(valid.mean()),
        class_percentages=percentages,
    )
