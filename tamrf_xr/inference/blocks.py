"""One spatial block through the model: NumPy arrays in, NumPy arrays out.

The block includes its margin (the context the model needs around the pixels it must
predict); the caller crops it. Invalid pixels are filled with 0 after standardisation (the
mean), as the model spec prescribes: the network never sees masks.
"""

from __future__ import annotations

import numpy as np
import torch

from tamrf_xr.checkpoint import LoadedModel
from tamrf_xr.precision import autocast

__all__ = ["predict_block"]


def _standardised(values: np.ndarray, valid: np.ndarray, standardise) -> torch.Tensor:
    """(t, c, h, w) values and (t, h, w) validity -> (1, t, c, h, w) standardised, 0 where
    invalid or NaN."""
    tensor = standardise(torch.from_numpy(np.ascontiguousarray(values, dtype=np.float32)))
    usable = torch.from_numpy(np.ascontiguousarray(valid))[:, None] & torch.isfinite(tensor)
    return torch.where(usable, tensor, torch.zeros((), dtype=tensor.dtype))[None]


def predict_block(
    s2: np.ndarray,
    s2_valid: np.ndarray,
    s2_days: np.ndarray,
    landsat: np.ndarray,
    landsat_valid: np.ndarray,
    landsat_days: np.ndarray,
    query_days: np.ndarray,
    loaded: LoadedModel,
    device: str = "cpu",
    precision: str = "fp32",
) -> np.ndarray:
    """Predict the 18 bands of one block on the query days.

    Args:
        s2: (t_s, 10, H, W) reflectance at 10 m (NaN where missing); t_s may be 0.
        s2_valid: (t_s, H, W) bool.
        s2_days: (t_s,) days since the origin.
        landsat: (t_l, 8, H/3, W/3) reflectance and LST (K) at 30 m; t_l may be 0.
        landsat_valid: (t_l, H/3, W/3) bool.
        landsat_days: (t_l,).
        query_days: (t_q,) days since the origin.
        loaded: the model and its statistics.
        device, precision: where and how the forward pass runs.

    Returns:
        (t_q, 18, H, W) float32 in physical units (reflectance; LST in K); all NaN when
        neither sensor has a single valid pixel in the block (the caller masks every pixel
        without a clear observation within the margin, so such a block is masked anyway).
    """
    H, W = s2.shape[-2:] if s2.shape[0] else (landsat.shape[-2] * 3, landsat.shape[-1] * 3)
    if not s2_valid.any() and not landsat_valid.any():
        return np.full((len(query_days), 18, H, W), np.nan, np.float32)
    norm, model = loaded.normalisation, loaded.model
    target = torch.device(device)
    s2_in = _standardised(s2.reshape(-1, 10, H, W), s2_valid.reshape(-1, H, W), norm.standardise_s2)
    landsat_in = _standardised(
        landsat.reshape(-1, 8, H // 3, W // 3),
        landsat_valid.reshape(-1, H // 3, W // 3),
        norm.standardise_landsat,
    )
    with torch.inference_mode(), autocast(target, precision):
        out = model(
            s2_in.to(target),
            torch.as_tensor(s2_days, dtype=torch.float32, device=target)[None],
            landsat_in.to(target),
            torch.as_tensor(landsat_days, dtype=torch.float32, device=target)[None],
            torch.as_tensor(query_days, dtype=torch.float32, device=target),
        )
        physical = norm.unstandardise(out.float())[0]
    return physical.cpu().numpy().astype(np.float32, copy=False)
