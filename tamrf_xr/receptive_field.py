"""How far each stage of the network sees, and how much context each stage needs.

TAMRF is spatial only in its convolutions: the per-sensor encoders (3x3 convs, the Landsat one
on the 30 m grid followed by a bicubic x3 and one conv at 10 m) and the two decoder convs. The
transformer works per pixel. So an output block needs context around it, but not the same
amount at every stage: the decoder needs 2 px of decoded tokens around the block, the S2
encoder 17 px more of S2 input, the Landsat branch 20 Landsat pixels (60 px) of Landsat input.
:func:`stage_context` says how much of the available context each stage uses: computing each
stage only there gives exactly what computing the whole block and cropping would give, with
fewer FLOPs (the transformer, half of the model's FLOPs, runs on the block plus 2 px instead
of the block plus the full margin). Pure Python, no torch needed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # only for type hints: this module works without torch
    from tamrf_xr.model import ModelConfig

__all__ = [
    "BICUBIC_TAPS",
    "DECODER_RADIUS",
    "Sides",
    "StageContext",
    "encoder_convs",
    "receptive_field_radius",
    "stage_context",
]

DECODER_RADIUS = 2
"""Two 3x3 convs in the spatial decoder."""
BICUBIC_TAPS = 2
"""Source pixels the bicubic kernel reaches on either side of a sample."""

Sides = tuple[int, int, int, int]
"""(top, bottom, left, right) in pixels."""


def encoder_convs(config: ModelConfig) -> int:
    """3x3 convs of one spatial encoder: head, the RRDBs' dense-block convs, tail."""
    return 2 + config.rrdb_blocks * config.rdbs_per_rrdb * config.rdb_convs


def receptive_field_radius(config: ModelConfig) -> int:
    """Radius (10 m pixels) beyond which an input pixel cannot influence an output pixel.

    S2 branch: its 3x3 convs at 10 m (1 pixel each); Landsat branch: its convs at 30 m
    (3 pixels each), the bicubic kernel (2 Landsat pixels) and the upsampling conv; then the
    two decoder convs. The transformer is per pixel and adds nothing.
    """
    convs = encoder_convs(config)
    s2 = convs
    landsat = config.landsat_scale * (convs + BICUBIC_TAPS) + 1
    return max(s2, landsat) + DECODER_RADIUS


@dataclass(frozen=True)
class _SideContext:
    decoded: int
    """10 m pixels of decoded tokens (transformer output) beyond the block."""
    s2: int
    """10 m pixels of S2 input beyond the block."""
    landsat: int
    """30 m pixels of Landsat input beyond the block."""
    landsat_features: int
    """30 m pixels of Landsat encoder features kept for the bicubic upsampling."""
    upsampled: int
    """10 m pixels of upsampled Landsat features fed to the upsampling conv."""


def _side(config: ModelConfig, available: int) -> _SideContext:
    """What each stage uses of ``available`` 10 m pixels of context on one side (a multiple
    of the Landsat scale): its need, or all there is where there is less (then the stage sees
    the same edge as it would in the whole block, so the result is the same)."""
    scale = config.landsat_scale
    decoded = min(available, DECODER_RADIUS)
    s2 = min(available, decoded + encoder_convs(config))
    upsampled = min(available, decoded + 1)  # the upsampling conv
    # Bicubic taps of the outermost upsampled pixel, then the encoder's convs at 30 m.
    taps = math.ceil(upsampled / scale) + BICUBIC_TAPS
    landsat_features = min(available // scale, taps)
    landsat = min(available // scale, landsat_features + encoder_convs(config))
    return _SideContext(decoded, s2, landsat, landsat_features, upsampled)


@dataclass(frozen=True)
class StageContext:
    """Per side (top, bottom, left, right), the context each stage of one block uses."""

    decoded: Sides
    s2: Sides
    landsat: Sides
    landsat_features: Sides
    upsampled: Sides


def stage_context(config: ModelConfig, available: Sides) -> StageContext:
    """The context each stage uses, given the ``available`` context around a block.

    Args:
        config: the architecture.
        available: (top, bottom, left, right) 10 m pixels of input around the block, each a
            multiple of ``config.landsat_scale`` (the Landsat grid must stay aligned).

    Raises:
        ValueError: a negative side, or one that is not a multiple of the Landsat scale.
    """
    scale = config.landsat_scale
    if any(a < 0 or a % scale for a in available):
        raise ValueError(
            f"context {available} must be non-negative multiples of {scale} (10 m pixels per "
            "Landsat pixel): the Landsat grid must stay aligned"
        )
    sides = [_side(config, a) for a in available]
    return StageContext(
        **{
            name: tuple(getattr(s, name) for s in sides)
            for name in ("decoded", "s2", "landsat", "landsat_features", "upsampled")
        }
    )
