"""The project's checkpoint format: safetensors weights + a JSON config, never a pickle.

A checkpoint is a directory::

    model.safetensors   every tensor of the model's state_dict (weights + fixed scales)
    config.json         architecture (ModelConfig), band order, normalisation statistics,
                        origin of the weights, software versions, SHA-256 of the weights

:func:`load_model` reads it (or, through the importer, the authors' PyTorch-Lightning file)
and returns the model in eval mode with its statistics attached.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

import tamrf_xr
from tamrf_xr.bands import BANDS, LANDSAT_BANDS, S2_BANDS
from tamrf_xr.checkpoint_files import (
    CHECKPOINT_FORMAT,
    CONFIG_FILE,
    WEIGHTS_FILE,
    CheckpointError,
    read_metadata,
    sha256_file,
)
from tamrf_xr.model import TAMRF, ModelConfig
from tamrf_xr.normalisation import Normalisation

__all__ = [
    "CHECKPOINT_FORMAT",
    "CheckpointError",
    "LoadedModel",
    "checkpoint_architecture",
    "load_checkpoint",
    "load_model",
    "save_checkpoint",
    "sha256_file",
]


@dataclass
class LoadedModel:
    """A model ready for inference with everything its checkpoint says about it."""

    model: TAMRF
    """In eval mode."""
    normalisation: Normalisation
    config: ModelConfig
    metadata: dict[str, Any] = field(default_factory=dict)
    """The checkpoint's config.json (origin, versions, checksum)."""

    @property
    def checksum(self) -> str:
        """SHA-256 of the weights file (identifies the model in output provenance)."""
        return self.metadata.get("weights_sha256", "")


def save_checkpoint(
    model: TAMRF,
    normalisation: Normalisation,
    destination: str | os.PathLike[str],
    origin: dict[str, Any],
    overwrite: bool = False,
) -> Path:
    """Write ``model`` as a checkpoint directory; returns its path.

    Args:
        model: the network.
        normalisation: its statistics.
        destination: new directory (must not exist unless ``overwrite``).
        origin: where the weights come from (e.g. imported file and its SHA-256, training run).
        overwrite: replace an existing checkpoint.
    """
    destination = Path(destination)
    if destination.exists() and any(destination.iterdir()) and not overwrite:
        raise FileExistsError(
            f"{destination} exists and is not empty: choose another destination or overwrite"
        )
    destination.mkdir(parents=True, exist_ok=True)
    # Written beside, then renamed: a crash never leaves a half-written checkpoint behind.
    weights_tmp = destination / f".{WEIGHTS_FILE}.tmp"
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    save_file(tensors, str(weights_tmp), metadata={"format": CHECKPOINT_FORMAT})
    metadata = {
        "format": CHECKPOINT_FORMAT,
        "architecture": model.config.to_dict(),
        "bands": {
            "s2_inputs": [b.name for b in S2_BANDS],
            "landsat_inputs": [b.name for b in LANDSAT_BANDS],
            "outputs": [b.name for b in BANDS],
        },
        "normalisation": normalisation.to_dict(),
        "origin": origin,
        "software": {"tamrf_xr": tamrf_xr.__version__, "torch": torch.__version__},
        "weights_sha256": sha256_file(weights_tmp),
    }
    config_tmp = destination / f".{CONFIG_FILE}.tmp"
    config_tmp.write_text(json.dumps(metadata, indent=2) + "\n")
    weights_tmp.replace(destination / WEIGHTS_FILE)
    config_tmp.replace(destination / CONFIG_FILE)
    return destination


def load_checkpoint(directory: str | os.PathLike[str]) -> LoadedModel:
    """Read a checkpoint directory written by :func:`save_checkpoint` (checksum verified)."""
    directory = Path(directory)
    if directory.is_file() and directory.name in (CONFIG_FILE, WEIGHTS_FILE):
        directory = directory.parent
    metadata = read_metadata(directory)
    weights = directory / WEIGHTS_FILE
    if not weights.is_file():
        raise CheckpointError(f"{directory} has no {WEIGHTS_FILE}: the checkpoint is incomplete")
    actual = sha256_file(weights)
    if actual != metadata.get("weights_sha256"):
        raise CheckpointError(
            f"{weights} does not match the checksum in {CONFIG_FILE} "
            f"({actual[:12]} vs {str(metadata.get('weights_sha256'))[:12]}): the file is corrupt "
            "or was replaced; re-create the checkpoint"
        )
    try:
        config = ModelConfig(**metadata["architecture"])
        normalisation = Normalisation.from_dict(metadata["normalisation"])
    except (KeyError, TypeError, ValueError) as error:
        raise CheckpointError(
            f"{directory / CONFIG_FILE} is incomplete or invalid: {error}"
        ) from None
    model = TAMRF(config)
    state = load_file(str(weights))
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise CheckpointError(
            f"{weights} does not fit the architecture in {CONFIG_FILE}: missing {missing[:5]}, "
            f"unexpected {unexpected[:5]}"
        )
    model.eval()
    return LoadedModel(model, normalisation, config, metadata)


def checkpoint_architecture(path: str | os.PathLike[str]) -> ModelConfig:
    """The architecture of a checkpoint, read without building the network: ``config.json``
    of a checkpoint directory, or the tensor names of the authors' ``.ckpt`` file.

    Raises:
        CheckpointError: a path that is not a readable checkpoint.
    """
    path = Path(path)
    if path.is_file() and path.suffix == ".ckpt":
        from tamrf_xr.lightning_import import checkpoint_config

        return checkpoint_config(path)
    if path.is_file() and path.name in (CONFIG_FILE, WEIGHTS_FILE):
        path = path.parent
    metadata = read_metadata(path)
    try:
        return ModelConfig(**metadata["architecture"])
    except (KeyError, TypeError, ValueError) as error:
        raise CheckpointError(f"{path / CONFIG_FILE} is incomplete or invalid: {error}") from None


def load_model(path: str | os.PathLike[str]) -> LoadedModel:
    """Load a model for inference, in eval mode, with its normalisation statistics.

    Args:
        path: a tamrf-xr checkpoint directory (or its config.json), or the authors'
            PyTorch-Lightning ``.ckpt`` file (imported on the fly, without executing any code
            from it).
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist")
    if path.is_file() and path.suffix == ".ckpt":
        from tamrf_xr.lightning_import import import_lightning_checkpoint

        return import_lightning_checkpoint(path)
    return load_checkpoint(path)
