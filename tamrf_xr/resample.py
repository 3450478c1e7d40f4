"""Bicubic upsampling by an integer factor (pure NumPy), as PyTorch's ``interpolate`` does it.

Sentinel-2's 20 m bands enter the model on the 10 m grid. The specification leaves the method
open; we use the interpolation the model itself uses for Landsat features: PyTorch bicubic
(Keys cubic convolution with a = -0.75, ``align_corners=False``, edge pixels repeated beyond
the border). Pixel-centre geometry: output pixel ``i`` samples the input at
``(i + 0.5) / factor - 0.5``, so the 10 m grid keeps the 20 m grid's edges.
"""

from __future__ import annotations

import numpy as np

__all__ = ["BICUBIC_A", "UPSAMPLE_HALO", "upsample_bicubic"]

BICUBIC_A = -0.75
UPSAMPLE_HALO = 2
"""Input pixels each side that the 4-tap kernel reads beyond an output block."""


def _cubic_weights(t: np.ndarray, a: float) -> np.ndarray:
    """(n, 4) weights of the taps at offsets -1, 0, 1, 2 for fractional positions ``t``."""
    distances = np.stack([t + 1.0, t, 1.0 - t, 2.0 - t], axis=-1)
    near = ((a + 2.0) * distances - (a + 3.0)) * distances * distances + 1.0
    far = ((a * distances - 5.0 * a) * distances + 8.0 * a) * distances - 4.0 * a
    return np.where(distances <= 1.0, near, far)


def _upsample_axis(image: np.ndarray, factor: int, axis: int, a: float, crop: int = 0,
                   out: np.ndarray | None = None) -> np.ndarray:  # fmt: skip
    """(..., n, ...) -> (..., n * factor - 2 crop, ...) along ``axis`` (negative): the
    upsampled axis without its first and last ``crop`` outputs, written into ``out`` if given.

    Output pixel ``j`` reads the taps ``floor(source_j) - 1 + k`` (k = 0..3); for the outputs
    ``j = factor * i + p`` of one phase ``p`` that is ``i + floor(source_p) - 1 + k``, a shifted
    slice of the input, edge-padded only where a kept output's taps fall outside it (the
    padding repeats edge pixels as clipping the tap indices would). Each phase is accumulated
    contiguously in float32 in the order of a gather, ``((0 + tap 0) + tap 1) + ...``: the
    leading 0 only turns a -0.0 sum into +0.0, so it is added last, as the accumulated phase
    is written into its interleaved slots of the output (slices instead of fancy indexing).
    """
    axis %= image.ndim
    n = image.shape[axis]
    size = n * factor
    source = (np.arange(size, dtype=np.float64) + 0.5) / factor - 0.5
    floor = np.floor(source)
    weights = _cubic_weights(source - floor, a).astype(np.float32)
    first_tap = floor.astype(np.int64) - 1
    before = max(0, -int(first_tap[crop]))
    after = max(0, int(first_tap[size - crop - 1]) + 4 - n)
    if before or after:
        widths = [(0, 0)] * image.ndim
        widths[axis] = (before, after)
        image = np.pad(image, widths, mode="edge")
    shape = list(image.shape)
    shape[axis] = size - 2 * crop
    if out is None:
        out = np.empty(shape, np.float32)
    along = [1] * image.ndim
    along[axis] = -1
    at = [slice(None)] * image.ndim
    for phase in range(factor):
        kept = range(crop + (phase - crop) % factor, size - crop, factor)
        if not kept:
            continue
        count = len(kept)
        start = int(first_tap[kept[0]]) + before  # padded index of tap 0 of the first output
        total = product = None
        for k in range(4):
            at[axis] = slice(start + k, start + k + count)
            w = weights[kept.start : kept.stop : factor, k].reshape(along)
            if total is None:
                total = np.multiply(image[tuple(at)], w)
                continue
            if product is None:
                product = np.empty_like(total)
            np.multiply(image[tuple(at)], w, out=product)
            total += product
        at[axis] = slice(kept.start - crop, size - 2 * crop, factor)
        np.add(total, np.float32(0.0), out=out[tuple(at)])
    return out


def upsample_bicubic(image: np.ndarray, factor: int, a: float = BICUBIC_A, *, crop: int = 0,
                     out: np.ndarray | None = None) -> np.ndarray:  # fmt: skip
    """Upsample the last two axes by an integer ``factor``.

    Args:
        image: (..., h, w) float array; NaN spreads to the outputs whose taps read it.
        factor: integer upsampling factor (2 for Sentinel-2 20 m -> 10 m).
        a: cubic convolution parameter (PyTorch: -0.75).
        crop: output pixels left out on each side (the same values as cropping the full
            result, without computing them, nor padding where the kept outputs do not need it).
        out: (..., h * factor - 2 crop, w * factor - 2 crop) float32 to write into.

    Returns:
        (..., h * factor - 2 crop, w * factor - 2 crop) float32 (``out`` if given).
    """
    if factor < 1 or int(factor) != factor:
        raise ValueError(f"factor must be a positive integer, got {factor}")
    image = np.asarray(image, dtype=np.float32)
    if not 0 <= 2 * crop < min(image.shape[-2:]) * factor:
        raise ValueError(f"crop {crop} leaves nothing of {image.shape[-2:]} x {factor}")
    if factor == 1:
        kept = image[..., crop : image.shape[-2] - crop, crop : image.shape[-1] - crop]
        if out is None:
            return np.array(kept, dtype=np.float32)
        out[...] = kept
        return out
    rows = _upsample_axis(image, factor, -2, a, crop)
    return _upsample_axis(rows, factor, -1, a, crop, out)
