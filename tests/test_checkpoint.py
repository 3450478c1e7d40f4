"""Checkpoints: our safetensors format, and import of the authors' Lightning file (safely)."""

from __future__ import annotations

import collections
import json
import os
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from tamrf_xr.checkpoint import CheckpointError, load_model, save_checkpoint
from tamrf_xr.lightning_import import (
    import_lightning_checkpoint,
    official_names,
    read_lightning_state_dict,
)
from tamrf_xr.model import TAMRF, ModelConfig
from tamrf_xr.normalisation import REFERENCE_LS2S2_ALL, Normalisation

torch.set_num_threads(2)

KEYS_FILE = (
    Path(__file__).resolve().parents[1].parent / "shared" / "docs" / "official-checkpoint-keys.json"
)
STATS = Normalisation(
    s2_mean=tuple(0.1 + 0.01 * i for i in range(10)),
    s2_std=tuple(0.05 + 0.01 * i for i in range(10)),
    landsat_mean=(0.12, 0.13, 0.16, 0.18, 0.31, 0.24, 0.17, 0.29),
    landsat_std=(0.18, 0.18, 0.16, 0.16, 0.14, 0.07, 0.05, 0.012),
)


class HydraLikeConfig:
    """An object a real Lightning file pickles in its hyper-parameters: an unknown global."""

    def __init__(self) -> None:
        self.lr = 1e-4


class Exploit:
    """Would run code at load time if the file were unpickled naively."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _same_stats(a: Normalisation, b: Normalisation) -> bool:
    """Equal up to the float32 storage of the file."""
    return all(getattr(a, k) == pytest.approx(getattr(b, k), rel=1e-6) for k in a.to_dict())


def _official_tensors(config: ModelConfig, seed: int = 0) -> collections.OrderedDict:
    """A state_dict with the authors' names and shapes and random values."""
    g = torch.Generator().manual_seed(seed)
    model = TAMRF(config)
    state = collections.OrderedDict()
    for name, value in zip(("hr_mean", "hr_std", "lr_mean", "lr_std"),
                           (STATS.s2_mean, STATS.s2_std, STATS.landsat_mean, STATS.landsat_std),
                           strict=True):  # fmt: skip
        state[name] = torch.tensor(value)
    state["hr_mtf"], state["lr_mtf"] = torch.full((10,), 0.3), torch.full((8,), 0.3)
    state["hr_resolution"], state["lr_resolution"] = torch.full((10,), 10.0), torch.full((8,), 30.0)
    for key, name in official_names(config).items():
        shape = model.state_dict()[key].shape
        state[name] = (
            torch.full(shape, 0.2)
            if key.endswith(".scale")
            else torch.randn(shape, generator=g) * 0.05
        )
    state["cca_loss_instance.projection.weight"] = torch.randn(4, 4, generator=g)
    return state


def _lightning_file(path: Path, state: dict, extra: dict | None = None) -> Path:
    content = {
        "epoch": 41,
        "global_step": 12345,
        "pytorch-lightning_version": "2.1.3",
        "state_dict": state,
        "optimizer_states": [
            {"state": {0: {"exp_avg": torch.zeros(3)}}, "param_groups": [{"lr": 1e-4}]}
        ],
        "lr_schedulers": [],
        **(extra or {}),
    }
    torch.save(content, path)
    return path


@pytest.fixture(scope="module")
def official_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("ckpt") / "968639_s1t3.ckpt"
    return _lightning_file(
        path, _official_tensors(ModelConfig()), {"hyper_parameters": {"config": HydraLikeConfig()}}
    )


def test_official_names_and_shapes_match_the_published_file():
    """Our name mapping covers exactly the tensors listed for the authors' file."""
    if not KEYS_FILE.is_file():
        pytest.skip(f"{KEYS_FILE} is absent: put ../shared next to the repository to run this")
    listed = {t["name"]: tuple(t["shape"]) for t in json.loads(KEYS_FILE.read_text())["tensors"]}
    model = TAMRF()
    ours = {
        name: tuple(model.state_dict()[key].shape)
        for key, name in official_names(model.config).items()
    }
    assert set(ours) <= set(listed)
    assert all(listed[name] == shape for name, shape in ours.items())
    # What is not ours: the 4 normalisation buffers (used) and MTF/resolution (ignored).
    assert set(listed) - set(ours) == {"hr_mean", "hr_std", "lr_mean", "lr_std", "hr_mtf", "lr_mtf",
                                       "hr_resolution", "lr_resolution"}  # fmt: skip


def test_import_fills_every_tensor_and_keeps_the_statistics(official_file: Path):
    loaded = import_lightning_checkpoint(official_file)
    state = read_lightning_state_dict(official_file)
    mapping = official_names(loaded.config)
    own = loaded.model.state_dict()
    assert len(mapping) == len(own) == 134
    for key, name in mapping.items():
        assert torch.equal(own[key], state[name]), key
    assert _same_stats(loaded.normalisation, STATS)
    assert not loaded.model.training
    assert loaded.metadata["origin"]["ignored_tensors"] == 5  # MTF, resolution, loss module


def test_import_to_our_format_and_load_it_back(official_file: Path, tmp_path: Path):
    destination = tmp_path / "s1t3"
    imported = import_lightning_checkpoint(official_file, destination)
    assert sorted(p.name for p in destination.iterdir()) == ["config.json", "model.safetensors"]
    config = json.loads((destination / "config.json").read_text())
    assert config["architecture"]["transformer_layers"] == 3
    assert config["bands"]["outputs"][7] == "LS_B10" and config["bands"]["outputs"][8] == "S2_B2"
    assert config["origin"]["imported_from"] == "968639_s1t3.ckpt"
    assert len(config["weights_sha256"]) == 64 and config["software"]["torch"] == torch.__version__
    again = load_model(destination)
    assert again.checksum == imported.checksum == config["weights_sha256"]
    for (k1, v1), (k2, v2) in zip(
        again.model.state_dict().items(), imported.model.state_dict().items(), strict=True
    ):
        assert k1 == k2 and torch.equal(v1, v2)
    direct = load_model(official_file)  # the .ckpt itself, imported on the fly
    x = (
        torch.randn(1, 2, 10, 12, 12),
        torch.tensor([[0.0, 5.0]]),
        torch.randn(1, 1, 8, 4, 4),
        torch.tensor([[3.0]]),
    )
    with torch.no_grad():
        torch.testing.assert_close(again.model(*x, [4.0]), direct.model(*x, [4.0]))


def test_loading_never_executes_code_from_the_file(tmp_path: Path):
    marker = tmp_path / "pwned"
    path = _lightning_file(
        tmp_path / "evil.ckpt",
        _official_tensors(ModelConfig()),
        {"hyper_parameters": {"x": Exploit(marker)}},
    )
    loaded = import_lightning_checkpoint(path)
    assert not marker.exists()
    assert _same_stats(loaded.normalisation, STATS)


def test_ablation_checkpoint_is_recognised(tmp_path: Path):
    config = ModelConfig(rrdb_blocks=2, transformer_layers=1)
    path = _lightning_file(tmp_path / "s2t1.ckpt", _official_tensors(config))
    loaded = import_lightning_checkpoint(path)
    assert loaded.config.rrdb_blocks == 2 and loaded.config.transformer_layers == 1


def test_wrong_or_truncated_files_are_clear_errors(official_file: Path, tmp_path: Path):
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(official_file.read_bytes()[: official_file.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="truncated, corrupt or not a checkpoint"):
        import_lightning_checkpoint(truncated)
    text = tmp_path / "notes.ckpt"
    text.write_text("not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot read"):
        import_lightning_checkpoint(text)
    state = _official_tensors(ModelConfig())
    name = "the_modules.decoder.decoder.model.decoder.2.weight"
    del state[name]
    with pytest.raises(CheckpointError, match="lacks 1 of the 134 model tensors"):
        import_lightning_checkpoint(_lightning_file(tmp_path / "missing.ckpt", state))
    state = _official_tensors(ModelConfig())
    state[name] = torch.zeros(17, 136, 3, 3)
    with pytest.raises(CheckpointError, match=r"wrong shape.*decoder\.2\.weight"):
        import_lightning_checkpoint(_lightning_file(tmp_path / "shape.ckpt", state))
    with pytest.raises(CheckpointError, match="not a TAMRF-SITS checkpoint"):
        import_lightning_checkpoint(
            _lightning_file(tmp_path / "other.ckpt", {"layer.weight": torch.zeros(2)})
        )


def test_corrupted_weights_are_detected(tmp_path: Path):
    destination = save_checkpoint(
        TAMRF(), REFERENCE_LS2S2_ALL, tmp_path / "ckpt", {"trained": False}
    )
    weights = destination / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-10] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="checksum"):
        load_model(destination)
    with pytest.raises(CheckpointError, match="not a tamrf-xr checkpoint"):
        load_model(tmp_path)
    with pytest.raises(FileExistsError):
        save_checkpoint(TAMRF(), REFERENCE_LS2S2_ALL, destination, {})


def test_normalisation_round_trip_and_units():
    values = torch.rand(2, 18, 4, 4)
    values[:, 7] = 280.0 + 20.0 * torch.rand(2, 4, 4)  # Kelvin
    reference = REFERENCE_LS2S2_ALL
    standardised = torch.cat(
        [reference.standardise_landsat(values[:, :8]), reference.standardise_s2(values[:, 8:])],
        dim=1,
    )
    # LST is standardised in K/1000: 299.9 K is the mean, 12.4 K one std.
    lst = REFERENCE_LS2S2_ALL.standardise_landsat(torch.full((8, 1, 1), 312.3))[7, 0, 0]
    assert float(lst) == pytest.approx(1.0, abs=1e-4)
    torch.testing.assert_close(
        REFERENCE_LS2S2_ALL.unstandardise(standardised), values, atol=1e-4, rtol=1e-5
    )
    with pytest.raises(ValueError, match="need 10 values"):
        Normalisation((0.1,) * 9, (0.1,) * 10, (0.1,) * 8, (0.1,) * 8)


def test_cli_import_checkpoint(official_file: Path, tmp_path: Path):
    from flows.cli import app

    destination = tmp_path / "imported"
    result = CliRunner().invoke(app, ["import-checkpoint", str(official_file), str(destination)])
    assert result.exit_code == 0, result.output
    assert "134 tensors" in result.output and (destination / "model.safetensors").is_file()
    again = CliRunner().invoke(app, ["import-checkpoint", str(official_file), str(destination)])
    assert again.exit_code == 2 and "--overwrite" in again.output
    bad = CliRunner().invoke(
        app, ["import-checkpoint", str(tmp_path / "absent.ckpt"), str(tmp_path / "x")]
    )
    assert bad.exit_code == 2 and "does not exist" in bad.output
