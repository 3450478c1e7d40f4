"""The TAMRF-SITS network (Michel & Inglada, 2025), readable in one place.

Shapes: batch ``b``, dates ``t`` (``t_s`` Sentinel-2, ``t_l`` Landsat, ``t_q`` queries),
channels ``c``, rows ``H``, columns ``W`` at 10 m; Landsat rows/columns are ``H/3``, ``W/3``.

1. Per-sensor spatial encoders (conv, RRDBs, conv, global skip), date by date; the Landsat one
   is followed by bicubic x3 upsampling and conv + LeakyReLU: 64 features per date at 10 m.
2. Tokens per (pixel, date): [64 features, 64-dim sinusoidal date encoding, 8-dim sensor token].
3. Temporal encoder per pixel: post-norm transformer layers over all Landsat then S2 dates.
4. Queries (one per requested date, the same at every pixel): [learnt 64-vector, date
   encoding, learnt query-sensor token].
5. Temporal decoder: one cross-attention block, with an all-zero key/value slot so that a
   query may attend to nothing.
6. Spatial decoder per query date: conv, LeakyReLU, conv to 18 standardised bands.

Inference is memory-bounded: encoders run on batches of dates and the per-pixel transformer on
chunks of pixels (``scaled_dot_product_attention``), so peak memory grows linearly with the
number of dates. A block given with ``context`` around it computes each stage only where the
block's output needs it (:mod:`tamrf_xr.receptive_field`): the same values as computing the
whole input and cropping, without the wasted FLOPs. The network is pure: standardisation and
masks live outside it.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F  # noqa: N812 - the PyTorch convention
from torch import Tensor, nn

from tamrf_xr.model_config import ModelConfig
from tamrf_xr.receptive_field import (
    Sides,
    StageContext,
    receptive_field_radius,
    stage_context,
)

__all__ = [
    "TAMRF",
    "ModelConfig",
    "SpatialEncoder",
    "TransformerLayer",
    "count_parameters",
    "date_encoding",
    "receptive_field_radius",
]


def date_encoding(days: Tensor, dim: int = 64, base: float = 365.0) -> Tensor:
    """Interleaved sinusoidal encoding of days since the origin, computed in float32.

    ``pe[2k] = sin(d / base^(2k/dim))``, ``pe[2k+1] = cos(d / base^(2k/dim))``.

    Args:
        days: (...) days since the origin (any real values, not cyclic).

    Returns:
        (..., dim) float32.
    """
    exponent = torch.arange(0, dim, 2, dtype=torch.float32, device=days.device) / dim
    denominators = torch.pow(torch.tensor(base, dtype=torch.float32, device=days.device), exponent)
    angles = days.to(torch.float32)[..., None] / denominators  # (..., dim/2)
    return torch.stack([angles.sin(), angles.cos()], dim=-1).flatten(-2)


# -- spatial encoders ------------------------------------------------------------------------


def _conv(cin: int, cout: int) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel_size=3, padding=1, bias=True)


class _Scaled(nn.Module):
    """``x + scale * module(x)`` with a fixed, untrained scale (stored as a buffer)."""

    def __init__(self, module: nn.Module, scale: float) -> None:
        super().__init__()
        self.module = module
        self.register_buffer("scale", torch.tensor(scale, dtype=torch.float32))

    def forward(self, x: Tensor) -> Tensor:
        return x + self.scale * self.module(x)


class _DenseBlock(nn.Module):
    """Five densely connected convs: conv k sees [x, out1, ..., out(k-1)]; every conv is
    followed by LeakyReLU, the last one included. Returns the last conv's output."""

    def __init__(self, features: int, growth: int, convs: int, slope: float) -> None:
        super().__init__()
        widths = [features + k * growth for k in range(convs)]
        outs = [growth] * (convs - 1) + [features]
        self.convs = nn.ModuleList(_conv(cin, cout) for cin, cout in zip(widths, outs, strict=True))
        self.slope = slope

    def forward(self, x: Tensor) -> Tensor:
        inputs = [x]
        out = x
        for conv in self.convs:
            out = F.leaky_relu(conv(torch.cat(inputs, dim=1)), self.slope)
            inputs.append(out)
        return out


def _rrdb(config: ModelConfig) -> _Scaled:
    rdbs = nn.Sequential(
        *(
            _Scaled(
                _DenseBlock(
                    config.features, config.rdb_growth, config.rdb_convs, config.leaky_slope
                ),
                config.residual_scale,
            )
            for _ in range(config.rdbs_per_rrdb)
        )
    )
    return _Scaled(rdbs, config.residual_scale)


class SpatialEncoder(nn.Module):
    """conv(in -> 64), RRDBs, conv(64 -> 64), global skip: ``c0 + tail(rrdbs(c0))``.

    (n, in, h, w) -> (n, 64, h, w).
    """

    def __init__(self, in_channels: int, config: ModelConfig) -> None:
        super().__init__()
        self.head = _conv(in_channels, config.features)
        self.rrdbs = nn.Sequential(*(_rrdb(config) for _ in range(config.rrdb_blocks)))
        self.tail = _conv(config.features, config.features)

    def forward(self, x: Tensor) -> Tensor:
        c0 = self.head(x)
        return c0 + self.tail(self.rrdbs(c0))


# -- temporal transformer --------------------------------------------------------------------


class _Attention(nn.Module):
    """Multi-head attention with packed q/k/v projections (``nn.MultiheadAttention`` layout),
    computed with ``scaled_dot_product_attention``; optional all-zero key/value slot."""

    def __init__(self, d_model: int, heads: int, dropout: float, zero_slot: bool) -> None:
        super().__init__()
        self.in_proj_weight = nn.Parameter(torch.empty(3 * d_model, d_model))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * d_model))
        self.out_proj = nn.Linear(d_model, d_model)
        nn.init.xavier_uniform_(self.in_proj_weight)
        nn.init.zeros_(self.out_proj.bias)
        self.heads, self.dropout, self.zero_slot = heads, dropout, zero_slot

    def forward(self, query: Tensor, memory: Tensor) -> Tensor:
        """(n, t_q, d) queries attend to (n, t, d) memory -> (n, t_q, d)."""
        n, _, d = query.shape
        if memory is query:
            # Self-attention: one GEMM three times as wide is faster than three.
            q, k, v = F.linear(query, self.in_proj_weight, self.in_proj_bias).chunk(3, dim=-1)
        else:
            w_q, w_kv = self.in_proj_weight.split([d, 2 * d])
            b_q, b_kv = self.in_proj_bias.split([d, 2 * d])
            q = F.linear(query, w_q, b_q)
            k, v = F.linear(memory, w_kv, b_kv).chunk(2, dim=-1)
        if self.zero_slot:
            # Appended after the projections: one extra logit exactly 0, value 0.
            zeros = k.new_zeros(n, 1, d)
            k, v = torch.cat([k, zeros], dim=1), torch.cat([v, zeros], dim=1)

        def split(x: Tensor) -> Tensor:  # (n, s, d) -> (n, heads, s, d/heads)
            return x.unflatten(-1, (self.heads, d // self.heads)).transpose(1, 2)

        out = F.scaled_dot_product_attention(
            split(q), split(k), split(v), dropout_p=self.dropout if self.training else 0.0
        )
        return self.out_proj(out.transpose(1, 2).flatten(-2))


class _FeedForward(nn.Module):
    def __init__(self, d_model: int, hidden: int, dropout: float) -> None:
        super().__init__()
        self.linear1 = nn.Linear(d_model, hidden)
        self.linear2 = nn.Linear(hidden, d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.linear2(self.dropout(F.relu(self.linear1(x))))


class TransformerLayer(nn.Module):
    """Post-norm layer: ``x = LN(x + attn(x, memory))``; ``x = LN(x + FFN(x))``.

    With ``memory = x`` it is a self-attention encoder layer (PyTorch's
    ``TransformerEncoderLayer`` with ReLU, post-norm); with query tokens it is the decoder's
    cross-attention block.
    """

    def __init__(self, config: ModelConfig, zero_slot: bool = False) -> None:
        super().__init__()
        d = config.d_model
        self.attention = _Attention(d, config.heads, config.dropout, zero_slot)
        self.feed_forward = _FeedForward(d, config.ffn_dim, config.dropout)
        self.norm1 = nn.LayerNorm(d, eps=config.layer_norm_eps)
        self.norm2 = nn.LayerNorm(d, eps=config.layer_norm_eps)
        self.dropout1 = nn.Dropout(config.dropout)
        self.dropout2 = nn.Dropout(config.dropout)

    def forward(self, x: Tensor, memory: Tensor | None = None) -> Tensor:
        """(n, s, d) -> (n, s, d)."""
        attended = self.attention(x, x if memory is None else memory)
        x = self.norm1(x + self.dropout1(attended))
        return self.norm2(x + self.dropout2(self.feed_forward(x)))


# -- the network -----------------------------------------------------------------------------


class TAMRF(nn.Module):
    """TAMRF-SITS.

    Call: ``model(s2, s2_days, landsat, landsat_days, query_days, context=(0, 0, 0, 0))``:

    Args:
        s2: (b, t_s, 10, H, W) standardised S2 at 10 m (t_s may be 0).
        s2_days: (b, t_s) days since the origin.
        landsat: (b, t_l, 8, H/3, W/3) standardised Landsat at 30 m (t_l may be 0).
        landsat_days: (b, t_l).
        query_days: (b, t_q) or (t_q,) or a sequence of days (shared by the batch).
        context: (top, bottom, left, right) 10 m pixels of the input that are context only,
            multiples of 3: the output is the block inside them, computed as the whole input
            would be and cropped (but each stage runs only where the block needs it).

    Returns:
        (b, t_q, 18, H - top - bottom, W - left - right) standardised; channels 0-7 Landsat
        B1-B7, B10; 8-17 S2 B2-B12.
    """

    def __init__(self, config: ModelConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or ModelConfig()
        self.s2_encoder = SpatialEncoder(config.s2_bands, config)
        self.landsat_encoder = SpatialEncoder(config.landsat_bands, config)
        self.landsat_upsample_conv = _conv(config.features, config.features)
        self.s2_sensor_token = nn.Parameter(torch.randn(config.sensor_token_dim) * 0.02)
        self.landsat_sensor_token = nn.Parameter(torch.randn(config.sensor_token_dim) * 0.02)
        self.query_sensor_token = nn.Parameter(torch.randn(config.sensor_token_dim) * 0.02)
        self.query_token = nn.Parameter(torch.zeros(config.features))
        self.temporal_encoder = nn.ModuleList(
            TransformerLayer(config) for _ in range(config.transformer_layers)
        )
        self.temporal_decoder = TransformerLayer(config, zero_slot=True)
        self.decoder_conv1 = _conv(config.d_model, config.d_model)
        self.decoder_conv2 = _conv(config.d_model, config.output_bands)
        # Inference knobs (no effect on results): see set_memory_budget. The defaults are the
        # fastest measured on CPU (tamrf_xr.inference.kernel_settings).
        self.encoder_batch_dates = 1
        self.pixel_chunk: int | None = None
        self.memory_budget_bytes = 16 * 2**20

    # -- knobs -------------------------------------------------------------------------------

    def set_memory_budget(
        self, megabytes: float = 16.0, encoder_batch_dates: int = 1, pixel_chunk: int | None = None
    ) -> TAMRF:
        """Bound the working memory of one forward pass (results are unchanged).

        Args:
            megabytes: working memory of one pixel chunk of the temporal transformer.
            encoder_batch_dates: dates encoded together by the spatial encoders.
            pixel_chunk: fixed number of pixels per transformer chunk (default: from budget).
        """
        if (
            megabytes <= 0
            or encoder_batch_dates < 1
            or (pixel_chunk is not None and pixel_chunk < 1)
        ):
            raise ValueError("memory budget, encoder_batch_dates and pixel_chunk must be positive")
        self.memory_budget_bytes = int(megabytes * 2**20)
        self.encoder_batch_dates = encoder_batch_dates
        self.pixel_chunk = pixel_chunk
        return self

    def _pixels_per_chunk(self, t: int, t_q: int, element_bytes: int) -> int:
        if self.pixel_chunk is not None:
            return self.pixel_chunk
        c = self.config
        # Live floats per pixel in a layer: tokens and their q/k/v, attention weights, FFN.
        per_pixel = t * (8 * c.d_model + c.heads * (t + 1) + 2 * c.ffn_dim) + t_q * (
            6 * c.d_model + c.heads * (t + 1) + c.ffn_dim
        )
        return max(1, self.memory_budget_bytes // (per_pixel * element_bytes))

    # -- forward -----------------------------------------------------------------------------

    def forward(
        self,
        s2: Tensor,
        s2_days: Tensor,
        landsat: Tensor,
        landsat_days: Tensor,
        query_days: Tensor | Sequence[float],
        context: Sides = (0, 0, 0, 0),
    ) -> Tensor:
        b, H, W = self._check_inputs(s2, s2_days, landsat, landsat_days, context)
        queries = self._query_days(query_days, b, s2.device if s2.numel() else landsat.device)
        c = self.config
        stages = stage_context(c, context)
        # The decoded region: the output block plus the decoder's own context.
        top, bottom, left, right = context
        rows = H - top - bottom + stages.decoded[0] + stages.decoded[1]
        cols = W - left - right + stages.decoded[2] + stages.decoded[3]
        # Features stay in one tensor per sensor: concatenating them would double the largest
        # allocation of the forward pass (t x 64 x rows x cols floats).
        landsat_features = self._encode(
            _crop(landsat, _thirds(context, c.landsat_scale), stages.landsat),
            lambda x: self._encode_landsat(x, stages),
            rows,
            cols,
        )  # (b, t_l, 64, rows, cols)
        s2_features = self._encode(
            _crop(s2, context, stages.s2),
            lambda x: _crop(self.s2_encoder(x), stages.s2, stages.decoded),
            rows,
            cols,
        )  # (b, t_s, 64, rows, cols)
        days = torch.cat([landsat_days, s2_days], dim=1).to(torch.float32)  # (b, t)
        sensor = torch.cat(
            [
                self.landsat_sensor_token.expand(landsat_features.shape[1], -1),
                self.s2_sensor_token.expand(s2_features.shape[1], -1),
            ]
        )  # (t, 8): Landsat dates first, then S2
        date_part = date_encoding(days, c.date_encoding_dim, c.date_encoding_base)  # (b, t, 64)
        context_tokens = torch.cat(
            [date_part, sensor.expand(b, -1, -1).to(date_part.dtype)], dim=-1
        )
        query_tokens = torch.cat(
            [
                self.query_token.expand(b, queries.shape[1], -1),
                date_encoding(queries, c.date_encoding_dim, c.date_encoding_base),
                self.query_sensor_token.expand(b, queries.shape[1], -1),
            ],
            dim=-1,
        )  # (b, t_q, 136)
        decoded = self._temporal(
            (landsat_features, s2_features), context_tokens, query_tokens
        )  # (b, t_q, 136, rows, cols)
        return self._decode(decoded, stages.decoded)

    def _check_inputs(
        self, s2: Tensor, s2_days: Tensor, landsat: Tensor, landsat_days: Tensor, context: Sides
    ) -> tuple[int, int, int]:
        c = self.config
        if s2.ndim != 5 or s2.shape[2] != c.s2_bands:
            raise ValueError(
                f"s2 must be (b, t_s, {c.s2_bands}, H, W); got {tuple(s2.shape)}. An empty series "
                f"is a tensor with t_s = 0"
            )
        if landsat.ndim != 5 or landsat.shape[2] != c.landsat_bands:
            raise ValueError(
                f"landsat must be (b, t_l, {c.landsat_bands}, H/3, W/3); got {tuple(landsat.shape)}"
            )
        if s2.shape[0] != landsat.shape[0]:
            raise ValueError(f"batch sizes differ: s2 {s2.shape[0]}, landsat {landsat.shape[0]}")
        b, t_s, t_l = s2.shape[0], s2.shape[1], landsat.shape[1]
        for name, days, t in (("s2_days", s2_days, t_s), ("landsat_days", landsat_days, t_l)):
            if tuple(days.shape) != (b, t):
                raise ValueError(
                    f"{name} must be (b, t) = ({b}, {t}) to match the images; got "
                    f"{tuple(days.shape)}: one day per date"
                )
        if t_s + t_l == 0:
            raise ValueError("both series are empty: give at least one S2 or Landsat date")
        scale = c.landsat_scale
        h_l, w_l = landsat.shape[-2:]
        H, W = s2.shape[-2:]
        if t_s == 0 and t_l > 0:
            H, W = h_l * scale, w_l * scale
        if H % scale or W % scale:
            raise ValueError(
                f"H and W must be multiples of {scale} (the 10 m grid is {scale}x the 30 m one); "
                f"got {H} x {W}: crop or pad the tile"
            )
        if t_l > 0 and (h_l * scale, w_l * scale) != (H, W):
            raise ValueError(
                f"landsat is {h_l} x {w_l} but the 10 m grid is {H} x {W}: landsat must be "
                f"exactly {H // scale} x {W // scale}"
            )
        top, bottom, left, right = context
        if min(context) < 0 or H - top - bottom < 1 or W - left - right < 1:
            raise ValueError(
                f"context {tuple(context)} (top, bottom, left, right) leaves no output pixel "
                f"in a {H} x {W} input: it must be non-negative and smaller than the input"
            )
        for name, tensor in (("s2", s2), ("landsat", landsat), ("s2_days", s2_days),
                             ("landsat_days", landsat_days)):  # fmt: skip
            if tensor.is_floating_point() and not torch.isfinite(tensor).all():
                raise ValueError(
                    f"{name} contains NaN or infinite values: fill invalid pixels before the "
                    "model (e.g. 0 after standardisation) and pass validity separately"
                )
        return b, H, W

    @staticmethod
    def _query_days(query_days: Tensor | Sequence[float], b: int, device) -> Tensor:
        q = torch.as_tensor(query_days, dtype=torch.float32, device=device)
        if q.ndim == 1:
            q = q.expand(b, -1)
        if q.ndim != 2 or q.shape[0] != b:
            raise ValueError(
                f"query_days must be (t_q,) or (b, t_q) with b = {b}; got {tuple(q.shape)}"
            )
        if q.shape[1] == 0:
            raise ValueError("query_days is empty: ask for at least one date")
        if not torch.isfinite(q).all():
            raise ValueError("query_days contains NaN or infinite values")
        return q

    def _encode_landsat(self, x: Tensor, stages: StageContext) -> Tensor:
        """(n, 8, h, w) Landsat with ``stages.landsat`` context -> (n, 64, rows, cols) at
        10 m with ``stages.decoded`` context: each step computed only where the next needs
        it (the crops fall on whole Landsat pixels, so the bicubic weights do not change)."""
        y = _crop(self.landsat_encoder(x), stages.landsat, stages.landsat_features)
        y = F.interpolate(
            y, scale_factor=self.config.landsat_scale, mode="bicubic", align_corners=False
        )
        scale = self.config.landsat_scale
        y = _crop(y, tuple(scale * s for s in stages.landsat_features), stages.upsampled)
        y = F.leaky_relu(self.landsat_upsample_conv(y), self.config.leaky_slope)
        return _crop(y, stages.upsampled, stages.decoded)

    def _encode(self, series: Tensor, encoder, H: int, W: int) -> Tensor:
        """Apply a spatial encoder to every date, a batch of dates at a time.

        (b, t, c, h, w) -> (b, t, 64, H, W).
        """
        b, t = series.shape[:2]
        flat = series.flatten(0, 1)
        out = None
        for i in range(0, flat.shape[0], self.encoder_batch_dates):
            encoded = encoder(self._memory_format(flat[i : i + self.encoder_batch_dates]))
            if out is None:  # allocated once, filled in place (dtype follows autocast)
                out = encoded.new_empty(b * t, self.config.features, H, W)
            out[i : i + encoded.shape[0]] = encoded
        if out is None:  # an empty series may come with any spatial size
            return series.new_zeros(b, 0, self.config.features, H, W)
        return out.unflatten(0, (b, t))

    def _memory_format(self, x: Tensor) -> Tensor:
        """``x`` in the layout of the convolution weights (channels_last when the model was
        converted with ``model.to(memory_format=torch.channels_last)``)."""
        if self.s2_encoder.head.weight.is_contiguous(memory_format=torch.channels_last):
            return x.contiguous(memory_format=torch.channels_last)
        return x

    def _temporal(
        self, features: tuple[Tensor, ...], context: Tensor, query_tokens: Tensor
    ) -> Tensor:
        """Per-pixel transformer, pixel chunk by pixel chunk.

        features: per sensor (b, t_i, 64, H, W), in sequence order; context (b, t, 72) with
        t = sum t_i; query_tokens (b, t_q, 136) -> (b, t_q, 136, H, W).
        """
        b, _, _, H, W = features[0].shape
        t = context.shape[1]
        t_q = query_tokens.shape[1]
        d = self.config.d_model
        dtype = torch.result_type(features[0], features[-1])
        out = features[0].new_empty(b, t_q, d, H, W, dtype=dtype)
        pixels = [f.flatten(3) for f in features if f.shape[1] > 0]  # (b, t_i, 64, P)
        out_flat = out.view(b, t_q, d, H * W)
        chunk = self._pixels_per_chunk(t, t_q, out.element_size())
        for i in range(b):
            for start in range(0, H * W, chunk):
                stop = min(start + chunk, H * W)
                n = stop - start
                tokens = torch.cat(
                    [
                        torch.cat(
                            [p[i, :, :, start:stop].to(dtype) for p in pixels], dim=0
                        ).permute(2, 0, 1),  # (n, t, 64)
                        context[i].expand(n, -1, -1).to(dtype),  # (n, t, 72)
                    ],
                    dim=-1,
                )  # (n, t, 136)
                for layer in self.temporal_encoder:
                    tokens = layer(tokens)
                queries = query_tokens[i].expand(n, -1, -1).to(tokens.dtype)  # (n, t_q, 136)
                decoded = self.temporal_decoder(queries, tokens)  # (n, t_q, 136)
                out_flat[i, :, :, start:stop] = decoded.permute(1, 2, 0)
        return out

    def _decode(self, decoded: Tensor, context: Sides) -> Tensor:
        """(b, t_q, 136, rows, cols) with ``context`` around the output ->
        (b, t_q, 18, rows - top - bottom, cols - left - right), a batch of dates at a time."""
        b, t_q = decoded.shape[:2]
        flat = decoded.flatten(0, 1)
        inner: Sides = tuple(min(c, 1) for c in context)  # type: ignore[assignment]
        outs = []
        for i in range(0, flat.shape[0], self.encoder_batch_dates):
            x = self._memory_format(flat[i : i + self.encoder_batch_dates])
            x = F.leaky_relu(self.decoder_conv1(x), self.config.leaky_slope)
            x = _crop(x, context, inner)  # conv2 needs 1 px around the block
            outs.append(_crop(self.decoder_conv2(x), inner, (0, 0, 0, 0)))
        return torch.cat(outs).unflatten(0, (b, t_q))


def _crop(x: Tensor, has: Sides, keep: Sides) -> Tensor:
    """(..., h, w) holding ``has`` (top, bottom, left, right) pixels around a block -> the
    block with ``keep`` pixels around it (``keep <= has`` on every side)."""
    top, bottom, left, right = (h - k for h, k in zip(has, keep, strict=True))
    if not (top or bottom or left or right):
        return x
    return x[..., top : x.shape[-2] - bottom, left : x.shape[-1] - right]


def _thirds(context: Sides, scale: int) -> Sides:
    """10 m context in pixels of the ``scale`` times coarser grid."""
    return tuple(c // scale for c in context)  # type: ignore[return-value]


def count_parameters(module: nn.Module) -> int:
    """Trainable parameters."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
