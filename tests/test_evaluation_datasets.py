"""Evaluation datasets read from files (pipelines.evaluation.data): a saved cube pair, and the
real S2 series of ../shared/data/real with the gap-filling protocol and TAMRF on them."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from pipelines.evaluation.data import cube_pair_dataset, openeo_s2_dataset
from tamrf_xr.evaluation import (
    ProtocolConfig,
    Scorer,
    run_task,
    simulated_dataset,
    summarise,
    tamrf_predictor,
)
from tamrf_xr.inference.model_cache import ModelSource, untrained_checkpoint
from tamrf_xr.simulate import SimulationConfig

SMALL = SimulationConfig(
    seed=5,
    width_px=60,
    height_px=60,
    start=dt.date(2022, 6, 1),
    end=dt.date(2022, 7, 10),
    landsat_l2sr_fraction=0.0,
)


def test_a_saved_cube_pair_scores_like_the_cubes_in_memory(tmp_path) -> None:
    dataset = simulated_dataset(SMALL)
    dataset.s2.to_zarr(tmp_path / "s2.zarr")
    dataset.landsat.to_netcdf(tmp_path / "landsat.nc")
    loaded = cube_pair_dataset(tmp_path / "s2.zarr", tmp_path / "landsat.nc")
    assert loaded.truth is None and "s2.zarr" in loaded.description
    config = ProtocolConfig(border_px=2)

    def persistence(s2, landsat, dates):
        """The last S2 input before each date, everywhere (a crude but real predictor)."""
        out = np.full((len(dates), 18, 60, 60), np.nan, np.float32)
        times = s2["time"].values.astype("datetime64[D]")
        for q, date in enumerate(dates):
            before = np.flatnonzero(times <= date)
            if len(before):
                out[q, 8:] = s2["observations"].values[before[-1]]
        return out

    figures = []
    for data in (dataset, loaded):
        result = run_task("gap-filling", data, persistence, Scorer(data, 2), config)
        figures.append(
            {
                (r["method"], r["sensor"], r["band"], r["split"]): r["rmse"]
                for r in summarise(result.records)
                if r["reference"] == "observation"
            }
        )
    assert figures[0] == figures[1] and len(figures[0]) > 20


def test_a_cube_without_the_conventions_is_refused(tmp_path) -> None:
    dataset = simulated_dataset(SMALL)
    dataset.s2.drop_vars("valid").to_zarr(tmp_path / "s2.zarr")
    dataset.landsat.to_zarr(tmp_path / "landsat.zarr")
    with pytest.raises(ValueError, match=r"no \['valid'\] variable"):
        cube_pair_dataset(tmp_path / "s2.zarr", tmp_path / "landsat.zarr")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        cube_pair_dataset(tmp_path / "nothing.zarr", tmp_path / "landsat.zarr")


@pytest.mark.realdata
def test_gap_filling_on_a_real_s2_series_holds_out_its_clear_dates(real_data_dir, tmp_path):
    dataset = openeo_s2_dataset(real_data_dir / "openeo-gfmap" / "test_optical_cube.nc")
    assert dataset.observed_s2_bands == ["S2_B2", "S2_B3", "S2_B4", "S2_B8"]
    assert dataset.landsat.sizes["time"] == 0 and dataset.truth is None
    # The README's clear dates (t = 4 and 17) are the ones clear after the production masks.
    clear = np.flatnonzero(dataset.s2["clear_fraction"].values >= 0.5)
    assert list(clear) == [4, 17]
    source = ModelSource(str(untrained_checkpoint(tmp_path / "model")), precision="fp32")
    config = ProtocolConfig(border_px=5, holdout="clear-dates", min_reference_clear=0.5)
    result = run_task("gap-filling", dataset, tamrf_predictor(source), Scorer(dataset, 5), config)
    summary = summarise(result.records)
    masked = {r["date"] for r in result.records if r["split"] == "masked"}
    times = dataset.s2["time"].values.astype("datetime64[D]")
    assert masked == {str(times[4]), str(times[17])}
    for method in ("tamrf", "linear"):
        rows = [r for r in summary if r["method"] == method]
        assert {r["band"] for r in rows} == {"S2_B2", "S2_B3", "S2_B4", "S2_B8"}
        assert all(r["pixels"] > 500 and r["rmse"] is not None for r in rows)
    # Each clear date stands in for the other (65 days apart): a real error, not zero.
    linear = [r["rmse"] for r in summary if r["method"] == "linear"]
    assert min(linear) > 0.01
