"""Expected model cost of a spatial block layout, and the FLOP rate this machine achieves.

A plan estimates time as ``analytic FLOPs / rate``: the FLOPs come from
:func:`tamrf_xr.flops.forward_flops` over the exact blocks :func:`prediction_blocks` gives
(each with its context, as :func:`tamrf_xr.inference.predict` computes them), the rate from
one timed forward pass here (:func:`measured_flop_rate`) or from the user.
"""

from __future__ import annotations

import time

import torch

from tamrf_xr.flops import forward_flops
from tamrf_xr.inference.kernel_settings import KernelSettings
from tamrf_xr.inference.model_cache import resolve_device
from tamrf_xr.inference.predict import InferenceConfig, prediction_blocks
from tamrf_xr.model import TAMRF, ModelConfig
from tamrf_xr.precision import autocast, resolve_precision

__all__ = ["cube_flops", "measured_flop_rate"]


def cube_flops(
    shape: tuple[int, int],
    window: tuple[tuple[int, int], tuple[int, int]],
    t_s: int,
    t_l: int,
    t_q: int,
    config: InferenceConfig,
    model: ModelConfig | None = None,
) -> int:
    """Model FLOPs of predicting the output ``window`` of a (rows, cols) 10 m cube with
    ``t_s`` S2 and ``t_l`` Landsat dates on ``t_q`` output dates: the exact blocks
    :func:`tamrf_xr.inference.predict` computes, each with its context (0 without input
    dates). ``config.margin_px`` must be resolved (:func:`model_margin_px`)."""
    if t_s + t_l == 0:
        return 0
    model = model or ModelConfig()
    total = 0
    for row in prediction_blocks(shape, window, config, (t_s, t_l, t_q), model):
        for block in row:
            rows, cols = block.window()
            size = (rows.stop - rows.start, cols.stop - cols.start)
            total += forward_flops(model, *size, t_s, t_l, t_q, block.context).total
    return total


def measured_flop_rate(
    device: str = "cpu",
    model: ModelConfig | None = None,
    size_px: int = 66,
    dates: tuple[int, int] = (6, 3),
    queries: int = 3,
    precision: str = "fp32",
) -> float:
    """FLOP/s of one timed forward pass (after a warm-up) of a network with random weights
    (speed does not depend on the weights) on ``device`` (``auto``: CUDA when available).

    Small inputs underestimate large blocks a little (fixed costs weigh more), which errs on
    the side of a longer estimate."""
    device = resolve_device(device)
    model = model or ModelConfig()
    generator = torch.Generator().manual_seed(0)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        network = TAMRF(model).eval().to(device)
    KernelSettings.for_device(device).apply(network)  # what workers run (cached_model)
    t_s, t_l = dates
    s2 = torch.randn(1, t_s, model.s2_bands, size_px, size_px, generator=generator).to(device)
    landsat = torch.randn(1, t_l, model.landsat_bands, size_px // 3, size_px // 3,
                          generator=generator).to(device)  # fmt: skip
    s2_days = torch.arange(t_s, dtype=torch.float32)[None].to(device) * 5
    landsat_days = torch.arange(t_l, dtype=torch.float32)[None].to(device) * 8
    query_days = [float(q * 7) for q in range(queries)]

    def run() -> float:
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        with torch.no_grad(), autocast(device, resolve_precision(precision, device)):
            network(s2, s2_days, landsat, landsat_days, query_days)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        return time.perf_counter() - start

    run()  # warm-up: allocator, kernels, lazy initialisation
    seconds = run()
    return forward_flops(model, size_px, size_px, t_s, t_l, queries).total / max(seconds, 1e-9)
