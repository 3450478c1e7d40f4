"""Training as a Prefect flow, with the parameters of ``tamrf train``.

Wiring only: one task runs :func:`pipelines.training.loop.train` (resuming the run in
``out_dir``); a keyed progress artifact follows the steps and a Markdown artifact gives the
result (the model, the last losses, the loss curve's path).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow, task
from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    update_progress_artifact,
)
from prefect.cache_policies import NO_CACHE

from pipelines.training.loop import TrainingRequest, train
from tamrf_xr.model import ModelConfig

__all__ = ["TRAINING_PROGRESS_KEY", "training_flow", "training_request"]

TRAINING_PROGRESS_KEY = "tamrf-training-progress"
TRAINING_SUMMARY_KEY = "tamrf-training-summary"


def training_request(
    store: str | Path,
    out_dir: str | Path,
    steps: int = 20_000,
    init_checkpoint: str | Path | None = None,
    features: int = 64,
    rdb_growth: int = 32,
    rdbs_per_rrdb: int = 3,
    rrdb_blocks: int = 1,
    transformer_layers: int = 3,
    ffn_dim: int = 256,
    lr: float = 1e-4,
    warmup_steps: int | None = None,
    restart_steps: int | None = None,
    max_dates: int = 50,
    s2_crop_px: int = 27,
    landsat_crop_px: int = 9,
    cloudy_inputs: str = "keep",
    checkpoint_every: int = 200,
    validate_every: int = 200,
    workers: int = 2,
    seed: int = 42,
    device: str = "auto",
    lpips_weights: str | Path | None = None,
) -> TrainingRequest:
    """A request from the flow's (or ``tamrf train``'s) parameters.

    Raises:
        ValueError: a value the request refuses (its message says which).
    """

    def path(value: str | Path | None) -> Path | None:
        return None if value is None else Path(value)

    return TrainingRequest(
        store=Path(store), out_dir=Path(out_dir), steps=steps,
        init_checkpoint=path(init_checkpoint),
        model=ModelConfig(features=features, rdb_growth=rdb_growth, rdbs_per_rrdb=rdbs_per_rrdb,
                          rrdb_blocks=rrdb_blocks, transformer_layers=transformer_layers,
                          ffn_dim=ffn_dim),
        lr=lr, warmup_steps=warmup_steps, restart_steps=restart_steps, max_dates=max_dates,
        s2_crop_px=s2_crop_px, landsat_crop_px=landsat_crop_px, cloudy_inputs=cloudy_inputs,
        checkpoint_every=checkpoint_every, validate_every=validate_every, workers=workers,
        seed=seed, device=device, lpips_weights=path(lpips_weights),
    )  # fmt: skip


@task(name="train-model", cache_policy=NO_CACHE)
def train_task(request: TrainingRequest) -> dict[str, Any]:
    artifact = create_progress_artifact(
        0.0, key=TRAINING_PROGRESS_KEY, description="Training: steps done"
    )
    every = max(1, request.steps // 100)

    def progress(done: int, total: int, values: dict) -> None:
        if done % every == 0 or done == total:
            update_progress_artifact(artifact, 100.0 * done / total)

    return train(request, progress)


@flow(name="tamrf-train", log_prints=True)
def training_flow(
    store: str,
    out_dir: str,
    steps: int = 20_000,
    init_checkpoint: str | None = None,
    features: int = 64,
    rdb_growth: int = 32,
    rdbs_per_rrdb: int = 3,
    rrdb_blocks: int = 1,
    transformer_layers: int = 3,
    ffn_dim: int = 256,
    lr: float = 1e-4,
    warmup_steps: int | None = None,
    restart_steps: int | None = None,
    max_dates: int = 50,
    s2_crop_px: int = 27,
    landsat_crop_px: int = 9,
    cloudy_inputs: str = "keep",
    checkpoint_every: int = 200,
    validate_every: int = 200,
    workers: int = 2,
    seed: int = 42,
    device: str = "auto",
    lpips_weights: str | None = None,
) -> dict[str, Any]:
    """Train (or resume) TAMRF on a training store; see ``tamrf train --help``."""
    request = training_request(
        store, out_dir, steps, init_checkpoint, features, rdb_growth, rdbs_per_rrdb,
        rrdb_blocks, transformer_layers, ffn_dim, lr, warmup_steps, restart_steps, max_dates,
        s2_crop_px, landsat_crop_px, cloudy_inputs, checkpoint_every, validate_every, workers,
        seed, device, lpips_weights,
    )  # fmt: skip
    summary = train_task(request)
    create_markdown_artifact(
        f"# Training run {out_dir}\n\n- model: `{summary['model']}`\n- steps: {summary['steps']}"
        f"\n- wall time: {summary['seconds']} s\n- resumed from: {summary['resumed_from']}\n"
        f"- loss curve: `{Path(out_dir) / 'loss.png'}`; log: `{Path(out_dir) / 'train.log'}`\n",
        key=TRAINING_SUMMARY_KEY,
        description="Training result",
    )
    return summary
