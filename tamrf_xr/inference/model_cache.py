"""The model, loaded once per process (Dask worker) and never shipped in a task graph.

Tasks carry a :class:`ModelSource`, a few strings; the first task on a worker loads the
checkpoint (verifying its checksum) onto the worker's device and later tasks reuse it. On a
GPU worker the CUDA context is thus created inside the worker, never in the client.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path

import torch

from tamrf_xr.checkpoint import LoadedModel, load_model, save_checkpoint
from tamrf_xr.inference.kernel_settings import DEFAULT_KERNEL, KernelSettings
from tamrf_xr.model import TAMRF, ModelConfig
from tamrf_xr.normalisation import REFERENCE_LS2S2_ALL

__all__ = [
    "FORWARD_LOCK",
    "ModelSource",
    "cached_model",
    "loads_in_this_process",
    "resolve_device",
    "untrained_checkpoint",
]


@dataclass(frozen=True)
class ModelSource:
    """Where a worker finds the model and how it runs it."""

    checkpoint: str
    """A checkpoint directory (ours) or the authors' ``.ckpt`` file, readable by every worker."""
    device: str = "cpu"
    """``cpu``, ``cuda`` (the worker's GPU: dask-cuda gives each worker one), ``cuda:N``, or
    ``auto``: decided in the process that runs the model (CUDA when that process sees a GPU),
    so that a client without a GPU can drive a GPU cluster."""
    precision: str = "fp32"
    """``fp32``, ``bf16``, ``fp16`` (GPU), or ``auto``: decided where the model runs, bf16
    where the hardware executes it natively (:func:`tamrf_xr.precision.resolve_precision`)."""
    memory_mb: float = DEFAULT_KERNEL.memory_mb
    """Working memory of one transformer pixel chunk (results do not depend on it)."""
    encoder_batch_dates: int = DEFAULT_KERNEL.encoder_batch_dates
    """Dates per spatial-encoder call (results do not depend on it)."""
    channels_last: bool | None = None
    """Convolutions in NHWC layout; None: on CPUs (oneDNN is faster there), not on GPUs."""
    torch_threads: int | None = None
    """CPU threads of one forward pass; None leaves torch's default (set it to the worker's
    thread count so that workers do not oversubscribe the cores)."""


_CACHE: dict[ModelSource, LoadedModel] = {}
_LOCK = threading.Lock()
FORWARD_LOCK = threading.Lock()
"""Held around every forward pass of a process: a Dask worker runs one forward pass at a
time on all its threads (``torch_threads``), while its other task threads read and mask
cubes. Two passes at once would run 2 x ``torch_threads`` threads on the worker's cores."""
_LOADS = [0]


def loads_in_this_process() -> int:
    """How many times this process has read a checkpoint (1 per model source, if cached)."""
    return _LOADS[0]


def resolve_device(device: str) -> str:
    """``device`` with ``auto`` decided here: ``cuda`` when this process sees a GPU."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def cached_model(source: ModelSource) -> LoadedModel:
    """The model of ``source``, loaded on first use in this process."""
    with _LOCK:
        loaded = _CACHE.get(source)
        if loaded is None:
            if source.torch_threads is not None:
                torch.set_num_threads(source.torch_threads)
            loaded = load_model(source.checkpoint)
            _LOADS[0] += 1
            device = torch.device(resolve_device(source.device))
            loaded.model.to(device).eval()
            KernelSettings.for_device(str(device), source.memory_mb, source.encoder_batch_dates,
                                      source.channels_last).apply(loaded.model)  # fmt: skip
            _CACHE[source] = loaded
        return loaded


def untrained_checkpoint(directory: str | os.PathLike[str], seed: int = 0) -> Path:
    """Write (once) a checkpoint of the s1t3 network with seeded random weights.

    Its outputs carry no meaning: it exists so that the whole chain runs where no trained
    weights are at hand (tests, the demo, benchmarks). The checkpoint's origin says so, and
    so does the provenance of every product made with it.
    """
    directory = Path(directory)
    if (directory / "config.json").is_file():
        return directory
    generator_state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        model = TAMRF(ModelConfig())
    finally:
        torch.random.set_rng_state(generator_state)
    origin = {
        "kind": "untrained",
        "seed": seed,
        "note": "random initialisation: predictions are not meaningful; import trained "
        "weights with `tamrf import-checkpoint`",
    }
    return save_checkpoint(model, REFERENCE_LS2S2_ALL, directory, origin)
