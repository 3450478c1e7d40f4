"""Import of the authors' published PyTorch-Lightning checkpoint (``968639_s1t3.ckpt``).

The file is a pickle. Nothing in it is executed: it is read with PyTorch's ``weights_only``
unpickler, or, when it holds objects that one refuses (the hyper-parameters of a Lightning
file often do), with a stricter unpickler of our own that rebuilds tensors and plain containers
only and turns every other object into an inert placeholder.

Tensor names map one to one onto :class:`tamrf_xr.model.TAMRF` (see :func:`official_name`);
every model tensor must be found with its exact shape. Optimizer state, loss sub-modules
(``cca_loss_instance.*``) and the MTF/resolution buffers are ignored.
"""

from __future__ import annotations

import collections
import os
import pickle
import types
from pathlib import Path
from typing import Any

import torch

from tamrf_xr.checkpoint import (
    CheckpointError,
    LoadedModel,
    load_checkpoint,
    save_checkpoint,
    sha256_file,
)
from tamrf_xr.lightning_names import STATISTICS, config_from_names, official_name
from tamrf_xr.model import TAMRF, ModelConfig
from tamrf_xr.normalisation import Normalisation

__all__ = [
    "import_lightning_checkpoint",
    "official_name",
    "official_names",
    "read_lightning_state_dict",
]


def official_names(config: ModelConfig) -> dict[str, str]:
    """Our state_dict key -> the authors' name, for every tensor of a model of ``config``."""
    return {key: official_name(key, config) for key in TAMRF(config).state_dict()}


# -- reading the file without executing it -------------------------------------------------


class _Inert:
    """Stands in for any object the restricted unpickler refuses to build."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        pass


_ALLOWED_GLOBALS = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): torch._utils._rebuild_parameter,
    ("torch", "Size"): torch.Size,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("builtins", "slice"): slice,
}


class _RestrictedUnpickler(pickle.Unpickler):
    """Rebuilds tensors and plain containers; any other global becomes :class:`_Inert`."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED_GLOBALS:
            return _ALLOWED_GLOBALS[(module, name)]
        if module == "torch" and (
            name.endswith("Storage") or isinstance(getattr(torch, name, None), torch.dtype)
        ):
            return getattr(torch, name)
        return _Inert


_RESTRICTED_PICKLE = types.SimpleNamespace(
    Unpickler=_RestrictedUnpickler, load=lambda f, **kw: _RestrictedUnpickler(f, **kw).load(),
    __name__="tamrf_restricted_pickle",
)  # fmt: skip


def read_lightning_state_dict(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """The tensors of a PyTorch(-Lightning) checkpoint, read without executing its code.

    Raises:
        CheckpointError: unreadable, truncated or not a checkpoint.
    """
    path = Path(path)
    try:
        try:
            content = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError:
            # weights_only refuses some global: read again, building none of them.
            content = torch.load(
                path, map_location="cpu", weights_only=False, pickle_module=_RESTRICTED_PICKLE
            )
    except (RuntimeError, EOFError, OSError, pickle.UnpicklingError, ValueError) as error:
        raise CheckpointError(
            f"cannot read {path} as a PyTorch checkpoint ({type(error).__name__}: {error}); the "
            "file is truncated, corrupt or not a checkpoint: download it again"
        ) from None
    state = content.get("state_dict", content) if isinstance(content, dict) else None
    if not isinstance(state, dict) or not any(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path} holds no state_dict of tensors: not a model checkpoint")
    return {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}


def checkpoint_config(path: str | os.PathLike[str]) -> ModelConfig:
    """The architecture of the authors' ``.ckpt`` file, from its tensor names."""
    return config_from_names(set(read_lightning_state_dict(path)))


def import_lightning_checkpoint(
    source: str | os.PathLike[str],
    destination: str | os.PathLike[str] | None = None,
    overwrite: bool = False,
) -> LoadedModel:
    """Map the authors' checkpoint onto :class:`TAMRF`; optionally save it in our format.

    Args:
        source: the ``.ckpt`` file.
        destination: checkpoint directory to write (our format); None to only load.
        overwrite: replace an existing destination.

    Raises:
        CheckpointError: unreadable file, missing tensors or wrong shapes (named).
    """
    source = Path(source)
    state = read_lightning_state_dict(source)
    config = config_from_names(set(state))
    model = TAMRF(config)
    mapping = official_names(config)
    own = model.state_dict()
    missing = [name for name in mapping.values() if name not in state]
    if missing:
        raise CheckpointError(
            f"{source} lacks {len(missing)} of the {len(mapping)} model tensors (e.g. "
            f"{missing[:3]}): it is truncated or not the s1t3 checkpoint"
        )
    wrong = [f"{name}: {tuple(state[name].shape)} != {tuple(own[key].shape)}"
             for key, name in mapping.items() if state[name].shape != own[key].shape]  # fmt: skip
    if wrong:
        raise CheckpointError(f"{source}: tensors of the wrong shape: {wrong[:5]}")
    model.load_state_dict({key: state[name].to(own[key].dtype) for key, name in mapping.items()})
    missing_stats = [v for v in STATISTICS.values() if v not in state]
    if missing_stats:
        raise CheckpointError(f"{source} lacks the normalisation buffers {missing_stats}")
    normalisation = Normalisation.from_dict(
        {ours: state[theirs].tolist() for ours, theirs in STATISTICS.items()}
    )
    used = set(mapping.values()) | set(STATISTICS.values())
    origin = {
        "imported_from": source.name,
        "source_sha256": sha256_file(source),
        "source_format": "PyTorch-Lightning checkpoint (TAMRF-SITS, Michel & Inglada 2025)",
        "ignored_tensors": len([k for k in state if k not in used]),
    }
    model.eval()
    if destination is not None:
        save_checkpoint(model, normalisation, destination, origin, overwrite=overwrite)
        return load_checkpoint(destination)
    return LoadedModel(model, normalisation, config, {"origin": origin})
