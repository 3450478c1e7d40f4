"""Scoring 10 m predictions of one sensor's dates: per-date figures and their pooled summary.

:func:`score_dates` turns the predictions of one method on some dates into one record per
(date, band), against the observations (degraded first, the reference's clear pixels, a
border ignored: :mod:`tamrf_xr.evaluation.metrics`) and, for a simulated region, against the
10 m truth. :func:`summarise` pools the records of any group: RMSE and nRMSE from the summed
squares and magnitudes, FR and BRISQUE as means over dates, with the pixel and date counts
behind each figure.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

from tamrf_xr.bands import LANDSAT_BANDS, S2_BANDS
from tamrf_xr.evaluation.baselines import bicubic_upsampling
from tamrf_xr.evaluation.dataset import EvaluationDataset
from tamrf_xr.evaluation.degradation import degrade
from tamrf_xr.evaluation.metrics import error_sums, frequency_restoration

__all__ = ["ScoredDates", "Scorer", "sensor_bands", "summarise"]

SENSOR_FACTOR = {"sentinel-2": 1, "landsat": 3}
"""Reference-grid pixels per 10 m pixel along an axis: the border rule counts on that grid."""


def sensor_bands(sensor: str) -> list[str]:
    """The sensor's band names in model order."""
    return [b.name for b in (S2_BANDS if sensor == "sentinel-2" else LANDSAT_BANDS)]


def sensor_channels(sensor: str) -> slice:
    """The sensor's channels in the model's 18 outputs (Landsat 0-7, S2 8-17)."""
    return slice(0, 8) if sensor == "landsat" else slice(8, 18)


@dataclass(frozen=True)
class ScoredDates:
    """What is scored: one method's 10 m prediction of one sensor's bands on some dates."""

    task: str
    method: str
    sensor: str
    dates: np.ndarray
    """(q,) datetime64[D], each one of the sensor's dates in the dataset."""
    prediction: np.ndarray
    """(q, bands, H, W) float32 at 10 m, all the sensor's bands in model order (NaN: none)."""
    split: np.ndarray
    """(q,) ``"masked"`` (not given as input) or ``"clear"`` (an input)."""
    bands: tuple[str, ...]
    """The bands to score."""
    gap_days: np.ndarray | None = None
    """(q,) days from each date to each pixel's nearest clear input of the sensor, averaged
    over the pixels."""


Quality = Callable[[np.ndarray], float]
"""(H, W) image in [0, 1] -> a no-reference quality score (BRISQUE)."""


class Scorer:
    """Scores :class:`ScoredDates` against one dataset's observations (and truth)."""

    def __init__(
        self, dataset: EvaluationDataset, border_px: int = 30, quality: Quality | None = None
    ) -> None:
        self.dataset = dataset
        self.border_px = border_px
        self.quality = quality

    def __call__(self, scored: ScoredDates) -> list[dict]:
        """One record per (date, band, reference) (see :func:`summarise`)."""
        cube = self.dataset.s2 if scored.sensor == "sentinel-2" else self.dataset.landsat
        index = _date_index(cube["time"].values, scored.dates)
        observed = cube["observations"].values[index]
        clear = cube["valid"].values[index]
        names = sensor_bands(scored.sensor)
        keep = [names.index(b) for b in scored.bands]
        factor = SENSOR_FACTOR[scored.sensor]
        degraded = degrade(scored.prediction, scored.sensor)[:, keep]
        sums = error_sums(degraded, observed[:, keep], clear, self.border_px)
        # FR's reference at 10 m: the S2 observation, or Landsat's upsampled bicubic x3.
        reference10 = observed if factor == 1 else bicubic_upsampling(observed, factor)

        def brisque(q: int, k: int) -> float | None:
            return self._quality(
                scored.prediction[q, keep[k]], observed[q, keep[k]], clear[q], scored.bands[k]
            )

        records = _records(scored, "observation", sums, reference10[:, keep], brisque)
        if self.dataset.truth is not None:
            channels = sensor_channels(scored.sensor)
            truth = np.stack([self.dataset.truth(d)[channels] for d in scored.dates])[:, keep]
            # No clouds in the truth; the border is the same distance on the 10 m grid.
            everywhere = np.ones((len(truth), *truth.shape[-2:]), bool)
            sums = error_sums(
                scored.prediction[:, keep], truth, everywhere, self.border_px * factor
            )
            records += _records(scored, "truth", sums, truth, lambda q, k: None)
        return records

    def _quality(self, prediction, reference, clear, band: str) -> float | None:
        """BRISQUE of the 10 m prediction clipped to [0, 1]; LST min-max scaled by the date's
        reference (its clear pixels) first, as the spec says."""
        if self.quality is None or not np.isfinite(prediction).all():
            return None
        image = np.asarray(prediction, np.float64)
        if band == "LS_B10":
            values = reference[clear & np.isfinite(reference)]
            if values.size == 0 or values.max() <= values.min():
                return None
            image = (image - values.min()) / (values.max() - values.min())
        return float(self.quality(np.clip(image, 0.0, 1.0)))


def _records(
    scored: ScoredDates,
    reference: str,
    sums,
    fr_reference: np.ndarray,
    brisque: Callable[[int, int], float | None],
) -> list[dict]:
    """The (date, band) records of one reference from its error sums ((q, bands) each)."""
    keep = [sensor_bands(scored.sensor).index(b) for b in scored.bands]
    records = []
    for q, date in enumerate(scored.dates):
        for k, band in enumerate(scored.bands):
            records.append(
                {
                    "task": scored.task,
                    "method": scored.method,
                    "sensor": scored.sensor,
                    "date": str(np.datetime64(date, "D")),
                    "split": str(scored.split[q]),
                    "gap_days": None if scored.gap_days is None else int(scored.gap_days[q]),
                    "band": band,
                    "reference": reference,
                    "sq": float(sums[0][q, k]),
                    "abs": float(sums[1][q, k]),
                    "pixels": int(sums[2][q, k]),
                    "fr_db": _fr(scored.prediction[q, keep[k]], fr_reference[q, k]),
                    "brisque": brisque(q, k),
                }
            )
    return records


def _date_index(times: np.ndarray, dates: np.ndarray) -> np.ndarray:
    days = times.astype("datetime64[D]")
    index = np.searchsorted(days, np.asarray(dates, "datetime64[D]"))
    if np.any(index >= len(days)) or np.any(days[np.minimum(index, len(days) - 1)] != dates):
        raise ValueError("every scored date must be one of the sensor's dates in the dataset")
    return index


def _fr(prediction: np.ndarray, reference: np.ndarray) -> float | None:
    """FR of one image, or None where either image has no data somewhere (FFTs need all)."""
    if not (np.isfinite(prediction).all() and np.isfinite(reference).all()):
        return None
    return float(frequency_restoration(prediction, reference))


GROUP_KEYS = ("task", "method", "reference", "split", "sensor", "band")


def summarise(records: Iterable[dict], keys: tuple[str, ...] = GROUP_KEYS) -> list[dict]:
    """Pool per-(date, band) records by ``keys``.

    Returns:
        One dict per group: the keys, ``rmse`` (sqrt of summed squares over summed pixels),
        ``nrmse`` (that over the mean absolute reference), ``fr_db`` and ``brisque`` (means
        over the dates that have a finite value, else None), ``pixels`` and ``dates`` (dates with at
        least one scored pixel) behind the figures.
    """
    groups: dict[tuple, list[dict]] = {}
    for record in records:
        groups.setdefault(tuple(record[k] for k in keys), []).append(record)
    out = []
    for key, members in groups.items():
        pixels = sum(r["pixels"] for r in members)
        squared = sum(r["sq"] for r in members)
        magnitude = sum(r["abs"] for r in members)
        row = dict(zip(keys, key, strict=True))
        row["rmse"] = float(np.sqrt(squared / pixels)) if pixels else None
        row["nrmse"] = float(np.sqrt(squared * pixels) / magnitude) if magnitude else None
        for name in ("fr_db", "brisque"):
            # None or NaN: that date has no such figure (no data somewhere, a flat image).
            values = [r[name] for r in members if r[name] is not None and math.isfinite(r[name])]
            row[name] = float(np.mean(values)) if values else None
        row["pixels"] = int(pixels)
        row["dates"] = len({r["date"] for r in members if r["pixels"]})
        out.append(row)
    return out
