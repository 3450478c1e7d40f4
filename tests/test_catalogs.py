"""Catalog profiles on the real item documents of Earth Search v1 and Planetary Computer."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from pipelines.catalogs import EARTH_SEARCH_V1, LOCAL, PLANETARY_COMPUTER, item_epsg, profile

pytestmark = pytest.mark.realdata


def _items(real_data_dir: Path, relative: str) -> list[dict]:
    raw = json.loads((real_data_dir / "stac-items" / relative).read_text())
    return raw["features"] if isinstance(raw, dict) and "features" in raw else raw


def test_earth_search_l2a_trusts_the_boa_offset_flag(real_data_dir: Path):
    items = _items(
        real_data_dir, "from_pystac-client_cassettes/earth-search-v1_sentinel-2-l2a.json"
    )
    assert len(items) == 6
    for item in items:
        assert set(EARTH_SEARCH_V1.s2_asset_keys().values()) <= set(item["assets"])
        assert item["properties"]["earthsearch:boa_offset_applied"] is True
        # raster:bands declares -0.1 although the offset is already out of the DNs.
        assert item["assets"]["red"]["raster:bands"][0]["offset"] == -0.1
        rule = EARTH_SEARCH_V1.s2_scaling(item)
        assert (rule.scale, rule.offset, rule.nodata) == (1e-4, 0.0, 0)
        assert rule.name == "s2-earthsearch-boa-offset-applied"
    # The flag is known to be wrong for some scenes: the rule is configurable and recorded.
    distrust = dataclasses.replace(EARTH_SEARCH_V1, boa_offset_policy="from-baseline")
    rule = distrust.s2_scaling(items[0])
    assert rule.offset == pytest.approx(-0.1) and rule.name == "s2-baseline>=04.00-offset-in-dn"
    flag_false = {**items[0], "properties": {**items[0]["properties"],
                                            "earthsearch:boa_offset_applied": False}}  # fmt: skip
    assert EARTH_SEARCH_V1.s2_scaling(flag_false).offset == pytest.approx(-0.1)


def test_earth_search_collection_1_uses_raster_bands(real_data_dir: Path):
    items = _items(
        real_data_dir, "from_pystac-client_cassettes/earth-search-v1_sentinel-2-c1-l2a.json"
    )
    with_assets = [i for i in items if i.get("assets")]
    assert with_assets
    for item in with_assets:
        assert item["collection"] == "sentinel-2-c1-l2a"
        rule = EARTH_SEARCH_V1.s2_scaling(item)
        assert rule.name == "s2-raster-bands" and rule.offset == pytest.approx(-0.1)
        assert set(EARTH_SEARCH_V1.s2_asset_keys().values()) <= set(item["assets"])


def test_planetary_computer_s2_keys_and_baseline_offsets(real_data_dir: Path):
    old = _items(
        real_data_dir, "from_pystac-client_cassettes/planetary-computer_sentinel-2-l2a.json"
    )
    new = _items(real_data_dir, "from_stac-geoparquet/sentinel-2-l2a-pc.json")
    for item in old + new:
        assert set(PLANETARY_COMPUTER.s2_asset_keys().values()) <= set(item["assets"])
    # B8A is keyed B8A although its common name on PC is "rededge".
    assert PLANETARY_COMPUTER.s2_assets["S2_B8A"] == "B8A"
    assert old[0]["assets"]["B8A"]["eo:bands"][0]["common_name"] == "rededge"
    assert {PLANETARY_COMPUTER.s2_scaling(i).offset for i in old} == {0.0}
    baselines = {i["properties"]["s2:processing_baseline"] for i in new}
    assert all(b >= "04.00" for b in baselines)
    assert all(PLANETARY_COMPUTER.s2_scaling(i).offset == pytest.approx(-0.1) for i in new)
    assert PLANETARY_COMPUTER.modifier is not None


def test_landsat_keys_thermal_and_scaling(real_data_dir: Path):
    items = _items(
        real_data_dir, "from_pystac-client_cassettes/planetary-computer_landsat-c2-l2.json"
    )
    items += _items(real_data_dir, "from_stac-geoparquet/landsat-c2-l2-pc.json")
    corrections = set()
    for item in items:
        corrections.add(item["properties"]["landsat:correction"])
        keys = PLANETARY_COMPUTER.landsat_asset_keys(item)
        assert set(keys.values()) <= set(item["assets"]), item["id"]
        assert ("LS_B10" in keys) == (item["properties"]["landsat:correction"] == "L2SP")
        for name, key in keys.items():
            if name.startswith("LS_"):
                declared = item["assets"][key]["raster:bands"][0]
                rule = PLANETARY_COMPUTER.landsat_scaling(name)
                assert (rule.scale, rule.offset) == (declared["scale"], declared["offset"])
    assert corrections == {"L2SP", "L2SR"}


def test_projection_from_proj_epsg_or_proj_code(real_data_dir: Path):
    item = _items(
        real_data_dir, "from_pystac-client_cassettes/earth-search-v1_sentinel-2-l2a.json"
    )[0]
    assert item_epsg(item) == 32724
    stac11 = {"id": "x", "properties": {"proj:code": "EPSG:32631"}}
    assert item_epsg(stac11) == 32631
    with pytest.raises(ValueError, match="CRS is unknown"):
        item_epsg({"id": "y", "properties": {"proj:code": "IAU:1234"}})


def test_profiles_by_name_and_gdal_env():
    assert profile("local") is LOCAL
    with pytest.raises(ValueError, match="known"):
        profile("nope")
    assert EARTH_SEARCH_V1.gdal_env()["AWS_REQUEST_PAYER"] == "requester"
    assert "AWS_REQUEST_PAYER" not in LOCAL.gdal_env(["/data/x.tif"])
    assert LOCAL.gdal_env(["s3://usgs-landsat/x.TIF"])["AWS_REQUEST_PAYER"] == "requester"
