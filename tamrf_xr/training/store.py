"""The training dataset on disk: 10 m patches of both sensors' series, one Zarr group each.

Layout (Zarr v3)::

    STORE/                      attrs: format, patch_px, window_days, min_valid_fraction, ...
      patches/000000/           attrs: source, window_start, bounds, epsg, split
        s2          (t_s, 10, P, P) float32 reflectance (NaN: no data)
        s2_valid    (t_s, P, P) bool    clear pixels
        s2_days     (t_s,) int32        days since window_start
        landsat     (t_l, 8, P/3, P/3) float32 (LST in Kelvin), landsat_valid, landsat_days

:func:`cube_patches` cuts a pair of cubes (the conventions of
:func:`tamrf_xr.inference.predict`) into patches and windows of at most 365 days, keeping the
dates at least 25 % clear inside the patch (the spec's valid-date rule). A reader opens one
patch group at a time (:class:`~tamrf_xr.training.data.PatchDataset`), so a whole cube is
never held in memory.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
import zarr

__all__ = ["STORE_FORMAT", "Patch", "PatchConfig", "StoreWriter", "TrainingStore", "cube_patches"]

STORE_FORMAT = "tamrf-xr-training/1"


@dataclass(frozen=True)
class PatchConfig:
    """How cubes are cut (defaults: the spec's)."""

    patch_px: int = 165
    """Side at 10 m (a multiple of 3; 165 px = 55 Landsat pixels)."""
    window_days: int = 365
    min_valid_fraction: float = 0.25
    """A date counts when at least this share of the patch is clear."""
    stride_px: int | None = None
    """Distance between patch origins (default: ``patch_px``, no overlap)."""

    def __post_init__(self) -> None:
        if self.patch_px <= 0 or self.patch_px % 3:
            raise ValueError(f"patch_px={self.patch_px}: a positive multiple of 3 (30 m pixels)")
        if self.window_days < 1 or not 0.0 <= self.min_valid_fraction <= 1.0:
            raise ValueError("window_days must be >= 1 and min_valid_fraction in [0, 1]")
        if self.stride_px is not None and (self.stride_px <= 0 or self.stride_px % 3):
            raise ValueError(f"stride_px={self.stride_px}: a positive multiple of 3")


@dataclass
class Patch:
    """One patch and window of both sensors (arrays as in the store)."""

    s2: np.ndarray
    s2_valid: np.ndarray
    s2_days: np.ndarray
    landsat: np.ndarray
    landsat_valid: np.ndarray
    landsat_days: np.ndarray
    attrs: dict[str, Any]


def _windows(first: np.datetime64, last: np.datetime64, days: int) -> list[np.datetime64]:
    starts, start = [], first
    while start <= last:
        starts.append(start)
        start = start + np.timedelta64(days, "D")
    return starts


def cube_patches(
    s2: xr.Dataset, landsat: xr.Dataset, config: PatchConfig, source: str = ""
) -> Iterator[Patch]:
    """Patches of a cube pair: every ``patch_px`` square (at ``stride_px``) and every window
    of ``window_days`` from the first date; dates under ``min_valid_fraction`` clear inside
    the patch are left out, and a patch without a valid date of either sensor is skipped."""
    ny, nx = s2.sizes["y"], s2.sizes["x"]
    times = [c["time"].values.astype("datetime64[D]") for c in (s2, landsat)]
    every = np.concatenate(times)
    if every.size == 0:
        return
    stride = config.stride_px or config.patch_px
    size = config.patch_px
    for start in _windows(every.min(), every.max(), config.window_days):
        end = start + np.timedelta64(config.window_days, "D")
        in_window = [(t >= start) & (t < end) for t in times]
        for row in range(0, ny - size + 1, stride):
            for col in range(0, nx - size + 1, stride):
                arrays = {}
                for name, cube, factor, k in (("s2", s2, 1, 0), ("landsat", landsat, 3, 1)):
                    rows = slice(row // factor, (row + size) // factor)
                    cols = slice(col // factor, (col + size) // factor)
                    picked = cube.isel(time=np.flatnonzero(in_window[k]), y=rows, x=cols)
                    valid = np.asarray(picked["valid"].values, bool)
                    keep = (
                        valid.mean(axis=(1, 2)) >= config.min_valid_fraction
                        if len(valid)
                        else np.zeros(0, bool)
                    )
                    arrays[name] = np.asarray(picked["observations"].values[keep], np.float32)
                    arrays[f"{name}_valid"] = valid[keep]
                    arrays[f"{name}_days"] = (times[k][in_window[k]][keep] - start).astype(np.int32)
                if len(arrays["s2_days"]) + len(arrays["landsat_days"]) == 0:
                    continue
                x0 = float(s2["x"].values[col]) - 5.0
                y0 = float(s2["y"].values[row]) + 5.0
                yield Patch(
                    **arrays,
                    attrs={
                        "source": source,
                        "window_start": str(start),
                        "bounds": [x0, y0 - 10.0 * size, x0 + 10.0 * size, y0],
                        "epsg": s2.attrs.get("epsg"),
                    },
                )


class TrainingStore:
    """A training store, read by index; :meth:`create` makes a new one and its writer."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not (self.path / "zarr.json").is_file():
            raise FileNotFoundError(
                f"{self.path} is not a training store: build one with `tamrf build-dataset`"
            )
        self.root = zarr.open_group(str(self.path), mode="r")
        if self.root.attrs.get("format") != STORE_FORMAT:
            raise ValueError(
                f"{self.path}: format {self.root.attrs.get('format')!r}, expected {STORE_FORMAT!r}"
            )
        self.names = sorted(self.root["patches"].group_keys())

    @classmethod
    def create(cls, path: str | Path, config: PatchConfig, metadata: dict[str, Any]) -> StoreWriter:
        """An empty store (refuses to replace a non-empty one) and its writer."""
        path = Path(path)
        if path.exists() and any(path.iterdir()):
            raise FileExistsError(f"{path} exists and is not empty: choose a new folder")
        root = zarr.open_group(str(path), mode="w")
        root.require_group("patches")
        root.attrs.update({
            "format": STORE_FORMAT, "patch_px": config.patch_px,
            "window_days": config.window_days, "min_valid_fraction": config.min_valid_fraction,
            "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), **metadata,
        })  # fmt: skip
        return StoreWriter(root["patches"])

    def __len__(self) -> int:
        return len(self.names)

    def split_indices(self, split: str) -> list[int]:
        """Indices of the patches of ``split`` (``train`` or ``validation``)."""
        return [
            i
            for i, n in enumerate(self.names)
            if self.root["patches"][n].attrs.get("split") == split
        ]

    def read(self, index: int) -> Patch:
        """One patch, read whole (a patch is small: the cube never is)."""
        group = self.root["patches"][self.names[index]]
        arrays = {
            k: np.asarray(group[k][...])
            for k in ("s2", "s2_valid", "s2_days", "landsat", "landsat_valid", "landsat_days")
        }
        return Patch(**arrays, attrs=dict(group.attrs))


class StoreWriter:
    """Appends patches to a new store: one open group and a running count (no listing of
    the groups already written for every patch)."""

    def __init__(self, patches: zarr.Group) -> None:
        self.patches = patches
        self.count = 0

    def append(self, patch: Patch, split: str) -> str:
        """Write ``patch`` as the next group; returns its name."""
        name = f"{self.count:06d}"
        group = self.patches.create_group(name)
        for key in ("s2", "s2_valid", "s2_days", "landsat", "landsat_valid", "landsat_days"):
            data = getattr(patch, key)
            chunks = (1, *data.shape[1:]) if data.ndim > 1 and data.shape[0] else None
            group.create_array(key, data=data, chunks=chunks or "auto")
        group.attrs.update({**patch.attrs, "split": split})
        self.count += 1
        return name
