"""The analytic FLOP count (tamrf_xr.flops) against torch's FlopCounterMode on the real model.

FlopCounterMode counts convolutions and matrix products without their bias, the same
convention as the analytic count, so the totals must agree EXACTLY, with one documented
exception: on CPU, ``scaled_dot_product_attention`` runs the fused kernel
``aten._scaled_dot_product_flash_attention_for_cpu``, which has no FLOP formula registered in
FlopCounterMode, so the counter misses the attention scores and weighted sums and reports
``total - attention``. Forcing the MATH backend decomposes attention into ``bmm`` calls, which
are counted: then the counter reports ``total`` exactly.
"""

from __future__ import annotations

import doctest
import subprocess
import sys

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode, flop_registry

import tamrf_xr.flops
from tamrf_xr.flops import ForwardFlops, forward_flops, spatial_encoder_flops
from tamrf_xr.model import TAMRF, ModelConfig

H, W = 12, 15  # non-square on purpose; Landsat 4 x 5
T_Q = 4

# The fused CPU attention kernel; if a later torch registers a formula for it, the counter
# sees the attention and the expected relation becomes the exact total.
CPU_SDPA_COUNTED = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu in flop_registry

CASES = {
    "s1t3": (ModelConfig(), 3, 2),
    "no_s2": (ModelConfig(), 0, 3),
    "no_landsat": (ModelConfig(), 3, 0),
    "rrdb2": (ModelConfig(rrdb_blocks=2), 2, 2),
    "layers1": (ModelConfig(transformer_layers=1), 2, 3),
}

# FlopCounterMode module names -> the analytic parts.
PART_MODULES = {
    "s2_encoder": ("TAMRF.s2_encoder",),
    "landsat_encoder": ("TAMRF.landsat_encoder", "TAMRF.landsat_upsample_conv"),
    "temporal_encoder": tuple(f"TAMRF.temporal_encoder.{i}" for i in range(3)),
    "temporal_decoder": ("TAMRF.temporal_decoder",),
    "spatial_decoder": ("TAMRF.decoder_conv1", "TAMRF.decoder_conv2"),
}


def _inputs(t_s: int, t_l: int, b: int = 1):
    g = torch.Generator().manual_seed(0)
    s2 = torch.randn(b, t_s, 10, H, W, generator=g)
    landsat = torch.randn(b, t_l, 8, H // 3, W // 3, generator=g)
    s2_days = torch.arange(t_s, dtype=torch.float32).expand(b, -1) * 5
    landsat_days = torch.arange(t_l, dtype=torch.float32).expand(b, -1) * 8 + 1
    query_days = [float(10 * i) for i in range(T_Q)]
    return s2, s2_days, landsat, landsat_days, query_days


def _count(model: TAMRF, inputs, math_sdpa: bool = False) -> FlopCounterMode:
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        if math_sdpa:
            with sdpa_kernel(SDPBackend.MATH):
                model(*inputs)
        else:
            model(*inputs)
    return counter


def _part_counts(counter: FlopCounterMode) -> dict[str, int]:
    counts = counter.get_flop_counts()
    return {
        part: sum(sum(counts.get(name, {}).values()) for name in names)
        for part, names in PART_MODULES.items()
    }


@pytest.fixture(scope="module", params=list(CASES))
def case(request) -> tuple[str, TAMRF, int, int, ForwardFlops]:
    config, t_s, t_l = CASES[request.param]
    torch.manual_seed(0)
    model = TAMRF(config).eval()
    return request.param, model, t_s, t_l, forward_flops(config, H, W, t_s, t_l, T_Q)


def test_parts_add_up_and_per_output_pixel_date() -> None:
    f = forward_flops(ModelConfig(), 165, 165, 79, 49, 12)
    assert f.total == sum(f.parts().values())
    assert f.per_output_pixel_date == f.total / (165 * 165 * 12)
    assert 0 < f.attention < f.temporal_encoder + f.temporal_decoder
    assert f.to_dict()["total"] == f.total


def test_default_sdpa_count_matches_documented_relation(case) -> None:
    """Default kernels: exactly total - attention on CPU (the fused SDPA is not counted)."""
    _, model, t_s, t_l, expected = case
    counted = _count(model, _inputs(t_s, t_l)).get_total_flops()
    relation = expected.total if CPU_SDPA_COUNTED else expected.total - expected.attention
    assert counted == relation
    assert abs(counted - expected.total) <= 0.01 * expected.total  # within 1% regardless


def test_math_sdpa_count_is_exact_per_part(case) -> None:
    """MATH attention (plain bmm): exact total and exact per-part split."""
    name, model, t_s, t_l, expected = case
    counter = _count(model, _inputs(t_s, t_l), math_sdpa=True)
    assert counter.get_total_flops() == expected.total
    assert _part_counts(counter) == expected.parts(), name
    # the attention share inside the parts: the bmm calls of each part
    bmm = {
        name: counts.get(torch.ops.aten.bmm, 0)
        for name, counts in counter.get_flop_counts().items()
    }
    encoder_bmm = sum(bmm.get(n, 0) for n in PART_MODULES["temporal_encoder"])
    assert encoder_bmm == expected.temporal_encoder_attention
    assert bmm.get("TAMRF.temporal_decoder", 0) == expected.temporal_decoder_attention


@pytest.mark.parametrize("context", [(3, 3, 3, 3), (0, 21, 9, 0), (24, 24, 24, 24)])
def test_context_count_is_exact_per_part(context) -> None:
    """A block with context: every stage counted on the region it computes."""
    config, t_s, t_l = CASES["s1t3"]
    torch.manual_seed(0)
    model = TAMRF(config).eval()
    size = 60
    g = torch.Generator().manual_seed(1)
    inputs = (torch.randn(1, t_s, 10, size, size, generator=g), torch.arange(t_s)[None] * 5.0,
              torch.randn(1, t_l, 8, size // 3, size // 3, generator=g),
              torch.arange(t_l)[None] * 8.0, [1.0, 9.0])  # fmt: skip
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter, sdpa_kernel(SDPBackend.MATH):
        model(*inputs, context=context)
    expected = forward_flops(config, size, size, t_s, t_l, 2, context=context)
    assert counter.get_total_flops() == expected.total
    assert _part_counts(counter) == expected.parts()
    assert (
        expected.output_pixel_dates
        == (size - context[0] - context[1]) * (size - context[2] - context[3]) * 2
    )
    # fewer FLOPs than the whole input, more than the output block alone
    whole = forward_flops(config, size, size, t_s, t_l, 2).total
    assert expected.total < whole


def test_batch_and_pixel_chunks_do_not_change_the_count() -> None:
    config, t_s, t_l = CASES["s1t3"]
    torch.manual_seed(0)
    model = TAMRF(config).eval().set_memory_budget(1.0, encoder_batch_dates=1, pixel_chunk=7)
    counted = _count(model, _inputs(t_s, t_l, b=2), math_sdpa=True).get_total_flops()
    assert counted == 2 * forward_flops(config, H, W, t_s, t_l, T_Q).total


@pytest.mark.parametrize("config", [ModelConfig(), ModelConfig(rrdb_blocks=3)])
def test_encoder_only_calls(config: ModelConfig) -> None:
    """Each spatial encoder called alone on a batch of dates."""
    torch.manual_seed(0)
    model = TAMRF(config).eval()
    for encoder, bands, h, w in (
        (model.s2_encoder, config.s2_bands, H, W),
        (model.landsat_encoder, config.landsat_bands, H // 3, W // 3),
    ):
        counter = FlopCounterMode(display=False)
        with torch.no_grad(), counter:
            encoder(torch.randn(5, bands, h, w))
        assert counter.get_total_flops() == 5 * spatial_encoder_flops(config, bands, h, w)


def test_s1t3_numbers_by_hand() -> None:
    """One S2 date of the s1t3 encoder: head 10->64, 3 RDBs of (64,96,128,160 -> 32;
    192 -> 64), tail 64->64; per pixel 2*9*(640 + 3*26624 + 4096) = 1,522,944 FLOPs."""
    assert spatial_encoder_flops(ModelConfig(), 10, 1, 1) == 1_522_944
    f = forward_flops(ModelConfig(), 3, 3, 0, 1, 1)
    d = 136
    # one pixel, one Landsat date, one query, 9 pixels: encoder layer and decoder by hand
    layer = 8 * d * d + 4 * d + 4 * d * 256
    decoder = 2 * d * d * (2 + 2) + 4 * 1 * 2 * d + 4 * d * 256
    assert f.temporal_encoder == 9 * 3 * layer
    assert f.temporal_decoder == 9 * decoder


def test_rejects_bad_sizes() -> None:
    with pytest.raises(ValueError, match="multiples"):
        forward_flops(ModelConfig(), 10, 12, 1, 1, 1)
    with pytest.raises(ValueError, match="at least one date"):
        forward_flops(ModelConfig(), 12, 12, 0, 0, 1)
    with pytest.raises(ValueError, match="query"):
        forward_flops(ModelConfig(), 12, 12, 1, 1, 0)


def test_docstring_example() -> None:
    assert doctest.testmod(tamrf_xr.flops).failed == 0


def test_pure_python_without_torch() -> None:
    """flops.py imports no torch: any object with ModelConfig's attributes works."""
    code = (
        "import sys, types; sys.modules['torch'] = None\n"
        "from tamrf_xr.flops import forward_flops\n"
        "c = types.SimpleNamespace(s2_bands=10, landsat_bands=8, output_bands=18, features=64,"
        " rdb_growth=32, rdb_convs=5, rdbs_per_rrdb=3, rrdb_blocks=1, transformer_layers=3,"
        " ffn_dim=256, landsat_scale=3, d_model=136)\n"
        "print(forward_flops(c, 12, 15, 3, 2, 4).total)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert int(out.stdout) == forward_flops(ModelConfig(), H, W, 3, 2, T_Q).total
