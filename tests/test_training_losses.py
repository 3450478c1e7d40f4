"""The training objective (tamrf_xr.training.losses), each rule on a case whose answer is
derived by hand and which fails if that rule is wrong."""

from __future__ import annotations

import pytest
import torch

from tamrf_xr.training.losses import (
    LossConfig,
    SensorTargets,
    contrastive_term,
    data_term,
    nearest_clear_positive,
    sample_loss,
)

BETA = 0.1


def smooth_l1(x: float) -> float:
    x = abs(x)
    return 0.5 * x * x / BETA if x < BETA else x - 0.5 * BETA


# -- data term ----------------------------------------------------------------------------------


def test_data_term_is_one_mean_over_every_remaining_element() -> None:
    """Date A: 100 clear pixels off by 0.05; date B: 50 clear pixels off by 0.2. One mean over
    the 150 x 2 elements, not the mean of the two dates' means."""
    reference = torch.zeros(2, 2, 10, 10)
    prediction = torch.zeros(2, 2, 10, 10)
    prediction[0] += 0.05
    prediction[1] += 0.2
    clear = torch.ones(2, 10, 10, dtype=torch.bool)
    clear[1, 5:] = False  # date B: half clear (0.5: kept, the rule drops strictly below)
    expected = (200 * smooth_l1(0.05) + 100 * smooth_l1(0.2)) / 300
    got = data_term(prediction, reference, clear, crop_px=0)
    assert got.item() == pytest.approx(expected, rel=1e-6)
    assert expected != pytest.approx((smooth_l1(0.05) + smooth_l1(0.2)) / 2)


def test_data_term_crops_first_then_drops_dates_under_half_clear_inside_the_crop() -> None:
    reference = torch.zeros(2, 1, 20, 20)
    prediction = torch.zeros(2, 1, 20, 20)
    prediction[:, :, :3] = 5.0  # errors in the 3 px border only
    prediction[1] += 0.05
    clear = torch.ones(2, 20, 20, dtype=torch.bool)
    # Date 0 is clear only in its border: 0 % inside the crop -> dropped; otherwise its
    # border errors would count.
    clear[0, 3:17, 3:17] = False
    got = data_term(prediction, reference, clear, crop_px=3)
    assert got.item() == pytest.approx(smooth_l1(0.05), rel=1e-6)
    # 97 of 196 inner pixels clear (49.5 %): strictly below one half, dropped too.
    inner = torch.zeros(196, dtype=torch.bool)
    inner[:97] = True
    clear[1] = False
    clear[1, 3:17, 3:17] = inner.reshape(14, 14)
    assert data_term(prediction, reference, clear, crop_px=3) is None


# -- contrastive term ---------------------------------------------------------------------------


def test_nearest_clear_positive_rules() -> None:
    days = torch.tensor([0.0, 10.0, 20.0, 25.0, 45.0])
    clear = torch.zeros(5, 1, 4, dtype=torch.bool)
    clear[[0, 2], 0, 0] = True  # pixel 0: clear at days 0 and 20, equidistant from 10
    clear[3, 0, 1] = True  # pixel 1: clear at day 25 only
    clear[0, 0, 2] = True  # pixel 2: clear at day 0 only
    clear[[1, 3], 0, 3] = True  # pixel 3: clear at days 10 and 25
    positive = nearest_clear_positive(clear, days, 20.0)
    assert positive[1, 0, 0] == 0, "a tie goes to the earlier date"
    assert positive[1, 0, 1] == 3, "15 days: within 20"
    assert positive[2, 0, 2] == -1, "20 days is not strictly less than 20"
    assert positive[4, 0, 1] == -1, "45 - 25 = 20 days: not strictly less than 20"
    assert positive[3, 0, 3] == 1, "a date's own clear pixel is never its positive"
    assert positive[2, 0, 3] == 3, "20 -> 25 (5 days) beats 20 -> 10 (10 days)"


def test_triplet_loss_with_swap_by_hand() -> None:
    days = torch.tensor([0.0, 5.0])
    clear = torch.tensor([[[False, False]], [[True, True]]])  # cloudy at day 0, clear at day 5
    # Pixel 0: a = 0, p = 1, n = 0.5 -> |a - p| = 1, min(|a - n|, |p - n|) = 0.5: 0.5 + 1e-5.
    # Pixel 1: a = 0, p = 0.1, n = 1 -> 0.1 - min(1, 0.9) < 0 -> 0 (the swap uses 0.9).
    reference = torch.tensor([[[[0.5, 1.0]]], [[[1.0, 0.1]]]])  # (t, c=1, h=1, w=2)
    degraded = torch.zeros(2, 1, 1, 2)
    got = contrastive_term(degraded, reference, clear, days, [0])
    pixel0 = (1.0 - 1e-6) - (0.5 + 1e-6) + 1e-5  # d(x, y) = |x - y + 1e-6|
    assert got.item() == pytest.approx((pixel0 + 0.0) / 2, rel=1e-5)
    # The swap decides: n = 0.12 is close to p = 0.1, so min(d(a, n), d(p, n)) = 0.02, and
    # pixel 1 now counts (without the swap, 0.1 - 0.12 < 0 would leave it at 0).
    reference[0, 0, 0, 1] = 0.12
    got = contrastive_term(degraded, reference, clear, days, [0])
    pixel1 = (0.1 - 1e-6) - (0.02 - 1e-6) + 1e-5
    assert got.item() == pytest.approx((pixel0 + pixel1) / 2, rel=1e-4)


def test_contrastive_term_ignores_clear_and_no_data_pixels_and_excluded_bands() -> None:
    days = torch.tensor([0.0, 5.0])
    clear = torch.tensor([[[True, False]], [[True, True]]])
    reference = torch.tensor(
        [[[[0.0, float("nan")]], [[0.0, 0.0]]], [[[1.0, 1.0]], [[9.0, 9.0]]]]
    )  # fmt: skip  (t, c=2, 1, 2)
    degraded = torch.zeros(2, 2, 1, 2)
    # Pixel 0 is clear (no sample); pixel 1 has no data in band 0 at day 0 (no sample).
    assert contrastive_term(degraded, reference, clear, days, [0]) is None
    reference[0, 0, 0, 1] = 0.5
    only_band0 = contrastive_term(degraded, reference, clear, days, [0])
    assert only_band0.item() == pytest.approx((1 - 1e-6) - (0.5 + 1e-6) + 1e-5, rel=1e-5)


# -- the total ----------------------------------------------------------------------------------


def _targets(t: int, c: int, size: int, days, masked) -> SensorTargets:
    return SensorTargets(
        values=torch.zeros(t, c, size, size),
        clear=torch.ones(t, size, size, dtype=torch.bool),
        days=torch.tensor(days, dtype=torch.float32),
        masked=torch.tensor(masked),
    )


def test_weights_per_sensor_and_split_and_the_mae_half() -> None:
    """3 S2 dates (2 clr, 1 mae) and 1 Landsat date (mae), all clear, every prediction off by
    a constant e: every data term is smooth_l1(e) (a constant survives degradation), every
    contrastive term is absent (no cloud). clr = (2/4) s; mae = (1/4) s + (1/4) s_ls where the
    Landsat mae term leaves LST out (its error there does not count)."""
    config = LossConfig(s2_crop_px=0, landsat_crop_px=0)
    s2 = _targets(3, 10, 30, [0.0, 10.0, 20.0], [False, False, True])
    landsat = _targets(1, 8, 10, [5.0], [True])
    query_days = torch.tensor([0.0, 5.0, 10.0, 20.0])
    prediction = torch.full((4, 18, 30, 30), 0.03)
    prediction[:, 7] = 0.5  # LST: a large error that the mae term must ignore
    parts = sample_loss(prediction, query_days, s2, landsat, config)
    s = smooth_l1(0.03)
    assert parts["clr"].item() == pytest.approx(2 / 4 * s, rel=1e-5)
    assert parts["mae"].item() == pytest.approx(1 / 4 * s + 1 / 4 * s, rel=1e-5)
    assert parts["total"].item() == pytest.approx(parts["clr"].item() + 0.5 * parts["mae"].item())
    assert "mae/landsat/contrastive" not in parts and "mae/landsat/data" in parts
    # In clr, LST counts: one clr Landsat date makes the LST error appear.
    landsat.masked[:] = False
    parts = sample_loss(prediction, query_days, s2, landsat, config)
    with_lst = (7 * s + smooth_l1(0.5)) / 8
    assert parts["clr"].item() == pytest.approx(2 / 4 * s + 1 / 4 * with_lst, rel=1e-5)


def test_the_loss_has_gradients_for_the_prediction() -> None:
    s2 = _targets(2, 10, 60, [0.0, 10.0], [True, True])
    # Half cloudy on day 10: its positive is day 0, in the same (mae) split.
    s2.clear[1, :30] = False
    s2.values[1, :, :30] = 2.0
    landsat = _targets(1, 8, 20, [5.0], [False])
    # Near the cloud (2.0): the anchor is closer to the negative than to the positive (0).
    prediction = torch.full((3, 18, 60, 60), 1.5, requires_grad=True)
    parts = sample_loss(prediction, torch.tensor([0.0, 5.0, 10.0]), s2, landsat)
    assert parts["mae/sentinel-2/contrastive"].item() > 1.0
    parts["total"].backward()
    assert prediction.grad is not None and prediction.grad.abs().sum() > 0
