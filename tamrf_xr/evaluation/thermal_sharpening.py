"""The DMS-style thermal-sharpening baseline (a regression tree, as in Gao et al. 2012).

Landsat LST at 30 m is regressed on Sentinel-2 reflectances aggregated to 30 m (the mean of
each 3 x 3 block of 10 m pixels: B2, B3, B4, B8 of the nearest clear S2 date, as the spec's
baseline), with a scikit-learn decision tree; the tree is then applied to the 10 m
reflectances. With residual correction, each 30 m pixel's residual (observed LST minus the
mean of its nine 10 m predictions) is added back to its nine pixels, so the sharpened LST
averages back to the observation exactly.
"""

from __future__ import annotations

import numpy as np

__all__ = ["dms_thermal_sharpening"]


def _blocks(array: np.ndarray) -> np.ndarray:
    """(..., 3h, 3w) -> (..., h, w) mean of each 3 x 3 block."""
    *lead, H, W = array.shape
    return array.reshape(*lead, H // 3, 3, W // 3, 3).mean(axis=(-3, -1))


def dms_thermal_sharpening(
    lst: np.ndarray,
    lst_clear: np.ndarray,
    predictors: np.ndarray,
    predictors_clear: np.ndarray,
    residual_correction: bool = True,
    min_samples_leaf: int = 5,
    seed: int = 0,
) -> np.ndarray:
    """LST at 10 m from LST at 30 m and 10 m reflectances.

    Args:
        lst: (h, w) Kelvin at 30 m.
        lst_clear: (h, w) bool: pixels to learn from (and to correct).
        predictors: (p, 3h, 3w) 10 m reflectances (e.g. S2 B2, B3, B4, B8).
        predictors_clear: (3h, 3w) bool.
        residual_correction: add each 30 m pixel's residual back to its nine pixels.
        min_samples_leaf, seed: the tree's regularisation and random state.

    Returns:
        (3h, 3w) float32 Kelvin; NaN where the predictors are not clear.

    Raises:
        ValueError: shapes that do not nest, or fewer than 10 clear 30 m pixels to learn from.
    """
    from sklearn.tree import DecisionTreeRegressor

    lst = np.asarray(lst, np.float64)
    predictors = np.asarray(predictors, np.float64)
    h, w = lst.shape
    if predictors.ndim != 3 or predictors.shape[1:] != (3 * h, 3 * w):
        raise ValueError(
            f"predictors must be (p, {3 * h}, {3 * w}) for LST of {h} x {w}; got {predictors.shape}"
        )
    fine_ok = np.asarray(predictors_clear, bool) & np.isfinite(predictors).all(axis=0)
    coarse = _blocks(predictors)  # (p, h, w)
    all_fine_ok = _blocks(fine_ok.astype(np.float64)) == 1.0
    train = np.asarray(lst_clear, bool) & np.isfinite(lst) & all_fine_ok
    if train.sum() < 10:
        raise ValueError(f"only {int(train.sum())} clear 30 m pixels to learn from (need 10)")
    tree = DecisionTreeRegressor(min_samples_leaf=min_samples_leaf, random_state=seed)
    tree.fit(coarse[:, train].T, lst[train])
    features = np.where(fine_ok, predictors, 0.0).reshape(len(predictors), -1).T
    sharp = tree.predict(features).reshape(3 * h, 3 * w)
    if residual_correction:
        residual = np.where(train, lst - _blocks(sharp), 0.0)
        sharp = sharp + residual.repeat(3, axis=0).repeat(3, axis=1)
    return np.where(fine_ok, sharp, np.nan).astype(np.float32)
