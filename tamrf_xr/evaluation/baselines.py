"""Simple baselines of the evaluation, run on the same inputs as TAMRF.

- :func:`linear_temporal_interpolation`: per pixel, linear in time between the nearest clear
  observations before and after each query date (the nearest one beyond the series' ends);
- :func:`bicubic_upsampling`: Landsat (30 m) or S2 20 m bands to 10 m, PyTorch's bicubic
  (``tamrf_xr.resample.upsample_bicubic``);
- :func:`starfm_fusion`: the nearest clear S2 date plus the Landsat change between dates.

Shapes: dates ``t``, queries ``q``, bands ``b``, rows ``h``, columns ``w``.
"""

from __future__ import annotations

import numpy as np

from tamrf_xr.resample import upsample_bicubic

__all__ = ["S2_TO_LANDSAT", "bicubic_upsampling", "linear_temporal_interpolation", "starfm_fusion"]


def linear_temporal_interpolation(
    values: np.ndarray, clear: np.ndarray, days: np.ndarray, query_days: np.ndarray
) -> np.ndarray:
    """Per-pixel linear interpolation in time of clear observations.

    Args:
        values: (t, b, h, w) observations, dates sorted by ``days``.
        clear: (t, h, w) bool: which observations may be used.
        days: (t,) increasing days.
        query_days: (q,) days to predict.

    Returns:
        (q, b, h, w) float32: between two clear dates, the linear interpolation; before the
        first or after the last clear date, that date's value; NaN where a pixel has no clear
        date at all.
    """
    values = np.asarray(values, np.float32)
    # A pixel counts where it holds data (a band never observed stays NaN in the estimate).
    clear = np.asarray(clear, bool) & np.isfinite(values).any(axis=1)
    days = np.asarray(days, np.float64)
    if values.ndim != 4 or clear.shape != (values.shape[0], *values.shape[2:]):
        raise ValueError(f"values must be (t, b, h, w) and clear (t, h, w); got {values.shape}, "
                         f"{clear.shape}")  # fmt: skip
    if np.any(np.diff(days) < 0):
        raise ValueError("days must be sorted in increasing order")
    t = len(days)
    index = np.arange(t)[:, None, None]
    # Per pixel: the last clear date up to each date, the first clear date from each date.
    last = np.maximum.accumulate(np.where(clear, index, -1), axis=0)
    first = np.minimum.accumulate(np.where(clear, index, t)[::-1], axis=0)[::-1]
    out = np.full((len(query_days), *values.shape[1:]), np.nan, np.float32)
    rows, cols = np.indices(values.shape[2:])
    for k, day in enumerate(np.asarray(query_days, np.float64)):
        at = np.searchsorted(days, day, side="right") - 1  # last date <= day
        before = last[at] if at >= 0 else np.full(values.shape[2:], -1)
        after = first[at + 1] if at + 1 < t else np.full(values.shape[2:], t)
        if at >= 0 and days[at] == day:  # a clear date on the query day is used as is
            after = np.where(clear[at], at, after)
        has_before, has_after = before >= 0, after < t
        b = np.clip(before, 0, t - 1)
        a = np.clip(after, 0, t - 1)
        v_before = values[b, :, rows, cols].transpose(2, 0, 1)  # (b, h, w)
        v_after = values[a, :, rows, cols].transpose(2, 0, 1)
        span = days[a] - days[b]
        with np.errstate(invalid="ignore", divide="ignore"):
            weight = np.where(span > 0, (day - days[b]) / span, 0.0)
        both = has_before & has_after
        estimate = np.where(both, v_before + weight * (v_after - v_before), np.nan)
        estimate = np.where(has_before & ~has_after, v_before, estimate)
        estimate = np.where(~has_before & has_after, v_after, estimate)
        out[k] = estimate
    return out


def bicubic_upsampling(values: np.ndarray, factor: int) -> np.ndarray:
    """(..., h, w) -> (..., factor h, factor w) float32, bicubic (a = -0.75)."""
    return upsample_bicubic(np.asarray(values, np.float32), factor)


S2_TO_LANDSAT = {
    "S2_B2": "LS_B2", "S2_B3": "LS_B3", "S2_B4": "LS_B4", "S2_B5": "LS_B5", "S2_B6": "LS_B5",
    "S2_B7": "LS_B5", "S2_B8": "LS_B5", "S2_B8A": "LS_B5", "S2_B11": "LS_B6", "S2_B12": "LS_B7",
}  # fmt: skip
"""The Landsat band whose change stands for each S2 band's (red-edge and NIR: Landsat NIR)."""


def starfm_fusion(
    s2: np.ndarray,
    s2_clear: np.ndarray,
    s2_days: np.ndarray,
    landsat: np.ndarray,
    landsat_clear: np.ndarray,
    landsat_days: np.ndarray,
    target_day: float,
) -> np.ndarray:
    """STARFM-style fusion: S2 at ``target_day`` = the nearest clear S2 observation (per
    pixel, in time) + the Landsat change from that date to the target, upsampled to 10 m.

    Landsat on the S2 base date and on the target day comes from
    :func:`linear_temporal_interpolation` of its clear pixels (the sensors rarely share a
    day); each S2 band takes the change of the Landsat band of :data:`S2_TO_LANDSAT`.

    Args:
        s2: (t_s, 10, H, W) S2 reflectance at 10 m; s2_clear (t_s, H, W); s2_days (t_s,).
        landsat: (t_l, 8, H/3, W/3) at 30 m; landsat_clear (t_l, H/3, W/3); landsat_days.
        target_day: the day to predict.

    Returns:
        (10, H, W) float32, NaN where no S2 or Landsat pixel was ever clear.
    """
    from tamrf_xr.bands import LANDSAT_BANDS, S2_BANDS

    s2 = np.asarray(s2, np.float32)
    s2_clear = np.asarray(s2_clear, bool) & np.isfinite(s2).any(axis=1)
    s2_days = np.asarray(s2_days, np.float64)
    distance = np.where(s2_clear, np.abs(s2_days - target_day)[:, None, None], np.inf)
    base = np.argmin(distance, axis=0)  # (H, W): the nearest clear S2 date per pixel
    observed = np.isfinite(np.min(distance, axis=0))
    rows, cols = np.indices(base.shape)
    base_values = s2[base, :, rows, cols].transpose(2, 0, 1)  # (10, H, W)
    landsat_index = [[b.name for b in LANDSAT_BANDS].index(S2_TO_LANDSAT[s.name])
                     for s in S2_BANDS]  # fmt: skip
    at_target = linear_temporal_interpolation(landsat, landsat_clear, landsat_days,
                                              np.array([target_day]))[0]  # fmt: skip
    at_bases = linear_temporal_interpolation(landsat, landsat_clear, landsat_days, s2_days)
    change = bicubic_upsampling(at_target[None] - at_bases, 3)  # (t_s, 8, H, W)
    change_at_base = change[base, :, rows, cols].transpose(2, 0, 1)[landsat_index]
    return np.where(observed, base_values + change_at_base, np.nan).astype(np.float32)
