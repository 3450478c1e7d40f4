"""TAMRF over xarray/dask datacubes: target dates, quality layers, tiled lazy prediction.

Pure array code and the model: no STAC client, no Prefect, no file formats.
"""

from tamrf_xr.inference.dates import target_dates
from tamrf_xr.inference.model_cache import ModelSource, cached_model, untrained_checkpoint
from tamrf_xr.inference.predict import InferenceConfig, model_margin_px, predict
from tamrf_xr.inference.quality import clear_count, days_to_nearest_clear

__all__ = [
    "InferenceConfig",
    "ModelSource",
    "cached_model",
    "clear_count",
    "days_to_nearest_clear",
    "model_margin_px",
    "predict",
    "target_dates",
    "untrained_checkpoint",
]
