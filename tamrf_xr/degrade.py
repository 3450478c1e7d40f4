"""Sensor point-spread functions: Gaussian kernels whose transfer function matches a band's MTF.

The spec's degradation operator (losses, metrics) and the scene simulator both build their
blur kernels here, so a band's PSF is defined once.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["gaussian_psf_kernel", "psf_sigma_m"]


def psf_sigma_m(mtf: float, native_resolution_m: float) -> float:
    """Standard deviation (metres) of the Gaussian PSF whose MTF at Nyquist equals ``mtf``.

    A Gaussian PSF of std ``sigma`` has transfer function ``exp(-2 pi^2 sigma^2 f^2)``; solving
    it for ``f_c = 0.5 / res`` gives ``sigma = sqrt(-ln(MTF) / 2) / (pi f_c)``. MTF 1 means no blur.
    """
    if not 0.0 < mtf <= 1.0:
        raise ValueError(f"MTF must be in (0, 1], got {mtf}")
    if native_resolution_m <= 0:
        raise ValueError(f"native resolution must be positive, got {native_resolution_m} m")
    f_c = 0.5 / native_resolution_m
    return math.sqrt(-math.log(mtf) / 2.0) / (math.pi * f_c)


def gaussian_psf_kernel(
    mtf: float, native_resolution_m: float, half_width_px: int, pixel_m: float = 10.0
) -> np.ndarray:
    """Gaussian PSF sampled on a ``pixel_m`` grid, normalised to sum 1.

    Args:
        mtf: the band's MTF at the Nyquist frequency of its native resolution.
        native_resolution_m: the band's native ground sampling distance.
        half_width_px: kernel half width; the kernel is ``(2 h + 1, 2 h + 1)``.
        pixel_m: sampling step of the kernel (the 10 m working grid).

    Returns:
        float32 array of shape ``(2 h + 1, 2 h + 1)``; an exact identity kernel when ``mtf == 1``.
    """
    if half_width_px < 0:
        raise ValueError(f"half_width_px must be >= 0, got {half_width_px}")
    size = 2 * half_width_px + 1
    kernel = np.zeros((size, size), dtype=np.float32)
    sigma = psf_sigma_m(mtf, native_resolution_m)
    if sigma == 0.0:
        kernel[half_width_px, half_width_px] = 1.0
        return kernel
    offsets = np.arange(-half_width_px, half_width_px + 1, dtype=np.float32) * np.float32(pixel_m)
    dist2 = offsets[:, None] ** 2 + offsets[None, :] ** 2
    kernel = np.exp(-dist2 / np.float32(2.0 * sigma**2)).astype(np.float32)
    return (kernel / kernel.sum(dtype=np.float32)).astype(np.float32)
