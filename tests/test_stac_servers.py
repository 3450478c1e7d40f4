"""Real local STAC API servers (rustac, stac-fastapi-pgstac) over static catalogs: no mocks.

Expected search results are computed here from the item geometries (shapely) and datetimes,
independently of the servers, and compared as exact sets of item ids.
"""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pystac
import pytest
import shapely
from pystac_client import Client
from shapely.geometry import box
from stac_expectations import expected_ids, parse_time
from typer.testing import CliRunner

from flows.cli import app
from pipelines.demo.stac_servers import (
    BackendUnavailableError,
    CatalogError,
    PgstacConfig,
    PgstacServer,
    PortInUseError,
    RustacConfig,
    RustacServer,
    ServerStartError,
    StacServer,
    create_server,
    load_static_catalog,
    pgstac_availability,
    port_is_free,
)
from pipelines.demo.stac_servers.common import iter_search
from pipelines.demo.stac_servers.pgstac import LOAD_MODES

BACKENDS = ["rustac", pytest.param("pgstac", marks=pytest.mark.pgstac)]


def require_pgstac() -> None:
    """Skip, saying how to enable the test, when PostgreSQL/PostGIS cannot run here."""
    availability = pgstac_availability()
    if not availability:
        pytest.skip(
            f"pgstac unavailable: {availability.reason} (enable: bash infra/install-postgis.sh)"
        )


# --------------------------------------------------------------------------------------------
# Expected results, computed without any server
# --------------------------------------------------------------------------------------------


def search_ids(url: str, **query: Any) -> set[str]:
    """Ids returned by ``Client.open(url).search(**query)``, asserting no duplicates."""
    ids = [item.id for item in Client.open(url).search(max_items=None, **query).items()]
    assert len(ids) == len(set(ids)), f"duplicates in {ids}"
    return set(ids)


# --------------------------------------------------------------------------------------------
# Catalogs
# --------------------------------------------------------------------------------------------


def write_catalog(
    root: Path, collections: dict[str, list[pystac.Item]], catalog_type: pystac.CatalogType
) -> Path:
    """Save a static catalog of ``collections`` under ``root``; return its catalog.json."""
    catalog = pystac.Catalog("test-catalog", "A static catalog written by the tests.")
    for cid, items in collections.items():
        collection = pystac.Collection(
            cid, f"{cid} items", pystac.Extent.from_items(items), license="other"
        )
        collection.add_items(items)
        catalog.add_child(collection)
    catalog.normalize_hrefs(str(root))
    catalog.save(catalog_type)
    return root / "catalog.json"


# collection, id, footprint, datetime. s2-tri is a triangle: its bbox contains the
# "bbox-only-tri-bbox" query box, its geometry does not, so that query checks that servers
# intersect geometries, not bounding boxes.
SYNTH = [
    ("synth-s2", "s2-a", box(10, 10, 11, 11), "2024-01-15T10:00:00Z"),
    ("synth-s2", "s2-b", box(11.5, 10, 12.5, 11), "2024-02-15T10:00:00Z"),
    ("synth-s2", "s2-c", box(10, 12, 11, 13), "2024-03-15T10:00:00Z"),
    ("synth-s2", "s2-tri", shapely.Polygon([(13, 10), (15, 10), (13, 12)]), "2024-04-15T10:00:00Z"),
    ("synth-ls", "ls-a", box(10.5, 10.5, 12, 11.5), "2024-01-20T10:00:00Z"),
    ("synth-ls", "ls-b", box(14, 14, 15, 15), "2024-02-20T10:00:00Z"),
    ("synth-ls", "ls-c", box(-20, -20, -19, -19), "2024-03-01T00:00:00Z"),
    ("synth-ls", "ls-d", box(10, 10, 13, 13), "2024-05-01T10:00:00Z"),
]

# name -> (search parameters, expected ids worked out by hand from SYNTH)
SYNTH_QUERIES: dict[str, tuple[dict[str, Any], set[str]]] = {
    "bbox": ({"bbox": [10.2, 10.2, 10.8, 10.8]}, {"s2-a", "ls-a", "ls-d"}),
    "bbox-only-tri-bbox": ({"bbox": [14.5, 11.5, 14.9, 11.9]}, set()),
    "bbox-nothing": ({"bbox": [100, 0, 101, 1]}, set()),
    "datetime-closed-end-inclusive": (
        {"datetime": "2024-02-01T00:00:00Z/2024-03-01T00:00:00Z"},
        {"s2-b", "ls-b", "ls-c"},
    ),
    "datetime-open-start": ({"datetime": "../2024-01-31T00:00:00Z"}, {"s2-a", "ls-a"}),
    "datetime-open-end": ({"datetime": "2024-04-01T00:00:00Z/.."}, {"s2-tri", "ls-d"}),
    "collections": ({"collections": ["synth-ls"]}, {"ls-a", "ls-b", "ls-c", "ls-d"}),
    "bbox+datetime": (
        {"bbox": [10, 10, 12.9, 12.9], "datetime": "2024-01-01T00:00:00Z/2024-02-28T00:00:00Z"},
        {"s2-a", "s2-b", "ls-a"},
    ),
    "bbox+collections": (
        {"bbox": [10, 10, 12.9, 12.9], "collections": ["synth-s2"]},
        {"s2-a", "s2-b", "s2-c"},
    ),
    "bbox+datetime+collections": (
        {
            "bbox": [9, 9, 16, 16],
            "datetime": "2024-02-01T00:00:00Z/2024-04-30T00:00:00Z",
            "collections": ["synth-s2"],
        },
        {"s2-b", "s2-c", "s2-tri"},
    ),
}


def synthetic_items() -> dict[str, list[pystac.Item]]:
    """Fresh pystac items for SYNTH, grouped by collection."""
    out: dict[str, list[pystac.Item]] = {}
    for cid, iid, geom, when in SYNTH:
        item = pystac.Item(
            id=iid,
            geometry=shapely.geometry.mapping(geom),
            bbox=list(geom.bounds),
            datetime=parse_time(when),
            properties={},
        )
        # A relative asset href: the loader must make it absolute.
        item.add_asset("data", pystac.Asset(f"./{iid}.tif", media_type=pystac.MediaType.COG))
        out.setdefault(cid, []).append(item)
    return out


@pytest.fixture(scope="module")
def synth_catalog(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A self-contained (relative hrefs) synthetic catalog: 8 items in 2 collections."""
    root = tmp_path_factory.mktemp("synthetic") / "catalog"
    return write_catalog(root, synthetic_items(), pystac.CatalogType.SELF_CONTAINED)


@pytest.fixture(scope="module")
def synth_item_dicts(synth_catalog: Path) -> list[dict[str, Any]]:
    return list(load_static_catalog(synth_catalog).items)


REAL_FILES = {
    "sentinel-2-l2a": "earth-search-v1_sentinel-2-l2a.json",
    "landsat-c2-l2": "planetary-computer_landsat-c2-l2.json",
}


@pytest.fixture(scope="module")
def real_catalog(real_data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Real Earth Search S2 (6) and Planetary Computer Landsat (10) items, absolute hrefs."""
    folder = real_data_dir / "stac-items" / "from_pystac-client_cassettes"
    collections = {}
    for cid, name in REAL_FILES.items():
        if not (folder / name).is_file():
            pytest.skip(f"{folder / name} is absent from the shared real data")
        features = json.loads((folder / name).read_text())["features"]
        collections[cid] = [pystac.Item.from_dict(f) for f in features]
    root = tmp_path_factory.mktemp("real") / "catalog"
    return write_catalog(root, collections, pystac.CatalogType.ABSOLUTE_PUBLISHED)


@pytest.fixture(scope="module")
def real_item_dicts(real_catalog: Path) -> list[dict[str, Any]]:
    return list(load_static_catalog(real_catalog).items)


def _serve(catalog: Path, backend: str) -> Iterator[StacServer]:
    if backend == "pgstac":
        require_pgstac()
    with create_server(catalog, backend) as server:
        yield server


@pytest.fixture(scope="module", params=BACKENDS)
def synth_server(request: pytest.FixtureRequest, synth_catalog: Path) -> Iterator[StacServer]:
    yield from _serve(synth_catalog, request.param)


@pytest.fixture(scope="module", params=BACKENDS)
def real_server(request: pytest.FixtureRequest, real_catalog: Path) -> Iterator[StacServer]:
    yield from _serve(real_catalog, request.param)


# --------------------------------------------------------------------------------------------
# Catalog loading (no server)
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(SYNTH_QUERIES))
def test_expected_ids_match_the_design(synth_item_dicts: list[dict], name: str) -> None:
    query, hand_worked = SYNTH_QUERIES[name]
    assert expected_ids(synth_item_dicts, **query) == hand_worked


def test_load_static_catalog(synth_catalog: Path) -> None:
    content = load_static_catalog(synth_catalog.parent)  # the directory works too
    assert sorted(content.collection_ids) == ["synth-ls", "synth-s2"]
    assert content.item_keys == {(cid, iid) for cid, iid, _, _ in SYNTH}
    for item in content.items:
        href = item["assets"]["data"]["href"]
        assert href == str(
            synth_catalog.parent / item["collection"] / item["id"] / f"{item['id']}.tif"
        )
        assert not {link["rel"] for link in item["links"]} & {"self", "root", "parent"}


def test_items_outside_collections_get_one(tmp_path: Path) -> None:
    catalog = pystac.Catalog("loose", "items without a collection")
    catalog.add_items(synthetic_items()["synth-ls"])
    catalog.normalize_hrefs(str(tmp_path))
    catalog.save(pystac.CatalogType.SELF_CONTAINED)
    content = load_static_catalog(tmp_path / "catalog.json")
    assert content.collection_ids == ["loose"]
    assert {i["collection"] for i in content.items} == {"loose"}


def test_missing_catalog(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match="does not exist"):
        RustacServer(tmp_path / "nowhere" / "catalog.json")
    with pytest.raises(CatalogError, match=r"no catalog\.json"):
        RustacServer(tmp_path)


def test_catalog_without_items(tmp_path: Path) -> None:
    pystac.Catalog("empty", "no items").normalize_and_save(str(tmp_path))
    with pytest.raises(CatalogError, match="has no items"):
        PgstacServer(tmp_path)


# --------------------------------------------------------------------------------------------
# Searches, both backends
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(SYNTH_QUERIES))
def test_search_synthetic(
    synth_server: StacServer, synth_item_dicts: list[dict], name: str
) -> None:
    query, _ = SYNTH_QUERIES[name]
    assert search_ids(synth_server.url, **query) == expected_ids(synth_item_dicts, **query)


def test_collections_and_assets_synthetic(synth_server: StacServer, synth_catalog: Path) -> None:
    client = Client.open(synth_server.url)
    assert {c.id for c in client.get_collections()} == {"synth-s2", "synth-ls"}
    item = next(client.search(ids=["s2-a"], collections=["synth-s2"]).items())
    assert item.assets["data"].href == str(synth_catalog.parent / "synth-s2" / "s2-a" / "s2-a.tif")


def test_pagination_synthetic(synth_server: StacServer) -> None:
    search = Client.open(synth_server.url).search(limit=3, max_items=None)
    pages = [[item.id for item in page.items] for page in search.pages()]
    assert len(pages) >= 3 and all(len(p) <= 3 for p in pages)
    ids = [i for page in pages for i in page]
    assert sorted(ids) == sorted(iid for _, iid, _, _ in SYNTH)


def test_pagination_get_synthetic(synth_server: StacServer) -> None:
    # GET next links (rustac: ?skip=, pgstac: ?token=); no collections, see rustac.py.
    search = Client.open(synth_server.url).search(limit=3, max_items=None, method="GET")
    assert len(list(search.pages())) >= 3
    assert sorted(i.id for i in search.items()) == sorted(iid for _, iid, _, _ in SYNTH)


def test_iter_search_follows_post_pages(synth_server: StacServer) -> None:
    # What start() uses to check that every item is served.
    body = {"collections": ["synth-s2", "synth-ls"], "limit": 3}
    ids = [f["id"] for f in iter_search(synth_server.url, body)]
    assert sorted(ids) == sorted(iid for _, iid, _, _ in SYNTH)


REAL_QUERIES: dict[str, dict[str, Any]] = {
    "bbox": {"bbox": [-39.5, -4.9, -38.5, -4.55]},
    "datetime": {"datetime": "2025-07-31T13:03:20Z/2025-07-31T13:03:26Z"},
    "collections": {"collections": ["landsat-c2-l2"]},
    "bbox+collections": {"bbox": [162.0, -20.0, 166.0, -10.0], "collections": ["landsat-c2-l2"]},
    "bbox+datetime+collections": {
        "bbox": [150.0, -40.0, 170.0, 10.0],
        "datetime": "2025-07-22T23:05:00Z/2025-07-22T23:09:00Z",
        "collections": ["landsat-c2-l2", "sentinel-2-l2a"],
    },
}


@pytest.mark.realdata
@pytest.mark.parametrize("name", list(REAL_QUERIES))
def test_search_real(real_server: StacServer, real_item_dicts: list[dict], name: str) -> None:
    query = REAL_QUERIES[name]
    expected = expected_ids(real_item_dicts, **query)
    assert 0 < len(expected) < len(real_item_dicts)  # the query discriminates
    assert search_ids(real_server.url, **query) == expected


@pytest.mark.realdata
def test_pagination_and_assets_real(real_server: StacServer, real_item_dicts: list[dict]) -> None:
    assert len(real_item_dicts) == 16
    assert search_ids(real_server.url, limit=4) == {i["id"] for i in real_item_dicts}
    client = Client.open(real_server.url)
    item = next(client.search(ids=["S2B_24MWV_20250731_0_L2A"]).items())
    assert item.assets["red"].href.startswith("https://sentinel-cogs.s3.us-west-2.amazonaws.com/")
    assert item.properties["eo:cloud_cover"] == pytest.approx(25.342679)


# --------------------------------------------------------------------------------------------
# Life cycle and errors
# --------------------------------------------------------------------------------------------


def test_rustac_stop_cleans_up(synth_catalog: Path) -> None:
    with RustacServer(synth_catalog) as server:
        proc, workdir = server.process, server.workdir
        port = int(server.url.rsplit(":", 1)[1])
        assert server.alive() and workdir.is_dir() and not port_is_free(port)
    assert proc.returncode is not None and not workdir.exists() and port_is_free(port)
    server.stop()  # idempotent


@pytest.mark.pgstac
def test_pgstac_stop_cleans_up_and_serves_from_dsn(synth_catalog: Path) -> None:
    require_pgstac()
    from psycopg.conninfo import conninfo_to_dict

    with PgstacServer(synth_catalog) as server:
        api, postgres, workdir, dsn = server.api, server.postgres, server.workdir, server.dsn
        api_port = int(server.url.rsplit(":", 1)[1])
        pg_port = int(conninfo_to_dict(dsn)["port"])
        assert (workdir / "data" / "PG_VERSION").is_file() and server.alive()
        # A second API on the same, already loaded database: upserts and serves the same items.
        with PgstacServer(synth_catalog, PgstacConfig(dsn=dsn)) as second:
            assert second.postgres is None and second.alive()
            expected = {"ls-a", "ls-b", "ls-c", "ls-d"}
            assert search_ids(second.url, collections=["synth-ls"]) == expected
        assert server.alive()  # stopping the second API left the database alone
    assert api.returncode is not None and postgres.returncode is not None
    assert not workdir.exists() and port_is_free(pg_port) and port_is_free(api_port)


def test_pgstac_dsn_must_name_a_tcp_host(synth_catalog: Path) -> None:
    pytest.importorskip("psycopg")
    with pytest.raises(ValueError, match="connects over TCP"):
        PgstacServer(synth_catalog, PgstacConfig(dsn="host=/run/postgresql dbname=stac"))


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A port that another socket is bound to and listening on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


@pytest.mark.parametrize("backend", ["rustac", "pgstac"])
def test_port_taken(synth_catalog: Path, taken_port: int, backend: str) -> None:
    # The port is checked before anything starts, so this needs no PostgreSQL.
    server = create_server(synth_catalog, backend, port=taken_port)
    with pytest.raises(PortInUseError, match=rf"port {taken_port} .*already in use.*omit the port"):
        server.start()
    assert not server.running


def test_rustac_binary_missing(synth_catalog: Path, tmp_path: Path) -> None:
    server = RustacServer(synth_catalog, RustacConfig(binary=tmp_path / "no-rustac"))
    with pytest.raises(BackendUnavailableError, match="pip install rustac"):
        server.start()


def _fake_program(path: Path, body: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)
    return path


def test_postgres_binaries_missing(synth_catalog: Path, tmp_path: Path) -> None:
    server = PgstacServer(synth_catalog, PgstacConfig(pg_bindir=tmp_path))
    with pytest.raises(BackendUnavailableError, match=r"initdb.*install-postgis\.sh"):
        server.start()
    # Programs present but no PostGIS next to them (share dir guessed from the version dir).
    bindir = tmp_path / "99" / "bin"
    for name in ("initdb", "postgres"):
        _fake_program(bindir / name, "exit 1")
    availability = pgstac_availability(bindir)
    assert not availability and "PostGIS is not installed" in availability.reason
    assert "install-postgis.sh" in availability.reason


def test_server_dies_during_start(synth_catalog: Path, tmp_path: Path) -> None:
    fake = _fake_program(tmp_path / "rustac", 'echo "fake rustac cannot serve $1" >&2\nexit 3')
    server = RustacServer(synth_catalog, RustacConfig(binary=fake))
    with pytest.raises(
        ServerStartError, match=r"(?s)exited with status 3.*fake rustac cannot serve"
    ):
        server.start()
    assert server.workdir is None and server.process is None


def test_server_start_timeout(synth_catalog: Path, tmp_path: Path) -> None:
    fake = _fake_program(tmp_path / "rustac", "echo never answers\nexec sleep 60")
    server = RustacServer(synth_catalog, RustacConfig(binary=fake, start_timeout_s=0.5))
    with pytest.raises(ServerStartError, match=r"(?s)not ready after 0\.5 s.*never answers"):
        server.start()
    assert server.process is None


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------


class ServeCli:
    """``tamrf catalog serve`` running in a subprocess, its output read by a thread."""

    def __init__(self, repo_root: Path, *args: str) -> None:
        cmd = [sys.executable, "-m", "flows.cli", "catalog", "serve", *args]
        self.proc = subprocess.Popen(
            cmd,
            cwd=repo_root,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.output: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)

    def wait_for_url(self, timeout_s: float = 60.0) -> tuple[str, int]:
        """The printed API URL and port."""
        while True:
            try:
                self.output.append(self.lines.get(timeout=timeout_s))
            except queue.Empty:
                pytest.fail(f"no URL printed within {timeout_s} s: {self.text()}")
            if m := re.search(r"STAC API: (http://127\.0\.0\.1:(\d+))", self.output[-1]):
                return m.group(1), int(m.group(2))

    def wait(self, timeout_s: float = 30.0) -> int:
        return self.proc.wait(timeout=timeout_s)

    def text(self) -> str:
        """Everything printed so far (all of it once the process has exited)."""
        if self.proc.poll() is not None:
            self.reader.join(timeout=10)
        while not self.lines.empty():
            self.output.append(self.lines.get())
        return "".join(self.output)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.mark.parametrize(
    ("backend", "sig"),
    [
        pytest.param("rustac", signal.SIGINT, id="rustac-SIGINT"),
        pytest.param("rustac", signal.SIGTERM, id="rustac-SIGTERM"),
        pytest.param("pgstac", signal.SIGTERM, marks=pytest.mark.pgstac, id="pgstac-SIGTERM"),
    ],
)
def test_cli_serve(synth_catalog: Path, repo_root: Path, backend: str, sig: signal.Signals) -> None:
    if backend == "pgstac":
        require_pgstac()
    cli = ServeCli(repo_root, str(synth_catalog.parent), "--backend", backend)
    try:
        url, port = cli.wait_for_url()
        assert "8 items in 2 collections" in cli.text()
        assert search_ids(url, collections=["synth-s2"]) == {"s2-a", "s2-b", "s2-c", "s2-tri"}
        cli.proc.send_signal(sig)
        assert cli.wait() == 0, cli.text()
    finally:
        cli.kill()
    assert "Stopped." in cli.text()
    assert port_is_free(port)


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs Linux /proc")
def test_cli_reports_a_server_that_dies(synth_catalog: Path, repo_root: Path) -> None:
    cli = ServeCli(repo_root, str(synth_catalog))
    try:
        _, port = cli.wait_for_url()
        pid = cli.proc.pid
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        assert len(children) == 1  # the rustac server
        os.kill(int(children[0]), signal.SIGKILL)
        assert cli.wait() == 1
    finally:
        cli.kill()
    assert "server stopped unexpectedly" in cli.text()
    assert port_is_free(port)


def _cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["catalog", "serve", *args], env={"COLUMNS": "500"})
    return result.exit_code, " ".join(result.output.split())


def test_cli_bad_inputs(tmp_path: Path, synth_catalog: Path, taken_port: int) -> None:
    code, out = _cli(str(tmp_path / "missing"))
    assert code == 2 and "does not exist" in out
    code, out = _cli(str(synth_catalog), "--port", str(taken_port))
    assert code == 2 and f"port {taken_port} on 127.0.0.1 is already in use" in out
    code, out = _cli(str(synth_catalog), "--dsn", "postgresql://u@127.0.0.1/db")
    assert code == 2 and "--dsn only applies to --backend pgstac" in out


def test_cli_help_lists_serve() -> None:
    result = CliRunner().invoke(app, ["catalog", "--help"])
    assert result.exit_code == 0 and "serve" in result.output


def test_load_modes_match_pypgstac() -> None:
    load = pytest.importorskip("pypgstac.load")
    assert set(LOAD_MODES) == {m.value for m in load.Methods}
    with pytest.raises(ValueError, match="not a pypgstac insert mode"):
        PgstacConfig(load_mode="replace")
