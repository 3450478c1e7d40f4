"""An :class:`~tamrf_xr.evaluation.dataset.EvaluationDataset` straight from the simulator.

:func:`simulated_dataset` builds one from a :class:`~tamrf_xr.simulate.SimulationConfig`
directly (no files, no catalog): each datastrip's whole-region observation, restricted to its
acquisitions' footprints, masked by the same quality-layer rules as the production cubes
(:mod:`tamrf_xr.masking`), the S2 20 m bands brought to 10 m by the same bicubic; and the
simulator's 10 m truth of any day.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import shapely

from tamrf_xr.bands import LANDSAT_BANDS, S2_BANDS
from tamrf_xr.evaluation.dataset import EvaluationDataset, cube
from tamrf_xr.masking import MaskConfig, landsat_invalid, s2_invalid
from tamrf_xr.resample import upsample_bicubic
from tamrf_xr.simulate import SimulationConfig
from tamrf_xr.simulate.sensors import LandsatObservation, S2Observation
from tamrf_xr.simulate.simulation import Simulation

__all__ = ["simulated_dataset"]


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
