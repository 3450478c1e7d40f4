"""How far tiled inference is from whole-image inference, as a function of the margin.

The reference is the cube predicted as ONE block. A tiled prediction cuts the cube into blocks
of ``chunk_px``, each predicted with ``margin_px`` of context. Blocks at the cube's outer edge
see the same edge as the whole cube does, so the only difference between the two is the seams
between blocks; errors are measured over the whole cube.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import xarray as xr

from tamrf_xr.bands import BANDS
from tamrf_xr.inference.model_cache import ModelSource
from tamrf_xr.inference.predict import InferenceConfig, model_margin_px, predict

__all__ = ["seam_errors"]


def _bands(prediction: xr.Dataset, names: list[str]) -> np.ndarray:
    return np.stack([prediction[n].values for n in names])


def seam_errors(
    s2: xr.Dataset,
    landsat: xr.Dataset,
    dates: Sequence | str,
    model: ModelSource,
    chunk_px: int,
    margins: Sequence[int | None],
    radius_px: int | None = None,
    scheduler: str = "threads",
) -> list[dict[str, float]]:
    """Max and mean absolute differences, tiled vs whole, for each margin.

    Args:
        s2, landsat: the cubes (small: the reference is one block).
        dates: output dates (see :func:`predict`).
        model: the model.
        chunk_px: block side of the tiled predictions.
        margins: the margins to measure (None: the receptive-field radius).
        radius_px: the reference's margin (default: the checkpoint's receptive-field radius).

    Returns:
        One dict per margin: ``margin_px``, ``reflectance_max``/``reflectance_mean`` (over the
        16 reflectance bands) and ``lst_max_k``/``lst_mean_k``.
    """
    size = max(s2.sizes["y"], s2.sizes["x"])
    radius_px = model_margin_px(model.checkpoint, radius_px)
    whole_config = InferenceConfig(chunk_px=size + (-size) % 3, margin_px=radius_px)
    reflectance = [b.name for b in BANDS if b.quantity == "reflectance"]
    lst = [b.name for b in BANDS if b.quantity == "temperature"]
    whole = predict(s2, landsat, dates, model, whole_config).compute(scheduler=scheduler)
    rows = []
    for margin in margins:
        margin = model_margin_px(model.checkpoint, margin)
        config = replace(whole_config, chunk_px=chunk_px, margin_px=margin)
        tiled = predict(s2, landsat, dates, model, config).compute(scheduler=scheduler)
        out = {"margin_px": int(margin)}
        for key, names in (("reflectance", reflectance), ("lst", lst)):
            difference = np.abs(_bands(tiled, names) - _bands(whole, names))
            suffix = "_k" if key == "lst" else ""
            out[f"{key}_max{suffix}"] = float(np.nanmax(difference))
            out[f"{key}_mean{suffix}"] = float(np.nanmean(difference))
        rows.append(out)
    return rows
