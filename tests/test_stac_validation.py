"""Tests for pipelines.stac_validation: offline STAC validation with vendored schemas.

Real-data scope (``../shared/data/real/stac-items``):

* validated, must pass: every Earth Search v1 item with assets (sentinel-2-l2a,
  sentinel-2-c1-l2a, sentinel-2-l1c) and the Planetary Computer Sentinel-2 L2A items and
  Collection -- they use only vendored extensions (eo, projection, raster, view, mgrs, grid,
  processing, sentinel-2, file, storage, sat, item-assets).
* checked to be *rejected*: the fields-filtered Earth Search search response (no geometry,
  links or assets: a partial projection of items, not STAC Items) and the Planetary Computer
  Landsat items (they list USGS's landsat-extension v1.1.1, classification and scientific,
  which are not vendored: the error must name them instead of skipping them).
* out of scope: odc-stac's pre-1.0 items (stac_version 1.0.0-beta.x; no beta core schemas).
"""

from __future__ import annotations

import copy
import json
import socket
import time
from pathlib import Path
from typing import Any

import pystac
import pytest
from jsonschema import Draft7Validator

from pipelines import stac_validation
from pipelines.stac_validation import (
    StacValidationError,
    known_extension_urls,
    known_schema_urls,
    validate_stac,
)

REAL = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real"
STAC_ITEMS = REAL / "stac-items"
CASSETTES = STAC_ITEMS / "from_pystac-client_cassettes"

EXT = "https://stac-extensions.github.io"
PROJ = f"{EXT}/projection/v1.1.0/schema.json"
EO = f"{EXT}/eo/v1.1.0/schema.json"
RASTER = f"{EXT}/raster/v1.1.0/schema.json"
VIEW = f"{EXT}/view/v1.0.0/schema.json"
MGRS = f"{EXT}/mgrs/v1.0.0/schema.json"
GRID = f"{EXT}/grid/v1.1.0/schema.json"
PROCESSING = f"{EXT}/processing/v1.1.0/schema.json"
S2 = f"{EXT}/sentinel-2/v1.0.0/schema.json"
LANDSAT = f"{EXT}/landsat/v2.0.0/schema.json"
FILE = f"{EXT}/file/v2.1.0/schema.json"
ITEM_100 = "https://schemas.stacspec.org/v1.0.0/item-spec/json-schema/item.json"

#: The extensions Earth Search v1 items use (the brief's list).
EARTH_SEARCH_EXTENSIONS = [PROJ, EO, RASTER, VIEW, MGRS, GRID, PROCESSING, S2, LANDSAT, FILE]


# ------------------------------------------------------------------------------ fixtures


def _features(path: Path) -> list[dict[str, Any]]:
    data = json.loads(path.read_text(encoding="utf-8"))
    if isinstance(data, list):
        return data
    if data.get("type") == "FeatureCollection":
        return data["features"]
    return [data]


def _real(relative: str) -> Path:
    path = STAC_ITEMS / relative
    if not path.is_file():
        pytest.skip(
            f"real STAC items not available: {path} is absent (shared/data not checked out)"
        )
    return path


def _minimal_item() -> dict[str, Any]:
    """The smallest valid STAC 1.0.0 Item (no extensions)."""
    return {
        "type": "Feature",
        "stac_version": "1.0.0",
        "id": "minimal-item",
        "geometry": {
            "type": "Polygon",
            "coordinates": [[[10.0, 50.0], [11.0, 50.0], [11.0, 51.0], [10.0, 51.0], [10.0, 50.0]]],
        },
        "bbox": [10.0, 50.0, 11.0, 51.0],
        "properties": {"datetime": "2025-07-31T10:30:00Z"},
        "links": [],
        "assets": {},
    }


def _earth_search_like_item() -> dict[str, Any]:
    """A synthetic Sentinel-2 L2A item shaped like Earth Search v1, using every extension."""
    item = _minimal_item()
    item["id"] = "S2B_T32UNU_20250731T103629_L2A"
    item["stac_extensions"] = [PROJ, EO, RASTER, VIEW, MGRS, GRID, PROCESSING, S2, FILE]
    item["collection"] = "sentinel-2-l2a"
    item["links"] = [{"rel": "collection", "href": "https://example.test/collections/s2"}]
    item["properties"].update(
        {
            "platform": "sentinel-2b",
            "constellation": "sentinel-2",
            "instruments": ["msi"],
            "eo:cloud_cover": 12.5,
            "proj:epsg": 32632,
            "proj:centroid": {"lat": 50.5, "lon": 10.5},
            "mgrs:utm_zone": 32,
            "mgrs:latitude_band": "U",
            "mgrs:grid_square": "NU",
            "grid:code": "MGRS-32UNU",
            "view:sun_azimuth": 155.2,
            "view:sun_elevation": 52.1,
            "s2:processing_baseline": "05.11",
            "s2:product_type": "S2MSI2A",
            "s2:generation_time": "2025-07-31T12:00:01.000000Z",
            "s2:vegetation_percentage": 40.0,
            "processing:software": {"sentinel-2-l2a-to-stac": "v2024.02.01"},
        }
    )
    item["assets"] = {
        "red": {
            "href": "https://example.test/B04.tif",
            "type": "image/tiff; application=geotiff; profile=cloud-optimized",
            "roles": ["data", "reflectance"],
            "eo:bands": [{"name": "B04", "common_name": "red", "center_wavelength": 0.665}],
            "proj:shape": [10980, 10980],
            "proj:transform": [10, 0, 600000, 0, -10, 5600040],
            "raster:bands": [{"nodata": 0, "data_type": "uint16", "scale": 0.0001, "offset": -0.1}],
            "file:size": 123456,
            "file:checksum": "1220abcdef",
        }
    }
    return item


def _landsat_item() -> dict[str, Any]:
    """A synthetic Landsat C2 L2 item using the landsat v2.0.0 and file v2.1.0 extensions."""
    item = _minimal_item()
    item["id"] = "LC09_L2SP_196025_20250722_20250723_02_T1"
    item["stac_extensions"] = [LANDSAT, FILE, EO, VIEW]
    item["properties"].update(
        {
            "eo:cloud_cover": 3.2,
            "view:sun_elevation": 55.0,
            "landsat:scene_id": "LC91960252025203LGN00",
            "landsat:collection_category": "T1",
            "landsat:collection_number": "02",
            "landsat:wrs_type": "2",
            "landsat:wrs_path": "196",
            "landsat:wrs_row": "025",
            "landsat:cloud_cover_land": 3.0,
            "landsat:correction": "L2SP",
        }
    )
    item["assets"] = {
        "red": {"href": "https://example.test/SR_B4.TIF", "file:size": 1024, "roles": ["data"]}
    }
    return item


def _minimal_collection() -> dict[str, Any]:
    return {
        "type": "Collection",
        "stac_version": "1.0.0",
        "id": "tamrf-l3",
        "description": "Level-3 TAMRF fusion output",
        "license": "CC-BY-4.0",
        "extent": {
            "spatial": {"bbox": [[10.0, 50.0, 11.0, 51.0]]},
            "temporal": {"interval": [["2025-01-01T00:00:00Z", None]]},
        },
        "links": [],
    }


def _raises(obj: dict[str, Any]) -> StacValidationError:
    with pytest.raises(StacValidationError) as info:
        validate_stac(obj)
    return info.value


# ------------------------------------------------------------------- synthetic positives


def test_minimal_item_validates() -> None:
    validate_stac(_minimal_item())


def test_item_with_all_earth_search_extensions_validates() -> None:
    validate_stac(_earth_search_like_item())


def test_landsat_item_validates() -> None:
    validate_stac(_landsat_item())


def test_collection_validates_against_core_collection_schema() -> None:
    validate_stac(_minimal_collection())


def test_collection_with_item_assets_eo_raster_validates() -> None:
    collection = _minimal_collection()
    collection["stac_extensions"] = [f"{EXT}/item-assets/v1.0.0/schema.json", EO, RASTER]
    collection["item_assets"] = {
        "red": {
            "title": "Red",
            "roles": ["data"],
            "eo:bands": [{"name": "B04", "common_name": "red"}],
            "raster:bands": [{"data_type": "uint16", "nodata": 0}],
        }
    }
    validate_stac(collection)


def test_pystac_objects_validate() -> None:
    """pystac writes stac_version 1.1.0: validated against the vendored 1.1.0 core."""
    item = pystac.Item.from_dict(_minimal_item())
    validate_stac(item)
    collection = pystac.Collection(
        id="tamrf-l3",
        description="Level-3 TAMRF fusion output",
        extent=pystac.Extent(
            pystac.SpatialExtent([[10.0, 50.0, 11.0, 51.0]]),
            pystac.TemporalExtent([[item.datetime, None]]),
        ),
        license="CC-BY-4.0",
    )
    collection.add_item(item)
    # In-memory pystac objects have root/parent links without href until hrefs are set.
    collection.normalize_hrefs("https://example.test/tamrf-l3")
    validate_stac(collection)
    validate_stac(item)  # now with collection/parent/root links


# ------------------------------------------------------------------- synthetic negatives


def test_wrong_type_for_proj_epsg() -> None:
    item = _earth_search_like_item()
    item["properties"]["proj:epsg"] = "32632"
    error = _raises(item)
    text = str(error)
    assert "STAC Item 'S2B_T32UNU_20250731T103629_L2A'" in text
    assert "$.properties['proj:epsg']" in text
    assert PROJ in text
    assert "integer" in text
    assert [f.json_path for f in error.failures] == ["$.properties['proj:epsg']"]


def test_missing_geometry_key() -> None:
    item = _minimal_item()
    del item["geometry"]
    text = str(_raises(item))
    assert "'geometry' is a required property" in text
    assert ITEM_100 in text
    assert "fix: add 'geometry' to $" in text


@pytest.mark.parametrize(
    "value",
    [
        "yesterday",
        "2025-02-30T10:00:00Z",  # calendar-invalid: only the date-time format check catches it
        "2025-07-31T10:30:00",  # no time zone
    ],
)
def test_bad_datetime(value: str) -> None:
    item = _minimal_item()
    item["properties"]["datetime"] = value
    text = str(_raises(item))
    assert "$.properties.datetime" in text
    assert "RFC 3339" in text


def test_eo_cloud_cover_out_of_range() -> None:
    item = _earth_search_like_item()
    item["properties"]["eo:cloud_cover"] = 140
    error = _raises(item)
    assert "$.properties['eo:cloud_cover']" in str(error)
    assert "maximum of 100" in str(error)
    assert error.failures[0].schema_url == EO
    item["properties"]["eo:cloud_cover"] = -0.5
    assert "minimum of 0" in str(_raises(item))


def test_raster_data_type_not_in_enum() -> None:
    item = _earth_search_like_item()
    item["assets"]["red"]["raster:bands"][0]["data_type"] = "uint12"
    error = _raises(item)
    assert error.failures[0].json_path == "$.assets.red['raster:bands'][0].data_type"
    assert "'uint12' is not one of" in str(error)
    assert error.failures[0].schema_url == RASTER


def test_unknown_extension_is_an_error_listing_known_ones() -> None:
    sar = f"{EXT}/sar/v1.0.0/schema.json"
    item = _earth_search_like_item()
    item["stac_extensions"].append(sar)
    error = _raises(item)
    text = str(error)
    assert sar in text
    assert "$.stac_extensions[9]" in text
    assert "no local schema" in text
    for url in EARTH_SEARCH_EXTENSIONS:
        assert url in text  # the known ones are listed


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda i: i["properties"].pop("mgrs:grid_square"), "'mgrs:grid_square' is a required"),
        (lambda i: i["properties"].update({"mgrs:latitude_band": "I"}), "mgrs:latitude_band"),
        (lambda i: i["properties"].update({"grid:code": "32UNU"}), "grid:code"),
        (lambda i: i["properties"].update({"s2:foo": 1}), "unknown field(s) ['s2:foo']"),
        (lambda i: i["properties"].update({"s2:processing_baseline": "5.11"}), "baseline"),
        (lambda i: i["properties"].update({"view:sun_elevation": 95}), "view:sun_elevation"),
        (lambda i: i["assets"]["red"].update({"file:size": -1}), "file:size"),
        (lambda i: i["geometry"].update({"type": "Polygn"}), "$.geometry.type"),
        (lambda i: i.update({"bbox": [10.0, 50.0, 11.0]}), "$.bbox"),
        (lambda i: i.update({"stac_version": "0.9.0"}), "stac_version '0.9.0'"),
    ],
)
def test_other_violations_name_the_field(mutate: Any, expected: str) -> None:
    item = _earth_search_like_item()
    mutate(item)
    assert expected in str(_raises(item))


def test_landsat_fields_are_checked() -> None:
    item = _landsat_item()
    item["properties"]["landsat:wrs_path"] = "96"
    item["properties"].pop("landsat:correction")
    text = str(_raises(item))
    assert "$.properties['landsat:wrs_path']" in text
    assert "'landsat:correction' is a required property" in text
    assert LANDSAT in text


def test_collection_missing_extent() -> None:
    collection = _minimal_collection()
    del collection["extent"]
    text = str(_raises(collection))
    assert "STAC Collection 'tamrf-l3'" in text
    assert "'extent' is a required property" in text


def test_every_failure_is_reported_at_once() -> None:
    item = _earth_search_like_item()
    item["properties"]["proj:epsg"] = "32632"
    item["properties"]["eo:cloud_cover"] = 140
    del item["links"]
    error = _raises(item)
    assert len(error.failures) == 3
    assert "(3 problems)" in str(error)


def test_non_json_values_are_rejected() -> None:
    item = _minimal_item()
    item["properties"]["eo:cloud_cover"] = float("nan")
    text = str(_raises(item))
    assert "STAC Item 'minimal-item'" in text
    assert "not valid JSON" in text
    with pytest.raises(TypeError):
        validate_stac(["not", "a", "dict"])  # type: ignore[arg-type]


# ------------------------------------------------------------------------ offline guarantee


def test_validation_never_touches_the_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"network access attempted: {args!r}")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket.socket, "connect_ex", no_network)
    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    # Rebuild the registry and validators under the patch, so loading counts too.
    stac_validation._registry.cache_clear()
    stac_validation._validator.cache_clear()
    try:
        validate_stac(_earth_search_like_item())
        validate_stac(_landsat_item())
        validate_stac(_minimal_collection())
        bad = _earth_search_like_item()
        bad["properties"]["proj:epsg"] = "32632"
        _raises(bad)
    finally:
        stac_validation._registry.cache_clear()
        stac_validation._validator.cache_clear()


# ------------------------------------------------------------------------- schema integrity


def test_known_urls_cover_the_earth_search_extensions() -> None:
    known = set(known_schema_urls())
    assert set(EARTH_SEARCH_EXTENSIONS) <= set(known_extension_urls()) <= known
    assert ITEM_100 in known


def test_vendored_files_match_the_url_map() -> None:
    folder = Path(stac_validation.__file__).parent / "stac_schemas"
    on_disk = {p.name for p in folder.glob("*.json")}
    assert on_disk == set(stac_validation._SCHEMA_FILES.values())
    for url, name in stac_validation._SCHEMA_FILES.items():
        schema = json.loads((folder / name).read_text(encoding="utf-8"))
        Draft7Validator.check_schema(schema)  # all are draft-07 documents
        assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"
        if name.startswith("ext-"):
            assert schema["$id"] == url


def test_every_ref_resolves_offline() -> None:
    registry = stac_validation._registry()

    def refs(node: object) -> list[str]:
        if isinstance(node, dict):
            found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
            return found + [r for value in node.values() for r in refs(value)]
        if isinstance(node, list):
            return [r for value in node for r in refs(value)]
        return []

    for url in known_schema_urls():
        resource = registry[url]
        resolver = registry.resolver(base_uri=resource.id() or url)
        for ref in refs(resource.contents):
            # Raises referencing.exceptions.Unresolvable for anything not vendored.
            resolver.lookup(ref)


# ------------------------------------------------------------------------------ real data


@pytest.mark.realdata
@pytest.mark.parametrize(
    "relative",
    [
        "from_pystac-client_cassettes/earth-search-v1_sentinel-2-l2a.json",
        "from_pystac-client_cassettes/earth-search-v1_sentinel-2-c1-l2a.json",
        "from_pystac-client_cassettes/earth-search-v1_sentinel-2-l1c.json",
        "from_pystac-client_cassettes/planetary-computer_sentinel-2-l2a.json",
        "from_stac-geoparquet/sentinel-2-l2a-pc.json",
        "from_odc-stac/S2B_MSIL2A_20190629T212529_R043_T06VVN_20201006T080531.json",
        "from_odc-stac/sentinel-2-l2a.collection.json",
    ],
)
def test_real_items_validate(relative: str) -> None:
    features = _features(_real(relative))
    assert features
    for feature in features:
        validate_stac(feature)


@pytest.mark.realdata
def test_real_earth_search_item_as_pystac_item_validates() -> None:
    feature = _features(_real(CASSETTES.name + "/earth-search-v1_sentinel-2-c1-l2a.json"))[0]
    item = pystac.Item.from_dict(copy.deepcopy(feature), migrate=False)
    validate_stac(item)


@pytest.mark.realdata
def test_real_earth_search_item_with_defect_is_rejected() -> None:
    feature = _features(_real(CASSETTES.name + "/earth-search-v1_sentinel-2-l2a.json"))[0]
    feature["assets"]["red"]["raster:bands"][0]["data_type"] = "uint12"
    error = _raises(feature)
    assert error.failures[0].json_path == "$.assets.red['raster:bands'][0].data_type"


@pytest.mark.realdata
def test_real_fields_filtered_response_is_not_an_item() -> None:
    relative = CASSETTES.name + "/earth-search-v1_sentinel-2-c1-l2a_fields-filtered-no-assets.json"
    for feature in _features(_real(relative)):
        text = str(_raises(feature))
        assert "'geometry' is a required property" in text
        assert "'assets' is a required property" in text


@pytest.mark.realdata
def test_real_pc_landsat_items_name_their_unvendored_extensions() -> None:
    relative = CASSETTES.name + "/planetary-computer_landsat-c2-l2.json"
    for feature in _features(_real(relative)):
        error = _raises(feature)
        unknown = {f.schema_url for f in error.failures if f.message.startswith("no local schema")}
        assert unknown == {
            "https://landsat.usgs.gov/stac/landsat-extension/v1.1.1/schema.json",
            f"{EXT}/classification/v1.0.0/schema.json",
            f"{EXT}/scientific/v1.0.0/schema.json",
        }
        # Everything it lists that *is* vendored validates: no other failure.
        assert len(error.failures) == 3


@pytest.mark.realdata
def test_real_item_validation_is_fast() -> None:
    features = _features(_real(CASSETTES.name + "/planetary-computer_sentinel-2-l2a.json"))
    validate_stac(features[0])  # warm the registry and validators
    start = time.perf_counter()
    for feature in features:
        validate_stac(feature)
    assert (time.perf_counter() - start) / len(features) < 0.25  # seconds per item, 2-core CI
