"""BRISQUE, the no-reference image quality score (lower is better), in NumPy/SciPy.

BRISQUE (Mittal, Moorthy & Bovik, "No-Reference Image Quality Assessment in the Spatial
Domain", IEEE TIP 21(12), 2012) maps 36 natural-scene statistics of an image to a score with
an RBF support-vector regressor trained on the LIVE database. The regressor here is the
LIVE-trained model shipped inside the PyPI package ``brisque`` 0.2.0 (Apache-2.0; the same
files ship in ``image-quality`` 1.2.7), vendored as ``data/brisque_live_model.npz``
(see ``data/README.md``): nothing is downloaded. It is a re-training, not the authors'
original MATLAB model, so absolute scores differ from MATLAB's, piq's or OpenCV's (by up to
tens of points): compare scores only with scores of this module.

The features follow ``brisque`` 0.2.0, whose scores this module reproduces (checked on 19
images: within 5e-11 on 18, 2.5e-4 on one with exactly flat areas, where that package's
result depends on float rounding; tests/test_evaluation_brisque.py holds reference scores):

1. MSCN coefficients ``(I - mu) / (sigma + 1/255)`` of the [0, 1] image, ``mu`` and
   ``sigma^2 = |E[I^2] - mu^2|`` under a normalised 7 x 7 Gaussian window (sigma 7/6) with
   zero padding; a pixel whose 7 x 7 window is exactly flat gets 0 (its exact value).
2. Products of neighbouring coefficients: horizontal, vertical and both diagonals.
3. An asymmetric generalised Gaussian moment fit of the five maps (``x < 0`` left, ``x >= 0``
   right): MSCN -> [alpha, (sigma_l^2 + sigma_r^2) / 2]; each product -> [alpha, eta,
   sigma_l^2, sigma_r^2]: 18 features.
4. The same on the image halved by bicubic convolution (Keys, a = -0.75, edge replicated,
   ``round_half_even(n / 2)`` pixels: OpenCV's ``INTER_CUBIC`` at 0.5): 36 features.
5. Features scaled to [-1, 1] by the model's ranges; score ``sum_i c_i exp(-gamma ||x -
   sv_i||^2) - rho``.

The spec applies it to each single band of a 10 m prediction clipped to [0, 1] (LST min-max
scaled by that date's reference first): see :class:`tamrf_xr.evaluation.scoring.Scorer`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from scipy import ndimage, optimize, special

__all__ = ["BRISQUE_DESCRIPTION", "BrisqueModel", "brisque_features", "brisque_score"]

MODEL_PATH = Path(__file__).parent / "data" / "brisque_live_model.npz"
BRISQUE_DESCRIPTION = (
    "BRISQUE with the LIVE-trained model of the PyPI package brisque 0.2.0 (vendored), "
    "reproduced to 5e-11 (tamrf_xr.evaluation.brisque); lower is better; not comparable with "
    "MATLAB/piq/OpenCV BRISQUE figures"
)
MSCN_C = 1.0 / 255.0
WINDOW_SIZE = 7
WINDOW_SIGMA = 7.0 / 6.0
FLAT_TOLERANCE = 1e-10
"""A 7 x 7 window whose max - min is at most this (on the [0, 1] scale) is flat."""
MIN_SIDE_PX = 8
ALPHA_BRACKET = (0.01, 100.0)
"""The AGGD shape search interval; a moment ratio outside its image is clamped."""


@dataclass(frozen=True)
class BrisqueModel:
    """An RBF epsilon-SVR and the feature ranges it was trained with.

    Attributes:
        support_vectors: (n_sv, 36) in the scaled feature space.
        dual_coef: (n_sv,) dual coefficients.
        rho, gamma: the bias (``decision = K @ dual_coef - rho``) and the RBF width.
        feature_min, feature_max: (36,) ranges mapped to -1 and +1.
    """

    support_vectors: np.ndarray
    dual_coef: np.ndarray
    rho: float
    gamma: float
    feature_min: np.ndarray
    feature_max: np.ndarray

    @classmethod
    def from_npz(cls, path: str | Path) -> BrisqueModel:
        with np.load(path, allow_pickle=False) as z:
            return cls(
                np.asarray(z["support_vectors"], np.float64),
                np.asarray(z["dual_coef"], np.float64),
                float(z["rho"]),
                float(z["gamma"]),
                np.asarray(z["feature_min"], np.float64),
                np.asarray(z["feature_max"], np.float64),
            )

    def predict(self, features: np.ndarray) -> float:
        """The score of one (36,) raw feature vector."""
        x = -1.0 + 2.0 * (features - self.feature_min) / (self.feature_max - self.feature_min)
        # ||x - sv||^2 directly (not by the dot-product expansion), as libsvm computes it.
        distances = ((x[None, :] - self.support_vectors) ** 2).sum(axis=1)
        return float(np.exp(-self.gamma * distances) @ self.dual_coef - self.rho)


@lru_cache(maxsize=1)
def live_model() -> BrisqueModel:
    """The vendored LIVE-trained model (loaded once per process)."""
    return BrisqueModel.from_npz(MODEL_PATH)


def _window() -> np.ndarray:
    t = np.arange(WINDOW_SIZE) - WINDOW_SIZE // 2
    w = np.exp(-(t**2) / (2.0 * WINDOW_SIGMA**2))
    return w / w.sum()  # the normalised 2-D window is its outer product


def _local_mean(image: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Separable 'same' filtering, zeros outside the image."""
    rows = ndimage.correlate1d(image, w, axis=0, mode="constant", cval=0.0)
    return ndimage.correlate1d(rows, w, axis=1, mode="constant", cval=0.0)


def _mscn(image: np.ndarray) -> np.ndarray:
    """Mean-subtracted contrast-normalised coefficients; exactly flat windows give 0 (the
    filter's rounding would otherwise give them tiny values of arbitrary sign, which move
    between the two sides of the AGGD fit)."""
    w = _window()
    mu = _local_mean(image, w)
    sigma = np.sqrt(np.abs(_local_mean(image * image, w) - mu * mu))
    out = (image - mu) / (sigma + MSCN_C)
    spread = ndimage.maximum_filter(image, WINDOW_SIZE, mode="constant", cval=0.0)
    spread -= ndimage.minimum_filter(image, WINDOW_SIZE, mode="constant", cval=0.0)
    out[spread <= FLAT_TOLERANCE] = 0.0
    return out


def _phi(alpha: float) -> float:
    """Gamma(2/a)^2 / (Gamma(1/a) Gamma(3/a)), in log space."""
    return math.exp(
        2.0 * special.gammaln(2.0 / alpha)
        - special.gammaln(1.0 / alpha)
        - special.gammaln(3.0 / alpha)
    )


def _shape(ratio: float) -> float:
    low, high = ALPHA_BRACKET
    if not math.isfinite(ratio):
        return math.nan
    if ratio <= _phi(low):
        return low
    if ratio >= _phi(high):
        return high
    return optimize.brentq(
        lambda a: _phi(a) - ratio, low, high, xtol=1e-14, rtol=1e-14, maxiter=200
    )


def _aggd(x: np.ndarray) -> tuple[float, float, float, float]:
    """(alpha, eta, sigma_left, sigma_right) by moment matching; NaN without two sides."""
    x = x.ravel()
    left, right = x[x < 0], x[x >= 0]
    if left.size == 0 or right.size == 0:
        return (math.nan,) * 4
    sigma_l, sigma_r = math.sqrt(np.mean(left * left)), math.sqrt(np.mean(right * right))
    if sigma_l == 0.0 or sigma_r == 0.0:
        return (math.nan,) * 4
    g = sigma_l / sigma_r
    r_hat = np.mean(np.abs(x)) ** 2 / np.mean(x * x)
    alpha = _shape(float(r_hat * (g**3 + 1.0) * (g + 1.0) / (g**2 + 1.0) ** 2))
    eta = (sigma_r - sigma_l) * math.exp(
        special.gammaln(2.0 / alpha)
        - 0.5 * (special.gammaln(1.0 / alpha) + special.gammaln(3.0 / alpha))
    )
    return alpha, eta, sigma_l, sigma_r


def _scale_features(image: np.ndarray) -> list[float]:
    m = _mscn(image)
    alpha, _, sigma_l, sigma_r = _aggd(m)
    features = [alpha, 0.5 * (sigma_l**2 + sigma_r**2)]
    for product in (
        m[:, :-1] * m[:, 1:],
        m[:-1] * m[1:],
        m[:-1, :-1] * m[1:, 1:],
        m[1:, :-1] * m[:-1, 1:],
    ):
        alpha, eta, sigma_l, sigma_r = _aggd(product)
        features += [alpha, eta, sigma_l**2, sigma_r**2]
    return features


HALF_WAY_CUBIC = np.array([-0.09375, 0.59375, 0.59375, -0.09375])
"""Keys (a = -0.75) weights of the taps around a sample half-way between two pixels."""


def _halve_axis(image: np.ndarray, axis: int) -> np.ndarray:
    n = image.shape[axis]
    # Output pixel j samples the input at 2j + 0.5: taps 2j-1 .. 2j+2, edges replicated.
    base = 2 * np.arange(max(1, round(n * 0.5)))  # round() is half-even, like OpenCV's
    taps = np.clip(base[:, None] + np.arange(-1, 3)[None, :], 0, n - 1)
    moved = np.moveaxis(image, axis, 0)
    return np.moveaxis(np.tensordot(HALF_WAY_CUBIC, moved[taps.T], axes=(0, 0)), 0, axis)


def brisque_features(image: np.ndarray) -> np.ndarray:
    """The 36 raw features of an (H, W) image on the [0, 1] scale (float64)."""
    image = np.asarray(image, np.float64)
    if image.ndim != 2 or min(image.shape) < MIN_SIDE_PX:
        raise ValueError(f"BRISQUE needs an (H, W) image of at least 8 x 8 px, got {image.shape}")
    if not np.isfinite(image).all():
        raise ValueError("BRISQUE needs a finite image: crop or fill the pixels without data")
    half = _halve_axis(_halve_axis(image, 1), 0)
    return np.array(_scale_features(image) + _scale_features(half))


def brisque_score(image: np.ndarray, model: BrisqueModel | None = None) -> float:
    """BRISQUE of an (H, W) image on the [0, 1] scale (lower is better); NaN for an image
    without texture (its statistics do not exist). Default model: :func:`live_model`."""
    features = brisque_features(image)
    if not np.isfinite(features).all():
        return math.nan
    return (model or live_model()).predict(features)
