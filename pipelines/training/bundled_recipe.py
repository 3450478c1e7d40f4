"""The recipe of the bundled model: its simulated regions, configuration and schedule.

``python -m pipelines.training.bundled_recipe OUT_DIR [--steps N]`` builds the training store
(once) and trains, resuming from the last checkpoint when run again; progress is in
``OUT_DIR/run/train.log``. The model card (``tamrf_xr/models/README.md``) says why each
choice differs from the spec's where it does (CPU training time).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import shutil
from pathlib import Path

import torch

from pipelines.training.builder import DatasetRequest, build_from_simulation
from pipelines.training.loop import TrainingRequest, train
from tamrf_xr.model import ModelConfig
from tamrf_xr.simulate import SimulationConfig
from tamrf_xr.training.store import PatchConfig

BUNDLED_ARCHITECTURE = ModelConfig(
    features=16, rdb_growth=16, rdbs_per_rrdb=1, transformer_layers=1, ffn_dim=64
)
"""The s1t3 architecture, narrower and shallower: 16 features (s1t3: 64), growth 16 (32),
1 RDB per RRDB (3), 1 transformer layer (3), FFN 64 (256)."""
PATCH = PatchConfig(patch_px=66)
"""66 px patches (22 Landsat pixels) instead of 165: 6x fewer pixels per step."""


def region(seed: int, size_px: int, lon: float, lat: float, cloud: float) -> SimulationConfig:
    return SimulationConfig(
        seed=seed,
        center_lon=lon,
        center_lat=lat,
        width_px=size_px,
        height_px=size_px,
        start=dt.date(2022, 1, 1),
        end=dt.date(2022, 12, 31),
        cloud_cover_mean=cloud,
        landsat_l2sr_fraction=0.0,
    )


TRAINING_REGIONS = [
    region(1001 + k, 198, lon, lat, cloud)
    for k, (lon, lat, cloud) in enumerate(
        [
            (1.45, 43.6, 0.45),
            (4.8, 45.7, 0.55),
            (-1.6, 47.2, 0.6),
            (2.3, 48.8, 0.5),
            (-3.7, 40.4, 0.3),
            (11.3, 44.5, 0.45),
            (7.7, 45.1, 0.4),
            (-0.4, 39.5, 0.25),
        ]
    )
]
"""Eight 2 km regions (seeds 1001-1008; the evaluation uses seed 101), a year each."""
VALIDATION_REGIONS = [region(2001, 132, 0.7, 44.0, 0.45), region(2002, 132, 5.4, 43.3, 0.35)]


RESTART_STEPS = 1800
"""Cosine annealing with warm restarts every 1800 steps: a run of 1800 steps ends at eta_min,
and a run extended by resuming (``--steps 3600``...) continues the same schedule."""


def training_request(out_dir: Path, steps: int) -> TrainingRequest:
    return TrainingRequest(
        store=out_dir / "store",
        out_dir=out_dir / "run",
        steps=steps,
        model=BUNDLED_ARCHITECTURE,
        lr=5e-4,
        eta_min=2e-5,
        warmup_steps=100,
        restart_steps=RESTART_STEPS,
        max_dates=16,
        s2_crop_px=12,
        landsat_crop_px=4,
        checkpoint_every=100,
        validate_every=250,
        validation_samples=6,
        log_every=10,
        workers=1,
    )


def _hardware() -> str:
    cpu = "unknown CPU"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        names = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
                 if line.startswith("model name")]  # fmt: skip
        cpu = f"{names[0] if names else cpu}, {len(names)} cores"
    return f"{cpu}, {torch.get_num_threads()} torch threads, no GPU"


def publish(out_dir: Path, package_dir: Path) -> Path:
    """Copy the run's final model into the package as the bundled checkpoint, with the
    recipe in its origin (data, steps, wall time, hardware) and the loss curve."""
    from tamrf_xr.models import BUNDLED_MODEL

    source = out_dir / "run" / "model"
    target = package_dir / BUNDLED_MODEL
    target.mkdir(parents=True, exist_ok=True)
    shutil.copy2(source / "model.safetensors", target / "model.safetensors")
    (target / "model.safetensors").chmod(0o644)
    config = json.loads((source / "config.json").read_text())
    origin = config["origin"]
    config["origin"] = {
        "kind": "trained",
        "name": BUNDLED_MODEL,
        "recipe": "pipelines.training.bundled_recipe",
        "steps": origin.get("steps"),
        "wall_time_s": origin.get("wall_time_s"),
        "hardware": _hardware(),
        "data": {
            "training_regions": [json.loads(c.to_json()) for c in TRAINING_REGIONS],
            "validation_regions": [json.loads(c.to_json()) for c in VALIDATION_REGIONS],
            "patch_px": PATCH.patch_px,
        },
        "training": origin.get("training"),
        "note": "trained on simulated regions only: for the demo, tests and as a starting "
        "point for fine-tuning; see tamrf_xr/models/README.md",
    }
    (target / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    shutil.copy2(out_dir / "run" / "loss.png", target / "loss.png")
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--steps", type=int, default=1800)
    parser.add_argument(
        "--publish",
        type=Path,
        default=None,
        help="copy the final model into this package folder (tamrf_xr/models)",
    )
    args = parser.parse_args()
    if args.publish is not None:
        print(publish(args.out_dir, args.publish))
        return
    store = args.out_dir / "store"
    if not (store / "zarr.json").is_file():
        summary = build_from_simulation(
            TRAINING_REGIONS, VALIDATION_REGIONS, DatasetRequest(store, PATCH)
        )
        print(json.dumps(summary))
    request = training_request(args.out_dir, args.steps)
    print(json.dumps(train(request)))
    print(json.dumps(dataclasses.asdict(BUNDLED_ARCHITECTURE)))


if __name__ == "__main__":
    main()
