"""One training step's pieces: the learning-rate schedule, the model inputs of a sample, and
the sample's loss (pure functions of tensors; the loop lives in ``pipelines.training``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import Tensor

from tamrf_xr.model import TAMRF
from tamrf_xr.training.losses import LossConfig, SensorTargets, sample_loss

__all__ = ["CLOUDY_INPUTS", "ScheduleConfig", "learning_rate", "model_inputs", "sample_parts"]

CLOUDY_INPUTS = ("keep", "fill")


@dataclass(frozen=True)
class ScheduleConfig:
    """Adam's learning rate: linear warm-up from ``lr / 3`` for ``warmup_steps``, then cosine
    annealing with warm restarts every ``restart_steps`` down to ``eta_min`` (spec: one
    epoch of warm-up, lr 1e-4, eta_min 2e-5)."""

    lr: float = 1e-4
    eta_min: float = 2e-5
    warmup_steps: int = 1000
    restart_steps: int = 1000

    def __post_init__(self) -> None:
        if self.lr <= 0 or not 0 <= self.eta_min <= self.lr:
            raise ValueError("lr must be positive and eta_min in [0, lr]")
        if self.warmup_steps < 0 or self.restart_steps < 1:
            raise ValueError("warmup_steps must be >= 0 and restart_steps >= 1")


def learning_rate(step: int, config: ScheduleConfig) -> float:
    """The learning rate of optimiser step ``step`` (0-based): a function of the step alone,
    so a resumed run continues the schedule exactly."""
    if step < config.warmup_steps:
        start = config.lr / 3.0
        return start + (config.lr - start) * step / config.warmup_steps
    phase = (step - config.warmup_steps) % config.restart_steps
    cosine = 0.5 * (1.0 + math.cos(math.pi * phase / config.restart_steps))
    return config.eta_min + (config.lr - config.eta_min) * cosine


def model_inputs(sample: dict[str, Tensor], cloudy_inputs: str = "keep") -> tuple[Tensor, ...]:
    """(s2, s2_days, landsat, landsat_days, query_days) of the model, batch 1.

    The masked dates are left out; pixels without data become 0 (the band mean). Cloudy
    pixels: ``keep`` gives them as observed (the spec: the model never sees masks; this is
    also how :func:`~tamrf_xr.inference.predict` feeds it); ``fill`` makes them 0 too.
    Queries: every date of both sensors.
    """
    if cloudy_inputs not in CLOUDY_INPUTS:
        raise ValueError(f"cloudy_inputs {cloudy_inputs!r}: use one of {CLOUDY_INPUTS}")
    out = []
    for sensor in ("s2", "landsat"):
        kept = ~sample[f"{sensor}_masked"]
        values = sample[sensor][kept]
        usable = torch.isfinite(values)
        if cloudy_inputs == "fill":
            usable &= sample[f"{sensor}_clear"][kept][:, None]
        out += [
            torch.where(usable, values, torch.zeros((), dtype=values.dtype))[None],
            sample[f"{sensor}_days"][kept][None],
        ]
    queries = torch.unique(torch.cat([sample["s2_days"], sample["landsat_days"]]))
    return (*out, queries)


def _targets(sample: dict[str, Tensor], sensor: str) -> SensorTargets:
    return SensorTargets(
        sample[sensor],
        sample[f"{sensor}_clear"],
        sample[f"{sensor}_days"],
        sample[f"{sensor}_masked"],
    )


@dataclass
class StepConfig:
    loss: LossConfig = field(default_factory=LossConfig)
    cloudy_inputs: str = "keep"


def sample_parts(
    model: TAMRF | torch.nn.Module,
    sample: dict[str, Tensor],
    config: StepConfig,
    extra=None,
    autocast_dtype: torch.dtype | None = None,
) -> dict[str, Tensor]:
    """The loss parts of one sample (:func:`~tamrf_xr.training.losses.sample_loss`): the
    model's forward pass (under autocast when ``autocast_dtype`` is given), the losses in
    float32."""
    device = next(model.parameters()).device
    sample = {k: v.to(device) if isinstance(v, Tensor) else v for k, v in sample.items()}
    s2, s2_days, landsat, landsat_days, queries = model_inputs(sample, config.cloudy_inputs)
    if autocast_dtype is not None:
        with torch.autocast(device.type, dtype=autocast_dtype):
            prediction = model(s2, s2_days, landsat, landsat_days, queries)
    else:
        prediction = model(s2, s2_days, landsat, landsat_days, queries)
    return sample_loss(
        prediction[0].float(),
        queries,
        _targets(sample, "s2"),
        _targets(sample, "landsat"),
        config.loss,
        extra,
    )
