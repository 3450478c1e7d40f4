"""What the evaluation protocols run on: a pair of input cubes, and the truth where one exists.

An :class:`EvaluationDataset` holds the two cubes in the conventions of
:func:`tamrf_xr.inference.predict` (``observations`` (time, band, y, x) and ``valid``
(time, y, x); S2 at 10 m, Landsat at 30 m on the same bounds), in memory. The observations
are also the references of every real-data metric, scored on their ``valid`` pixels.
A simulated region also gives its 10 m ground truth on any day (:attr:`EvaluationDataset.truth`),
which lets the protocols score what no real-data study can.

:func:`simulated_dataset` builds one from a :class:`~tamrf_xr.simulate.SimulationConfig`
directly (no files, no catalog): each datastrip's whole-region observation, restricted to its
acquisitions' footprints, masked by the same quality-layer rules as the production cubes
(:mod:`tamrf_xr.masking`), the S2 20 m bands brought to 10 m by the same bicubic.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import shapely
import xarray as xr

from tamrf_xr.bands import LANDSAT_BANDS, S2_BANDS
from tamrf_xr.masking import MaskConfig, landsat_invalid, s2_invalid
from tamrf_xr.resample import upsample_bicubic
from tamrf_xr.simulate import SimulationConfig
from tamrf_xr.simulate.sensors import LandsatObservation, S2Observation
from tamrf_xr.simulate.simulation import Simulation

__all__ = ["EvaluationDataset", "cube", "simulated_dataset"]

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


def _footprint(simulation: Simulation, acquisitions: list, resolution: float) -> np.ndarray:
    """(h, w) bool: region pixels whose centre lies in any of the acquisitions' footprints."""
    ys, xs = simulation.grid.at(resolution).coords()
    inside = np.zeros((len(ys), len(xs)), bool)
    for acquisition in acquisitions:
        inside |= shapely.contains_xy(acquisition.footprint, xs[None, :], ys[:, None])
    return inside


def _s2_date(observation: S2Observation, inside: np.ndarray, masks: MaskConfig):
    bands = []
    for band in S2_BANDS:
        if band.name in observation.bands_10m:
            bands.append(observation.bands_10m[band.name])
        else:
            bands.append(upsample_bicubic(observation.bands_20m[band.name], 2))
    values = np.stack(bands).astype(np.float32)
    valid = ~s2_invalid(observation.scl, masks, factor=2) & inside
    return np.where(inside, values, np.nan), valid


def _landsat_date(observation: LandsatObservation, inside: np.ndarray, masks: MaskConfig):
    bands = [
        observation.temperature_k
        if band.quantity == "temperature"
        else observation.reflectance[band.name]
        for band in LANDSAT_BANDS
    ]
    values = np.stack(bands).astype(np.float32)
    valid = (
        ~landsat_invalid(observation.qa_pixel, observation.qa_radsat, observation.qa_aerosol, masks)
        & inside
    )
    return np.where(inside, values, np.nan), valid


def simulated_dataset(
    config: SimulationConfig,
    min_clear_fraction: float = 0.05,
    masks: MaskConfig | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> EvaluationDataset:
    """The cubes of a simulated region, and its truth, straight from the simulator.

    Args:
        config: the region (its L2SR fraction is ignored: every Landsat date has its LST).
        min_clear_fraction: dates with a smaller share of valid pixels are left out, as a
            production date filter would.
        masks: the quality-layer rules (the production defaults).
        progress: ``(done, total)`` after every datastrip.

    Returns:
        An :class:`EvaluationDataset` with ``truth`` set.
    """
    masks = masks or MaskConfig()
    simulation = Simulation(config)
    swaths: dict[tuple[str, int], list] = {}
    for acquisition in simulation.acquisitions:
        swaths.setdefault((acquisition.sensor, acquisition.day_index), []).append(acquisition)
    dates: dict[str, tuple[list, list, list]] = {
        "sentinel-2": ([], [], []),
        "landsat": ([], [], []),
    }
    for done, ((sensor, _), acquisitions) in enumerate(
        sorted(swaths.items(), key=lambda kv: (kv[0][1], kv[0][0])), start=1
    ):
        # Two datastrips of one sensor on one day (neighbouring orbits) would be merged by a
        # mosaic; the simulator's neighbours fly on other days, so the first one stands.
        first = acquisitions[0]
        observation = simulation.observe(first)
        same_swath = [a for a in acquisitions if a.swath_key == first.swath_key]
        if sensor == "sentinel-2":
            values, valid = _s2_date(observation, _footprint(simulation, same_swath, 10.0), masks)
        else:
            values, valid = _landsat_date(
                observation, _footprint(simulation, same_swath, 30.0), masks
            )
        if valid.mean() >= min_clear_fraction:
            times, arrays, flags = dates[sensor]
            times.append(np.datetime64(first.date, "D"))
            arrays.append(values)
            flags.append(valid)
        if progress:
            progress(done, len(swaths))

    grid = simulation.grid
    s2 = cube(
        "sentinel-2", *dates["sentinel-2"], [b.name for b in S2_BANDS], 10.0, grid.bounds, grid.epsg
    )
    landsat = cube(
        "landsat", *dates["landsat"], [b.name for b in LANDSAT_BANDS], 30.0, grid.bounds, grid.epsg
    )
    start = np.datetime64(config.start, "D")

    def truth(day: np.datetime64) -> np.ndarray:
        index = int((np.datetime64(day, "D") - start).astype(np.int64))
        return simulation.truth(index)

    return EvaluationDataset(
        name=f"simulated-seed{config.seed}",
        s2=s2,
        landsat=landsat,
        description=(
            f"simulated region, seed {config.seed}, {config.width_px} x {config.height_px} px at "
            f"10 m, {config.start} to {config.end}, mean cloud cover {config.cloud_cover_mean}"
        ),
        truth=truth,
    )
