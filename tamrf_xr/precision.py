"""Reduced-precision inference: autocast contexts and what the hardware supports.

fp32 is the reference. bf16 autocast runs on GPUs and on CPUs with native bf16 instructions
(AVX512-BF16 / AMX: read from /proc/cpuinfo, never assumed; without them bf16 is emulated and
about 100x slower than fp32), fp16 on GPUs only; ``benchmarks/precision.py`` reports their
difference to fp32. Runs ask for ``auto`` by default: the best the hardware has.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import torch

__all__ = [
    "PRECISION_CHOICES",
    "Precision",
    "autocast",
    "check_precision",
    "cpu_has_native_bf16",
    "default_precision",
    "resolve_precision",
]

Precision = Literal["fp32", "bf16", "fp16"]
PRECISION_CHOICES = ("auto", "fp32", "bf16", "fp16")
"""What a run may ask for; ``auto`` is decided where the model runs (:func:`resolve_precision`)."""
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def cpu_has_native_bf16() -> bool:
    """Whether this CPU executes bf16 natively (otherwise bf16 is emulated, and slower)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def default_precision(device: torch.device | str) -> Precision:
    """bf16 on CUDA devices and bf16-capable CPUs, fp32 elsewhere."""
    device = torch.device(device)
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "bf16" if cpu_has_native_bf16() else "fp32"


def check_precision(precision: str) -> None:
    """Raise a ValueError naming the choices unless ``precision`` is one of them."""
    if precision not in PRECISION_CHOICES:
        raise ValueError(
            f"unknown precision {precision!r}: use {', '.join(PRECISION_CHOICES)} (auto: bf16 "
            "where the hardware runs it natively, else fp32)"
        )


def resolve_precision(precision: str, device: torch.device | str) -> Precision:
    """``precision``, with ``auto`` decided for ``device`` here (:func:`default_precision`).

    Raises:
        ValueError: an unknown precision.
    """
    check_precision(precision)
    return default_precision(device) if precision == "auto" else precision  # type: ignore[return-value]


@contextlib.contextmanager
def autocast(device: torch.device | str, precision: Precision) -> Iterator[None]:
    """Run the enclosed forward passes at ``precision`` (a no-op for fp32)."""
    device = torch.device(device)
    if precision == "fp32":
        yield
        return
    if precision not in _DTYPES:
        raise ValueError(f"unknown precision {precision!r}: use fp32, bf16 or fp16")
    if precision == "fp16" and device.type != "cuda":
        raise ValueError("fp16 autocast needs a CUDA device; on a CPU use bf16 or fp32")
    with torch.autocast(device_type=device.type, dtype=_DTYPES[precision]):
        yield
