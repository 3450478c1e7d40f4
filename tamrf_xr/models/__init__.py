"""Model weights shipped in the package.

:func:`bundled_checkpoint` is the default model of every command: ``tamrf-sim-small``, a
narrow configuration of the TAMRF architecture trained on simulated regions (its model card:
``tamrf_xr/models/README.md``). It is meant for the demo, tests and as a starting point for
fine-tuning; for real data, use the authors' published weights (``tamrf import-checkpoint``)
or weights trained on your own areas (``tamrf train``).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

__all__ = ["BUNDLED_MODEL", "UNTRAINED", "bundled_checkpoint"]

BUNDLED_MODEL = "tamrf-sim-small"
UNTRAINED = "untrained"
"""The checkpoint value that asks for the untrained stand-in (random weights, flagged)."""


def bundled_checkpoint() -> Path:
    """The directory of the bundled checkpoint (inside the installed package)."""
    path = Path(str(resources.files("tamrf_xr.models") / BUNDLED_MODEL))
    if not (path / "config.json").is_file():
        raise FileNotFoundError(
            f"the bundled model is missing from {path}: reinstall tamrf-xr, or give "
            "--checkpoint (or --untrained)"
        )
    return path
