"""The evaluation protocols, scoring and datasets (tamrf_xr.evaluation) on a tiny simulated
region, with predictors whose right answers are known: the simulator's truth itself (an
oracle scores 0 against the truth and wins every task there) and a baseline passed off as
TAMRF (it must score exactly like that baseline: same inputs, same pixels)."""

from __future__ import annotations

import dataclasses
import datetime as dt

import numpy as np
import pytest
import xarray as xr

from tamrf_xr.evaluation.baselines import linear_temporal_interpolation
from tamrf_xr.evaluation.dataset import EvaluationDataset, cube
from tamrf_xr.evaluation.evaluate import evaluate
from tamrf_xr.evaluation.protocols import (
    TASKS,
    ProtocolConfig,
    gap_length_days,
    residual_compensation,
    run_task,
)
from tamrf_xr.evaluation.scoring import ScoredDates, Scorer, summarise
from tamrf_xr.evaluation.simulated import simulated_dataset
from tamrf_xr.simulate import SimulationConfig

TINY = SimulationConfig(
    seed=7,
    width_px=120,
    height_px=120,
    start=dt.date(2022, 5, 1),
    end=dt.date(2022, 7, 20),
    cloud_cover_mean=0.35,
    landsat_l2sr_fraction=0.0,
)
CONFIG = ProtocolConfig(border_px=5)


@pytest.fixture(scope="module")
def tiny() -> EvaluationDataset:
    return simulated_dataset(TINY)


class Oracle:
    """A predictor returning the simulator's truth on every queried date; it records the
    inputs it was given."""

    def __init__(self, dataset: EvaluationDataset) -> None:
        self.dataset = dataset
        self.calls: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []

    def __call__(self, s2: xr.Dataset, landsat: xr.Dataset, dates: np.ndarray) -> np.ndarray:
        days = lambda c: c["time"].values.astype("datetime64[D]")  # noqa: E731
        self.calls.append((days(s2), days(landsat), np.asarray(dates, "datetime64[D]")))
        return np.stack([self.dataset.truth(d) for d in dates])


def _row(summary, **keys) -> dict:
    rows = [r for r in summary if all(r[k] == v for k, v in keys.items())]
    assert len(rows) == 1, (keys, rows)
    return rows[0]


# -- the dataset -------------------------------------------------------------------------------


def test_simulated_dataset_observations_match_the_truth_on_clear_pixels(tiny) -> None:
    s2, landsat = tiny.s2, tiny.landsat
    assert s2.sizes["y"] == 120 and landsat.sizes["y"] == 40
    assert s2.sizes["time"] > 10 and landsat.sizes["time"] > 5
    assert (s2["clear_fraction"] >= 0.05).all() and (landsat["clear_fraction"] >= 0.05).all()
    for k, day in enumerate(s2["time"].values[:6]):
        truth = tiny.truth(day)[8:]  # S2 channels
        clear = s2["valid"].values[k]
        error = np.abs(s2["observations"].values[k][:, clear] - truth[:, clear])
        # Noise and the 20 m bands' blur: a few thousandths of reflectance, not clouds (0.3+).
        assert np.median(error) < 0.01, day
    lst = landsat["observations"].values[:, -1][landsat["valid"].values]
    assert 250 < np.median(lst) < 330, "LST in Kelvin"


# -- scoring -----------------------------------------------------------------------------------


def _flat_dataset(value: float = 0.2) -> EvaluationDataset:
    """Textured (so FR exists) S2 and Landsat images whose truth is the observation itself."""
    rng = np.random.default_rng(3)
    bounds = (0.0, 0.0, 600.0, 600.0)
    s2 = [value + 0.05 * rng.standard_normal((10, 60, 60)).astype(np.float32)]
    s2_valid = [np.ones((60, 60), bool)]
    s2_valid[0][:30] = False  # the top half is cloudy
    landsat = [value + 0.05 * rng.standard_normal((8, 20, 20)).astype(np.float32)]
    day = [np.datetime64("2022-06-01")]
    names_s2 = [f"S2_B{b}" for b in ("2", "3", "4", "5", "6", "7", "8", "8A", "11", "12")]
    names_ls = [f"LS_B{b}" for b in range(1, 8)] + ["LS_B10"]
    return EvaluationDataset(
        "flat",
        cube("s2", day, s2, s2_valid, names_s2, 10.0, bounds, None),
        cube("ls", day, landsat, [np.ones((20, 20), bool)], names_ls, 30.0, bounds, None),
        truth=lambda d: np.full((18, 60, 60), value, np.float32),
    )


def test_scorer_counts_the_border_on_each_reference_grid_and_only_clear_pixels() -> None:
    dataset = _flat_dataset()
    scorer = Scorer(dataset, border_px=2)
    dates = np.array(["2022-06-01"], "datetime64[D]")
    # A constant offset survives degradation unchanged (the kernels sum to 1).
    s2_prediction = dataset.s2["observations"].values + np.float32(0.01)
    records = scorer(
        ScoredDates(
            "t",
            "m",
            "sentinel-2",
            dates,
            s2_prediction,
            np.array(["clear"]),
            ("S2_B2", "S2_B8"),
            None,
        )
    )
    observed = [r for r in records if r["reference"] == "observation"]
    for r in observed:  # identity bands: exactly the offset; 26 clear rows x 56 columns
        assert r["pixels"] == (30 - 2) * (60 - 4)
        assert np.sqrt(r["sq"] / r["pixels"]) == pytest.approx(0.01, rel=1e-3)
    truth = [r for r in records if r["reference"] == "truth"]
    assert all(r["pixels"] == 56 * 56 for r in truth), "truth: every pixel, same border"

    landsat_prediction = np.repeat(np.repeat(dataset.landsat["observations"].values, 3, -2), 3, -1)
    records = scorer(
        ScoredDates(
            "t", "m", "landsat", dates, landsat_prediction, np.array(["clear"]), ("LS_B1",), None
        )
    )
    by_reference = {r["reference"]: r for r in records}
    # 2 px of the 30 m grid (60 m) on the observation, 6 px of the 10 m grid on the truth.
    assert by_reference["observation"]["pixels"] == 16 * 16
    assert by_reference["truth"]["pixels"] == 48 * 48


def test_summarise_pools_squares_and_pixels_not_per_date_rmses() -> None:
    records = [
        {
            "task": "t",
            "method": "m",
            "reference": "observation",
            "split": "masked",
            "sensor": "s",
            "band": "b",
            "date": d,
            "sq": sq,
            "abs": a,
            "pixels": n,
            "fr_db": fr,
            "brisque": None,
        }
        for d, sq, a, n, fr in (("d1", 4.0, 10.0, 100, 1.0), ("d2", 1.0, 30.0, 300, None))
    ]
    (row,) = summarise(records)
    assert row["rmse"] == pytest.approx(np.sqrt(5.0 / 400))  # not the mean of 0.2 and 0.0577
    assert row["nrmse"] == pytest.approx(np.sqrt(5.0 / 400) / (40.0 / 400))
    assert row["fr_db"] == 1.0 and row["brisque"] is None
    assert row["pixels"] == 400 and row["dates"] == 2


def test_residual_compensation_restores_the_observation_of_a_constant_scene() -> None:
    prediction = np.full((2, 8, 30, 30), 300.0, np.float32)
    observed = np.full((2, 8, 10, 10), 302.5, np.float32)
    clear = np.ones((2, 10, 10), bool)
    np.testing.assert_allclose(residual_compensation(prediction, observed, clear), 302.5, rtol=1e-6)
    clear[:] = False  # no clear observation: nothing to add back
    np.testing.assert_array_equal(residual_compensation(prediction, observed, clear), prediction)


def test_gap_length_averages_each_pixels_distance_to_its_nearest_clear_input() -> None:
    days = [np.datetime64("2022-06-01"), np.datetime64("2022-06-11"), np.datetime64("2022-06-13")]
    values = [np.zeros((10, 3, 2), np.float32)] * 3
    # Pixel column 0 is clear on June 1 only, column 1 on June 11 only; June 13 is all cloud.
    valid = [np.array([[True, False]] * 3), np.array([[False, True]] * 3), np.zeros((3, 2), bool)]
    inputs = cube("s2", days, values, valid, [f"b{k}" for k in range(10)], 10.0,
                  (0.0, 0.0, 20.0, 30.0), None)  # fmt: skip
    queries = np.array(["2022-06-05", "2022-06-14"], "datetime64[D]")
    # June 5: 4 and 6 days (mean 5), not 6 (the nearest input date); June 14: 13 and 3 days.
    np.testing.assert_array_equal(gap_length_days(queries, inputs), [5, 8])
    nothing = inputs.isel(time=slice(0, 0))
    assert gap_length_days(queries, nothing)[0] > 1000


# -- the protocols ------------------------------------------------------------------------------


def test_gap_filling_hides_the_gaps_windows_and_scores_both_splits(tiny) -> None:
    oracle = Oracle(tiny)
    result = run_task("gap-filling", tiny, oracle, Scorer(tiny, 5), CONFIG)
    (s2_in, landsat_in, queries) = oracle.calls[0]
    start = tiny.start
    for given, sensor in ((s2_in, tiny.s2), (landsat_in, tiny.landsat)):
        days = (sensor["time"].values.astype("datetime64[D]") - start).astype(int)
        inside = (days > 30) & (days < 60)
        assert inside.any(), "the tiny region has dates inside the first gap"
        kept = (given - start).astype(int)
        assert not ((kept > 30) & (kept < 60)).any(), "no input inside a gap"
        assert len(given) == (~inside).sum()
    assert len(queries) == len(np.union1d(tiny.s2.time.values, tiny.landsat.time.values))
    summary = summarise(result.records)
    for sensor in ("sentinel-2", "landsat"):
        for split in ("masked", "clear"):
            oracle_row = _row(
                summary,
                method="tamrf",
                reference="truth",
                split=split,
                sensor=sensor,
                band="LS_B4" if sensor == "landsat" else "S2_B4",
            )
            assert oracle_row["rmse"] == 0.0 and oracle_row["pixels"] > 0
    linear = _row(
        summary,
        method="linear",
        reference="truth",
        split="masked",
        sensor="sentinel-2",
        band="S2_B4",
    )
    assert linear["rmse"] > 0.001
    masked = [r for r in result.records if r["split"] == "masked"]
    assert all(r["gap_days"] > 0 for r in masked)
    assert result.strip is not None and "truth" in result.strip.panels


def test_a_baseline_passed_off_as_tamrf_scores_exactly_like_it(tiny) -> None:
    """Same inputs and same pixels for every method: the linear baseline run through the
    predictor interface gets the linear baseline's figures exactly."""

    def linear(s2: xr.Dataset, landsat: xr.Dataset, dates: np.ndarray) -> np.ndarray:
        out = np.full((len(dates), 18, 120, 120), np.nan, np.float32)
        days = s2["time"].values.astype("datetime64[D]").astype(np.int64)
        out[:, 8:] = linear_temporal_interpolation(
            s2["observations"].values,
            s2["valid"].values,
            days,
            np.asarray(dates, "datetime64[D]").astype(np.int64),
        )
        return out

    result = run_task("fusion", tiny, linear, Scorer(tiny, 5), CONFIG)
    summary = summarise(result.records)
    compared = 0
    for row in summary:
        if row["method"] == "tamrf":
            twin = _row(
                summary,
                **{k: row[k] for k in ("reference", "split", "sensor", "band")},
                method="linear",
            )
            assert row["rmse"] == twin["rmse"] and row["pixels"] == twin["pixels"]
            compared += 1
    assert compared == 20  # 10 bands, observation and truth


def test_fusion_predicts_shared_days_from_landsat_and_the_other_s2_dates(tiny) -> None:
    oracle = Oracle(tiny)
    result = run_task("fusion", tiny, oracle, Scorer(tiny, 5), CONFIG)
    s2_in, landsat_in, queries = oracle.calls[0]
    assert len(queries) >= 1
    assert not np.isin(queries, s2_in).any(), "the fused S2 dates are not inputs"
    assert np.isin(queries, landsat_in).all(), "Landsat of that day is"
    summary = summarise(result.records)
    for band in ("S2_B4", "S2_B11"):
        starfm = _row(summary, method="starfm", reference="truth", band=band)
        assert _row(summary, method="tamrf", reference="truth", band=band)["rmse"] == 0.0
        assert starfm["rmse"] > 0
        # STARFM lands near the truth on these gently changing fields (0.5 is a cloud).
        assert starfm["rmse"] < 0.05


def test_band_sharpening_gets_s2_alone_and_bicubic_has_no_frequency_gain(tiny) -> None:
    oracle = Oracle(tiny)
    result = run_task("band-sharpening", tiny, oracle, Scorer(tiny, 5), CONFIG)
    s2_in, landsat_in, queries = oracle.calls[0]
    assert len(landsat_in) == 0 and len(s2_in) == tiny.s2.sizes["time"] == len(queries)
    summary = summarise(result.records)
    assert {r["band"] for r in summary} == {"S2_B5", "S2_B6", "S2_B7", "S2_B8A", "S2_B11", "S2_B12"}
    for band in ("S2_B5", "S2_B12"):
        bicubic = _row(summary, method="bicubic", reference="observation", band=band)
        assert bicubic["fr_db"] == pytest.approx(0.0, abs=1e-9), "the reference itself"
        truth = _row(summary, method="tamrf", reference="truth", band=band)
        # The oracle is sharper than the 20 m observation it is compared with in FR.
        assert truth["rmse"] == 0.0
        sharp = _row(summary, method="tamrf", reference="observation", band=band)
        assert sharp["fr_db"] > 0.5


def test_thermal_sharpening_methods_and_the_dms_baseline_beats_bicubic(tiny) -> None:
    result = run_task("thermal-sharpening", tiny, Oracle(tiny), Scorer(tiny, 5), CONFIG)
    summary = summarise(result.records)
    methods = {r["method"] for r in summary}
    assert methods == {"tamrf", "tamrf+residual", "dms", "dms+residual", "bicubic"}
    assert all(r["band"] == "LS_B10" for r in summary)
    truth = {r["method"]: r["rmse"] for r in summary if r["reference"] == "truth"}
    assert truth["tamrf"] == 0.0
    # Regression on 10 m reflectances recovers part of the 10 m thermal detail.
    assert truth["dms"] < truth["bicubic"]


def test_evaluate_runs_every_task_and_rejects_unknown_ones(tiny) -> None:
    result = evaluate(tiny, Oracle(tiny), TASKS, CONFIG, quality=lambda image: float(image.mean()))
    assert {r["task"] for r in result.summary} == set(TASKS)
    assert {s.task for s in result.strips} == set(TASKS)
    observed = [r for r in result.summary if r["reference"] == "observation"]
    assert all(r["brisque"] is not None for r in observed)
    with pytest.raises(ValueError, match="unknown task"):
        evaluate(tiny, Oracle(tiny), ["gap-filling", "super-resolution"], CONFIG)


def test_clear_dates_holdout_holds_each_clear_enough_date_out_alone(tiny) -> None:
    oracle = Oracle(tiny)
    config = dataclasses.replace(CONFIG, holdout="clear-dates", min_reference_clear=0.6)
    result = run_task("gap-filling", tiny, oracle, Scorer(tiny, 5), config)
    clear_s2 = tiny.s2["time"].values[tiny.s2["clear_fraction"].values >= 0.6]
    clear_landsat = tiny.landsat["time"].values[tiny.landsat["clear_fraction"].values >= 0.6]
    assert len(oracle.calls) == len(clear_s2) + len(clear_landsat) > 0
    for s2_in, landsat_in, queries in oracle.calls:
        assert len(queries) == 1
        assert (
            len(s2_in) + len(landsat_in) == tiny.s2.sizes["time"] + tiny.landsat.sizes["time"] - 1
        )
        assert queries[0] not in s2_in or queries[0] not in landsat_in
    masked = {r["date"] for r in result.records if r["split"] == "masked"}
    assert masked == {str(d)[:10] for d in np.concatenate([clear_s2, clear_landsat])}
