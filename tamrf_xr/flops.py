"""Analytic floating-point operation count of one TAMRF forward pass.

Convention: a multiply-add is 2 FLOPs, and only the matrix products are counted:

- a 3x3 convolution from ``cin`` to ``cout`` channels costs ``2 * cin * 9 * cout`` per output
  pixel (per date); the Landsat trunk runs on the 30 m grid (``H/3 x W/3``), its upsampling
  conv and everything after it on the 10 m grid (``H x W``);
- a linear layer costs ``2 * in * out`` per token;
- an attention costs ``2 * 2 * s_q * s_k * d`` per pixel (scores ``QK^T`` and the weighted sum
  of the values, over all heads: ``heads * head_dim = d``); the decoder's cross-attention has
  ``s_k = t + 1`` keys because of its all-zero key/value slot.

Element-wise work is NOT counted: biases, activations (LeakyReLU, ReLU), softmax and the
attention scaling, LayerNorm, residual additions and the 0.2 scales, the bicubic upsampling,
the date encoding, concatenations and copies. This is the convention of
``torch.utils.flop_counter.FlopCounterMode`` (which counts convolutions and matrix products
without their bias), so the two agree exactly wherever that counter sees the attention kernels
(on CPU it does not see ``scaled_dot_product_attention``'s fused kernel: there it reports
``total - attention``; see ``tests/test_flops.py``).

The count follows ``tamrf_xr.model.TAMRF`` as implemented: the decoder's query projection is
computed for every pixel although the queries are the same at every pixel, the spatial
decoder runs once per query date, and a block with context computes each stage on the region
the block needs (:mod:`tamrf_xr.receptive_field`). Pure Python, no torch needed.

Example::

    >>> from tamrf_xr.model import ModelConfig
    >>> f = forward_flops(ModelConfig(), H=165, W=165, t_s=79, t_l=49, t_q=12)
    >>> round(f.total / 1e12, 2)  # TFLOP
    7.8
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from tamrf_xr.receptive_field import Sides, stage_context

if TYPE_CHECKING:  # only for type hints: this module works without torch
    from tamrf_xr.model import ModelConfig

__all__ = [
    "ForwardFlops",
    "attention_flops",
    "conv3x3_flops",
    "forward_flops",
    "forward_memory_bytes",
    "spatial_encoder_flops",
    "transformer_layer_flops",
]


def conv3x3_flops(cin: int, cout: int, h: int, w: int) -> int:
    """FLOPs of one 3x3 convolution (bias ignored) on one ``h x w`` image: 2*cin*9*cout*h*w."""
    return 2 * cin * 9 * cout * h * w


def spatial_encoder_flops(config: ModelConfig, in_channels: int, h: int, w: int) -> int:
    """FLOPs of one spatial encoder (head conv, RRDBs, tail conv) on ONE date of ``h x w``.

    Each residual dense block has ``rdb_convs`` convs; conv ``k`` reads
    ``features + k * rdb_growth`` channels and writes ``rdb_growth`` (the last one:
    ``features``).
    """
    f, g, n = config.features, config.rdb_growth, config.rdb_convs
    dense_block = sum(conv3x3_flops(f + k * g, g if k < n - 1 else f, h, w) for k in range(n))
    rrdbs = config.rrdb_blocks * config.rdbs_per_rrdb * dense_block
    return conv3x3_flops(in_channels, f, h, w) + rrdbs + conv3x3_flops(f, f, h, w)


def attention_flops(d: int, s_q: int, s_k: int) -> int:
    """Scores and weighted sum of one multi-head attention for one pixel: 2*2*s_q*s_k*d."""
    return 4 * s_q * s_k * d


def transformer_layer_flops(
    d: int, ffn: int, s_q: int, s_m: int, zero_slot: bool = False
) -> tuple[int, int]:
    """FLOPs of one post-norm transformer layer for ONE pixel.

    ``s_q`` query tokens attend to ``s_m`` memory tokens (``s_q = s_m`` for self-attention),
    plus one all-zero key/value slot when ``zero_slot``.

    Returns:
        (total, attention): the layer's FLOPs, and the part of them spent in the attention
        scores and weighted sum (the ``scaled_dot_product_attention`` call).
    """
    s_k = s_m + (1 if zero_slot else 0)
    projections = 2 * d * d * (2 * s_q + 2 * s_m)  # q and output on queries; k, v on memory
    attention = attention_flops(d, s_q, s_k)
    feed_forward = 2 * 2 * d * ffn * s_q
    return projections + attention + feed_forward, attention


@dataclass(frozen=True)
class ForwardFlops:
    """FLOPs of one forward pass, per part of the network (see the module docstring).

    The five part fields add up to ``total``; ``temporal_encoder_attention`` and
    ``temporal_decoder_attention`` are the shares of ``temporal_encoder`` and
    ``temporal_decoder`` spent inside ``scaled_dot_product_attention`` (already included in
    those parts, not added again).
    """

    s2_encoder: int
    """All S2 dates through the S2 spatial encoder (10 m grid)."""
    landsat_encoder: int
    """All Landsat dates: trunk on the 30 m grid plus the upsampling conv on the 10 m grid."""
    temporal_encoder: int
    """The per-pixel transformer encoder layers over the ``t_s + t_l`` dates."""
    temporal_decoder: int
    """The per-pixel cross-attention block (queries -> encoder tokens + zero slot)."""
    spatial_decoder: int
    """The two decoder convs, once per query date."""
    temporal_encoder_attention: int
    """Attention scores + weighted sums inside ``temporal_encoder``."""
    temporal_decoder_attention: int
    """Attention scores + weighted sums inside ``temporal_decoder``."""
    output_pixel_dates: int
    """``H * W * t_q``: the number of predicted (pixel, date) pairs."""

    @property
    def total(self) -> int:
        """FLOPs of the whole forward pass."""
        return sum(self.parts().values())

    @property
    def attention(self) -> int:
        """FLOPs inside ``scaled_dot_product_attention`` (encoder and decoder)."""
        return self.temporal_encoder_attention + self.temporal_decoder_attention

    @property
    def per_output_pixel_date(self) -> float:
        """``total / (H * W * t_q)``."""
        return self.total / self.output_pixel_dates

    def parts(self) -> dict[str, int]:
        """The five parts, in network order."""
        return {
            "s2_encoder": self.s2_encoder,
            "landsat_encoder": self.landsat_encoder,
            "temporal_encoder": self.temporal_encoder,
            "temporal_decoder": self.temporal_decoder,
            "spatial_decoder": self.spatial_decoder,
        }

    def to_dict(self) -> dict[str, float]:
        """All fields plus ``total``, ``attention`` and ``per_output_pixel_date`` (for JSON)."""
        return {
            **asdict(self),
            "total": self.total,
            "attention": self.attention,
            "per_output_pixel_date": self.per_output_pixel_date,
        }


def _output_block(H: int, W: int, context: Sides) -> tuple[int, int]:
    """(rows, cols) of the output block inside an ``H x W`` input with ``context``."""
    h, w = H - context[0] - context[1], W - context[2] - context[3]
    if min(h, w) < 1:
        raise ValueError(f"context {context} leaves no output pixel in {H} x {W}")
    return h, w


def _grown(h: int, w: int, sides: Sides, factor: int = 1) -> tuple[int, int]:
    """(rows, cols) of an ``h x w`` block (at 1/factor resolution) plus ``sides``."""
    return h // factor + sides[0] + sides[1], w // factor + sides[2] + sides[3]


def forward_flops(
    config: ModelConfig,
    H: int,
    W: int,
    t_s: int,
    t_l: int,
    t_q: int,
    context: Sides = (0, 0, 0, 0),
) -> ForwardFlops:
    """Analytic FLOPs of ``TAMRF(config)`` on one block (batch 1; multiply by b for a batch).

    Args:
        config: the architecture (a ``tamrf_xr.model.ModelConfig``).
        H, W: the 10 m input grid (multiples of ``config.landsat_scale``; Landsat is
            H/3 x W/3), context included.
        t_s: S2 dates (may be 0).
        t_l: Landsat dates (may be 0).
        t_q: query dates (>= 1).
        context: (top, bottom, left, right) input pixels around the output block (see
            ``TAMRF.forward``): each stage is counted on the region it computes
            (:func:`tamrf_xr.receptive_field.stage_context`).

    Returns:
        The per-part count.
    """
    scale = config.landsat_scale
    if min(H, W) < 1 or H % scale or W % scale:
        raise ValueError(f"H and W must be positive multiples of {scale}, got {H} x {W}")
    if min(t_s, t_l) < 0 or t_s + t_l == 0:
        raise ValueError(f"need t_s, t_l >= 0 with at least one date, got {t_s}, {t_l}")
    if t_q < 1:
        raise ValueError(f"need at least one query date, got t_q = {t_q}")
    stages = stage_context(config, context)
    h, w = _output_block(H, W, context)

    def size(sides: Sides, factor: int = 1) -> tuple[int, int]:
        return _grown(h, w, sides, factor)

    f, d, ffn = config.features, config.d_model, config.ffn_dim
    decoded = size(stages.decoded)
    pixels = decoded[0] * decoded[1]
    t = t_s + t_l
    inner = tuple(min(c, 1) for c in stages.decoded)  # the decoder's second conv

    s2 = t_s * spatial_encoder_flops(config, config.s2_bands, *size(stages.s2))
    landsat = t_l * (
        spatial_encoder_flops(config, config.landsat_bands, *size(stages.landsat, scale))
        + conv3x3_flops(f, f, *size(stages.upsampled))
    )
    layer, layer_attention = transformer_layer_flops(d, ffn, s_q=t, s_m=t)
    decoder, decoder_attention = transformer_layer_flops(d, ffn, s_q=t_q, s_m=t, zero_slot=True)
    spatial_decoder = t_q * (
        conv3x3_flops(d, d, *decoded) + conv3x3_flops(d, config.output_bands, *size(inner))
    )
    return ForwardFlops(
        s2_encoder=s2,
        landsat_encoder=landsat,
        temporal_encoder=pixels * config.transformer_layers * layer,
        temporal_decoder=pixels * decoder,
        spatial_decoder=spatial_decoder,
        temporal_encoder_attention=pixels * config.transformer_layers * layer_attention,
        temporal_decoder_attention=pixels * decoder_attention,
        output_pixel_dates=h * w * t_q,
    )


def forward_memory_bytes(
    config: ModelConfig,
    H: int,
    W: int,
    t_s: int,
    t_l: int,
    t_q: int,
    context: Sides = (0, 0, 0, 0),
    element_bytes: int = 4,
) -> int:
    """The tensors one forward pass holds for its whole duration: the standardised inputs,
    the encoded features of every date and the decoded tokens of every query date over the
    decoded region (``t * features + t_q * d_model`` values per pixel). The working memory of
    one encoder batch and one transformer pixel chunk comes on top (bounded by the model's
    knobs, see ``TAMRF.set_memory_budget``).

    Args: as :func:`forward_flops`; ``element_bytes`` 4 for fp32, 2 for bf16 features.
    """
    rows, cols = _grown(*_output_block(H, W, context), stage_context(config, context).decoded)
    scale = config.landsat_scale
    landsat_pixels = (H // scale) * (W // scale)
    inputs = 4 * (H * W * t_s * config.s2_bands + landsat_pixels * t_l * config.landsat_bands)
    held = rows * cols * ((t_s + t_l) * config.features + t_q * config.d_model)
    return inputs + element_bytes * held
