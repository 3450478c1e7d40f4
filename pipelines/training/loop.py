"""The training loop: Adam, the schedule, gradient clipping, checkpoints, exact resume,
validation, metrics (CSV, TensorBoard, a loss-curve PNG), one or several processes.

``train(TrainingRequest(...))`` runs in one process, or in each process that ``torchrun``
starts (``torchrun --nproc_per_node N -m pipelines.training.worker ARGS``): the processes
form a DDP group (NCCL on GPUs, gloo on CPUs) and every optimiser step averages the gradients
of one sample per process.

Everything a run writes is under ``out_dir``:

- ``checkpoints/step-NNNNNNN/``: a model checkpoint (the format of ``tamrf_xr.checkpoint``)
  and ``training_state.pt`` (optimiser, step, RNG states, the request); ``latest.json``
  names the newest. The two newest are kept.
- ``metrics.csv`` (every step: learning rate, losses, strategy, seconds), ``validation.csv``,
  ``tensorboard/``, ``loss.png``, and ``train.log``, a line per logged step: progress can be
  read from it at any time (``tail -f``).
- ``model/``: the final checkpoint.

Resume is exact: every random draw of step ``s`` is seeded by ``(seed, s)`` (the sample,
the masking, dropout), the schedule is a function of ``s``, and the optimiser state is
restored, so a run stopped and resumed ends with the same weights as one never stopped.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader

from pipelines.atomic_json import write_json_atomically
from tamrf_xr.checkpoint import load_model, save_checkpoint
from tamrf_xr.model import TAMRF, ModelConfig
from tamrf_xr.normalisation import REFERENCE_LS2S2_ALL, Normalisation
from tamrf_xr.training.data import PatchDataset, SamplingConfig
from tamrf_xr.training.losses import LossConfig
from tamrf_xr.training.step import (
    CLOUDY_INPUTS,
    ScheduleConfig,
    StepConfig,
    learning_rate,
    sample_parts,
)
from tamrf_xr.training.store import TrainingStore

__all__ = ["TrainingRequest", "train"]

Progress = Callable[[int, int, dict[str, float]], None]
KEPT_CHECKPOINTS = 2


@dataclass(frozen=True)
class TrainingRequest:
    """One training run (every field is also a ``tamrf train`` option)."""

    store: Path
    out_dir: Path
    steps: int = 20_000
    """Optimiser steps (one sample per process each)."""
    model: ModelConfig = field(default_factory=ModelConfig)
    """Architecture of a new model (ignored when fine-tuning from ``init_checkpoint``)."""
    init_checkpoint: Path | None = None
    """Start from these weights and their normalisation (fine-tuning; ours or the authors'
    ``.ckpt`` through the importer)."""
    lr: float = 1e-4
    eta_min: float = 2e-5
    warmup_steps: int | None = None
    """Default: one epoch (one read of every training patch), as the spec."""
    restart_steps: int | None = None
    """Cosine restarts period; default one epoch."""
    grad_clip: float = 0.1
    max_dates: int = 50
    s2_crop_px: int = 27
    """Border cropped from S2 (10 m) before the data term (spec: 27 px of 165 px patches)."""
    landsat_crop_px: int = 9
    """Border cropped from Landsat (30 m) before the data term (spec: 9 px)."""
    cloudy_inputs: str = "keep"
    checkpoint_every: int = 200
    validate_every: int = 200
    validation_samples: int = 8
    log_every: int = 10
    workers: int = 2
    """DataLoader worker processes (0: read in the training process)."""
    seed: int = 42
    device: str = "auto"
    """``auto`` (the process's GPU when there is one), ``cpu`` or ``cuda``."""
    bf16_on_gpu: bool = True
    lpips_weights: Path | None = None
    """Folder with the VGG16 and LPIPS weights (see ``tamrf_xr.training.lpips``)."""

    def __post_init__(self) -> None:
        if self.steps < 1 or self.checkpoint_every < 1 or self.log_every < 1:
            raise ValueError("steps, checkpoint_every and log_every must be >= 1")
        if self.max_dates < 2 or self.grad_clip <= 0:
            raise ValueError("max_dates must be >= 2 and grad_clip > 0")
        if self.cloudy_inputs not in CLOUDY_INPUTS:
            raise ValueError(f"--cloudy-inputs {self.cloudy_inputs!r}: use keep or fill")

    def to_json(self) -> dict[str, Any]:
        raw = asdict(self)
        return {k: str(v) if isinstance(v, Path) else v for k, v in raw.items()}


def _distributed() -> tuple[int, int]:
    """(rank, world size), joining the process group ``torchrun`` set up, if any."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend)
    return (dist.get_rank(), world) if world > 1 else (0, 1)


def _device(request: TrainingRequest) -> torch.device:
    if request.device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        return torch.device("cpu")
    return torch.device(request.device)


def _latest(out_dir: Path) -> Path | None:
    pointer = out_dir / "checkpoints" / "latest.json"
    if not pointer.is_file():
        return None
    return out_dir / "checkpoints" / json.loads(pointer.read_text())["checkpoint"]


def _model(request: TrainingRequest) -> tuple[TAMRF, Normalisation, dict[str, Any]]:
    if request.init_checkpoint is None:
        torch.manual_seed(request.seed)
        return TAMRF(request.model), REFERENCE_LS2S2_ALL, {"kind": "trained", "from": None}
    loaded = load_model(request.init_checkpoint)
    return (
        loaded.model,
        loaded.normalisation,
        {
            "kind": "fine-tuned",
            "from": loaded.metadata.get("origin"),
            "from_sha256": loaded.checksum,
        },
    )


def _schedule(request: TrainingRequest, epoch_steps: int) -> ScheduleConfig:
    return ScheduleConfig(
        lr=request.lr,
        eta_min=request.eta_min,
        warmup_steps=epoch_steps if request.warmup_steps is None else request.warmup_steps,
        restart_steps=epoch_steps if request.restart_steps is None else request.restart_steps,
    )


def _seed_step(seed: int, step: int, rank: int) -> None:
    """Dropout and any other torch draw of a step depend on (seed, step, rank) alone."""
    torch.manual_seed(int(np.random.default_rng([seed, step, rank]).integers(2**62)))


class _Recorder:
    """metrics.csv, validation.csv, train.log and TensorBoard (rank 0 only)."""

    def __init__(self, out_dir: Path, enabled: bool) -> None:
        self.out_dir = out_dir
        self.enabled = enabled
        self.writer = None
        if enabled:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.writer = SummaryWriter(str(out_dir / "tensorboard"))
            except ImportError:  # tensorboard is a dependency; a stripped install still trains
                self.log("tensorboard is not installed: metrics go to the CSV files only")

    def log(self, line: str) -> None:
        if self.enabled:
            stamp = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
            with open(self.out_dir / "train.log", "a") as handle:
                handle.write(f"{stamp} {line}\n")

    def row(self, name: str, values: dict[str, Any]) -> None:
        if not self.enabled:
            return
        path = self.out_dir / name
        new = not path.is_file()
        with open(path, "a", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(values))
            if new:
                writer.writeheader()
            writer.writerow(values)
        if self.writer is not None:
            prefix = "validation/" if name.startswith("validation") else "train/"
            for key, value in values.items():
                if key != "step" and isinstance(value, float):
                    self.writer.add_scalar(prefix + key, value, values["step"])

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


CSV_PARTS = ("total", "clr", "mae")


def _truncate_after(path: Path, step: int) -> None:
    """Keep the rows of ``path`` whose ``step`` is below ``step``: the ones a stopped run
    wrote after its last checkpoint are redone."""
    if not path.is_file():
        return
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    if not rows:
        return
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(r for r in rows if int(r["step"]) < step)


def _save(
    out_dir: Path,
    model: TAMRF,
    normalisation: Normalisation,
    optimiser,
    step: int,
    request: TrainingRequest,
    origin: dict[str, Any],
    seconds: float,
) -> Path:
    directory = out_dir / "checkpoints" / f"step-{step:07d}"
    if directory.exists():
        shutil.rmtree(directory)
    save_checkpoint(
        model,
        normalisation,
        directory,
        origin={
            **origin,
            "steps": step,
            "training": request.to_json(),
            "wall_time_s": round(seconds, 1),
        },
    )
    torch.save(
        {
            "step": step,
            "optimiser": optimiser.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "numpy_rng": np.random.get_state(),
            "seconds": seconds,
            "request": request.to_json(),
        },
        directory / "training_state.pt",
    )
    write_json_atomically(
        out_dir / "checkpoints" / "latest.json", {"checkpoint": directory.name, "step": step}
    )
    kept = sorted((out_dir / "checkpoints").glob("step-*"))
    for old in kept[:-KEPT_CHECKPOINTS]:
        shutil.rmtree(old, ignore_errors=True)
    return directory


def _validate(model, dataset: PatchDataset, config: StepConfig, count: int) -> dict[str, float]:
    model.eval()
    sums: dict[str, float] = {}
    with torch.no_grad():
        for k in range(min(count, len(dataset))):
            parts = sample_parts(model, dataset[k], config)
            for name in CSV_PARTS:
                sums[name] = sums.get(name, 0.0) + float(parts[name])
    model.train()
    return {f"val_{k}": v / max(1, min(count, len(dataset))) for k, v in sums.items()}


def train(request: TrainingRequest, progress: Progress | None = None) -> dict[str, Any]:
    """Train (or resume the run in ``request.out_dir``); returns a summary.

    Raises:
        FileNotFoundError: no training store; ValueError: a store without training patches.
    """
    rank, world = _distributed()
    device = _device(request)
    store = TrainingStore(request.store)
    train_indices = store.split_indices("train")
    validation_indices = store.split_indices("validation")
    model, normalisation, origin = _model(request)
    model.to(device)
    schedule = _schedule(request, len(train_indices))
    optimiser = torch.optim.Adam(model.parameters(), lr=request.lr, betas=(0.9, 0.999))
    out_dir = request.out_dir
    recorder = _Recorder(out_dir, rank == 0)
    start, seconds = 0, 0.0
    latest = _latest(out_dir)
    if latest is not None:
        state = torch.load(latest / "training_state.pt", map_location="cpu", weights_only=False)
        model.load_state_dict(load_model(latest).model.state_dict())
        optimiser.load_state_dict(state["optimiser"])
        start, seconds = int(state["step"]), float(state["seconds"])
        torch.set_rng_state(state["torch_rng"])
        np.random.set_state(state["numpy_rng"])
        if rank == 0:
            # metrics.csv counts steps from 0; validation.csv by steps done.
            _truncate_after(out_dir / "metrics.csv", start)
            _truncate_after(out_dir / "validation.csv", start + 1)
        recorder.log(f"resumed from {latest.name} (step {start})")
    elif rank == 0:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "request.json").write_text(json.dumps(request.to_json(), indent=2))
        recorder.log(
            f"new run: {len(train_indices)} training and {len(validation_indices)} "
            f"validation patches, {request.steps} steps, {world} process(es)"
        )
    if world > 1:
        # A sample may leave a branch unused (NOLR: no Landsat input): tell DDP.
        model = torch.nn.parallel.DistributedDataParallel(model, find_unused_parameters=True)
    network = model.module if world > 1 else model
    loss = LossConfig(s2_crop_px=request.s2_crop_px, landsat_crop_px=request.landsat_crop_px)
    step_config = StepConfig(loss=loss, cloudy_inputs=request.cloudy_inputs)
    sampling = SamplingConfig(max_dates=request.max_dates, seed=request.seed)
    dataset = PatchDataset(str(request.store), train_indices, normalisation, sampling)
    steps = [s * world + rank for s in range(start, request.steps)]
    loader = DataLoader(dataset, sampler=steps, batch_size=None, num_workers=request.workers)
    extra = _lpips_term(request, device, recorder)
    autocast = torch.bfloat16 if device.type == "cuda" and request.bf16_on_gpu else None
    validation = (
        PatchDataset(str(request.store), validation_indices, normalisation, sampling, fixed=True)
        if validation_indices
        else None
    )
    model.train()
    step = start
    tick = time.perf_counter()
    for step, sample in enumerate(loader, start=start):
        _seed_step(request.seed, step, rank)
        lr = learning_rate(step, schedule)
        for group in optimiser.param_groups:
            group["lr"] = lr
        parts = sample_parts(model, sample, step_config, extra, autocast)
        optimiser.zero_grad(set_to_none=True)
        parts["total"].backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), request.grad_clip)
        optimiser.step()
        now = time.perf_counter()
        seconds += now - tick
        tick = now
        values = {
            "step": step,
            "lr": lr,
            **{k: float(parts[k].detach()) for k in CSV_PARTS},
            "strategy": sample["strategy"],
            "seconds": round(seconds, 2),
        }
        recorder.row("metrics.csv", values)
        done = step + 1
        if done % request.log_every == 0 or done == request.steps:
            recorder.log(
                f"step {done}/{request.steps} loss {values['total']:.4f} "
                f"(clr {values['clr']:.4f}, mae {values['mae']:.4f}) lr {lr:.2e} "
                f"{seconds / max(1, done - start):.2f} s/step"
            )
        if progress is not None:
            progress(done, request.steps, values)
        if validation is not None and request.validate_every and done % request.validate_every == 0:
            scores = _validate(network, validation, step_config, request.validation_samples)
            recorder.row("validation.csv", {"step": done, **scores})
            recorder.log(
                f"validation at step {done}: "
                + ", ".join(f"{k} {v:.4f}" for k, v in scores.items())
            )
        if rank == 0 and (done % request.checkpoint_every == 0 or done == request.steps):
            _save(out_dir, network, normalisation, optimiser, done, request, origin, seconds)
            _loss_curve(out_dir)
        tick = time.perf_counter()
    final = out_dir / "model"
    if rank == 0:
        latest = _latest(out_dir)
        if latest is not None:
            if final.exists():
                shutil.rmtree(final)
            shutil.copytree(latest, final, ignore=shutil.ignore_patterns("training_state.pt"))
        recorder.log(f"done: {request.steps} steps, {seconds:.0f} s; model in {final}")
    recorder.close()
    if world > 1:
        dist.barrier()
    return {
        "out_dir": str(out_dir),
        "model": str(final),
        "steps": request.steps,
        "seconds": round(seconds, 1),
        "resumed_from": start or None,
    }


def _loss_curve(out_dir: Path) -> None:
    from pipelines.training.curves import write_loss_curve

    write_loss_curve(out_dir / "metrics.csv", out_dir / "validation.csv", out_dir / "loss.png")


def _lpips_term(request: TrainingRequest, device: torch.device, recorder: _Recorder):
    """The LPIPS-style term when its weights are given; said once in the log when not."""
    if request.lpips_weights is None:
        recorder.log("LPIPS-style term off: no --lpips-weights given (see README, Training)")
        return None
    from tamrf_xr.training.lpips import LpipsTerm

    return LpipsTerm.from_folder(request.lpips_weights, device)
