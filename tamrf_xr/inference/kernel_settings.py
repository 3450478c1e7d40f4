"""The knobs of the forward pass that change its speed and memory, never its results.

The defaults are the fastest settings measured on CPU by ``benchmarks/model_kernel.py``
(``--sweep``; benchmarks/README.md): one date per spatial-encoder call and convolutions in
NHWC (channels_last) keep the convolutions' activations in cache, and a small working-memory
budget for the per-pixel transformer gives chunks of about a thousand to a few thousand
tokens, whose activations also stay in cache. Every knob stays overridable
(:class:`tamrf_xr.inference.ModelSource`, the benchmark's options).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from tamrf_xr.model import TAMRF

__all__ = ["DEFAULT_KERNEL", "KernelSettings"]


@dataclass(frozen=True)
class KernelSettings:
    """Speed knobs of :class:`tamrf_xr.model.TAMRF` (see ``TAMRF.set_memory_budget``)."""

    memory_mb: float = 16.0
    """Working memory of one transformer pixel chunk: about 1,000-2,000 tokens at 8-128
    dates and 12 output dates."""
    encoder_batch_dates: int = 1
    """Dates per spatial-encoder (and spatial-decoder) call."""
    channels_last: bool = True
    """NHWC convolution weights (inputs follow, see ``TAMRF._memory_format``)."""

    @classmethod
    def for_device(
        cls,
        device: str,
        memory_mb: float | None = None,
        encoder_batch_dates: int | None = None,
        channels_last: bool | None = None,
    ) -> KernelSettings:
        """The settings a model on ``device`` runs with: each knob given, or the default;
        channels_last by default on CPUs only (oneDNN is faster in NHWC there)."""
        return cls(
            DEFAULT_KERNEL.memory_mb if memory_mb is None else memory_mb,
            DEFAULT_KERNEL.encoder_batch_dates if encoder_batch_dates is None
            else encoder_batch_dates,
            torch.device(device).type == "cpu" if channels_last is None else channels_last,
        )  # fmt: skip

    def apply(self, model: TAMRF) -> TAMRF:
        """Set the knobs on ``model`` (in place) and return it."""
        model.set_memory_budget(self.memory_mb, encoder_batch_dates=self.encoder_batch_dates)
        memory_format = torch.channels_last if self.channels_last else torch.contiguous_format
        return model.to(memory_format=memory_format)


DEFAULT_KERNEL = KernelSettings()
