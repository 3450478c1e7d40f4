"""TAMRF over datacubes: dates, quality layers, lazy tiled prediction, seams, workers.

The model is the s1t3 network with seeded random weights (no trained weights can be fetched
here): its outputs carry no meaning, but everything these tests check (tiling, laziness,
seams, loading, the quality layers) does not depend on what the weights are.
"""

from __future__ import annotations

import datetime as dt
import pickle
from pathlib import Path

import dask.array as da
import numpy as np
import pytest
import xarray as xr
from scipy import ndimage

from pipelines.catalogs import LOCAL
from pipelines.datacube import CubeConfig, assemble_landsat, assemble_s2
from pipelines.demo.simulated_catalog import write_simulated_catalog
from pipelines.demo.stac_servers import load_static_catalog
from tamrf_xr.bands import BANDS
from tamrf_xr.inference import (
    InferenceConfig,
    ModelSource,
    clear_count,
    days_to_nearest_clear,
    predict,
    target_dates,
    untrained_checkpoint,
)
from tamrf_xr.inference.model_cache import loads_in_this_process
from tamrf_xr.inference.predict import block_layout, model_margin_px
from tamrf_xr.inference.quality import QUALITY_VARIABLES
from tamrf_xr.inference.seams import seam_errors
from tamrf_xr.simulate import Simulation, SimulationConfig

REGION = SimulationConfig(
    seed=4, width_px=180, height_px=180, start=dt.date(2022, 6, 1), end=dt.date(2022, 6, 10),
    cloud_cover_mean=0.15,
)  # fmt: skip
REFLECTANCE_TOLERANCE = 1e-4
"""Tiled vs whole-image inference, max over the whole cube: far below sensor noise (~0.005)."""
LST_TOLERANCE_K = 0.01


@pytest.fixture(scope="module")
def cubes(tmp_path_factory) -> tuple[xr.Dataset, xr.Dataset]:
    product = write_simulated_catalog(
        REGION, tmp_path_factory.mktemp("inf") / "p", with_truth=False
    )
    items = list(load_static_catalog(product.catalog).items)
    grid = Simulation(REGION).grid  # the region's 10 m grid
    keep = CubeConfig(min_valid_fraction=0.0)
    s2 = assemble_s2([i for i in items if i["collection"] == "sentinel-2-l2a"], grid, LOCAL, keep)
    landsat = assemble_landsat([i for i in items if i["collection"] == "landsat-c2-l2"], grid,
                               LOCAL, keep)  # fmt: skip
    return s2.compute(), landsat.compute()


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> ModelSource:
    return ModelSource(str(untrained_checkpoint(tmp_path_factory.mktemp("model") / "untrained")))


# --------------------------------------------------------------------------------------------
# Dates and quality layers
# --------------------------------------------------------------------------------------------


def test_target_dates_from_cadences_and_lists() -> None:
    semi = target_dates("SMS", "2022-01-01", "2022-03-20")
    assert [str(d) for d in semi] == ["2022-01-01", "2022-01-15", "2022-02-01", "2022-02-15",
                                      "2022-03-01", "2022-03-15"]  # fmt: skip
    ten = target_dates("10D", dt.date(2022, 1, 1), dt.date(2022, 1, 31))
    assert np.diff(ten).astype(int).tolist() == [10, 10, 10]
    listed = target_dates(["2022-05-02", dt.date(2022, 5, 1), "2022-05-02"])
    assert [str(d) for d in listed] == ["2022-05-01", "2022-05-02"]
    with pytest.raises(ValueError, match="unknown cadence 'fortnightly'"):
        target_dates("fortnightly", "2022-01-01", "2022-02-01")
    with pytest.raises(ValueError, match="needs a start and an end"):
        target_dates("SMS")


def test_quality_layers_against_brute_force() -> None:
    rng = np.random.default_rng(0)
    valid = rng.random((7, 5, 6)) > 0.6
    valid[:, 0, 0] = False  # never clear
    days = np.array([0, 3, 9, 20, 21, 40, 55], np.float32)
    queries = np.array([-5, 10, 30, 100], np.float32)
    got = days_to_nearest_clear(valid, days, queries)
    for q, query in enumerate(queries):
        for y in range(5):
            for x in range(6):
                clear = days[valid[:, y, x]]
                expected = -1 if clear.size == 0 else int(np.abs(clear - query).min())
                assert got[q, y, x] == expected
    np.testing.assert_array_equal(clear_count(valid), valid.sum(axis=0))
    assert (days_to_nearest_clear(np.zeros((0, 2, 2), bool), days[:0], queries) == -1).all()


# --------------------------------------------------------------------------------------------
# Prediction
# --------------------------------------------------------------------------------------------


def test_prediction_is_lazy_and_complete(cubes, source) -> None:
    s2, landsat = cubes
    out = predict(s2, landsat, "SMS", source, InferenceConfig(chunk_px=90, margin_px=30))
    assert [str(t)[:10] for t in out.time.values] == ["2022-06-01"]
    assert set(out.data_vars) == {b.name for b in BANDS} | set(QUALITY_VARIABLES)
    for name in out.data_vars:
        assert isinstance(out[name].data, da.Array), f"{name} was computed eagerly"
    assert out["S2_B4"].shape == (1, 180, 180) and out["S2_B4"].data.chunksize[1:] == (90, 90)
    assert out["LS_B10"].attrs["units"] == "K" and out["S2_B4"].attrs["units"] == "1"
    assert out.attrs["epsg"] == s2.attrs["epsg"] and "spatial_ref" in out.coords
    assert source.checkpoint in out.attrs["tamrf_model"]
    assert "weights_sha256" in out.attrs["tamrf_model"]
    for item_id in s2.item_ids.values:
        assert str(item_id).split()[0] in out.attrs["tamrf_inputs"]

    computed = out.isel(time=0).compute()
    # Predicted wherever a clear observation of either sensor lies within the margin (30 px).
    observed = s2.valid.values.any(0) | landsat.valid.values.any(0).repeat(3, 0).repeat(3, 1)
    supported = ndimage.distance_transform_edt(~observed) <= 30
    assert supported.mean() > 0.5
    for band in ("S2_B4", "LS_B10"):
        np.testing.assert_array_equal(np.isfinite(computed[band].values), supported)
    # Untrained weights: values are statistics-shaped noise, LST near the training mean (300 K).
    assert 200 < float(computed["LS_B10"].mean()) < 400

    # The quality layers agree with the cube's masks.
    days = ((s2.time.values.astype("datetime64[D]") - np.datetime64("2022-06-01")) /
            np.timedelta64(1, "D"))  # fmt: skip
    y, x = 37, 111
    clear = days[s2.valid.values[:, y, x]]
    expected = -1 if clear.size == 0 else int(np.abs(clear - 0).min())
    assert int(computed["s2_days_to_clear"].values[y, x]) == expected
    assert int(computed["s2_clear_count"].values[y, x]) == int(s2.valid.values[:, y, x].sum())
    landsat_clear = int(landsat.valid.values[:, y // 3, x // 3].sum())
    assert int(computed["landsat_clear_count"].values[y, x]) == landsat_clear


def test_tiled_inference_matches_whole_image_within_tolerance(cubes, source) -> None:
    """The default margin (the checkpoint's receptive field) keeps tiled results within the
    stated tolerance of one-block inference over the whole cube, its outer edges included
    (blocks there use the data that exist, as the whole cube does); without a margin the
    seams are far outside it (so the check can fail)."""
    s2, landsat = cubes
    default = model_margin_px(source.checkpoint)
    assert default == 60
    rows = {r["margin_px"]: r for r in seam_errors(s2, landsat, ["2022-06-08"], source,
                                                   chunk_px=90, margins=[0, None])}  # fmt: skip
    assert rows[default]["reflectance_max"] < REFLECTANCE_TOLERANCE
    assert rows[default]["lst_max_k"] < LST_TOLERANCE_K
    assert rows[0]["reflectance_max"] > 10 * REFLECTANCE_TOLERANCE


def test_an_empty_series_is_predicted_from_the_other_sensor(cubes, source) -> None:
    s2, landsat = cubes
    no_s2 = s2.isel(time=slice(0, 0))
    out = predict(no_s2, landsat, ["2022-06-05"], source, InferenceConfig(chunk_px=90,
                                                                         margin_px=30))  # fmt: skip
    computed = out.isel(x=slice(0, 90), y=slice(0, 90)).compute()
    assert (computed["s2_days_to_clear"].values == -1).all()
    assert (computed["s2_clear_count"].values == 0).all()
    seen = landsat.valid.values.any(0).repeat(3, 0).repeat(3, 1)[:90, :90]
    assert seen.mean() > 0.3 and np.isfinite(computed["S2_B4"].values[0][seen]).all()


def test_bad_cubes_are_clear_errors(cubes, source) -> None:
    s2, landsat = cubes
    swapped = s2.isel(band=[1, 0, *range(2, 10)])
    with pytest.raises(ValueError, match="needs exactly"):
        predict(swapped, landsat, ["2022-06-05"], source)
    with pytest.raises(ValueError, match="3x the 30 m one"):
        predict(s2, landsat.isel(x=slice(0, 30)), ["2022-06-05"], source)
    with pytest.raises(ValueError, match="both cubes are empty"):
        predict(s2.isel(time=slice(0, 0)), landsat.isel(time=slice(0, 0)), ["2022-06-05"],
                source)  # fmt: skip
    with pytest.raises(ValueError, match="multiple of 3"):
        InferenceConfig(chunk_px=100)
    with pytest.raises(ValueError, match="on its 30 m pixel edges"):
        west, _, _, north = (float(s2.x[0]) - 5, 0, 0, float(s2.y[0]) + 5)
        predict(s2, landsat, ["2022-06-05"], source,
                output_bounds=(west + 10, north - 300, west + 300, north))  # fmt: skip


def test_output_bounds_predict_the_inside_with_the_cube_as_context(cubes, source) -> None:
    """One margin: the output area is cut into blocks, each computed with the cube around it
    as context, so predicting the inside of a cube equals predicting the whole cube and
    cropping; nothing outside the output area is predicted (its blocks cover it exactly)."""
    s2, landsat = cubes
    west, north = float(s2.x[0]) - 5, float(s2.y[0]) + 5
    bounds = (west + 600, north - 1500, west + 1500, north - 600)  # rows/cols 60..150
    config = InferenceConfig(chunk_px=45)
    inside = predict(s2, landsat, ["2022-06-08"], source, config, output_bounds=bounds)
    assert inside["S2_B4"].shape == (1, 90, 90)
    assert inside["S2_B4"].data.chunks[1:] == ((45, 45), (45, 45))
    assert float(inside.x[0]) == west + 605 and float(inside.y[0]) == north - 605
    assert inside.attrs["geotransform"][0] == west + 600
    whole = predict(s2, landsat, ["2022-06-08"], source, InferenceConfig(chunk_px=180))
    expected = whole.isel(y=slice(60, 150), x=slice(60, 150)).compute()
    got = inside.compute()
    for band in ("S2_B4", "LS_B10", "s2_days_to_clear", "landsat_clear_count"):
        np.testing.assert_allclose(got[band].values, expected[band].values, atol=2e-4)


def test_automatic_blocks_bound_memory_and_split_evenly() -> None:
    from tamrf_xr.flops import forward_memory_bytes
    from tamrf_xr.model import ModelConfig

    config = InferenceConfig(margin_px=60)
    # few dates: one block holds a whole 330 px tile
    assert block_layout(330, 330, config, (10, 6, 12)) == ((330,), (330,))
    # many dates: equal blocks, each within the budget
    rows, cols = block_layout(990, 990, config, (79, 49, 24))
    assert len(set(rows)) == 1 and sum(rows) == 990 and rows == cols and rows[0] % 3 == 0
    held = forward_memory_bytes(ModelConfig(), rows[0] + 120, cols[0] + 120, 79, 49, 24,
                                (60, 60, 60, 60))  # fmt: skip
    assert held <= config.block_memory_mb * 1e6
    # a fixed size splits into equal blocks, never a sliver
    assert block_layout(990, 240, InferenceConfig(chunk_px=480), (1, 1, 1)) == (
        (330, 330, 330),
        (240,),
    )


# --------------------------------------------------------------------------------------------
# Workers
# --------------------------------------------------------------------------------------------


def test_model_is_loaded_once_per_worker_and_never_shipped(cubes, source, tmp_path: Path):
    from distributed import Client, LocalCluster

    s2, landsat = cubes
    config = InferenceConfig(chunk_px=60, margin_px=12)
    out = predict(s2, landsat, ["2022-06-08"], source, config)[["S2_B4", "LS_B10"]]
    from safetensors.numpy import load_file

    blob = pickle.dumps(dict(out.__dask_graph__()))
    weights = load_file(str(Path(source.checkpoint) / "model.safetensors"))
    largest = max(weights.values(), key=lambda w: w.size)
    assert largest.tobytes()[:4096] not in blob, "the weights travel in the task graph"
    assert pickle.dumps(source) in blob or source.checkpoint.encode() in blob

    local = out.compute(scheduler="threads")
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster, Client(cluster) as client:  # fmt: skip
        distributed = out.compute()
        loads = client.run(loads_in_this_process)
    assert sum(loads.values()) >= 1 and max(loads.values()) == 1, loads  # 9 blocks, <= 1 load
    for name in ("S2_B4", "LS_B10"):
        np.testing.assert_allclose(distributed[name].values, local[name].values, rtol=1e-5,
                                   atol=1e-5)  # fmt: skip


def test_one_forward_pass_at_a_time_per_process(cubes, source, monkeypatch) -> None:
    """With several task threads, blocks are prepared concurrently but their forward passes
    never overlap in one process (they would oversubscribe the worker's cores)."""
    import importlib
    import threading
    import time

    # The module (``tamrf_xr.inference.predict`` the attribute is the function).
    predict_module = importlib.import_module("tamrf_xr.inference.predict")

    active, peak, calls = [0], [0], [0]
    lock = threading.Lock()
    original = predict_module.run_block

    def counted(*args, **kwargs):
        with lock:
            active[0] += 1
            calls[0] += 1
            peak[0] = max(peak[0], active[0])
        time.sleep(0.05)  # widen the window in which an overlap would show
        try:
            return original(*args, **kwargs)
        finally:
            with lock:
                active[0] -= 1

    monkeypatch.setattr(predict_module, "run_block", counted)
    s2, landsat = cubes
    out = predict(s2, landsat, ["2022-06-08"], source, InferenceConfig(chunk_px=90, margin_px=12))
    out["S2_B4"].compute(scheduler="threads", num_workers=4)
    assert calls[0] == 4 and peak[0] == 1


def test_workers_run_the_measured_kernel_defaults(source) -> None:
    """cached_model applies the kernel settings: one date per encoder call, a 16 MB
    transformer budget, channels_last convolutions on CPU (overridable)."""
    import dataclasses

    import torch

    from tamrf_xr.inference import cached_model
    from tamrf_xr.inference.kernel_settings import DEFAULT_KERNEL

    model = cached_model(source).model
    assert model.encoder_batch_dates == DEFAULT_KERNEL.encoder_batch_dates == 1
    assert model.memory_budget_bytes == int(DEFAULT_KERNEL.memory_mb * 2**20)
    assert model.s2_encoder.head.weight.is_contiguous(memory_format=torch.channels_last)
    plain = cached_model(dataclasses.replace(source, channels_last=False)).model
    assert not plain.s2_encoder.head.weight.is_contiguous(memory_format=torch.channels_last)
