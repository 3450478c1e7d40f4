"""Catalog search: real local STAC APIs on 127.0.0.1 (rustac, and a flaky one for retries)."""

from __future__ import annotations

import datetime as dt
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pystac
import pytest
import shapely
from shapely.geometry import box, shape

from pipelines.demo.simulated_catalog import write_simulated_catalog
from pipelines.demo.stac_servers import RustacServer, free_port
from pipelines.search import CatalogSearchError, SearchRequest, search_items
from tamrf_xr.simulate import SimulationConfig

CONFIG = SimulationConfig(
    seed=21, width_px=120, height_px=120, start=dt.date(2022, 4, 1), end=dt.date(2022, 5, 31)
)


@pytest.fixture(scope="module")
def product(tmp_path_factory):
    return write_simulated_catalog(
        CONFIG, tmp_path_factory.mktemp("search") / "p", with_truth=False
    )


@pytest.fixture(scope="module")
def items(product) -> list[pystac.Item]:
    catalog = pystac.Catalog.from_file(str(product.catalog))
    return list(catalog.get_items(recursive=True))


@pytest.fixture(scope="module")
def server(product):
    with RustacServer(product.catalog) as running:
        yield running


def _request(items, **changes) -> SearchRequest:
    boxes = [i.bbox for i in items]
    bbox = (min(b[0] for b in boxes), min(b[1] for b in boxes),
            max(b[2] for b in boxes), max(b[3] for b in boxes))  # fmt: skip
    base = {"collections": ("sentinel-2-l2a", "landsat-c2-l2"), "bbox": bbox,
            "start": CONFIG.start, "end": CONFIG.end}  # fmt: skip
    return SearchRequest(**{**base, **changes})


def test_cloud_cover_limit_is_applied_even_where_the_server_ignores_it(server, items):
    limit = 30.0
    found = search_items(server.url, _request(items, max_cloud_cover=limit), page_size=5)
    expected = {i.id for i in items if i.properties["eo:cloud_cover"] <= limit}
    got = {i.id for group in found.values() for i in group}
    assert got == expected and 0 < len(got) < len(items)


def test_geometry_aoi_and_paging(server, items):
    west, south, east, north = _request(items).bbox
    # A triangle over the western half: items are selected by footprint, not by bbox.
    triangle = shapely.Polygon([(west, south), ((west + east) / 2, south), (west, north)])
    request = _request(items, bbox=None, geometry=shapely.geometry.mapping(triangle))
    found = search_items(server.url, request, page_size=3)
    expected = {i.id for i in items if shape(i.geometry).intersects(triangle)}
    got = {i.id for group in found.values() for i in group}
    assert got == expected
    not_touching = {i.id for i in items if not shape(i.geometry).intersects(triangle)}
    assert not_touching, "the triangle should leave some items out (partial swaths)"
    for group in found.values():
        assert [i.datetime for i in group] == sorted(i.datetime for i in group)


def test_empty_result_and_unreachable_catalog_are_clear_errors(server, items):
    with pytest.raises(CatalogSearchError, match=r"no items in collection.*2015-01-01"):
        search_items(
            server.url, _request(items, start=dt.date(2015, 1, 1), end=dt.date(2015, 2, 1))
        )
    dead = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(CatalogSearchError, match=dead) as error:
        search_items(dead, _request(items), retries=1, backoff_s=0.01)
    assert "2022-04-01" in str(error.value) and "bbox" in str(error.value)


def test_bad_requests_are_clear_errors(items):
    with pytest.raises(ValueError, match="exactly one of bbox"):
        _request(items, geometry=shapely.geometry.mapping(box(1, 43, 2, 44)))
    with pytest.raises(ValueError, match="start <= end"):
        _request(items, start=dt.date(2022, 6, 1))
    with pytest.raises(ValueError, match="percentage"):
        _request(items, max_cloud_cover=150.0)


class _FlakyApi(BaseHTTPRequestHandler):
    """A minimal STAC API whose /search fails with 503 a few times before answering."""

    failures_left = 0
    item: ClassVar[dict] = {}

    def log_message(self, *args) -> None:  # keep the test output clean
        pass

    def _send(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        root = f"http://{self.headers['Host']}"
        self._send(200, {
            "type": "Catalog", "id": "flaky", "stac_version": "1.0.0", "description": "flaky",
            "conformsTo": ["https://api.stacspec.org/v1.0.0/core",
                           "https://api.stacspec.org/v1.0.0/item-search"],
            "links": [{"rel": "self", "href": root}, {"rel": "root", "href": root},
                      {"rel": "search", "href": f"{root}/search", "method": "POST",
                       "type": "application/geo+json"}],
        })  # fmt: skip

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if type(self).failures_left > 0:
            type(self).failures_left -= 1
            self._send(503, {"code": "Unavailable", "description": "try again"})
            return
        self._send(200, {"type": "FeatureCollection", "features": [type(self).item], "links": []})


def test_transient_errors_are_retried_with_backoff(items):
    item = items[0].to_dict()
    _FlakyApi.item, _FlakyApi.failures_left = item, 2
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _FlakyApi)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{httpd.server_address[1]}"
        request = _request(items, collections=(item["collection"],))
        found = search_items(url, request, retries=3, backoff_s=0.01)
        assert [i.id for i in found[item["collection"]]] == [item["id"]]
        assert _FlakyApi.failures_left == 0
        _FlakyApi.failures_left = 10
        with pytest.raises(CatalogSearchError, match="cannot search"):
            search_items(url, request, retries=2, backoff_s=0.01)
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_planetary_computer_signing_modifier_runs_on_every_item(server, items, monkeypatch):
    """The profile's signer is the real planetary_computer.sign_inplace (optional extra); it
    leaves non-Azure hrefs alone, so the local catalog's items come back unchanged."""
    import planetary_computer

    from pipelines.catalogs import PLANETARY_COMPUTER

    modifier = PLANETARY_COMPUTER.modifier()
    assert modifier is planetary_computer.sign_inplace
    seen = []

    def counting(obj):
        seen.append(obj)
        return modifier(obj)

    found = search_items(server.url, _request(items), modifier=counting)
    got = [i for group in found.values() for i in group]
    assert seen and {i.id for i in got} == {i.id for i in items}
    assert all(not a.href.startswith("http") for i in got for a in i.assets.values())

    monkeypatch.setitem(__import__("sys").modules, "planetary_computer", None)
    with pytest.raises(ImportError, match=r"pip install 'tamrf-xr\[planetary-computer\]'"):
        PLANETARY_COMPUTER.modifier()
