"""tamrf-xr: Sentinel-2 + Landsat-8/9 image time-series fusion with TAMRF.

The library layer: band definitions, the scene simulator and (later) the model and its
xarray/dask kernels. It imports neither ``pipelines`` nor ``flows`` and never talks to a
STAC API or Prefect.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
