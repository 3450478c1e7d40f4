"""The spec's masking strategies: which input dates a sample hides from the model.

One function, :func:`masked_dates`, with the spec's semantics (days since the start of the
sample's window, 0..364):

- ``RANDOM``: ``ceil(n * r)`` dates of each sensor, drawn independently per sensor;
- ``GAPS``: every date of both sensors strictly inside ``(d, d + g)`` for ``d = g, 3g, 5g, ...
  < 365`` (boundary days stay inputs);
- ``NOHR``: all Sentinel-2 dates (no high resolution); ``NOLR``: all Landsat dates;
- ``FORECAST``: every date after ``s`` (``s`` itself stays an input);
- ``BACKCAST``: every date before ``s`` (``s`` itself stays an input).

The evaluation's gap-filling task is ``GAPS`` with ``g = 30``.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["STRATEGIES", "masked_dates"]

STRATEGIES = ("RANDOM", "GAPS", "NOHR", "NOLR", "FORECAST", "BACKCAST")
WINDOW_DAYS = 365


def masked_dates(
    strategy: str,
    s2_days: np.ndarray,
    landsat_days: np.ndarray,
    *,
    rate: float | None = None,
    gap_days: int | None = None,
    split_day: float | None = None,
    rng: np.random.Generator | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Boolean masks (True = hidden from the model) of the S2 and Landsat dates.

    Args:
        strategy: one of :data:`STRATEGIES`.
        s2_days, landsat_days: (t_s,), (t_l,) days since the window start.
        rate: RANDOM's fraction ``r`` (drawn from U(0.2, 0.7) with ``rng`` when None).
        gap_days: GAPS' ``g`` (drawn from U{30..90} when None).
        split_day: FORECAST's / BACKCAST's ``s`` (drawn from U{65..300} when None).
        rng: random draws (default: seeded with 42, the spec's seed).

    Raises:
        ValueError: an unknown strategy or a parameter out of its range.
    """
    s2 = np.asarray(s2_days, dtype=np.float64)
    landsat = np.asarray(landsat_days, dtype=np.float64)
    rng = rng or np.random.default_rng(42)
    if strategy == "RANDOM":
        r = rng.uniform(0.2, 0.7) if rate is None else rate
        if not 0.0 <= r <= 1.0:
            raise ValueError(f"RANDOM rate {r} must be in [0, 1]")

        def drop(days: np.ndarray) -> np.ndarray:
            mask = np.zeros(len(days), bool)
            mask[rng.choice(len(days), size=math.ceil(len(days) * r), replace=False)] = True
            return mask

        return drop(s2), drop(landsat)
    if strategy == "GAPS":
        g = int(rng.integers(30, 91)) if gap_days is None else gap_days
        if g < 1:
            raise ValueError(f"GAPS gap {g} must be at least 1 day")
        starts = np.arange(g, WINDOW_DAYS, 2 * g)

        def inside(days: np.ndarray) -> np.ndarray:
            return ((days[:, None] > starts) & (days[:, None] < starts + g)).any(axis=1)

        return inside(s2), inside(landsat)
    if strategy == "NOHR":
        return np.ones(len(s2), bool), np.zeros(len(landsat), bool)
    if strategy == "NOLR":
        return np.zeros(len(s2), bool), np.ones(len(landsat), bool)
    if strategy in ("FORECAST", "BACKCAST"):
        s = float(rng.integers(65, 301)) if split_day is None else split_day
        if strategy == "FORECAST":
            return s2 > s, landsat > s
        return s2 < s, landsat < s
    raise ValueError(f"unknown masking strategy {strategy!r}: use one of {', '.join(STRATEGIES)}")
