"""TAMRF as a protocol :data:`~tamrf_xr.evaluation.protocols.Predictor`."""

from __future__ import annotations

import dask
import numpy as np
import xarray as xr

from tamrf_xr.bands import BANDS
from tamrf_xr.inference.model_cache import ModelSource
from tamrf_xr.inference.predict import InferenceConfig, predict

__all__ = ["tamrf_predictor"]


def tamrf_predictor(source: ModelSource, config: InferenceConfig | None = None):
    """A predictor running :func:`~tamrf_xr.inference.predict` on in-memory cubes.

    Returns:
        ``(s2, landsat, dates) -> (q, 18, H, W)`` float32 at 10 m, NaN where the model has no
        clear observation within its support; computed with Dask's threaded scheduler in
        this process (blocks as the production runs them).
    """

    def run(s2: xr.Dataset, landsat: xr.Dataset, dates: np.ndarray) -> np.ndarray:
        out = predict(s2, landsat, list(np.asarray(dates, "datetime64[D]")), source, config)
        with dask.config.set(scheduler="threads"):
            computed = out[[b.name for b in BANDS]].compute()
        return np.stack([computed[b.name].values for b in BANDS], axis=1)

    return run
