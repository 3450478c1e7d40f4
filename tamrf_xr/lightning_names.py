"""The authors' tensor names (TAMRF-SITS PyTorch-Lightning checkpoints) and ours, without torch.

:func:`official_name` maps each of our state_dict keys onto the authors' name, and
:func:`config_from_names` reads the ablation sizes from the authors' names. Both work on plain
strings, so that a ``.ckpt`` file is checked (:mod:`tamrf_xr.checkpoint_files`) before torch
is imported; :mod:`tamrf_xr.lightning_import` uses them to load the file.
"""

from __future__ import annotations

import re

from tamrf_xr.checkpoint_files import CheckpointError
from tamrf_xr.model_config import ModelConfig

__all__ = ["STATISTICS", "config_from_names", "official_name"]

STATISTICS = {"s2_mean": "hr_mean", "s2_std": "hr_std",
              "landsat_mean": "lr_mean", "landsat_std": "lr_std"}  # fmt: skip
"""Our normalisation statistics -> the authors' buffer names."""
_ENC = "the_modules.encoder"
_DEC = "the_modules.decoder"
_SENSOR = {"s2": "hr", "landsat": "lr"}


def official_name(key: str, config: ModelConfig) -> str:
    """The authors' state_dict name of one of our state_dict keys."""
    tail_block = config.rrdb_blocks + 1
    rules: list[tuple[str, str]] = [
        (r"^(s2|landsat)_sensor_token$", f"{_ENC}.{{sensor}}_sensor_token"),
        (r"^(s2|landsat)_encoder\.head\.(weight|bias)$",
         f"{_ENC}.{{sensor}}_encoder.model.encoder.blocks.0.{{2}}"),
        (r"^(s2|landsat)_encoder\.tail\.(weight|bias)$",
         f"{_ENC}.{{sensor}}_encoder.model.encoder.blocks.{tail_block}.{{2}}"),
        (r"^(s2|landsat)_encoder\.rrdbs\.(\d+)\.scale$",
         f"{_ENC}.{{sensor}}_encoder.model.encoder.blocks.{{2+1}}.scale"),
        (r"^(s2|landsat)_encoder\.rrdbs\.(\d+)\.module\.(\d+)\.scale$",
         f"{_ENC}.{{sensor}}_encoder.model.encoder.blocks.{{2+1}}.module.block_{{3}}.scale"),
        (r"^(s2|landsat)_encoder\.rrdbs\.(\d+)\.module\.(\d+)\.module\.convs\.(\d+)\.(weight|bias)$",
         f"{_ENC}.{{sensor}}_encoder.model.encoder.blocks.{{2+1}}.module.block_{{3}}"
         ".module.module.{4}.conv.{5}"),
        (r"^landsat_upsample_conv\.(weight|bias)$",
         f"{_ENC}.lr_encoder.model.upsampling.0.block.0.{{1}}"),
        (r"^temporal_encoder\.(\d+)\.attention\.(in_proj_weight|in_proj_bias|out_proj\.weight|out_proj\.bias)$",
         f"{_ENC}.transformer_encoder.transformer_encoder.layers.{{1}}.self_attn.{{2}}"),
        (r"^temporal_encoder\.(\d+)\.feed_forward\.(linear[12]\.(?:weight|bias))$",
         f"{_ENC}.transformer_encoder.transformer_encoder.layers.{{1}}.{{2}}"),
        (r"^temporal_encoder\.(\d+)\.(norm[12]\.(?:weight|bias))$",
         f"{_ENC}.transformer_encoder.transformer_encoder.layers.{{1}}.{{2}}"),
        (r"^query_sensor_token$", f"{_DEC}.query_sensor_token"),
        (r"^query_token$", f"{_DEC}.imputer.default_token"),
        (r"^decoder_conv1\.(weight|bias)$", f"{_DEC}.decoder.model.decoder.0.{{1}}"),
        (r"^decoder_conv2\.(weight|bias)$", f"{_DEC}.decoder.model.decoder.2.{{1}}"),
        (r"^temporal_decoder\.attention\.(.+)$", f"{_DEC}.attention.attention.{{1}}"),
        (r"^temporal_decoder\.feed_forward\.(.+)$", f"{_DEC}.attention.{{1}}"),
        (r"^temporal_decoder\.(norm[12]\..+)$", f"{_DEC}.attention.{{1}}"),
    ]  # fmt: skip
    for pattern, template in rules:
        match = re.match(pattern, key)
        if match is None:
            continue
        groups = match.groups()

        def fill(placeholder: re.Match, groups=groups) -> str:
            expression = placeholder.group(1)
            if expression == "sensor":
                return _SENSOR[groups[0]]
            if expression.endswith("+1"):
                return str(int(groups[int(expression[:-2]) - 1]) + 1)
            return groups[int(expression) - 1]

        return re.sub(r"\{([^{}]+)\}", fill, template)
    raise KeyError(f"no official name for model key {key!r}")


def config_from_names(names: set[str]) -> ModelConfig:
    """Ablation sizes (RRDBs per encoder, transformer layers) read from the tensor names."""
    block = re.compile(rf"{_ENC}\.hr_encoder\.model\.encoder\.blocks\.(\d+)\.")
    layer = re.compile(rf"{_ENC}\.transformer_encoder\.transformer_encoder\.layers\.(\d+)\.")
    blocks = {int(m.group(1)) for n in names if (m := block.match(n))}
    layers = {int(m.group(1)) for n in names if (m := layer.match(n))}
    if not blocks or not layers:
        raise CheckpointError(
            "the file has no TAMRF encoder tensors (the_modules.encoder...): it is not a "
            "TAMRF-SITS checkpoint"
        )
    return ModelConfig(rrdb_blocks=max(blocks) - 1, transformer_layers=max(layers) + 1)
