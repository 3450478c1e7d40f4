"""The spec's training objective (masked auto-encoder), term by term, on tensors.

All on STANDARDISED values, for one sample (batch size 1). Every target date of a sensor is
``clr`` (it was also an input) or ``mae`` (it was masked). For each sensor and split:
``w = (the sensor's target dates in the split) / (all Landsat + all S2 target dates)``;
``split loss = sum over sensors of w * (data + contrastive [+ LPIPS for S2])``;
``total = clr + 0.5 * mae``. A missing term adds 0 (no renormalisation).

- :func:`data_term`: the prediction degraded to the sensor's grid FIRST
  (:func:`~tamrf_xr.evaluation.degradation.degrade_tensor`), then a border of 27 px (S2,
  10 m) / 9 px (Landsat, 30 m) cropped from prediction and reference, the clear mask applied,
  every date whose clear fraction inside the crop is strictly below 0.5 dropped, and one
  smooth-L1 (beta 0.1) mean over every remaining date, band and pixel of the split. LST is
  left out of the Landsat ``mae`` data term (kept in ``clr``).
- :func:`contrastive_term`: at every pixel CLOUDY in the reference (it has data but is not
  clear; no clear-fraction rule), each band a 1-D sample: anchor = the degraded prediction,
  positive = the observation at the nearest date of the same split where that pixel is clear,
  strictly less than 20 days away (ties: the earlier date), negative = the cloudy observation;
  ``d(x, y) = |x - y + 1e-6|``, loss ``max(d(a, p) - min(d(a, n), d(p, n)) + 1e-5, 0)``
  (the "swap": the smaller of the two negative distances), averaged. LST always excluded.
  The spec crops the data term only; this term uses the whole patch.
- The LPIPS-style term (:mod:`tamrf_xr.training.lpips`) joins the S2 terms when its weights
  are given.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F  # noqa: N812 - the PyTorch convention
from torch import Tensor

from tamrf_xr.evaluation.degradation import degrade_tensor

__all__ = [
    "LossConfig",
    "SensorTargets",
    "contrastive_term",
    "data_term",
    "nearest_clear_positive",
    "sample_loss",
]

LST_CHANNEL = 7
"""LST's channel among the 8 Landsat channels."""


@dataclass(frozen=True)
class LossConfig:
    """The objective's constants (defaults: the spec's)."""

    s2_crop_px: int = 27
    landsat_crop_px: int = 9
    min_clear_fraction: float = 0.5
    smooth_l1_beta: float = 0.1
    positive_max_days: float = 20.0
    mae_weight: float = 0.5


@dataclass
class SensorTargets:
    """One sensor's target dates (every date of the sample), on its own grid.

    Attributes:
        values: (t, c, h, w) standardised observations (NaN where there is no data).
        clear: (t, h, w) bool, clear pixels.
        days: (t,) days since the window start.
        masked: (t,) bool: hidden from the model (``mae``) or an input (``clr``).
    """

    values: Tensor
    clear: Tensor
    days: Tensor
    masked: Tensor

    def split(self, name: str) -> Tensor:
        """(t,) bool: the dates of split ``clr`` or ``mae``."""
        return self.masked if name == "mae" else ~self.masked


def _crop(x: Tensor, px: int) -> Tensor:
    return x[..., px : x.shape[-2] - px, px : x.shape[-1] - px] if px else x


def data_term(
    degraded: Tensor,
    reference: Tensor,
    clear: Tensor,
    crop_px: int,
    config: LossConfig = LossConfig(),
) -> Tensor | None:
    """Smooth-L1 data term of one sensor and split.

    Args:
        degraded: (t, c, h, w) prediction already degraded to the reference grid.
        reference: (t, c, h, w) observations; clear (t, h, w) bool.
        crop_px: border cropped on every side (reference-grid pixels).

    Returns:
        The mean over every remaining (date, band, pixel), or None when nothing remains.
    """
    prediction, reference, clear = (_crop(x, crop_px) for x in (degraded, reference, clear))
    if clear.numel() == 0:
        return None
    fraction = clear.flatten(1).float().mean(dim=1)
    kept = fraction >= config.min_clear_fraction  # "strictly below 0.5" is dropped
    mask = (clear & kept[:, None, None])[:, None].expand_as(prediction)
    if not mask.any():
        return None
    return F.smooth_l1_loss(prediction[mask], reference[mask], beta=config.smooth_l1_beta)


def nearest_clear_positive(clear: Tensor, days: Tensor, max_days: float) -> Tensor:
    """For every (date, pixel): the index of the nearest OTHER date where the pixel is
    clear, strictly less than ``max_days`` away, the earlier date on ties; -1 for none.

    Args:
        clear: (t, h, w) bool; days: (t,).

    Returns:
        (t, h, w) int64.
    """
    t = len(days)
    if t == 0:
        return torch.zeros(clear.shape, dtype=torch.int64, device=clear.device)
    d = days.to(torch.float64)
    distance = (d[None, :] - d[:, None]).abs()  # (target t, candidate u)
    # Order by distance, then earlier before later: key = 2 * distance + (u after t).
    key = 2.0 * distance + (d[None, :] > d[:, None]).to(torch.float64)
    allowed = (distance < max_days) & ~torch.eye(t, dtype=torch.bool, device=clear.device)
    keys = torch.where(
        allowed[:, :, None, None] & clear[None], key[:, :, None, None], torch.inf
    )  # (t, u, h, w)
    best, index = keys.min(dim=1)
    return torch.where(torch.isfinite(best), index, torch.full_like(index, -1))


def contrastive_term(
    degraded: Tensor,
    reference: Tensor,
    clear: Tensor,
    days: Tensor,
    bands: list[int],
    config: LossConfig = LossConfig(),
) -> Tensor | None:
    """Mask-contrastive (triplet) term of one sensor and split.

    Args:
        degraded: (t, c, h, w) degraded prediction; reference (t, c, h, w) observations
            (NaN without data); clear (t, h, w); days (t,) of the split's dates only.
        bands: the channels that take part (LST excluded by the caller).

    Returns:
        The mean over every (date, cloudy pixel with a positive, band), or None.
    """
    has_data = torch.isfinite(reference[:, bands]).all(dim=1)
    cloudy = has_data & ~clear
    positive = nearest_clear_positive(clear & has_data, days, config.positive_max_days)
    usable = cloudy & (positive >= 0)
    if not usable.any():
        return None
    t_index, rows, cols = usable.nonzero(as_tuple=True)
    u_index = positive[t_index, rows, cols]
    channels = torch.tensor(bands, device=reference.device)
    a = degraded[t_index[:, None], channels[None], rows[:, None], cols[:, None]]
    n = reference[t_index[:, None], channels[None], rows[:, None], cols[:, None]]
    p = reference[u_index[:, None], channels[None], rows[:, None], cols[:, None]]

    def distance(x: Tensor, y: Tensor) -> Tensor:
        return (x - y + 1e-6).abs()

    loss = distance(a, p) - torch.minimum(distance(a, n), distance(p, n)) + 1e-5
    return loss.clamp(min=0.0).mean()


def _rows(prediction: Tensor, query_days: Tensor, days: Tensor) -> Tensor:
    """The prediction's rows at ``days`` (each one of the query days)."""
    index = (days[:, None] == query_days[None, :]).to(torch.int64).argmax(dim=1)
    return prediction[index]


SENSORS = ("landsat", "sentinel-2")
Extra = Callable[[str, Tensor, SensorTargets, Tensor], Tensor | None]
"""(split, the prediction at the split's S2 dates (t, 18, H, W, not degraded), S2 targets,
the split's dates mask) -> an extra S2 term (the LPIPS-style term) or None."""


def sample_loss(
    prediction: Tensor,
    query_days: Tensor,
    s2: SensorTargets,
    landsat: SensorTargets,
    config: LossConfig = LossConfig(),
    s2_extra: Extra | None = None,
) -> dict[str, Tensor]:
    """The total loss of one sample and its parts.

    Args:
        prediction: (q, 18, H, W) standardised model output on ``query_days`` (q,), which
            hold every target date of both sensors.
        s2: S2 targets at 10 m (t_s, 10, H, W); landsat: Landsat targets (t_l, 8, H/3, W/3).
        s2_extra: an extra S2 term per split (the LPIPS-style term), weighted like the rest.

    Returns:
        ``total``, ``clr``, ``mae`` and every ``<split>/<sensor>/<term>`` that exists
        (unweighted), as 0-d tensors.
    """
    total_dates = len(s2.days) + len(landsat.days)
    zero = prediction.sum() * 0.0  # keeps the graph (and the device) when a term is missing
    parts: dict[str, Tensor] = {}
    degraded = {
        "sentinel-2": degrade_tensor(_rows(prediction, query_days, s2.days)[:, 8:], "sentinel-2")
        if len(s2.days)
        else None,
        "landsat": degrade_tensor(_rows(prediction, query_days, landsat.days)[:, :8], "landsat")
        if len(landsat.days)
        else None,
    }
    for split in ("clr", "mae"):
        split_loss = zero
        for sensor, targets in (("sentinel-2", s2), ("landsat", landsat)):
            selected = targets.split(split)
            count = int(selected.sum())
            if count == 0:
                continue
            pred = degraded[sensor][selected]
            ref, clear = targets.values[selected], targets.clear[selected]
            crop = config.s2_crop_px if sensor == "sentinel-2" else config.landsat_crop_px
            channels = list(range(ref.shape[1]))
            no_lst = [c for c in channels if not (sensor == "landsat" and c == LST_CHANNEL)]
            data_channels = no_lst if split == "mae" else channels
            # NaN (no data) is never clear: it cannot reach the smooth L1.
            clear_data = clear & torch.isfinite(ref).all(dim=1)
            terms = {
                "data": data_term(
                    pred[:, data_channels], ref[:, data_channels], clear_data, crop, config
                ),
                "contrastive": contrastive_term(
                    pred, ref, clear_data, targets.days[selected], no_lst, config
                ),
            }
            if sensor == "sentinel-2" and s2_extra is not None:
                s2_rows = _rows(prediction, query_days, s2.days)  # all 18 channels
                terms["lpips"] = s2_extra(split, s2_rows[selected], targets, selected)
            weight = count / total_dates
            for name, value in terms.items():
                if value is not None:
                    parts[f"{split}/{sensor}/{name}"] = value
                    split_loss = split_loss + weight * value
        parts[split] = split_loss
    parts["total"] = parts["clr"] + config.mae_weight * parts["mae"]
    return parts
