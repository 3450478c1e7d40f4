"""Seeded random fields: smooth Gaussian textures and per-purpose random generators."""

from __future__ import annotations

import hashlib

import numpy as np

__all__ = ["rng_for", "smooth_field"]


def rng_for(seed: int, *purpose: object) -> np.random.Generator:
    """An independent generator for one purpose (e.g. ``("clouds", day)``).

    Deriving every stream from (seed, purpose) rather than drawing from one shared generator
    keeps each part reproducible on its own: simulating a shorter period or fewer bands does
    not shift the random numbers of the rest.
    """
    digest = hashlib.sha256(repr((seed, *purpose)).encode()).digest()
    return np.random.default_rng(np.frombuffer(digest[:16], dtype=np.uint64))


def smooth_field(
    rng: np.random.Generator, shape: tuple[int, int], scale_px: float, octaves: int = 3
) -> np.ndarray:
    """Zero-mean, unit-variance spatially correlated noise (periodic at the borders).

    White noise filtered in the Fourier domain by a sum of Gaussian transfer functions whose
    scales halve at each octave (with halving weight): a multi-scale texture that looks like
    clouds, soil moisture or canopy density. The FFT keeps large fields cheap.

    Args:
        rng: random generator.
        shape: (rows, cols).
        scale_px: correlation length (Gaussian sigma) of the coarsest octave in pixels.
        octaves: number of octaves.

    Returns:
        float32 array of ``shape``, mean 0 and std 1.
    """
    noise = rng.standard_normal(shape)
    fy = np.fft.fftfreq(shape[0])[:, None]
    fx = np.fft.rfftfreq(shape[1])[None, :]
    f2 = fy**2 + fx**2
    transfer = np.zeros_like(f2)
    for octave in range(octaves):
        sigma = max(scale_px / 2**octave, 0.5)
        # Weight by sigma so that each octave's variance contribution halves with its weight.
        transfer += 0.5**octave * sigma * np.exp(-2.0 * np.pi**2 * sigma**2 * f2)
    field = np.fft.irfft2(np.fft.rfft2(noise) * transfer, s=shape)
    field -= field.mean()
    field /= field.std() + 1e-12
    return field.astype(np.float32)
