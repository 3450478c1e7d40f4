"""Context per stage of the network (tamrf_xr.receptive_field), by hand for s1t3."""

from __future__ import annotations

import pytest

from tamrf_xr.model import ModelConfig
from tamrf_xr.receptive_field import encoder_convs, receptive_field_radius, stage_context


def test_s1t3_by_hand() -> None:
    config = ModelConfig()
    # head + 1 RRDB x 3 RDBs x 5 convs + tail
    assert encoder_convs(config) == 17
    # Landsat: 3 x (17 convs + 2 bicubic taps) + 1 upsampling conv; + 2 decoder convs
    assert receptive_field_radius(config) == 60
    assert receptive_field_radius(ModelConfig(rrdb_blocks=2)) == 3 * (32 + 2) + 1 + 2
    full = stage_context(config, (60, 60, 60, 60))
    assert full.decoded == (2,) * 4
    assert full.s2 == (19,) * 4  # 2 + 17
    assert full.upsampled == (3,) * 4  # 2 + the upsampling conv
    assert full.landsat_features == (3,) * 4  # ceil(3 / 3) + 2 bicubic taps
    assert full.landsat == (20,) * 4  # 3 + 17 convs at 30 m = the whole 60 px


def test_less_context_than_needed_uses_all_there_is() -> None:
    config = ModelConfig()
    stages = stage_context(config, (0, 3, 9, 120))
    assert stages.decoded == (0, 2, 2, 2)
    assert stages.s2 == (0, 3, 9, 19)
    assert stages.upsampled == (0, 3, 3, 3)
    assert stages.landsat_features == (0, 1, 3, 3)
    assert stages.landsat == (0, 1, 3, 20)


def test_context_must_keep_the_landsat_grid_aligned() -> None:
    with pytest.raises(ValueError, match="multiples of 3"):
        stage_context(ModelConfig(), (60, 60, 61, 60))
    with pytest.raises(ValueError, match="non-negative"):
        stage_context(ModelConfig(), (-3, 0, 0, 0))
