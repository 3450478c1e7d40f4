"""The loss-curve PNG of a training run (training loss smoothed, validation loss)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

__all__ = ["write_loss_curve"]


def _read(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def write_loss_curve(metrics: Path, validation: Path, png: Path) -> None:
    """Training total/clr/mae (running mean over 50 steps) and validation total against step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = _read(metrics)
    if not rows:
        return
    steps = np.array([int(r["step"]) for r in rows])
    fig, ax = plt.subplots(figsize=(7, 4))
    window = min(50, len(rows))
    for name in ("total", "clr", "mae"):
        values = np.array([float(r[name]) for r in rows])
        smooth = np.convolve(values, np.ones(window) / window, mode="valid")
        ax.plot(steps[window - 1 :], smooth, label=f"train {name} (mean of {window})")
    checks = _read(validation)
    if checks:
        ax.plot(
            [int(r["step"]) for r in checks],
            [float(r["val_total"]) for r in checks],
            "ko-",
            label="validation total",
        )
    ax.set_xlabel("step")
    ax.set_ylabel("loss (standardised units)")
    ax.set_yscale("log")
    ax.legend(fontsize=8)
    fig.tight_layout()
    temporary = png.with_name(f".{png.name}.tmp.png")
    fig.savefig(temporary, dpi=90)
    plt.close(fig)
    temporary.replace(png)
