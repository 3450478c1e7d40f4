"""The spec's metrics: RMSE per date and band, nRMSE, spectral angle, frequency restoration.

Shapes: dates ``t``, bands ``b``, rows ``h``, columns ``w``. Errors are scored on the
REFERENCE grid (degrade 10 m predictions first: :func:`tamrf_xr.evaluation.degrade`), on its
clear pixels, a border of ``border_px`` pixels of that grid ignored (the spec: 30 px, i.e.
300 m for S2 and 900 m for Landsat). Units: reflectance, Kelvin for LST.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "error_sums",
    "frequency_restoration",
    "nrmse",
    "radial_profile_db",
    "rmse_per_date_band",
    "spectral_angle_deg",
]


def _inner(array: np.ndarray, border_px: int) -> np.ndarray:
    """(..., h, w) without ``border_px`` pixels on every side."""
    if border_px < 0 or 2 * border_px >= min(array.shape[-2:]):
        raise ValueError(
            f"a border of {border_px} px leaves nothing of a {array.shape[-2:]} image: use a "
            "smaller border or a larger image"
        )
    if border_px == 0:
        return array
    return array[..., border_px:-border_px, border_px:-border_px]


def _scored(prediction, reference, clear, border_px):
    prediction = _inner(np.asarray(prediction, np.float64), border_px)
    reference = _inner(np.asarray(reference, np.float64), border_px)
    clear = _inner(np.asarray(clear, bool), border_px)
    if prediction.shape != reference.shape or prediction.ndim != 4:
        raise ValueError(
            f"prediction {prediction.shape} and reference {reference.shape} must both be "
            "(t, b, h, w) on the reference grid: degrade the prediction first"
        )
    if clear.shape != (prediction.shape[0], *prediction.shape[2:]):
        raise ValueError(
            f"clear must be (t, h, w) = {(prediction.shape[0], *prediction.shape[2:])}"
        )
    usable = clear[:, None] & np.isfinite(reference) & np.isfinite(prediction)
    return prediction, reference, usable


def error_sums(
    prediction: np.ndarray, reference: np.ndarray, clear: np.ndarray, border_px: int = 30
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per date and band: (sum of squared errors, sum of |reference|, pixels), each (t, b),
    over the reference's clear pixels with a border ignored: what RMSE and nRMSE pooled over
    any set of dates are made of. Arguments as :func:`rmse_per_date_band`."""
    prediction, reference, usable = _scored(prediction, reference, clear, border_px)
    squared = np.where(usable, (prediction - reference) ** 2, 0.0).sum(axis=(-2, -1))
    magnitude = np.where(usable, np.abs(reference), 0.0).sum(axis=(-2, -1))
    return squared, magnitude, usable.sum(axis=(-2, -1))


def rmse_per_date_band(
    prediction: np.ndarray, reference: np.ndarray, clear: np.ndarray, border_px: int = 30
) -> tuple[np.ndarray, np.ndarray]:
    """RMSE per date and band over the reference's clear pixels, a border ignored.

    Args:
        prediction: (t, b, h, w) on the reference grid.
        reference: (t, b, h, w) observations (NaN where missing).
        clear: (t, h, w) bool, the reference's clear pixels.
        border_px: pixels of the reference grid ignored on every side.

    Returns:
        (rmse (t, b) float64, NaN where no pixel counts; pixels (t, b) int: how many).
    """
    squared, _, pixels = error_sums(prediction, reference, clear, border_px)
    with np.errstate(invalid="ignore", divide="ignore"):
        rmse = np.sqrt(squared / pixels)
    return np.where(pixels > 0, rmse, np.nan), pixels


def nrmse(
    prediction: np.ndarray, reference: np.ndarray, clear: np.ndarray, border_px: int = 30
) -> np.ndarray:
    """RMSE divided by the mean absolute reference over the same pixels: (t, b), unitless."""
    squared, magnitude, pixels = error_sums(prediction, reference, clear, border_px)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(pixels > 0, np.sqrt(squared * pixels) / magnitude, np.nan)


def spectral_angle_deg(
    prediction: np.ndarray, reference: np.ndarray, clear: np.ndarray, border_px: int = 30
) -> np.ndarray:
    """Mean spectral angle (degrees) between predicted and observed spectra, per date: (t,).

    The angle of each clear pixel's band vector (one sensor's reflectance bands), averaged."""
    prediction, reference, usable = _scored(prediction, reference, clear, border_px)
    pixel_ok = usable.all(axis=1)
    dot = (prediction * reference).sum(axis=1)
    norms = np.linalg.norm(prediction, axis=1) * np.linalg.norm(reference, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        angle = np.degrees(np.arccos(np.clip(dot / norms, -1.0, 1.0)))
    angle = np.where(pixel_ok & (norms > 0), angle, np.nan)
    counts = np.isfinite(angle).sum(axis=(-2, -1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, np.nansum(angle, axis=(-2, -1)) / counts, np.nan)


def radial_profile_db(image: np.ndarray) -> np.ndarray:
    """The spec's radial amplitude profile of one (h, w) image, in dB, normalised.

    ``|FFT2|`` of the image zero-padded to twice its size, averaged over rings of width
    ``1 / w`` cycles per pixel up to Nyquist; every other ring is kept and the DC ring dropped
    (rings 2, 4, 6, ...); ``20 log10`` of each ring's mean amplitude, minus the first kept
    ring's value (so a profile starts at 0 dB and a constant gain cancels).

    Returns:
        (rings,) float64.
    """
    image = np.asarray(image, np.float64)
    if image.ndim != 2 or min(image.shape) < 8:
        raise ValueError(f"an (h, w) image of at least 8 x 8 px is needed, got {image.shape}")
    h, w = image.shape
    amplitude = np.abs(np.fft.fft2(image, s=(2 * h, 2 * w)))
    fy = np.fft.fftfreq(2 * h)[:, None]
    fx = np.fft.fftfreq(2 * w)[None, :]
    ring = np.floor(np.sqrt(fx**2 + fy**2) * w).astype(int)
    kept = np.arange(2, w // 2, 2)
    means = np.array([amplitude[ring == k].mean() for k in kept])
    db = 20.0 * np.log10(np.maximum(means, np.finfo(np.float64).tiny))
    return db - db[0]


def frequency_restoration(prediction: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """FR: mean over rings of (prediction profile - reference profile), in dB, per image.

    Args:
        prediction: (..., h, w) at 10 m (no cloud mask is used).
        reference: (..., h, w) at 10 m: the S2 observation, or the Landsat observation
            upsampled bicubic x3.

    Returns:
        (...) float64: positive = more high-frequency content than the reference.
    """
    prediction = np.asarray(prediction, np.float64)
    reference = np.asarray(reference, np.float64)
    if prediction.shape != reference.shape:
        raise ValueError(f"shapes differ: {prediction.shape} vs {reference.shape}")
    lead = prediction.shape[:-2]
    flat_p = prediction.reshape(-1, *prediction.shape[-2:])
    flat_r = reference.reshape(-1, *reference.shape[-2:])
    values = [
        float(np.mean(radial_profile_db(p) - radial_profile_db(r)))
        for p, r in zip(flat_p, flat_r, strict=True)
    ]
    return np.array(values).reshape(lead)
