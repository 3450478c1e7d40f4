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


def _upsample_axis(image: np.ndarray, factor: int, axis: int, a: float) -> np.ndarray:
    """(..., n, ...) -> (..., n * factor, ...) along ``axis`` (negative).

    Output pixel ``j = factor * i + p`` reads the taps ``floor(source_j) - 1 + k`` (k = 0..3);
    for a given phase ``p`` that is ``i + floor(source_p) - 1 + k``, a shifted slice of the
    input edge-padded by 2 (the padding repeats edge pixels as clipping the tap indices
    would). Each phase is accumulated contiguously (0 + tap 0 + ... + tap 3, in float32, as a
    gather would), then the phases are interleaved: slices instead of fancy indexing.
    """
    axis %= image.ndim
    n = image.shape[axis]
    source = (np.arange(n * factor, dtype=np.float64) + 0.5) / factor - 0.5
    floor = np.floor(source)
    weights = _cubic_weights(source - floor, a).astype(np.float32)
    widths = [(0, 0)] * image.ndim
    widths[axis] = (2, 2)
    padded = np.pad(image, widths, mode="edge")
    along = [1] * image.ndim
    along[axis] = -1
    product = np.empty(image.shape, np.float32)
    phases = []
    for phase in range(factor):
        first = int(floor[phase]) + 1  # padded index of tap 0 of output ``phase``
        total = np.zeros(image.shape, np.float32)
        for k in range(4):
            taps = [slice(None)] * image.ndim
            taps[axis] = slice(first + k, first + k + n)
            np.multiply(padded[tuple(taps)], weights[phase::factor, k].reshape(along), out=product)
            total += product
        phases.append(total)
    shape = list(image.shape)
    shape[axis] = n * factor
    return np.stack(phases, axis=axis + 1).reshape(shape)


def upsample_bicubic(image: np.ndarray, factor: int, a: float = BICUBIC_A) -> np.ndarray:
    """Upsample the last two axes by an integer ``factor``.

    Args:
        image: (..., h, w) float array; NaN spreads to the outputs whose taps read it.
        factor: integer upsampling factor (2 for Sentinel-2 20 m -> 10 m).
        a: cubic convolution parameter (PyTorch: -0.75).

    Returns:
        (..., h * factor, w * factor) float32.
    """
    if factor < 1 or int(factor) != factor:
        raise ValueError(f"factor must be a positive integer, got {factor}")
    if factor == 1:
        return np.asarray(image, dtype=np.float32)
    image = np.asarray(image, dtype=np.float32)
    return _upsample_axis(_upsample_axis(image, factor, -2, a), factor, -1, a)
