"""How far tiled inference is from whole-image inference, as a function of the margin.

The reference is the cube predicted as ONE block with the full receptive-field margin. A tiled
prediction cuts the cube into blocks of ``chunk_px``, each predicted with ``margin_px`` of
context and cropped. Errors are measured on the interior of the cube only: the pixels whose
receptive field stays inside the cube (farther than the receptive-field radius from its outer
edge), where the only difference between the two is the seams between blocks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import xarray as xr

from tamrf_xr.bands import BANDS
from tamrf_xr.inference.model_cache import ModelSource
from tamrf_xr.inference.predict import DEFAULT_MARGIN_PX, InferenceConfig, predict

__all__ = ["seam_errors"]


def _bands(prediction: xr.Dataset, names: list[str], interior: int) -> np.ndarray:
    cut = slice(interior, -interior) if interior else slice(None)
    return np.stack([prediction[n].values[:, cut, cut] for n in names])


def seam_errors(
    s2: xr.Dataset,
    landsat: xr.Dataset,
    dates: Sequence | str,
    model: ModelSource,
    chunk_px: int,
    margins: Sequence[int],
    radius_px: int = DEFAULT_MARGIN_PX,
    scheduler: str = "threads",
) -> list[dict[str, float]]:
    """Max and mean absolute differences, tiled vs whole, for each margin.

    Args:
        s2, landsat: the cubes (small: the reference is one block).
        dates: output dates (see :func:`predict`).
        model: the model.
        chunk_px: block side of the tiled predictions.
        margins: the margins to measure.
        radius_px: the receptive-field radius (the reference's margin and the interior cut).

    Returns:
        One dict per margin: ``margin_px``, ``reflectance_max``/``reflectance_mean`` (over the
        16 reflectance bands) and ``lst_max_k``/``lst_mean_k``.
    """
    size = max(s2.sizes["y"], s2.sizes["x"])
    whole_config = InferenceConfig(chunk_px=size + (-size) % 3, margin_px=radius_px)
    if 2 * radius_px >= min(s2.sizes["y"], s2.sizes["x"]):
        raise ValueError(
            f"the cube ({s2.sizes['y']} x {s2.sizes['x']}) has no interior farther than "
            f"{radius_px} px from its edges: use a larger cube"
        )
    reflectance = [b.name for b in BANDS if b.quantity == "reflectance"]
    lst = [b.name for b in BANDS if b.quantity == "temperature"]
    whole = predict(s2, landsat, dates, model, whole_config).compute(scheduler=scheduler)
    rows = []
    for margin in margins:
        config = replace(whole_config, chunk_px=chunk_px, margin_px=margin)
        tiled = predict(s2, landsat, dates, model, config).compute(scheduler=scheduler)
        out = {"margin_px": int(margin)}
        for key, names in (("reflectance", reflectance), ("lst", lst)):
            difference = np.abs(_bands(tiled, names, radius_px) - _bands(whole, names, radius_px))
            suffix = "_k" if key == "lst" else ""
            out[f"{key}_max{suffix}"] = float(np.nanmax(difference))
            out[f"{key}_mean{suffix}"] = float(np.nanmean(difference))
        rows.append(out)
    return rows
