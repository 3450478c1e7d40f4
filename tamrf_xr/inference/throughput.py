"""Expected model cost of a spatial block layout, and the FLOP rate this machine achieves.

A plan estimates time as ``analytic FLOPs / rate``: the FLOPs come from
:func:`tamrf_xr.flops.forward_flops` over the exact blocks :func:`block_layout` gives (each
computed with its margin, as :func:`tamrf_xr.inference.predict` does), the rate from one timed
forward pass here (:func:`measured_flop_rate`) or from the user.
"""

from __future__ import annotations

import time

import torch

from tamrf_xr.flops import forward_flops
from tamrf_xr.inference.model_cache import resolve_device
from tamrf_xr.inference.predict import InferenceConfig, block_layout
from tamrf_xr.model import TAMRF, ModelConfig

__all__ = ["cube_flops", "measured_flop_rate"]


def cube_flops(
    ny: int, nx: int, t_s: int, t_l: int, t_q: int, config: InferenceConfig,
    model: ModelConfig | None = None,
) -> int:  # fmt: skip
    """Model FLOPs of predicting a (ny, nx) 10 m cube with ``t_s`` S2 and ``t_l`` Landsat
    dates on ``t_q`` output dates: every block with its margin (0 without input dates)."""
    if t_s + t_l == 0:
        return 0
    model = model or ModelConfig()
    rows, columns = block_layout(ny, nx, config)
    m = 2 * config.margin_px
    return sum(
        forward_flops(model, h + m, w + m, t_s, t_l, t_q).total for h in rows for w in columns
    )


def measured_flop_rate(
    device: str = "cpu",
    model: ModelConfig | None = None,
    size_px: int = 66,
    dates: tuple[int, int] = (6, 3),
    queries: int = 3,
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
        with torch.no_grad():
            network(s2, s2_days, landsat, landsat_days, query_days)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        return time.perf_counter() - start

    run()  # warm-up: allocator, kernels, lazy initialisation
    seconds = run()
    return forward_flops(model, size_px, size_px, t_s, t_l, queries).total / max(seconds, 1e-9)
