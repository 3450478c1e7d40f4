"""The paper's four tasks as protocols over an :class:`EvaluationDataset`.

Each protocol chooses the inputs and the dates to predict, runs TAMRF (any
:data:`Predictor`) and the task's baselines on the SAME inputs, and scores every method's
10 m predictions with one :class:`~tamrf_xr.evaluation.scoring.Scorer`:

- ``gap-filling``: the ``GAPS`` strategy with ``g = 30`` days (every date of both sensors in
  days 30-60, 90-120, ... of the window is removed) and every date predicted; the removed dates
  are the ``masked`` split, the others ``clear``. With ``holdout="clear-dates"`` (series with
  few usable dates, such as the real samples), each date clear enough to be a reference is
  held out in turn instead. Baseline: per-pixel linear temporal interpolation of clear pixels
  (Landsat at 30 m, then bicubic x3).
- ``band-sharpening``: Sentinel-2 alone in; its 20 m bands predicted at 10 m on every S2 date
  (all ``clear``). Baseline: bicubic upsampling (the 20 m bands as the cube holds them).
- ``fusion``: S2 predicted on the days both sensors observed, from Landsat (that day
  included) and the OTHER S2 dates (``masked``). Baselines: STARFM-style fusion, linear
  interpolation of S2.
- ``thermal-sharpening``: LST at 10 m on every Landsat date, all dates in (``clear``); TAMRF
  with and without residual compensation (the upsampled residual between the observation and
  the degraded prediction added back). Baselines: the DMS regression tree (S2 B2 B3 B4 B8 of
  the nearest clear date per pixel) with and without its residual correction, and bicubic.

Every protocol returns its per-(date, band) records and an image strip of one date.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import xarray as xr

from tamrf_xr.evaluation.baselines import (
    bicubic_upsampling,
    linear_temporal_interpolation,
    starfm_fusion,
)
from tamrf_xr.evaluation.dataset import EvaluationDataset
from tamrf_xr.evaluation.degradation import degrade
from tamrf_xr.evaluation.masking_strategies import masked_dates
from tamrf_xr.evaluation.scoring import ScoredDates, Scorer, sensor_bands, sensor_channels
from tamrf_xr.evaluation.thermal_sharpening import dms_thermal_sharpening

__all__ = [
    "HOLDOUTS",
    "TASKS",
    "Predictor",
    "ProtocolConfig",
    "Strip",
    "TaskResult",
    "gap_length_days",
    "residual_compensation",
    "run_task",
]

TASKS = ("gap-filling", "band-sharpening", "fusion", "thermal-sharpening")
HOLDOUTS = ("gaps", "clear-dates")
S2_20M_BANDS = ("S2_B5", "S2_B6", "S2_B7", "S2_B8A", "S2_B11", "S2_B12")
DMS_PREDICTORS = ("S2_B2", "S2_B3", "S2_B4", "S2_B8")
RGB = ("S2_B4", "S2_B3", "S2_B2")

Predictor = Callable[[xr.Dataset, xr.Dataset, np.ndarray], np.ndarray]
"""(S2 cube, Landsat cube, (q,) datetime64[D] dates) -> (q, 18, H, W) float32 at 10 m."""
Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class ProtocolConfig:
    """The protocols' choices (defaults: the spec's)."""

    border_px: int = 30
    """Reference-grid pixels ignored on every side (300 m for S2, 900 m for Landsat)."""
    gap_days: int = 30
    """GAPS' ``g`` for gap-filling."""
    holdout: str = "gaps"
    """Gap-filling: ``gaps`` (the spec) or ``clear-dates`` (each clear-enough date in turn)."""
    min_reference_clear: float = 0.25
    """A date held out in turn (``clear-dates``) or fused must be at least this clear."""

    def __post_init__(self) -> None:
        if self.holdout not in HOLDOUTS:
            raise ValueError(f"holdout {self.holdout!r}: use one of {', '.join(HOLDOUTS)}")
        if self.border_px < 0 or self.gap_days < 1:
            raise ValueError("border_px must be >= 0 and gap_days >= 1")


@dataclass
class Strip:
    """Images of one date for the report: named panels, each (H, W) or (3, H, W)."""

    task: str
    date: str
    bands: tuple[str, ...]
    panels: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass
class TaskResult:
    """One task's per-(date, band) records (:class:`Scorer`) and its image strip."""

    task: str
    records: list[dict]
    strip: Strip | None
    notes: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------
# Helpers shared by the protocols
# ---------------------------------------------------------------------------------------------


def _select(cube: xr.Dataset, keep: np.ndarray) -> xr.Dataset:
    return cube.isel(time=np.flatnonzero(keep))


def _dates(cube: xr.Dataset) -> np.ndarray:
    return cube["time"].values.astype("datetime64[D]")


def _rows(
    prediction: np.ndarray, all_dates: np.ndarray, dates: np.ndarray, sensor: str
) -> np.ndarray:
    """A sensor's channels on ``dates`` from a (q, 18, H, W) prediction on ``all_dates``."""
    index = [int(np.flatnonzero(all_dates == d)[0]) for d in dates]
    return prediction[index][:, sensor_channels(sensor)]


def _linear(cube: xr.Dataset, dates: np.ndarray, sensor: str) -> np.ndarray:
    """The linear-interpolation baseline on ``dates`` at 10 m: (q, bands, H, W)."""
    days = _dates(cube).astype(np.int64)
    out = linear_temporal_interpolation(
        cube["observations"].values, cube["valid"].values, days, dates.astype(np.int64)
    )
    return out if sensor == "sentinel-2" else bicubic_upsampling(out, 3)


NO_CLEAR_INPUT_DAYS = 10_000
"""The gap recorded for a date whose pixels no input ever sees clear."""


def gap_length_days(dates: np.ndarray, inputs: xr.Dataset) -> np.ndarray:
    """(q,) the gap length of each date: days from it to each pixel's nearest clear input
    date, averaged over the pixels that have one (what "how long was this unobserved"
    means under clouds; the nearest input date alone would count cloudy ones)."""
    days = _dates(inputs).astype(np.int64)
    valid = inputs["valid"].values
    never = np.iinfo(np.int64).max
    out = np.full(len(dates), NO_CLEAR_INPUT_DAYS, np.int64)
    for q, date in enumerate(dates.astype(np.int64)):
        if not len(days):
            break
        nearest = np.where(valid, np.abs(days - date)[:, None, None], never).min(axis=0)
        seen = nearest < never
        if seen.any():
            out[q] = round(float(nearest[seen].mean()))
    return out


def _observed(dataset: EvaluationDataset, sensor: str, bands: Sequence[str]) -> tuple[str, ...]:
    present = (
        set(dataset.observed_s2_bands)
        if sensor == "sentinel-2"
        else set(str(b) for b in dataset.landsat["band"].values)
    )
    return tuple(b for b in bands if b in present)


def _score_methods(
    scorer: Scorer,
    task: str,
    sensor: str,
    dates: np.ndarray,
    methods: dict[str, np.ndarray],
    split: np.ndarray,
    bands: Sequence[str],
    gaps: np.ndarray,
) -> list[dict]:
    """Score every method on the same pixels: those where all of them have a value in every
    scored band (a method's NaN would otherwise shrink only its own sample)."""
    names = sensor_bands(sensor)
    index = [names.index(b) for b in bands]
    common = np.logical_and.reduce(
        [np.isfinite(values[:, index]).all(axis=1) for values in methods.values()]
    )
    records = []
    for method, values in methods.items():
        shared = np.where(common[:, None], values, np.float32(np.nan))
        records += scorer(
            ScoredDates(task, method, sensor, dates, shared, split, tuple(bands), gaps)
        )
    return records


def _clearest(cube: xr.Dataset, candidates: np.ndarray) -> np.datetime64 | None:
    if not len(candidates):
        return None
    fractions = cube["valid"].sel(time=candidates.astype("datetime64[ns]")).mean(("y", "x"))
    return candidates[int(np.argmax(fractions.values))]


def _panel(values: np.ndarray, names: Sequence[str], shown: Sequence[str]) -> np.ndarray:
    """The ``shown`` bands of a (bands, H, W) image, (H, W) for one band."""
    image = np.stack([values[list(names).index(b)] for b in shown])
    return image[0] if len(shown) == 1 else image


# ---------------------------------------------------------------------------------------------
# The tasks
# ---------------------------------------------------------------------------------------------


def _gap_filling(dataset, predictor, scorer, config, progress) -> TaskResult:
    s2_dates, ls_dates = _dates(dataset.s2), _dates(dataset.landsat)
    experiments = _holdouts(dataset, config)
    records: list[dict] = []
    strip = None
    for done, (s2_masked, ls_masked, predicted_dates) in enumerate(experiments):
        s2_in, ls_in = _select(dataset.s2, ~s2_masked), _select(dataset.landsat, ~ls_masked)
        prediction = predictor(s2_in, ls_in, predicted_dates)
        runs = (("sentinel-2", s2_in, s2_dates, s2_masked), ("landsat", ls_in, ls_dates, ls_masked))
        for sensor, cube_in, dates, masked in runs:
            scored = np.isin(dates, predicted_dates)
            if not scored.any():
                continue
            dates_scored = dates[scored]
            split = np.where(masked[scored], "masked", "clear")
            gaps = gap_length_days(dates_scored, cube_in)
            bands = _observed(dataset, sensor, sensor_bands(sensor))
            methods = {
                "tamrf": _rows(prediction, predicted_dates, dates_scored, sensor),
                "linear": _linear(cube_in, dates_scored, sensor),
            }
            records += _score_methods(
                scorer, "gap-filling", sensor, dates_scored, methods, split, bands, gaps
            )
            if sensor == "sentinel-2" and strip is None and set(RGB) <= set(bands):
                strip = _gap_strip(
                    dataset, s2_in, dates_scored[split == "masked"], methods, dates_scored
                )
        progress("gap-filling", done + 1, len(experiments))
    return TaskResult("gap-filling", records, strip)


def _holdouts(dataset: EvaluationDataset, config: ProtocolConfig):
    """(S2 masked, Landsat masked, dates to predict) of each gap-filling run."""
    s2_dates, ls_dates = _dates(dataset.s2), _dates(dataset.landsat)
    if config.holdout == "gaps":
        s2_masked, ls_masked = masked_dates(
            "GAPS", dataset.days("sentinel-2"), dataset.days("landsat"), gap_days=config.gap_days
        )
        union = np.union1d(s2_dates, ls_dates)
        return [(s2_masked, ls_masked, union)]
    runs = []
    for sensor, dates in (("sentinel-2", s2_dates), ("landsat", ls_dates)):
        cube = dataset.s2 if sensor == "sentinel-2" else dataset.landsat
        clear = cube["valid"].mean(("y", "x")).values >= config.min_reference_clear
        for k in np.flatnonzero(clear):
            s2_masked = np.zeros(len(s2_dates), bool)
            ls_masked = np.zeros(len(ls_dates), bool)
            (s2_masked if sensor == "sentinel-2" else ls_masked)[k] = True
            runs.append((s2_masked, ls_masked, dates[k : k + 1]))
    return runs


def _gap_strip(dataset, s2_in, masked_dates_, methods, dates_scored) -> Strip | None:
    date = _clearest(dataset.s2, masked_dates_)
    if date is None:
        return None
    names = sensor_bands("sentinel-2")
    q = int(np.flatnonzero(dates_scored == date)[0])
    strip = Strip("gap-filling", str(date), RGB)
    if dataset.truth is not None:
        strip.panels["truth"] = _panel(dataset.truth(date)[8:], names, RGB)
    observed = dataset.s2["observations"].sel(time=date.astype("datetime64[ns]")).values
    strip.panels["observation (held out)"] = _panel(observed, names, RGB)
    # The nearest input worth looking at: mostly clear, else simply the nearest.
    inputs = _dates(s2_in)
    mostly_clear = inputs[s2_in["valid"].mean(("y", "x")).values >= 0.5]
    candidates = mostly_clear if len(mostly_clear) else inputs
    if len(candidates):
        nearest = candidates[np.argmin(np.abs(candidates - date))]
        values = s2_in["observations"].sel(time=nearest.astype("datetime64[ns]")).values
        strip.panels[f"nearest clear input ({nearest})"] = _panel(values, names, RGB)
    for method, values in methods.items():
        strip.panels[method] = _panel(values[q], names, RGB)
    return strip


def _band_sharpening(dataset, predictor, scorer, config, progress) -> TaskResult:
    bands = _observed(dataset, "sentinel-2", S2_20M_BANDS)
    dates = _dates(dataset.s2)
    if not bands or not len(dates):
        return TaskResult("band-sharpening", [], None, ["no S2 20 m band observed: skipped"])
    no_landsat = dataset.landsat.isel(time=slice(0, 0))
    prediction = predictor(dataset.s2, no_landsat, dates)[:, sensor_channels("sentinel-2")]
    split = np.full(len(dates), "clear")
    methods = {"tamrf": prediction, "bicubic": dataset.s2["observations"].values}
    records = _score_methods(
        scorer,
        "band-sharpening",
        "sentinel-2",
        dates,
        methods,
        split,
        bands,
        np.zeros(len(dates), np.int64),
    )
    progress("band-sharpening", 1, 1)
    date = _clearest(dataset.s2, dates)
    shown = bands[-1:]
    strip = Strip("band-sharpening", str(date), shown)
    q = int(np.flatnonzero(dates == date)[0])
    names = sensor_bands("sentinel-2")
    if dataset.truth is not None:
        strip.panels["truth"] = _panel(dataset.truth(date)[8:], names, shown)
    strip.panels["input: 20 m band (bicubic)"] = _panel(methods["bicubic"][q], names, shown)
    strip.panels["input: S2 B8 (10 m)"] = _panel(methods["bicubic"][q], names, ("S2_B8",))
    strip.panels["tamrf"] = _panel(prediction[q], names, shown)
    return TaskResult("band-sharpening", records, strip)


def _fusion(dataset, predictor, scorer, config, progress) -> TaskResult:
    s2_dates, ls_dates = _dates(dataset.s2), _dates(dataset.landsat)
    fractions = dataset.s2["valid"].mean(("y", "x")).values
    fused = np.isin(s2_dates, ls_dates) & (fractions >= config.min_reference_clear)
    if not fused.any():
        return TaskResult("fusion", [], None, ["no clear S2 date shared with Landsat: skipped"])
    dates = s2_dates[fused]
    s2_in = _select(dataset.s2, ~fused)
    prediction = predictor(s2_in, dataset.landsat, dates)[:, sensor_channels("sentinel-2")]
    s2_obs, s2_ok = s2_in["observations"].values, s2_in["valid"].values
    s2_days = _dates(s2_in).astype(np.int64)
    ls_obs, ls_ok = dataset.landsat["observations"].values, dataset.landsat["valid"].values
    starfm = np.stack(
        [
            starfm_fusion(
                s2_obs,
                s2_ok,
                s2_days,
                ls_obs,
                ls_ok,
                ls_dates.astype(np.int64),
                float(d.astype(np.int64)),
            )
            for d in dates
        ]
    )
    methods = {"tamrf": prediction, "starfm": starfm, "linear": _linear(s2_in, dates, "sentinel-2")}
    split = np.full(len(dates), "masked")
    gaps = gap_length_days(dates, s2_in)
    bands = _observed(dataset, "sentinel-2", sensor_bands("sentinel-2"))
    records = _score_methods(scorer, "fusion", "sentinel-2", dates, methods, split, bands, gaps)
    progress("fusion", 1, 1)
    date = _clearest(dataset.s2, dates)
    q = int(np.flatnonzero(dates == date)[0])
    names = sensor_bands("sentinel-2")
    strip = Strip("fusion", str(date), RGB)
    if dataset.truth is not None:
        strip.panels["truth"] = _panel(dataset.truth(date)[8:], names, RGB)
    observed = dataset.s2["observations"].sel(time=date.astype("datetime64[ns]")).values
    strip.panels["S2 observation (held out)"] = _panel(observed, names, RGB)
    landsat = bicubic_upsampling(
        dataset.landsat["observations"].sel(time=date.astype("datetime64[ns]")).values, 3
    )
    strip.panels["input: Landsat same day (bicubic)"] = np.stack(
        [landsat[k] for k in (3, 2, 1)]
    )  # LS B4 B3 B2: red, green, blue
    for method, values in methods.items():
        strip.panels[method] = _panel(values[q], names, RGB)
    return TaskResult("fusion", records, strip)


def _thermal(dataset, predictor, scorer, config, progress) -> TaskResult:
    dates = _dates(dataset.landsat)
    if not len(dates) or "LS_B10" not in _observed(dataset, "landsat", ("LS_B10",)):
        return TaskResult("thermal-sharpening", [], None, ["no Landsat LST: skipped"])
    prediction = predictor(dataset.s2, dataset.landsat, dates)[:, sensor_channels("landsat")]
    observed = dataset.landsat["observations"].values
    clear = dataset.landsat["valid"].values
    methods = {
        "tamrf": prediction,
        "tamrf+residual": residual_compensation(prediction, observed, clear),
    }
    lst = sensor_bands("landsat").index("LS_B10")
    predictors = _nearest_clear_composite(dataset, dates, DMS_PREDICTORS)
    for method, correction in (("dms", False), ("dms+residual", True)):
        sharpened = np.full_like(prediction, np.nan)
        for q in range(len(dates)):
            if (clear[q] & np.isfinite(observed[q, lst])).sum() >= 10:
                sharpened[q, lst] = dms_thermal_sharpening(
                    observed[q, lst],
                    clear[q],
                    predictors[q],
                    np.isfinite(predictors[q]).all(0),
                    residual_correction=correction,
                )
        methods[method] = sharpened
    methods["bicubic"] = bicubic_upsampling(observed, 3)
    split = np.full(len(dates), "clear")
    records = _score_methods(
        scorer,
        "thermal-sharpening",
        "landsat",
        dates,
        methods,
        split,
        ("LS_B10",),
        np.zeros(len(dates), np.int64),
    )
    progress("thermal-sharpening", 1, 1)
    date = _clearest(dataset.landsat, dates)
    q = int(np.flatnonzero(dates == date)[0])
    strip = Strip("thermal-sharpening", str(date), ("LS_B10",))
    if dataset.truth is not None:
        strip.panels["truth"] = dataset.truth(date)[lst]
    strip.panels["input: LST 30 m (bicubic)"] = methods["bicubic"][q, lst]
    for method in ("dms", "dms+residual", "tamrf", "tamrf+residual"):
        strip.panels[method] = methods[method][q, lst]
    return TaskResult("thermal-sharpening", records, strip)


def residual_compensation(
    prediction: np.ndarray, observed: np.ndarray, clear: np.ndarray
) -> np.ndarray:
    """Add back the upsampled residual of the observation: ``prediction + bicubic x3
    (observed - degrade(prediction))``, the residual taken on clear 30 m pixels (0 elsewhere).

    Args:
        prediction: (q, 8, H, W) Landsat bands at 10 m; observed (q, 8, H/3, W/3);
            clear (q, H/3, W/3).
    """
    residual = observed - degrade(prediction, "landsat")
    residual = np.where(clear[:, None] & np.isfinite(residual), residual, 0.0)
    return (prediction + bicubic_upsampling(residual, 3)).astype(np.float32)


def _nearest_clear_composite(
    dataset: EvaluationDataset, dates: np.ndarray, bands: Sequence[str]
) -> np.ndarray:
    """(q, len(bands), H, W): per pixel, the S2 bands of the clear date nearest each date."""
    names = sensor_bands("sentinel-2")
    index = [names.index(b) for b in bands]
    values = dataset.s2["observations"].values[:, index]
    clear = dataset.s2["valid"].values & np.isfinite(values).all(axis=1)
    days = _dates(dataset.s2).astype(np.int64)
    out = np.full((len(dates), len(bands), *values.shape[-2:]), np.nan, np.float32)
    if not len(days):
        return out
    rows, cols = np.indices(values.shape[-2:])
    for q, date in enumerate(dates.astype(np.int64)):
        distance = np.where(clear, np.abs(days - date)[:, None, None], np.iinfo(np.int64).max)
        nearest = np.argmin(distance, axis=0)
        composite = values[nearest, :, rows, cols].transpose(2, 0, 1)
        out[q] = np.where(clear.any(axis=0), composite, np.nan)
    return out


PROTOCOLS = {
    "gap-filling": _gap_filling,
    "band-sharpening": _band_sharpening,
    "fusion": _fusion,
    "thermal-sharpening": _thermal,
}


def run_task(
    task: str,
    dataset: EvaluationDataset,
    predictor: Predictor,
    scorer: Scorer,
    config: ProtocolConfig | None = None,
    progress: Progress | None = None,
) -> TaskResult:
    """Run one of :data:`TASKS` on ``dataset``: TAMRF through ``predictor`` and the task's
    baselines on the same inputs, every prediction scored by ``scorer``.

    Raises:
        ValueError: an unknown task.
    """
    if task not in PROTOCOLS:
        raise ValueError(f"unknown task {task!r}: use one of {', '.join(TASKS)}")
    return PROTOCOLS[task](
        dataset, predictor, scorer, config or ProtocolConfig(), progress or (lambda *_: None)
    )
