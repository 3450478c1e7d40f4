"""Training samples: one patch, its dates drawn, a masking strategy drawn, as tensors.

The spec's sampling, for one read of one patch:
- at most ``max_dates`` (50) dates, split between the sensors in proportion to their counts,
  a random subset re-drawn at every read, sorted;
- one masking strategy drawn with weights out of 16: RANDOM 8, GAPS 4, NOHR 1, NOLR 1,
  FORECAST 1, BACKCAST 1 (:func:`tamrf_xr.evaluation.masked_dates` gives their semantics);
- targets: every date of both sensors.

Every draw of sample ``step`` comes from a generator seeded with ``(seed, step)``: a resumed
run, any number of DataLoader workers and any process of a multi-GPU run draw the same
samples as an uninterrupted single-process run.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset

from tamrf_xr.evaluation.masking_strategies import masked_dates
from tamrf_xr.normalisation import Normalisation
from tamrf_xr.training.store import Patch, TrainingStore

__all__ = ["STRATEGY_WEIGHTS", "PatchDataset", "draw_dates", "draw_strategy", "sample_index"]

STRATEGY_WEIGHTS = {"RANDOM": 8, "GAPS": 4, "NOHR": 1, "NOLR": 1, "FORECAST": 1, "BACKCAST": 1}


def draw_strategy(rng: np.random.Generator) -> str:
    names = list(STRATEGY_WEIGHTS)
    weights = np.array([STRATEGY_WEIGHTS[n] for n in names], np.float64)
    return names[int(rng.choice(len(names), p=weights / weights.sum()))]


def draw_dates(
    n_s2: int, n_landsat: int, max_dates: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Sorted indices of the S2 and Landsat dates of one read: all of them when they fit in
    ``max_dates``, else a random subset of each, split in proportion to the counts."""
    total = n_s2 + n_landsat
    if total <= max_dates:
        return np.arange(n_s2), np.arange(n_landsat)
    k_s2 = min(n_s2, round(max_dates * n_s2 / total))
    k_landsat = min(n_landsat, max_dates - k_s2)
    pick = lambda n, k: np.sort(rng.choice(n, size=k, replace=False))  # noqa: E731
    return pick(n_s2, k_s2), pick(n_landsat, k_landsat)


def sample_index(step: int, indices: list[int], seed: int) -> int:
    """The patch of sample ``step``: one shuffled pass over ``indices`` per epoch."""
    epoch, position = divmod(step, len(indices))
    order = np.random.default_rng([seed, epoch]).permutation(len(indices))
    return indices[int(order[position])]


@dataclass(frozen=True)
class SamplingConfig:
    max_dates: int = 50
    seed: int = 42


class PatchDataset(Dataset):
    """Sample ``step`` of a training store (a map-style dataset over steps).

    Each item is a dict of tensors: ``s2`` (t_s, 10, P, P) and ``landsat`` (t_l, 8, P/3,
    P/3) standardised (NaN where there is no data), ``*_clear`` (t, h, w) bool, ``*_days``
    (t,) float, ``*_masked`` (t,) bool (hidden from the model), and ``strategy``.
    """

    def __init__(
        self,
        store_path: str,
        indices: list[int],
        normalisation: Normalisation,
        config: SamplingConfig = SamplingConfig(),
        fixed: bool = False,
    ) -> None:
        """``fixed``: item k is patch ``indices[k]`` with draws seeded by k alone
        (validation); else item ``step`` follows :func:`sample_index`."""
        if not indices:
            raise ValueError(f"{store_path}: no patch in this split")
        self.store_path = store_path
        self.indices = indices
        self.normalisation = normalisation
        self.config = config
        self.fixed = fixed
        self._store: TrainingStore | None = None  # opened in each worker

    def __len__(self) -> int:
        return len(self.indices) if self.fixed else 2**62

    def _patch(self, index: int) -> Patch:
        if self._store is None:
            self._store = TrainingStore(self.store_path)
        return self._store.read(index)

    def __getitem__(self, step: int) -> dict[str, torch.Tensor | str]:
        if self.fixed:
            index, rng = (
                self.indices[step],
                np.random.default_rng([self.config.seed, 2**31, step]),
            )  # apart from training draws
        else:
            index = sample_index(step, self.indices, self.config.seed)
            rng = np.random.default_rng([self.config.seed, step])
        patch = self._patch(index)
        s2_pick, ls_pick = draw_dates(
            len(patch.s2_days), len(patch.landsat_days), self.config.max_dates, rng
        )
        strategy = draw_strategy(rng)
        s2_days = patch.s2_days[s2_pick].astype(np.float64)
        ls_days = patch.landsat_days[ls_pick].astype(np.float64)
        s2_masked, ls_masked = masked_dates(strategy, s2_days, ls_days, rng=rng)
        s2 = torch.from_numpy(patch.s2[s2_pick])
        landsat = torch.from_numpy(patch.landsat[ls_pick])
        return {
            "s2": self.normalisation.standardise_s2(s2),
            "s2_clear": torch.from_numpy(patch.s2_valid[s2_pick]),
            "s2_days": torch.from_numpy(s2_days).float(),
            "s2_masked": torch.from_numpy(s2_masked),
            "landsat": self.normalisation.standardise_landsat(landsat),
            "landsat_clear": torch.from_numpy(patch.landsat_valid[ls_pick]),
            "landsat_days": torch.from_numpy(ls_days).float(),
            "landsat_masked": torch.from_numpy(ls_masked),
            "strategy": strategy,
        }
