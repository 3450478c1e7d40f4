"""One spatial block through the model: NumPy arrays in, NumPy arrays out.

The block comes with its context (what the model needs around the pixels it must predict);
the model returns the block without it. Pixels without data are filled with 0 after
standardisation (the mean); cloudy pixels go in as observed, as the model spec prescribes:
the network never sees masks (they decide only where a prediction is supported).

Two steps, so that a worker overlaps them across blocks: :func:`prepare_block` (standardise
on the CPU; on a GPU, copy from pinned memory on a side stream, asynchronously) runs outside
the worker's forward lock, :func:`run_block` (the forward pass) inside it. On a GPU worker
with two task threads the copy of the next block thus overlaps the forward pass of this one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from tamrf_xr.checkpoint import LoadedModel
from tamrf_xr.precision import autocast
from tamrf_xr.receptive_field import Sides

__all__ = ["PreparedBlock", "predict_block", "prepare_block", "run_block"]


def _standardised(values: np.ndarray, standardise) -> torch.Tensor:
    """(t, c, h, w) values -> (1, t, c, h, w) standardised, 0 where there is no data (NaN).

    Cloudy pixels go in as observed: the model never sees cloud masks (the spec), and it was
    trained to look past clouds; the masks decide only where a prediction is supported."""
    tensor = standardise(torch.from_numpy(np.ascontiguousarray(values, dtype=np.float32)))
    return torch.where(torch.isfinite(tensor), tensor, torch.zeros((), dtype=tensor.dtype))[None]


@dataclass
class PreparedBlock:
    """A block's model inputs on the target device (``None`` tensors: nothing to predict)."""

    tensors: tuple[torch.Tensor, ...] | None
    """(s2, s2_days, landsat, landsat_days, query_days), batch 1."""
    shape: tuple[int, int, int]
    """(t_q, rows, cols) of the output block."""
    context: Sides
    ready: torch.cuda.Event | None = None
    """Recorded after the asynchronous copy (GPU only)."""


def prepare_block(
    s2: np.ndarray,
    s2_valid: np.ndarray,
    s2_days: np.ndarray,
    landsat: np.ndarray,
    landsat_valid: np.ndarray,
    landsat_days: np.ndarray,
    query_days: np.ndarray,
    loaded: LoadedModel,
    device: str = "cpu",
    context: Sides = (0, 0, 0, 0),
) -> PreparedBlock:
    """Standardise one block and move it to ``device`` (arguments: :func:`predict_block`)."""
    H, W = s2.shape[-2:] if s2.shape[0] else (landsat.shape[-2] * 3, landsat.shape[-1] * 3)
    shape = (len(query_days), H - context[0] - context[1], W - context[2] - context[3])
    if not s2_valid.any() and not landsat_valid.any():
        return PreparedBlock(None, shape, context)
    norm = loaded.normalisation
    tensors = (
        _standardised(s2.reshape(-1, 10, H, W), norm.standardise_s2),
        torch.as_tensor(s2_days, dtype=torch.float32)[None],
        _standardised(landsat.reshape(-1, 8, H // 3, W // 3), norm.standardise_landsat),
        torch.as_tensor(landsat_days, dtype=torch.float32)[None],
        torch.as_tensor(query_days, dtype=torch.float32),
    )  # fmt: skip
    target = torch.device(device)
    if target.type != "cuda":
        return PreparedBlock(tensors, shape, context)
    # Pinned host memory and a side stream: the copy runs while the device computes.
    stream = torch.cuda.Stream(target)
    with torch.cuda.stream(stream):
        moved = tuple(t.pin_memory().to(target, non_blocking=True) for t in tensors)
        ready = torch.cuda.Event()
        ready.record(stream)
    return PreparedBlock(moved, shape, context, ready)


def run_block(
    block: PreparedBlock, loaded: LoadedModel, device: str = "cpu", precision: str = "fp32"
) -> np.ndarray:
    """The forward pass of a prepared block: (t_q, 18, rows, cols) float32 in physical
    units; all NaN when the block had no valid pixel."""
    if block.tensors is None:
        return np.full((block.shape[0], 18, *block.shape[1:]), np.nan, np.float32)
    target = torch.device(device)
    if block.ready is not None:
        torch.cuda.current_stream(target).wait_event(block.ready)
    with torch.inference_mode(), autocast(target, precision):
        out = loaded.model(*block.tensors, context=block.context)
        physical = loaded.normalisation.unstandardise(out.float())[0]
    return physical.cpu().numpy().astype(np.float32, copy=False)


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
    context: Sides = (0, 0, 0, 0),
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
        context: (top, bottom, left, right) pixels of the block that are context only (see
            ``TAMRF.forward``).

    Returns:
        (t_q, 18, H - top - bottom, W - left - right) float32 in physical units
        (reflectance; LST in K); all NaN when neither sensor has a single valid pixel in
        the block (the caller masks every pixel without a clear observation within the
        margin, so such a block is masked anyway).
    """
    prepared = prepare_block(s2, s2_valid, s2_days, landsat, landsat_valid, landsat_days,
                             query_days, loaded, device, context)  # fmt: skip
    return run_block(prepared, loaded, device, precision)
