"""Seeded simulation of Sentinel-2 + Landsat-8/9 time series with full ground truth.

Ground truth that real data cannot give: every band of both sensors at 10 m on every day,
plus the observations the two missions would have published (native resolutions, MTF blur,
noise, clouds and shadows, masks, nodata borders, real DN encodings).

Example:
    >>> from tamrf_xr.simulate import Simulation, SimulationConfig
    >>> sim = Simulation(SimulationConfig(seed=1, width_px=60, height_px=60))
    >>> truth = sim.truth(0)            # (18, 60, 60) float32, model channel order
    >>> item = next(sim.items())        # DN rasters + metadata of the first published item
"""

from tamrf_xr.simulate.config import SimulationConfig
from tamrf_xr.simulate.geometry import Acquisition, utm_epsg
from tamrf_xr.simulate.landscape import LandCover
from tamrf_xr.simulate.simulation import AssetRaster, SimulatedItem, Simulation

__all__ = [
    "Acquisition",
    "AssetRaster",
    "LandCover",
    "SimulatedItem",
    "Simulation",
    "SimulationConfig",
    "utm_epsg",
]
