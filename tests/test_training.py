"""Training data, schedule, loop (exact resume, DDP with gloo), the LPIPS-style term and the
commands: on a tiny simulated store and a tiny network."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from pipelines.training.builder import DatasetRequest, build_from_simulation
from pipelines.training.loop import TrainingRequest, train
from tamrf_xr.checkpoint import load_model
from tamrf_xr.evaluation.dataset import cube
from tamrf_xr.model import ModelConfig
from tamrf_xr.simulate import SimulationConfig
from tamrf_xr.training.data import STRATEGY_WEIGHTS, draw_dates, draw_strategy
from tamrf_xr.training.lpips import LPIPS, LpipsTerm, ridge_targets
from tamrf_xr.training.step import ScheduleConfig, learning_rate
from tamrf_xr.training.store import PatchConfig, TrainingStore, cube_patches

REPO_ROOT = Path(__file__).resolve().parents[1]
TINY_NET = ModelConfig(features=8, rdb_growth=8, rdbs_per_rrdb=1, transformer_layers=1, ffn_dim=32)


def region(seed: int) -> SimulationConfig:
    return SimulationConfig(
        seed=seed,
        width_px=96,
        height_px=96,
        start=dt.date(2022, 5, 1),
        end=dt.date(2022, 7, 10),
        landsat_l2sr_fraction=0.0,
    )


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("training") / "store"
    summary = build_from_simulation(
        [region(31)], [region(32)], DatasetRequest(path, PatchConfig(patch_px=48))
    )
    assert summary["patches"] == {"train": 4, "validation": 4}
    return path


def tiny_request(store: Path, out: Path, steps: int, **extra) -> TrainingRequest:
    return TrainingRequest(
        store=store,
        out_dir=out,
        steps=steps,
        model=TINY_NET,
        max_dates=8,
        s2_crop_px=6,
        landsat_crop_px=2,
        checkpoint_every=2,
        validate_every=2,
        validation_samples=2,
        log_every=1,
        workers=0,
        warmup_steps=2,
        restart_steps=4,
        **extra,
    )


# -- data ---------------------------------------------------------------------------------------


def test_patches_keep_dates_a_quarter_clear_and_count_days_from_the_window() -> None:
    days = [np.datetime64("2022-01-01") + np.timedelta64(d, "D") for d in (0, 10, 400)]
    valid = [np.ones((6, 6), bool), np.zeros((6, 6), bool), np.ones((6, 6), bool)]
    valid[1][:, :2] = True  # 1/3 clear on the left patch... and 0 on the right one
    values = [np.full((10, 6, 6), 0.1, np.float32)] * 3
    names = [f"b{k}" for k in range(10)]
    s2 = cube("s2", days, values, valid, names, 10.0, (0.0, 0.0, 60.0, 60.0), 32631)
    landsat = cube(
        "ls", [], [], [], [f"l{k}" for k in range(8)], 30.0, (0.0, 0.0, 60.0, 60.0), 32631
    )
    patches = list(cube_patches(s2, landsat, PatchConfig(patch_px=3, window_days=365)))
    by_window: dict[str, list] = {}
    for p in patches:
        by_window.setdefault(p.attrs["window_start"], []).append(p)
    assert sorted(by_window) == ["2022-01-01", "2023-01-01"], "windows of 365 days"
    first = by_window["2022-01-01"]
    assert len(first) == 4  # 2 x 2 patches of 3 px
    left_top = next(
        p for p in first if p.attrs["bounds"][0] == 0.0 and p.attrs["bounds"][3] == 60.0
    )
    assert list(left_top.s2_days) == [0, 10], "2/3 clear on day 10: kept (>= 25 %)"
    right_top = next(
        p for p in first if p.attrs["bounds"][0] == 30.0 and p.attrs["bounds"][3] == 60.0
    )
    assert list(right_top.s2_days) == [0], "0 % clear: left out"
    assert list(by_window["2023-01-01"][0].s2_days) == [400 - 365], "days from the window start"


def test_dates_are_drawn_in_proportion_and_sorted() -> None:
    rng = np.random.default_rng(0)
    s2, landsat = draw_dates(60, 40, 50, rng)
    assert len(s2) == 30 and len(landsat) == 20
    assert (np.diff(s2) > 0).all() and (np.diff(landsat) > 0).all()
    s2, landsat = draw_dates(10, 5, 50, rng)
    assert list(s2) == list(range(10)) and list(landsat) == list(range(5)), "all when they fit"


def test_strategies_are_drawn_with_the_spec_weights() -> None:
    rng = np.random.default_rng(1)
    draws = [draw_strategy(rng) for _ in range(16_000)]
    for name, weight in STRATEGY_WEIGHTS.items():
        assert draws.count(name) / 16_000 == pytest.approx(weight / 16, abs=0.012), name


def test_schedule_warms_up_from_a_third_then_anneals_and_restarts() -> None:
    config = ScheduleConfig(lr=1e-4, eta_min=2e-5, warmup_steps=10, restart_steps=20)
    assert learning_rate(0, config) == pytest.approx(1e-4 / 3)
    assert learning_rate(10, config) == pytest.approx(1e-4)
    assert learning_rate(20, config) == pytest.approx(2e-5 + 0.5 * 8e-5)  # half-way down
    assert learning_rate(29, config) > 2e-5
    assert learning_rate(30, config) == pytest.approx(1e-4), "warm restart"


def test_the_store_round_trips_and_refuses_to_be_overwritten(store) -> None:
    opened = TrainingStore(store)
    assert len(opened) == 8 and len(opened.split_indices("validation")) == 4
    patch = opened.read(0)
    assert patch.s2.shape[1:] == (10, 48, 48) and patch.landsat.shape[1:] == (8, 16, 16)
    assert (patch.s2_valid.mean(axis=(1, 2)) >= 0.25).all()
    with pytest.raises(FileExistsError):
        TrainingStore.create(store, PatchConfig(), {})
    with pytest.raises(FileNotFoundError, match="build-dataset"):
        TrainingStore(store.parent / "nothing")


# -- the loop -----------------------------------------------------------------------------------


def test_a_resumed_run_equals_an_uninterrupted_one(store, tmp_path) -> None:
    whole = train(tiny_request(store, tmp_path / "whole", 6))
    assert whole["resumed_from"] is None
    train(tiny_request(store, tmp_path / "cut", 4))  # stopped after step 4 (checkpoint at 4)
    resumed = train(tiny_request(store, tmp_path / "cut", 6))
    assert resumed["resumed_from"] == 4
    a = load_model(tmp_path / "whole" / "model").model.state_dict()
    b = load_model(tmp_path / "cut" / "model").model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a), "weights identical"
    rows = [(tmp_path / d / "metrics.csv").read_text().splitlines() for d in ("whole", "cut")]
    strip = lambda lines: [",".join(line.split(",")[:-1]) for line in lines]  # noqa: E731
    assert strip(rows[0]) == strip(rows[1]), "same samples, losses and rates (seconds aside)"
    log = (tmp_path / "cut" / "train.log").read_text()
    assert "resumed from step-0000004" in log and "LPIPS-style term off" in log
    assert (tmp_path / "whole" / "loss.png").read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "whole" / "validation.csv").read_text().count("\n") == 4  # header + 3
    assert list((tmp_path / "whole" / "tensorboard").iterdir()), "TensorBoard events"
    initial = TINY_NET
    assert load_model(tmp_path / "whole" / "model").model.config == initial


def test_two_gloo_processes_train_one_model_with_torchrun(store, tmp_path) -> None:
    request = tiny_request(store, tmp_path / "ddp", 2)
    path = tmp_path / "request.json"
    path.write_text(json.dumps(request.to_json()))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    ran = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node",
            "2",
            "--master_port",
            "29533",
            "-m",
            "pipelines.training.worker",
            str(path),
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO_ROOT,
        timeout=600,
    )
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "2 process(es)" in (tmp_path / "ddp" / "train.log").read_text()
    trained = load_model(tmp_path / "ddp" / "model")
    assert trained.metadata["origin"]["steps"] == 2
    # Rank 0 logged steps 0 and 1, which read samples 0 and 2 (rank 1 read 1 and 3).
    assert (tmp_path / "ddp" / "metrics.csv").read_text().count("\n") == 3


# -- LPIPS --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def lpips_folder(tmp_path_factory) -> Path:
    """Weights files in the layout users provide (random values: the mechanics, not LPIPS)."""
    folder = tmp_path_factory.mktemp("lpips")
    torch.manual_seed(0)
    network = LPIPS()
    torch.save(
        {f"features.{k}": v for k, v in network.features.state_dict().items()}, folder / "vgg16.pth"
    )
    torch.save(
        {f"lin{k}.model.1.weight": lin.weight.abs() for k, lin in enumerate(network.lins)},
        folder / "lpips_vgg.pth",
    )
    return folder


def test_lpips_weights_load_and_identical_images_are_at_distance_zero(lpips_folder) -> None:
    term = LpipsTerm.from_folder(lpips_folder, torch.device("cpu"))
    image = torch.rand(2, 3, 32, 32)
    assert term.network(image, image).abs().max() == 0.0
    assert (term.network(image, torch.rand(2, 3, 32, 32)) > 0).all()
    with pytest.raises(FileNotFoundError, match=r"lpips_vgg\.pth"):
        LpipsTerm.from_folder(lpips_folder.parent, torch.device("cpu"))


def test_ridge_targets_solve_the_spec_system() -> None:
    rng = np.random.default_rng(2)
    x = rng.normal(size=(4, 10, 10))
    y = 0.5 * x[0] - 2.0 * x[3] + 0.01 * rng.normal(size=(10, 10)) + 3.0
    valid = np.ones((10, 10), bool)
    valid[0] = False
    fitted = ridge_targets(torch.tensor(x), torch.tensor(y[None]), torch.tensor(valid)).numpy()[0]
    # By hand: z-score on the valid pixels, bias column, (X^T X + 1e-3 I) A = X^T Y.
    xv, yv = x[:, valid].T, y[valid]
    xm, xs, ym, ys = xv.mean(0), xv.std(0, ddof=1), yv.mean(), yv.std(ddof=1)
    design = np.c_[(xv - xm) / xs, np.ones(len(xv))]
    a = np.linalg.solve(design.T @ design + 1e-3 * np.eye(5), design.T @ ((yv - ym) / ys))
    everywhere = np.c_[(x.reshape(4, -1).T - xm) / xs, np.ones(100)]
    np.testing.assert_allclose(fitted, ((everywhere @ a) * ys + ym).reshape(10, 10), rtol=1e-10)


def test_lpips_term_skips_cloudy_dates_and_moves_only_the_prediction(lpips_folder) -> None:
    term = LpipsTerm.from_folder(lpips_folder, torch.device("cpu"))
    term.crop_px = 2
    observed = torch.rand(10, 36, 36)
    predicted = torch.rand(18, 36, 36, requires_grad=True)
    clear = torch.ones(36, 36, dtype=torch.bool)
    loss = term.date_loss(observed, clear, predicted)
    assert loss is not None and loss.item() > 0
    loss.backward()
    assert predicted.grad.abs().sum() > 0 and observed.grad is None
    clear[:12] = False  # rows 2-11: 10 of the 32 inner rows, 31 % masked (above 25 %)
    assert term.date_loss(observed, clear, predicted) is None


# -- commands -----------------------------------------------------------------------------------


def test_build_dataset_and_train_commands(tmp_path) -> None:
    from cli_process import tamrf

    store = tmp_path / "store"
    built = tamrf(
        [
            "build-dataset",
            str(store),
            "--simulated",
            "--seeds",
            "41",
            "--validation-seeds",
            "42",
            "--size-px",
            "96",
            "--start",
            "2022-05-01",
            "--end",
            "2022-06-20",
            "--patch-px",
            "48",
            "--no-progress",
        ]
    )
    assert built.exit_code == 0, built.output
    assert 4 <= len(TrainingStore(store)) <= 8  # 2 x 4 patches, less any without a valid date
    out = tmp_path / "run"
    args = [
        "train",
        str(store),
        str(out),
        "--steps",
        "2",
        "--features",
        "8",
        "--rdb-growth",
        "8",
        "--rdbs-per-rrdb",
        "1",
        "--transformer-layers",
        "1",
        "--ffn-dim",
        "32",
        "--max-dates",
        "8",
        "--s2-crop-px",
        "6",
        "--landsat-crop-px",
        "2",
        "--checkpoint-every",
        "1",
        "--workers",
        "0",
        "--no-progress",
    ]
    ran = tamrf(args)
    assert ran.exit_code == 0, ran.output
    assert (out / "model" / "config.json").is_file() and "model:" in ran.output
    again = tamrf([*args[:4], "4", *args[5:]])
    assert again.exit_code == 0 and "resumed from step 2" in again.output
    bad = tamrf(["train", str(tmp_path / "nothing"), str(out)])
    assert bad.exit_code == 2 and "error:" in bad.output and "build-dataset" in bad.output


def test_a_store_from_a_catalog_goes_through_the_datacube_pipeline(tmp_path) -> None:
    """A simulated product served by a real STAC API: the AOI's tiles are assembled by the
    production chain and cut into patches with physical values and the valid-date rule."""
    from pyproj import Transformer
    from shapely.geometry import box, mapping

    from pipelines.demo.simulated_catalog import write_simulated_catalog
    from pipelines.demo.stac_servers import RustacServer
    from pipelines.production import ProductionRequest
    from pipelines.training.builder import build_from_catalog
    from tamrf_xr.simulate.geometry import region_grid

    config = SimulationConfig(seed=51, width_px=168, height_px=168, start=dt.date(2022, 6, 1),
                              end=dt.date(2022, 6, 30), cloud_cover_mean=0.3)  # fmt: skip
    product = write_simulated_catalog(config, tmp_path / "sim", with_truth=False)
    west, south, east, north = region_grid(config).bounds
    to_lonlat = Transformer.from_crs(region_grid(config).epsg, 4326, always_xy=True)
    middle_x, middle_y = (west + east) / 2, (south + north) / 2
    corners = [to_lonlat.transform(middle_x + dx, middle_y + dy) for dx in (-300, 300)
               for dy in (-300, 300)]  # fmt: skip
    lons, lats = zip(*corners, strict=True)
    aoi = mapping(box(min(lons), min(lats), max(lons), max(lats)))
    with RustacServer(product.catalog) as server:
        production = ProductionRequest(catalog="earth-search-v1", catalog_url=server.url, aoi=aoi,
                                       start=config.start, end=config.end,
                                       out_dir=tmp_path / "unused")  # fmt: skip
        summary = build_from_catalog(
            production,
            DatasetRequest(
                tmp_path / "store", PatchConfig(patch_px=30), tiles_px=1, validation_every=2
            ),
        )
    assert summary["tiles"] >= 4 and summary["patches"]["validation"] >= 1
    store = TrainingStore(tmp_path / "store")
    assert store.root.attrs["source"] == "catalog"
    for k in range(len(store)):
        patch = store.read(k)
        assert patch.s2.shape[1:] == (10, 30, 30) and patch.landsat.shape[1:] == (8, 10, 10)
        assert (patch.s2_valid.mean(axis=(1, 2)) >= 0.25).all()
        assert (patch.s2_days >= 0).all() and (patch.s2_days < 30).all()
        red = patch.s2[:, 2][patch.s2_valid]
        assert red.size == 0 or 0.0 < np.median(red) < 0.3, "reflectance, not DNs"
        lst = patch.landsat[:, 7][patch.landsat_valid]
        assert lst.size == 0 or 250 < np.nanmedian(lst) < 330, "LST in Kelvin"


def test_fine_tuning_starts_from_the_given_weights_and_says_so(store, tmp_path) -> None:
    from tamrf_xr.checkpoint import save_checkpoint
    from tamrf_xr.model import TAMRF
    from tamrf_xr.normalisation import REFERENCE_LS2S2_ALL

    torch.manual_seed(5)
    start = save_checkpoint(TAMRF(TINY_NET), REFERENCE_LS2S2_ALL, tmp_path / "start",
                            origin={"kind": "test-start"})  # fmt: skip
    # The request's own architecture is ignored: the checkpoint's is used.
    request = dataclasses.replace(tiny_request(store, tmp_path / "ft", 1), model=ModelConfig(),
                                  init_checkpoint=start)  # fmt: skip
    train(request)
    tuned = load_model(tmp_path / "ft" / "model")
    assert tuned.model.config == TINY_NET
    assert tuned.metadata["origin"]["kind"] == "fine-tuned"
    assert tuned.metadata["origin"]["from"] == {"kind": "test-start"}
    before = load_model(start).model.state_dict()
    after = tuned.model.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before), "one step moved it"


def test_the_training_flow_publishes_progress_and_a_summary(prefect_harness, store, tmp_path):
    from prefect.artifacts import Artifact

    from flows.training_flow import TRAINING_PROGRESS_KEY, TRAINING_SUMMARY_KEY, training_flow

    summary = training_flow(str(store), str(tmp_path / "flow"), steps=2, features=8,
                            rdb_growth=8, rdbs_per_rrdb=1, transformer_layers=1, ffn_dim=32,
                            max_dates=8, s2_crop_px=6, landsat_crop_px=2, checkpoint_every=1,
                            workers=0)  # fmt: skip
    assert Path(summary["model"], "config.json").is_file()
    assert float(Artifact.get(TRAINING_PROGRESS_KEY).data) == 100.0
    assert "loss curve" in Artifact.get(TRAINING_SUMMARY_KEY).data
