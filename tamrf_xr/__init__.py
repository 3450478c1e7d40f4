"""tamrf-xr: Sentinel-2 + Landsat-8/9 image time-series fusion with TAMRF.

The library layer: band definitions, the scene simulator, the TAMRF model and its
checkpoints (later: its xarray/dask kernels). It imports neither ``pipelines`` nor ``flows``
and never talks to a STAC API or Prefect.
"""

__version__ = "0.1.0"

__all__ = ["__version__", "load_model"]


def __getattr__(name: str):
    # Lazy: importing tamrf_xr (e.g. for the simulator) must not import torch.
    if name == "load_model":
        from tamrf_xr.checkpoint import load_model

        return load_model
    raise AttributeError(f"module 'tamrf_xr' has no attribute {name!r}")
