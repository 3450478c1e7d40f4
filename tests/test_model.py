"""The TAMRF network: exact architecture (against PyTorch's own modules) and properties."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from tamrf_xr.model import (
    TAMRF,
    ModelConfig,
    TransformerLayer,
    count_parameters,
    date_encoding,
    receptive_field_radius,
)
from tamrf_xr.receptive_field import stage_context

torch.set_num_threads(2)


@pytest.fixture(scope="module")
def model() -> TAMRF:
    torch.manual_seed(0)
    return TAMRF().eval()


def _inputs(t_s=3, t_l=2, size=24, b=1, seed=0):
    g = torch.Generator().manual_seed(seed)
    s2 = torch.randn(b, t_s, 10, size, size, generator=g)
    landsat = torch.randn(b, t_l, 8, size // 3, size // 3, generator=g)
    s2_days = torch.sort(torch.randint(0, 365, (b, t_s), generator=g).float()).values
    landsat_days = torch.sort(torch.randint(0, 365, (b, t_l), generator=g).float()).values
    return s2, s2_days, landsat, landsat_days


# -- architecture ----------------------------------------------------------------------------


def test_parameter_counts_match_the_spec(model: TAMRF):
    assert count_parameters(model) == 2_329_250
    assert count_parameters(model.s2_encoder) == 762_176
    landsat = count_parameters(model.landsat_encoder) + count_parameters(
        model.landsat_upsample_conv
    )
    assert landsat == 797_952
    assert sum(count_parameters(layer) for layer in model.temporal_encoder) == 435_288
    assert count_parameters(model.temporal_decoder) == 145_096
    decoder_convs = count_parameters(model.decoder_conv1) + count_parameters(model.decoder_conv2)
    assert decoder_convs == 188_650
    tokens = sum(
        p.numel()
        for p in (model.s2_sensor_token, model.landsat_sensor_token, model.query_sensor_token,
                  model.query_token)
    )  # fmt: skip
    assert tokens == 88
    # The 8 fixed residual scales are buffers, as in the authors' state_dict (2,329,258).
    scales = [v for k, v in model.state_dict().items() if k.endswith(".scale")]
    assert len(scales) == 8 and all(float(s) == pytest.approx(0.2) for s in scales)
    assert count_parameters(model) + len(scales) == 2_329_258


@pytest.mark.parametrize(("rrdbs", "layers"), [(2, 1), (3, 3)])
def test_ablation_sizes_are_config_values(rrdbs, layers):
    small = TAMRF(ModelConfig(rrdb_blocks=rrdbs, transformer_layers=layers))
    assert len(small.temporal_encoder) == layers and len(small.s2_encoder.rrdbs) == rrdbs
    per_rrdb = 3 * sum(
        c.weight.numel() + c.bias.numel() for c in small.s2_encoder.rrdbs[0].module[0].module.convs
    )
    expected = 2_329_250 + 2 * (rrdbs - 1) * per_rrdb + (layers - 3) * 145_096
    assert count_parameters(small) == expected


def test_date_encoding_is_interleaved_float32():
    days = torch.tensor([0.0, 1.0, 200.0, 731.0])
    pe = date_encoding(days).numpy()
    k = np.arange(32, dtype=np.float32)
    denominators = np.power(np.float32(365.0), (2 * k / 64).astype(np.float32))
    angles = days.numpy()[:, None].astype(np.float32) / denominators
    # float32 angles up to ~700 rad: sin/cos implementations differ by an ulp of the angle.
    np.testing.assert_allclose(pe[:, 0::2], np.sin(angles), atol=1e-5)
    np.testing.assert_allclose(pe[:, 1::2], np.cos(angles), atol=1e-5)
    assert pe.dtype == np.float32 and pe.shape == (4, 64)


def _copy_attention(ours: TransformerLayer, theirs_attention: nn.MultiheadAttention) -> None:
    theirs_attention.in_proj_weight.data.copy_(ours.attention.in_proj_weight)
    theirs_attention.in_proj_bias.data.copy_(ours.attention.in_proj_bias)
    theirs_attention.out_proj.weight.data.copy_(ours.attention.out_proj.weight)
    theirs_attention.out_proj.bias.data.copy_(ours.attention.out_proj.bias)


def _randomise(module: nn.Module, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.2)


def test_encoder_layer_equals_pytorch_transformer_encoder_layer():
    config = ModelConfig()
    ours = TransformerLayer(config).eval()
    _randomise(ours, 1)
    theirs = nn.TransformerEncoderLayer(
        d_model=136, nhead=4, dim_feedforward=256, dropout=0.1, activation="relu",
        layer_norm_eps=1e-5, batch_first=True, norm_first=False,
    ).eval()  # fmt: skip
    _copy_attention(ours, theirs.self_attn)
    for name in ("linear1", "linear2"):
        getattr(theirs, name).load_state_dict(getattr(ours.feed_forward, name).state_dict())
    theirs.norm1.load_state_dict(ours.norm1.state_dict())
    theirs.norm2.load_state_dict(ours.norm2.state_dict())
    x = torch.randn(7, 11, 136)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x), atol=2e-5, rtol=1e-5)


def test_decoder_block_equals_multihead_attention_with_a_zero_slot():
    config = ModelConfig()
    ours = TransformerLayer(config, zero_slot=True).eval()
    _randomise(ours, 2)
    attention = nn.MultiheadAttention(136, 4, dropout=0.1, add_zero_attn=True, batch_first=True)
    attention.eval()
    _copy_attention(ours, attention)
    queries, memory = torch.randn(5, 4, 136), torch.randn(5, 9, 136)
    with torch.no_grad():
        attended, _ = attention(queries, memory, memory, need_weights=False)
        x = ours.norm1(queries + attended)
        expected = ours.norm2(x + ours.feed_forward(x))
        torch.testing.assert_close(ours(queries, memory), expected, atol=2e-5, rtol=1e-5)


def test_landsat_branch_uses_pytorch_bicubic_x3(model: TAMRF):
    x = torch.randn(2, 8, 5, 7)
    with torch.no_grad():
        features = model.landsat_encoder(x)
        expected = torch.nn.functional.leaky_relu(
            model.landsat_upsample_conv(
                torch.nn.functional.interpolate(
                    features, scale_factor=3, mode="bicubic", align_corners=False
                )
            ),
            0.2,
        )
        no_context = stage_context(model.config, (0, 0, 0, 0))
        torch.testing.assert_close(model._encode_landsat(x, no_context), expected)
    assert expected.shape == (2, 64, 15, 21)


# -- properties ------------------------------------------------------------------------------


def test_output_shape_and_both_series_optional(model: TAMRF):
    s2, s2_days, landsat, landsat_days = _inputs(b=2)
    with torch.no_grad():
        out = model(s2, s2_days, landsat, landsat_days, [0.0, 45.5, 400.0])
        assert out.shape == (2, 3, 18, 24, 24)
        no_s2 = model(s2[:, :0], s2_days[:, :0], landsat, landsat_days, [10.0])
        assert no_s2.shape == (2, 1, 18, 24, 24)
        no_landsat = model(s2, s2_days, landsat[:, :0], landsat_days[:, :0], [10.0])
        assert no_landsat.shape == (2, 1, 18, 24, 24)
        # An empty series may carry no meaningful spatial size.
        for empty in (torch.zeros(2, 0, 8, 0, 0), torch.zeros(2, 0, 8, 5, 5)):
            alone = model(s2, s2_days, empty, landsat_days[:, :0], [10.0])
            torch.testing.assert_close(alone, no_landsat)
    assert torch.isfinite(out).all()


def test_permuting_input_dates_changes_nothing(model: TAMRF):
    s2, s2_days, landsat, landsat_days = _inputs(t_s=5, t_l=3)
    queries = [3.0, 100.0, 250.0]
    p_s2, p_l = torch.tensor([3, 0, 4, 1, 2]), torch.tensor([2, 0, 1])
    with torch.no_grad():
        reference = model(s2, s2_days, landsat, landsat_days, queries)
        permuted = model(
            s2[:, p_s2], s2_days[:, p_s2], landsat[:, p_l], landsat_days[:, p_l], queries
        )
    torch.testing.assert_close(permuted, reference, atol=1e-5, rtol=1e-5)


def test_a_query_does_not_depend_on_the_other_queries(model: TAMRF):
    inputs = _inputs()
    with torch.no_grad():
        together = model(*inputs, [20.0, 150.0, 300.0])
        alone = model(*inputs, [150.0])
    torch.testing.assert_close(alone[:, 0], together[:, 1], atol=1e-5, rtol=1e-5)
    assert not torch.allclose(together[:, 0], together[:, 1])


def test_dates_matter(model: TAMRF):
    s2, s2_days, landsat, landsat_days = _inputs()
    with torch.no_grad():
        a = model(s2, s2_days, landsat, landsat_days, [100.0])
        b = model(s2, s2_days + 30, landsat, landsat_days, [100.0])
    assert (a - b).abs().max() > 1e-3


def test_chunking_and_batching_do_not_change_results(model: TAMRF):
    inputs = _inputs(t_s=4, t_l=3)
    with torch.no_grad():
        reference = model(*inputs, [50.0, 90.0])
        model.set_memory_budget(encoder_batch_dates=1, pixel_chunk=7)
        chunked = model(*inputs, [50.0, 90.0])
        model.set_memory_budget()
    torch.testing.assert_close(chunked, reference, atol=1e-5, rtol=1e-5)


def test_eval_mode_is_deterministic_and_train_mode_uses_dropout(model: TAMRF):
    inputs = _inputs()
    with torch.no_grad():
        a = model(*inputs, [10.0])
        b = model(*inputs, [10.0])
        assert torch.equal(a, b)
        model.train()
        try:
            c = model(*inputs, [10.0])
        finally:
            model.eval()
    assert not torch.allclose(a, c)


@pytest.mark.parametrize(
    "context", [(66, 66, 66, 66), (0, 66, 30, 66), (3, 6, 9, 0), (66, 0, 0, 66), (21, 21, 12, 27)]
)
def test_context_gives_the_whole_input_cropped(model: TAMRF, context):
    """A block with context computes each stage only where it needs to (fewer FLOPs), and
    gives what computing the whole input and cropping gives, on every side, whether the
    context is more than the receptive field, less, or none (a cube's outer edge)."""
    size = 156
    s2, s2_days, landsat, landsat_days = _inputs(t_s=2, t_l=2, size=size, seed=5)
    top, bottom, left, right = context
    with torch.no_grad():
        whole = model(s2, s2_days, landsat, landsat_days, [3.0, 40.0])
        block = model(s2, s2_days, landsat, landsat_days, [3.0, 40.0], context=context)
    expected = whole[..., top : size - bottom, left : size - right]
    assert block.shape == expected.shape
    torch.testing.assert_close(block, expected, atol=2e-5, rtol=1e-5)
    # the output varies from pixel to pixel, so a crop one pixel off would fail
    assert (expected[..., 1:, :] - expected[..., :-1, :]).abs().amax() > 1e-3


def test_context_must_leave_an_output_and_stay_aligned(model: TAMRF):
    s2, s2_days, landsat, landsat_days = _inputs(t_s=1, t_l=1, size=30, seed=1)
    with pytest.raises(ValueError, match="leaves no output pixel"):
        model(s2, s2_days, landsat, landsat_days, [1.0], context=(15, 15, 0, 0))
    with pytest.raises(ValueError, match="multiples of 3"):
        model(s2, s2_days, landsat, landsat_days, [1.0], context=(2, 0, 0, 0))


def test_outputs_depend_only_on_the_receptive_field(model: TAMRF):
    """Changing an input pixel changes nothing beyond the receptive field radius (which makes
    tiled inference exact), and does change outputs within it."""
    radius = receptive_field_radius(model.config)
    assert radius == 60
    size = 129
    s2, s2_days, landsat, landsat_days = _inputs(t_s=1, t_l=1, size=size, seed=3)
    with torch.no_grad():
        reference = model(s2, s2_days, landsat, landsat_days, [100.0])[0, 0]
        s2_changed = s2.clone()
        s2_changed[..., 0, 0] += 5.0
        landsat_changed = landsat.clone()
        landsat_changed[..., 0, 0] += 5.0
        by_s2 = model(s2_changed, s2_days, landsat, landsat_days, [100.0])[0, 0]
        by_landsat = model(s2, s2_days, landsat_changed, landsat_days, [100.0])[0, 0]
    rows, cols = np.meshgrid(np.arange(size), np.arange(size), indexing="ij")
    far = torch.from_numpy(np.maximum(rows, cols) > radius)
    for changed in (by_s2, by_landsat):
        difference = (changed - reference).abs().amax(dim=0)
        assert difference[far].max() == 0.0
        assert difference[0, 0] > 1e-4
    # The Landsat branch reaches much further than the S2 one.
    landsat_reach = (by_landsat - reference).abs().amax(dim=0)
    assert landsat_reach[40, 40] > 0 and (by_s2 - reference).abs().amax(dim=0)[40, 40] == 0


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda a: {**a, "s2": a["s2"][:, :, :9]}, "s2 must be"),
        (lambda a: {**a, "landsat": a["landsat"][..., :7]}, "landsat is"),
        (lambda a: {**a, "s2_days": a["s2_days"][:, :2]}, "one day per date"),
        (
            lambda a: {**a, "s2": a["s2"][..., :23, :23], "landsat": a["landsat"][..., :7, :7]},
            "multiples of 3",
        ),
        (lambda a: {**a, "s2": a["s2"].index_fill(3, torch.tensor([2]), float("nan"))}, "NaN"),
        (
            lambda a: {
                **a,
                "s2": a["s2"][:, :0],
                "s2_days": a["s2_days"][:, :0],
                "landsat": a["landsat"][:, :0],
                "landsat_days": a["landsat_days"][:, :0],
            },
            "both series are empty",
        ),
        (lambda a: {**a, "query_days": []}, "query_days is empty"),
    ],
)
def test_bad_inputs_are_clear_errors(model: TAMRF, change, message):
    s2, s2_days, landsat, landsat_days = _inputs()
    args = {"s2": s2, "s2_days": s2_days, "landsat": landsat, "landsat_days": landsat_days,
            "query_days": [10.0]}  # fmt: skip
    with pytest.raises(ValueError, match=message), torch.no_grad():
        model(**change(args))


def test_bf16_autocast_stays_close_to_fp32(model: TAMRF):
    from tamrf_xr.precision import autocast, default_precision

    inputs = _inputs(t_s=4, t_l=3)
    with torch.no_grad():
        reference = model(*inputs, [30.0, 200.0])
        with autocast("cpu", "bf16"):
            reduced = model(*inputs, [30.0, 200.0])
    difference = (reduced.float() - reference).abs()
    # bf16 keeps 8 bits of mantissa: errors of a few 1e-2 on O(1) standardised outputs.
    assert 0 < difference.mean() < 0.05 and difference.max() < 0.5
    assert default_precision("cpu") in ("fp32", "bf16")
    with pytest.raises(ValueError, match="CUDA"), autocast("cpu", "fp16"):
        pass


def test_auto_precision_is_detected_never_assumed(monkeypatch):
    """``auto`` is bf16 only on a CPU whose flags say it executes bf16 natively."""
    import tamrf_xr.precision as precision

    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: False)
    assert precision.resolve_precision("auto", "cpu") == "fp32"
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: True)
    assert precision.resolve_precision("auto", "cpu") == "bf16"
    assert precision.resolve_precision("fp32", "cpu") == "fp32"
    with pytest.raises(ValueError, match="unknown precision"):
        precision.resolve_precision("half", "cpu")


def test_cpu_flags_decide_native_bf16(monkeypatch, tmp_path):
    import tamrf_xr.precision as precision

    for flags, expected in (("fpu avx2 fma", False), ("avx512f avx512_bf16", True),
                            ("amx_bf16 amx_tile", True)):  # fmt: skip
        cpuinfo = tmp_path / "cpuinfo"
        cpuinfo.write_text(f"processor : 0\nflags : {flags}\n")
        monkeypatch.setattr(precision, "Path", lambda _path, f=cpuinfo: f)
        assert precision.cpu_has_native_bf16() is expected
