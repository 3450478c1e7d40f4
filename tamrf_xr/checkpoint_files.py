"""Checkpoint files read and checked without torch and without executing anything.

A run checks its checkpoint before anything starts (:func:`check_checkpoint`): importing torch
alone takes about a second, so the check reads the files directly:

- a checkpoint directory (ours): ``config.json``, the ``model.safetensors`` header (tensor
  names and shapes: a file cut short no longer holds the bytes its header promises), the
  weights' SHA-256 against ``config.json``, and the tensors against the architecture that
  ``config.json`` describes (:func:`state_shapes`);
- the authors' ``.ckpt`` (a ``torch.save`` zip of pickles, or the older plain-pickle form):
  its pickle is read by an unpickler that builds nothing but containers and shape records
  (:class:`_ShapeReader`), refuses a pickle that calls code (``os.system``, ``eval``...),
  and every tensor the TAMRF architecture needs must be there with its shape.

The loaders (:mod:`tamrf_xr.checkpoint`, :mod:`tamrf_xr.lightning_import`) use torch and
check again what only loading can tell.
"""

from __future__ import annotations

import collections
import hashlib
import io
import json
import os
import pickle
import struct
import zipfile
from pathlib import Path
from typing import Any

from tamrf_xr.model_config import ModelConfig

__all__ = [
    "CHECKPOINT_FORMAT",
    "CONFIG_FILE",
    "WEIGHTS_FILE",
    "CheckpointError",
    "check_checkpoint",
    "read_metadata",
    "safetensors_shapes",
    "sha256_file",
    "state_shapes",
    "torch_file_shapes",
]

CHECKPOINT_FORMAT = "tamrf-xr-checkpoint/1"
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"

Shapes = dict[str, tuple[int, ...]]
"""Tensor name -> shape."""


class CheckpointError(ValueError):
    """A checkpoint is missing, corrupt, truncated or does not fit the model."""


def sha256_file(path: str | os.PathLike[str]) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_metadata(directory: Path) -> dict[str, Any]:
    """``config.json`` of a checkpoint directory (format checked)."""
    config_path = directory / CONFIG_FILE
    try:
        metadata = json.loads(config_path.read_text())
    except FileNotFoundError:
        raise CheckpointError(
            f"{directory} is not a tamrf-xr checkpoint (no {CONFIG_FILE}); import the authors' "
            "file with `tamrf import-checkpoint SRC.ckpt DEST`"
        ) from None
    except json.JSONDecodeError as error:
        raise CheckpointError(f"{config_path} is not valid JSON ({error}): it is corrupt") from None
    if metadata.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"{config_path} has format {metadata.get('format')!r}, expected {CHECKPOINT_FORMAT!r}"
        )
    return metadata


# -- the tensors an architecture has ----------------------------------------------------------


def _conv(name: str, cin: int, cout: int) -> Shapes:
    return {f"{name}.weight": (cout, cin, 3, 3), f"{name}.bias": (cout,)}


def _encoder(name: str, in_channels: int, config: ModelConfig) -> Shapes:
    """A spatial encoder: head conv, RRDBs of dense blocks (each with its fixed scale), tail."""
    shapes = _conv(f"{name}.head", in_channels, config.features)
    for block in range(config.rrdb_blocks):
        rrdb = f"{name}.rrdbs.{block}"
        shapes[f"{rrdb}.scale"] = ()
        for dense in range(config.rdbs_per_rrdb):
            rdb = f"{rrdb}.module.{dense}"
            shapes[f"{rdb}.scale"] = ()
            for k in range(config.rdb_convs):
                last = k == config.rdb_convs - 1
                shapes |= _conv(f"{rdb}.module.convs.{k}", config.features + k * config.rdb_growth,
                                config.features if last else config.rdb_growth)  # fmt: skip
    return shapes | _conv(f"{name}.tail", config.features, config.features)


def _transformer_layer(name: str, config: ModelConfig) -> Shapes:
    d, hidden = config.d_model, config.ffn_dim
    return {
        f"{name}.attention.in_proj_weight": (3 * d, d),
        f"{name}.attention.in_proj_bias": (3 * d,),
        f"{name}.attention.out_proj.weight": (d, d),
        f"{name}.attention.out_proj.bias": (d,),
        f"{name}.feed_forward.linear1.weight": (hidden, d),
        f"{name}.feed_forward.linear1.bias": (hidden,),
        f"{name}.feed_forward.linear2.weight": (d, hidden),
        f"{name}.feed_forward.linear2.bias": (d,),
        **{f"{name}.norm{i}.{p}": (d,) for i in (1, 2) for p in ("weight", "bias")},
    }


def state_shapes(config: ModelConfig) -> Shapes:
    """Every tensor of ``TAMRF(config).state_dict()`` with its shape, computed without torch
    (tests compare it with the model for several architectures)."""
    shapes: Shapes = {
        f"{token}_sensor_token": (config.sensor_token_dim,) for token in ("s2", "landsat", "query")
    }
    shapes["query_token"] = (config.features,)
    shapes |= _encoder("s2_encoder", config.s2_bands, config)
    shapes |= _encoder("landsat_encoder", config.landsat_bands, config)
    shapes |= _conv("landsat_upsample_conv", config.features, config.features)
    for layer in range(config.transformer_layers):
        shapes |= _transformer_layer(f"temporal_encoder.{layer}", config)
    shapes |= _transformer_layer("temporal_decoder", config)
    shapes |= _conv("decoder_conv1", config.d_model, config.d_model)
    return shapes | _conv("decoder_conv2", config.d_model, config.output_bands)


def _fit(found: Shapes, expected: Shapes, extra_allowed: bool) -> str:
    """What keeps ``found`` from being ``expected`` ('' when it fits)."""
    missing = [name for name in expected if name not in found]
    wrong = [f"{name} {found[name]} != {shape}" for name, shape in expected.items()
             if name in found and tuple(found[name]) != shape]  # fmt: skip
    unexpected = [] if extra_allowed else [name for name in found if name not in expected]
    problems = [f"{label} {len(names)} (e.g. {names[:2]})"
                for label, names in (("missing", missing), ("wrong shape", wrong),
                                     ("unexpected", unexpected)) if names]  # fmt: skip
    return "; ".join(problems)


# -- our format: safetensors + config.json ----------------------------------------------------


def safetensors_shapes(path: Path) -> Shapes:
    """The tensors a safetensors file's header lists, after checking that the file holds
    every byte the header promises (a file cut short fails here)."""
    size = path.stat().st_size
    with open(path, "rb") as stream:
        prefix = stream.read(8)
        if len(prefix) < 8:
            raise CheckpointError(f"{path} is truncated: {size} bytes, not even a header")
        (header_size,) = struct.unpack("<Q", prefix)
        if 8 + header_size > size:
            raise CheckpointError(f"{path} is truncated: its header alone needs "
                                  f"{8 + header_size} bytes, the file has {size}")  # fmt: skip
        try:
            header = json.loads(stream.read(header_size))
        except (ValueError, UnicodeDecodeError) as error:
            raise CheckpointError(f"{path} has an unreadable header ({error})") from None
    header.pop("__metadata__", None)
    end = max((entry["data_offsets"][1] for entry in header.values()), default=0)
    if 8 + header_size + end != size:
        raise CheckpointError(f"{path} is truncated or padded: its header promises "
                              f"{8 + header_size + end} bytes, the file has {size}")  # fmt: skip
    return {name: tuple(entry["shape"]) for name, entry in header.items()}


def _check_directory(directory: Path) -> None:
    """Our checkpoint directory: config, weights complete and unaltered, and fitting the
    architecture its config describes."""
    metadata = read_metadata(directory)
    weights = directory / WEIGHTS_FILE
    if not weights.is_file():
        raise CheckpointError(f"{directory} has no {WEIGHTS_FILE}: the checkpoint is incomplete")
    found = safetensors_shapes(weights)
    if sha256_file(weights) != metadata.get("weights_sha256"):
        raise CheckpointError(f"{weights} does not match the checksum in {CONFIG_FILE}: the "
                              "file is corrupt or was replaced")  # fmt: skip
    try:
        config = ModelConfig(**metadata["architecture"])
    except (KeyError, TypeError, ValueError) as error:
        raise CheckpointError(f"{directory / CONFIG_FILE} has no valid architecture "
                              f"({type(error).__name__}: {error})") from None  # fmt: skip
    problems = _fit(found, state_shapes(config), extra_allowed=False)
    if problems:
        raise CheckpointError(f"the tensors of {weights} are not those of the architecture in "
                              f"{CONFIG_FILE} (another model): {problems}")  # fmt: skip


# -- the authors' .ckpt: torch.save files, read without building anything --------------------

_TORCH_MAGIC = 0x1950A86A20F9469CFC6C
"""The first pickle of a torch.save file in the legacy (non-zip) form."""
_ELEMENT_BYTES = {"Double": 8, "Float": 4, "Half": 2, "BFloat16": 2, "Long": 8, "Int": 4,
                  "Short": 2, "Char": 1, "Byte": 1, "Bool": 1, "ComplexFloat": 8,
                  "ComplexDouble": 16, "Untyped": 1}  # fmt: skip
_CODE_MODULES = frozenset({
    "os", "posix", "nt", "subprocess", "sys", "shutil", "socket", "runpy", "importlib",
    "ctypes", "code", "codeop", "pty", "multiprocessing", "pickle", "_pickle", "marshal",
    "operator", "asyncio", "threading", "_thread", "signal", "tempfile", "webbrowser", "http",
    "urllib", "requests", "ftplib", "smtplib", "telnetlib", "pdb", "bdb", "pydoc", "venv",
    "commands", "popen2",
})  # fmt: skip
"""Modules whose globals in a pickle would run commands, load or compile code, or reach files
and the network when called: no checkpoint needs them, a crafted file does."""
_CODE_SUBMODULES = ("torch.hub", "torch.serialization", "torch._inductor", "torch.utils",
                    "torch.jit", "torch.package", "numpy.testing", "numpy.lib.npyio")  # fmt: skip
_CODE_NAMES = frozenset({"system", "popen", "eval", "exec", "execfile", "compile", "load",
                         "loads", "__import__", "open", "spawn", "Popen", "check_output",
                         "check_call", "call", "run", "instantiate"})  # fmt: skip
"""Functions of any module that run or load code (``numpy.load``, ``yaml.load``, Hydra's
``instantiate``...)."""
_CODE_TYPES = frozenset({"FunctionType", "LambdaType", "CodeType", "MethodType", "ModuleType"})
"""Of ``types``: what builds functions or code (``types.SimpleNamespace`` is plain data)."""
_SAFE_BUILTINS = frozenset({"set", "frozenset", "slice", "complex", "range", "bytearray",
                            "bytes", "dict", "list", "tuple", "int", "float", "str",
                            "bool"})  # fmt: skip


def _runs_code(module: str, name: str) -> bool:
    """Whether the global ``module.name`` would execute something if a pickle called it."""
    root = module.split(".")[0]
    if root in ("builtins", "__builtin__"):
        return name not in _SAFE_BUILTINS
    if root == "types":
        return name in _CODE_TYPES
    return root in _CODE_MODULES or module.startswith(_CODE_SUBMODULES) or name in _CODE_NAMES


class _Inert:
    """Stands in for every object of the pickle that is neither a container nor a tensor."""

    def __new__(cls, *args: Any, **kwargs: Any) -> _Inert:
        return super().__new__(cls)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        pass


class _Storage:
    """A storage reference (persistent id) of a torch.save file."""

    def __init__(self, kind: str, key: str, numel: int) -> None:
        self.kind, self.key, self.numel = kind, key, numel

    @property
    def nbytes(self) -> int | None:
        element = _ELEMENT_BYTES.get(self.kind.removesuffix("Storage"))
        return None if element is None else element * self.numel


class _StorageType(str):
    """``torch.FloatStorage`` and the like, by name."""


class _TensorShape(tuple):
    """What a rebuilt tensor becomes here: its shape."""


def _tensor(storage: Any, offset: int, size: tuple, *args: Any) -> _TensorShape:
    return _TensorShape(int(n) for n in size)


def _parameter(data: Any, *args: Any) -> Any:
    return data


def _from_type(function: Any, new_type: Any, args: tuple, state: Any) -> Any:
    return function(*args)


_REBUILDS = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch", "Size"): tuple,
    ("torch._utils", "_rebuild_tensor"): _tensor,
    ("torch._utils", "_rebuild_tensor_v2"): _tensor,
    ("torch._utils", "_rebuild_parameter"): _parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _parameter,
    ("torch._tensor", "_rebuild_from_type_v2"): _from_type,
}


class _ShapeReader(pickle.Unpickler):
    """Reads a torch.save pickle into plain containers and tensor shapes, building no other
    object (every class and function becomes :class:`_Inert`), and refuses a pickle that
    calls code (:func:`_runs_code`) as soon as it names it."""

    def __init__(self, stream: io.BufferedIOBase, path: Path) -> None:
        super().__init__(stream)
        self.path = path
        self.storages: dict[str, _Storage] = {}

    def find_class(self, module: str, name: str) -> Any:
        if _runs_code(module, name):
            raise CheckpointError(
                f"checkpoint {self.path} carries code: its pickle calls {module}.{name} when "
                "loaded (a crafted file); refused without executing anything: use a checkpoint "
                "from a trusted source (the authors' published file, or one written by tamrf "
                "import-checkpoint or tamrf train)"
            )
        if (module, name) in _REBUILDS:
            return _REBUILDS[(module, name)]
        if module == "torch" and name.endswith("Storage"):
            return _StorageType(name)
        return _Inert

    def persistent_load(self, pid: Any) -> Any:
        if isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage":
            storage = _Storage(str(pid[1]), str(pid[2]), int(pid[4]))
            self.storages[storage.key] = storage
            return storage
        return _Inert()


def _tensors(content: Any) -> Shapes:
    """The tensors of a checkpoint's content: its ``state_dict`` (Lightning) or itself."""
    state = content.get("state_dict", content) if isinstance(content, dict) else None
    if not isinstance(state, dict):
        return {}
    return {str(k): tuple(v) for k, v in state.items() if isinstance(v, _TensorShape)}


def _zip_shapes(path: Path) -> Shapes:
    """A torch.save zip: the pickle read inertly, and every storage record it refers to
    present with its bytes."""
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as error:
        raise CheckpointError(f"{path} is truncated or corrupt: not a readable zip archive "
                              f"({error})") from None  # fmt: skip
    with archive:
        records = {info.filename: info.file_size for info in archive.infolist()}
        pickles = [name for name in records if name.endswith("/data.pkl")]
        if not pickles:
            raise CheckpointError(f"{path} is a zip archive but not a torch.save file")
        root = pickles[0][: -len("data.pkl")]
        reader = _ShapeReader(io.BytesIO(archive.read(pickles[0])), path)
        content = _load(reader, path)
    for storage in reader.storages.values():
        stored = records.get(f"{root}data/{storage.key}")
        if stored is None or (storage.nbytes is not None and stored < storage.nbytes):
            raise CheckpointError(f"{path} is truncated or corrupt: tensor data "
                                  f"{storage.key!r} is missing or short")  # fmt: skip
    return _tensors(content)


def _legacy_shapes(path: Path) -> Shapes:
    """A plain-pickle torch.save file (torch < 1.6): magic number, protocol, system info,
    the content, the storage keys, then each storage (8-byte count + bytes)."""
    with open(path, "rb") as stream:
        magic = _load(_ShapeReader(stream, path), path)
        if magic != _TORCH_MAGIC:
            raise CheckpointError(f"{path} is a pickle but not a torch.save file")
        for _ in range(2):  # protocol version, system info
            _load(_ShapeReader(stream, path), path)
        reader = _ShapeReader(stream, path)
        content = _load(reader, path)
        _load(_ShapeReader(stream, path), path)  # storage keys
        data_bytes = os.fstat(stream.fileno()).st_size - stream.tell()
    needed = sum(8 + (s.nbytes or 0) for s in reader.storages.values())
    if data_bytes < needed:
        raise CheckpointError(f"{path} is truncated: its tensors need {needed} bytes after the "
                              f"pickles, the file has {data_bytes}")  # fmt: skip
    return _tensors(content)


def _load(reader: _ShapeReader, path: Path) -> Any:
    try:
        return reader.load()
    except CheckpointError:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError,
            IndexError, KeyError, struct.error, MemoryError) as error:  # fmt: skip
        raise CheckpointError(f"{path} is truncated or corrupt: its pickle does not read "
                              f"({type(error).__name__}: {error})") from None  # fmt: skip


def torch_file_shapes(path: Path) -> Shapes:
    """The tensors (name -> shape) of a ``torch.save`` file's state dict, read without torch
    and without executing anything.

    Raises:
        CheckpointError: not a torch.save file, truncated or corrupt, or a pickle that calls
            code.
    """
    with open(path, "rb") as stream:
        head = stream.read(4)
    if head.startswith(b"PK\x03\x04"):
        return _zip_shapes(path)
    if head.startswith(b"\x80"):
        return _legacy_shapes(path)
    raise CheckpointError(f"{path} is not a PyTorch checkpoint (neither a zip nor a pickle)")


def _check_lightning_file(path: Path) -> None:
    """The authors' ``.ckpt``: readable, no code, and every tensor of the TAMRF architecture
    its names describe, with its shape (optimizer state and other tensors are ignored)."""
    from tamrf_xr.lightning_names import STATISTICS, config_from_names, official_name

    found = torch_file_shapes(path)
    if not found:
        raise CheckpointError(f"{path} holds no state_dict of tensors: not a model checkpoint")
    config = config_from_names(set(found))
    expected = {official_name(key, config): shape for key, shape in state_shapes(config).items()}
    problems = _fit(found, expected, extra_allowed=True)
    missing_statistics = [name for name in STATISTICS.values() if name not in found]
    if missing_statistics:
        problems = "; ".join(filter(None, [problems, f"no normalisation {missing_statistics}"]))
    if problems:
        raise CheckpointError(f"{path} is not a TAMRF-SITS s{config.rrdb_blocks}"
                              f"t{config.transformer_layers} checkpoint: {problems}")  # fmt: skip


def check_checkpoint(path: str | os.PathLike[str]) -> None:
    """Check a checkpoint the way :func:`tamrf_xr.checkpoint.load_model` would take it (a
    directory, its ``config.json`` or ``model.safetensors``, or a ``.ckpt`` file), without
    torch. Every message starts with ``checkpoint PATH`` and ends with the way out.

    Raises:
        CheckpointError: missing, not a checkpoint, truncated, corrupt, of another
            architecture, or a pickle that calls code.
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist: give a tamrf-xr checkpoint "
                              "directory or the authors' .ckpt file")  # fmt: skip
    if path.is_file() and path.name in (CONFIG_FILE, WEIGHTS_FILE):
        path = path.parent
    if path.is_file() and path.suffix != ".ckpt":
        raise CheckpointError(
            f"checkpoint {path} is not a PyTorch checkpoint (.ckpt) nor a tamrf-xr checkpoint "
            "directory: give a directory written by tamrf import-checkpoint (model.safetensors "
            "+ config.json) or the authors' .ckpt file"
        )
    try:
        if path.is_dir():
            _check_directory(path)
        else:
            _check_lightning_file(path)
    except OSError as error:
        raise CheckpointError(f"checkpoint {path} is not readable ({error}): check the path "
                              "and its permissions") from None  # fmt: skip
    except CheckpointError as error:
        if str(error).startswith(f"checkpoint {path} "):
            raise
        raise CheckpointError(
            f"checkpoint {path} is not readable as a model ({error}): give a directory written "
            "by tamrf import-checkpoint or tamrf train (model.safetensors + config.json) or the "
            "authors' .ckpt file, complete and unaltered"
        ) from None
