"""Standardisation of model inputs and outputs with the statistics a checkpoint carries.

Physical units outside the model: reflectance (0-1) and surface temperature in Kelvin.
Inside: every band standardised, ``x' = (x - mean) / std``, with LST first divided by 1000
(the authors store LST as DN = 10 K and divide every DN by 10000). The statistics belong to
the checkpoint: different training configurations have different ones.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from tamrf_xr.bands import LANDSAT_BANDS, S2_BANDS

__all__ = ["REFERENCE_LS2S2_ALL", "Normalisation"]

_LST_INDEX = [b.quantity for b in LANDSAT_BANDS].index("temperature")
_KELVIN_PER_MODEL_UNIT = 1000.0


@dataclass(frozen=True)
class Normalisation:
    """Per-band mean and std in model units (reflectance; LST in K / 1000)."""

    s2_mean: tuple[float, ...]
    s2_std: tuple[float, ...]
    landsat_mean: tuple[float, ...]
    landsat_std: tuple[float, ...]

    def __post_init__(self) -> None:
        for name, n in (("s2", len(S2_BANDS)), ("landsat", len(LANDSAT_BANDS))):
            mean, std = getattr(self, f"{name}_mean"), getattr(self, f"{name}_std")
            if len(mean) != n or len(std) != n:
                raise ValueError(
                    f"{name} statistics need {n} values each; got {len(mean)}, {len(std)}"
                )
            if min(std) <= 0:
                raise ValueError(f"{name} std must be positive; got {std}")

    def to_dict(self) -> dict[str, list[float]]:
        return {k: list(v) for k, v in self.__dict__.items()}

    @classmethod
    def from_dict(cls, raw: dict) -> Normalisation:
        return cls(**{k: tuple(float(x) for x in raw[k]) for k in
                      ("s2_mean", "s2_std", "landsat_mean", "landsat_std")})  # fmt: skip

    def _stats(self, values: tuple[float, ...], like: Tensor, channel_dim: int) -> Tensor:
        shape = [1] * like.ndim
        shape[channel_dim] = len(values)
        return torch.tensor(values, dtype=like.dtype, device=like.device).view(shape)

    def standardise_s2(self, reflectance: Tensor, channel_dim: int = -3) -> Tensor:
        """(..., 10, H, W) reflectance -> standardised."""
        mean = self._stats(self.s2_mean, reflectance, channel_dim)
        return (reflectance - mean) / self._stats(self.s2_std, reflectance, channel_dim)

    def standardise_landsat(self, values: Tensor, channel_dim: int = -3) -> Tensor:
        """(..., 8, h, w) reflectance and LST (Kelvin, channel 7) -> standardised."""
        scale = [1.0] * len(LANDSAT_BANDS)
        scale[_LST_INDEX] = 1.0 / _KELVIN_PER_MODEL_UNIT
        model_units = values * self._stats(tuple(scale), values, channel_dim)
        mean = self._stats(self.landsat_mean, values, channel_dim)
        return (model_units - mean) / self._stats(self.landsat_std, values, channel_dim)

    def unstandardise(self, output: Tensor, channel_dim: int = -3) -> Tensor:
        """(..., 18, H, W) model output -> reflectance, and Kelvin for channel 7."""
        mean = self._stats(self.landsat_mean + self.s2_mean, output, channel_dim)
        std = self._stats(self.landsat_std + self.s2_std, output, channel_dim)
        scale = [1.0] * (len(LANDSAT_BANDS) + len(S2_BANDS))
        scale[_LST_INDEX] = _KELVIN_PER_MODEL_UNIT
        return (output * std + mean) * self._stats(tuple(scale), output, channel_dim)


REFERENCE_LS2S2_ALL = Normalisation(
    s2_mean=(0.1353, 0.1591, 0.1793, 0.2150, 0.2714, 0.2915, 0.3019, 0.3066, 0.2431, 0.1839),
    s2_std=(0.1461, 0.1410, 0.1455, 0.1419, 0.1313, 0.1271, 0.1304, 0.1206, 0.0700, 0.0596),
    landsat_mean=(0.1298, 0.1409, 0.1681, 0.1868, 0.3156, 0.2398, 0.1757, 0.2999),
    landsat_std=(0.1808, 0.1803, 0.1663, 0.1678, 0.1391, 0.0670, 0.0556, 0.0124),
)
"""The statistics of the authors' "ls2s2_all" training configuration (model spec). Used only
to create new, untrained checkpoints; a trained checkpoint always carries its own."""
