"""What the evaluation protocols run on: a pair of input cubes, and the truth where one exists.

An :class:`EvaluationDataset` holds the two cubes in the conventions of
:func:`tamrf_xr.inference.predict` (``observations`` (time, band, y, x) and ``valid``
(time, y, x); S2 at 10 m, Landsat at 30 m on the same bounds), in memory. The observations
are also the references of every real-data metric, scored on their ``valid`` pixels.
A simulated region also gives its 10 m ground truth on any day (:attr:`EvaluationDataset.truth`),
which lets the protocols score what no real-data study can
(:func:`tamrf_xr.evaluation.simulated.simulated_dataset`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import xarray as xr

__all__ = ["EvaluationDataset", "Truth", "cube"]

Truth = Callable[[np.datetime64], np.ndarray]
"""A day -> (18, H, W) float32 ground truth at 10 m (model band order, LST in Kelvin)."""


@dataclass
class EvaluationDataset:
    """Two input cubes (in memory) and, for simulated regions, the ground truth."""

    name: str
    s2: xr.Dataset
    """(time, band, y, x) reflectance at 10 m, ``valid`` (time, y, x); bands in model order
    (an unobserved band is all NaN)."""
    landsat: xr.Dataset
    """(time, band, y/3, x/3) at 30 m (LST in Kelvin), ``valid`` (time, y/3, x/3)."""
    description: str = ""
    truth: Truth | None = field(default=None, repr=False)
    """The 10 m ground truth of a day, or None (real data)."""

    def __post_init__(self) -> None:
        ny, nx = self.s2.sizes["y"], self.s2.sizes["x"]
        if (self.landsat.sizes["y"] * 3, self.landsat.sizes["x"] * 3) != (ny, nx):
            raise ValueError(
                f"{self.name}: the S2 grid ({ny} x {nx}) must be exactly 3x the Landsat grid "
                f"({self.landsat.sizes['y']} x {self.landsat.sizes['x']})"
            )

    @property
    def observed_s2_bands(self) -> list[str]:
        """The S2 bands holding any finite value (real samples may lack some)."""
        values = self.s2["observations"].values
        return [
            str(b) for k, b in enumerate(self.s2["band"].values) if np.isfinite(values[:, k]).any()
        ]

    def days(self, sensor: str) -> np.ndarray:
        """(t,) days since the first date of either sensor (the evaluation's window start)."""
        return _days(self._cube(sensor)["time"].values, self.start)

    @property
    def start(self) -> np.datetime64:
        times = [c["time"].values for c in (self.s2, self.landsat) if c.sizes["time"]]
        return min(t.min() for t in times).astype("datetime64[D]")

    def _cube(self, sensor: str) -> xr.Dataset:
        if sensor not in ("sentinel-2", "landsat"):
            raise ValueError(f"unknown sensor {sensor!r}: use 'sentinel-2' or 'landsat'")
        return self.s2 if sensor == "sentinel-2" else self.landsat


def _days(times: np.ndarray, start: np.datetime64) -> np.ndarray:
    return (times.astype("datetime64[D]") - start).astype(np.int64)


def cube(
    name: str,
    times: list[np.datetime64],
    values: list[np.ndarray],
    valid: list[np.ndarray],
    bands: list[str],
    resolution: float,
    bounds: tuple[float, float, float, float],
    epsg: int | None,
) -> xr.Dataset:
    """A cube in :func:`~tamrf_xr.inference.predict`'s conventions from per-date arrays.

    Args:
        times: dates; values: (band, h, w) per date; valid: (h, w) bool per date.
        bounds: (west, south, east, north) of the grid; pixel centres are the coordinates.
    """
    west, _, _, north = bounds
    h, w = values[0].shape[-2:] if values else (0, 0)
    if not values:
        h = round((bounds[3] - bounds[1]) / resolution)
        w = round((bounds[2] - bounds[0]) / resolution)
    observations = (
        np.stack(values).astype(np.float32) if values else np.zeros((0, len(bands), h, w), "f4")
    )
    masks = np.stack(valid).astype(bool) if valid else np.zeros((0, h, w), bool)
    masks &= np.isfinite(observations).any(axis=1)
    out = xr.Dataset(
        {
            "observations": (("time", "band", "y", "x"), observations),
            "valid": (("time", "y", "x"), masks),
            "clear_fraction": (("time",), masks.mean(axis=(-2, -1)).astype(np.float32)),
        },
        coords={
            "time": np.array(times, "datetime64[ns]"),
            "band": bands,
            "y": north - resolution * (np.arange(h) + 0.5),
            "x": west + resolution * (np.arange(w) + 0.5),
        },
        attrs={"name": name},
    )
    if epsg is not None:
        out.attrs["epsg"] = int(epsg)
    return out
