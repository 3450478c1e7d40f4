"""The architecture of the TAMRF network as plain values.

Apart from :mod:`tamrf_xr.model` (which re-exports it) so that checkpoint files can be checked
against an architecture without importing torch (:mod:`tamrf_xr.checkpoint_files`): a run
refuses a checkpoint that does not fit in a fraction of a second, not after torch loaded.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

__all__ = ["ModelConfig"]


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of the network; the defaults are the authors' released "s1t3"."""

    s2_bands: int = 10
    landsat_bands: int = 8
    output_bands: int = 18
    features: int = 64
    """Width of the encoders' trunk and of the feature part of a token."""
    rdb_growth: int = 32
    """Output channels of the first four convs of a residual dense block."""
    rdb_convs: int = 5
    rdbs_per_rrdb: int = 3
    rrdb_blocks: int = 1
    """RRDBs per encoder (ablations: 1-3)."""
    residual_scale: float = 0.2
    """Fixed (untrained) scale of the RDB and RRDB residual branches."""
    date_encoding_dim: int = 64
    date_encoding_base: float = 365.0
    sensor_token_dim: int = 8
    transformer_layers: int = 3
    """Temporal encoder layers (ablations: 1-3)."""
    heads: int = 4
    ffn_dim: int = 256
    dropout: float = 0.1
    layer_norm_eps: float = 1e-5
    landsat_scale: int = 3
    """10 m pixels per Landsat pixel along each axis."""
    leaky_slope: float = 0.2

    @property
    def d_model(self) -> int:
        """Token width: features + date encoding + sensor token (136 for s1t3)."""
        return self.features + self.date_encoding_dim + self.sensor_token_dim

    def to_dict(self) -> dict:
        return asdict(self)

    def __post_init__(self) -> None:
        if self.d_model % self.heads:
            raise ValueError(
                f"token width {self.d_model} is not divisible by {self.heads} heads: change "
                "features, date_encoding_dim, sensor_token_dim or heads"
            )
        if self.date_encoding_dim % 2:
            raise ValueError(f"date_encoding_dim must be even, got {self.date_encoding_dim}")
        if min(self.rrdb_blocks, self.transformer_layers, self.rdbs_per_rrdb) < 1:
            raise ValueError("rrdb_blocks, rdbs_per_rrdb and transformer_layers must be >= 1")
