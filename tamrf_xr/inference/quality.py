"""Per-pixel quality layers: how well each prediction is supported by clear observations."""

from __future__ import annotations

import numpy as np

__all__ = [
    "NO_CLEAR_OBSERVATION",
    "QUALITY_ATTRS",
    "QUALITY_VARIABLES",
    "clear_count",
    "days_to_nearest_clear",
]

NO_CLEAR_OBSERVATION = -1
"""``days_to_nearest_clear`` where a pixel has no clear observation at all."""

QUALITY_VARIABLES: dict[str, tuple[str, ...]] = {
    "s2_days_to_clear": ("time", "y", "x"),
    "landsat_days_to_clear": ("time", "y", "x"),
    "s2_clear_count": ("y", "x"),
    "landsat_clear_count": ("y", "x"),
}
"""The per-pixel quality layers (int16) beside every prediction, and their dimensions."""

QUALITY_ATTRS: dict[str, dict[str, str]] = {
    "s2_days_to_clear": {
        "long_name": "days from the output date to the nearest clear Sentinel-2 observation",
        "units": "days",
        "comment": "-1: no clear Sentinel-2 observation at all",
    },
    "landsat_days_to_clear": {
        "long_name": "days from the output date to the nearest clear Landsat observation",
        "units": "days",
        "comment": "-1: no clear Landsat observation at all",
    },
    "s2_clear_count": {"long_name": "number of clear Sentinel-2 observations", "units": "1"},
    "landsat_clear_count": {"long_name": "number of clear Landsat observations", "units": "1"},
}
"""CF attributes of the quality layers."""


def days_to_nearest_clear(
    valid: np.ndarray, observation_days: np.ndarray, query_days: np.ndarray
) -> np.ndarray:
    """Days from each query date to the nearest clear observation of each pixel.

    Args:
        valid: (t, H, W) bool, clear observations.
        observation_days: (t,) days of the observations.
        query_days: (t_q,) days of the queries (same origin).

    Returns:
        (t_q, H, W) int16 absolute distance in days (capped at 32767);
        :data:`NO_CLEAR_OBSERVATION` where the pixel is never clear.
    """
    t_q = len(query_days)
    shape = valid.shape[-2:]
    if valid.shape[0] == 0:
        return np.full((t_q, *shape), NO_CLEAR_OBSERVATION, np.int16)
    days = np.asarray(observation_days, np.float64)[:, None, None]
    out = np.empty((t_q, *shape), np.int16)
    for k, query in enumerate(np.asarray(query_days, np.float64)):
        distance = np.where(valid, np.abs(days - query), np.inf).min(axis=0)
        out[k] = np.where(
            np.isfinite(distance), np.minimum(np.rint(distance), 32767), NO_CLEAR_OBSERVATION
        )
    return out


def clear_count(valid: np.ndarray) -> np.ndarray:
    """(t, H, W) bool -> (H, W) int16 number of clear observations."""
    return valid.sum(axis=0, dtype=np.int32).clip(max=32767).astype(np.int16)
