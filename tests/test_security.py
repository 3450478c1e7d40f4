"""Security of a production run: no credential or URL signature in anything it records, and
every server it starts listening on 127.0.0.1 only.

The run reads a simulated catalog whose every asset href is an S3-style pre-signed URL
(``X-Amz-Credential``, ``X-Amz-Signature``, ``X-Amz-Security-Token``) served by a real HTTP
file server with range requests on 127.0.0.1, one of them missing (a 404, so that the
broken-asset path, which records hrefs and GDAL's error text, runs), with fake AWS
credentials and a Prefect API key in its environment. Then every byte it wrote (stores,
records, STAC, summary, logs of broken assets, quicklooks), its terminal output, and the
Prefect logs and artifacts of its flow run are searched for each secret.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import http.server
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from cli_process import REPO_ROOT

from pipelines.demo.simulated_catalog import write_simulated_catalog
from pipelines.demo.stac_servers import RustacServer, load_static_catalog
from pipelines.redaction import REDACTED, redact_text, redact_url
from tamrf_xr.simulate import SimulationConfig

REGION = SimulationConfig(seed=23, width_px=96, height_px=96, start=dt.date(2022, 6, 1),
                          end=dt.date(2022, 6, 16), cloud_cover_mean=0.2)  # fmt: skip
SECRETS = {
    "AWS_ACCESS_KEY_ID": "AKIAFAKEKEYFORTAMRF01",
    "AWS_SECRET_ACCESS_KEY": "fakeSecretKeyNeverWrittenAnywhere0123456789",
    "AWS_SESSION_TOKEN": "FwoGZXIvYXdzEFakeSessionTokenTamrf",
    "PREFECT_API_KEY": "pnu_fakePrefectApiKeyTamrf0123",
}
SIGNATURE = "5f1e2d3c4b5a69788796a5b4c3d2e1f0deadbeefcafef00d"
SIGNED_QUERY = (
    "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIASIGNINGKEYTAMRF/20220601/"
    f"us-west-2/s3/aws4_request&X-Amz-Security-Token=IQoJb3JpZ2luX2VjSignedToken&"
    f"X-Amz-Signature={SIGNATURE}"
)
NEEDLES = [*SECRETS.values(), SIGNATURE, "AKIASIGNINGKEYTAMRF", "IQoJb3JpZ2luX2VjSignedToken"]


class RangeFileHandler(http.server.SimpleHTTPRequestHandler):
    """Static files with HTTP range requests (what GDAL's /vsicurl/ reads COGs with); the
    query string (a signature) is accepted and ignored, as an object store checks it."""

    def send_head(self):
        path = Path(self.translate_path(self.path))
        if not path.is_file():
            self.send_error(404, "not found")
            return None
        data = path.read_bytes()
        match = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range", ""))
        if match:
            start = int(match.group(1))
            end = min(int(match.group(2) or len(data) - 1), len(data) - 1)
            body = data[start : end + 1]
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
        else:
            body = data
            self.send_response(200)
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Type", "image/tiff")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        import io

        return io.BytesIO(body)

    def log_message(self, format: str, *args) -> None:
        pass


@pytest.fixture(scope="module")
def signed_catalog(tmp_path_factory) -> Iterator[tuple[str, str]]:
    """A STAC API (rustac) whose items' assets are pre-signed URLs of a range-capable file
    server on 127.0.0.1; one reflectance asset is missing there. Yields the API URL and the
    missing asset's path."""
    root = tmp_path_factory.mktemp("signed")
    product = write_simulated_catalog(REGION, root / "product", with_truth=False)
    handler = lambda *a, **k: RangeFileHandler(*a, directory=str(root), **k)  # noqa: E731
    files = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=files.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{files.server_address[1]}"
    content = load_static_catalog(product.catalog)
    missing = None
    items = []
    for item in content.items:
        assets = {}
        for key, asset in item["assets"].items():
            relative = Path(asset["href"]).resolve().relative_to(root).as_posix()
            if missing is None and item["collection"] == "sentinel-2-l2a" and key == "red":
                missing = relative = relative.replace(".tif", "-gone.tif")
            assets[key] = {**asset, "href": f"{base}/{relative}?{SIGNED_QUERY}"}
        items.append({**item, "assets": assets})
    signed = dataclasses.replace(content, items=tuple(items))
    try:
        with RustacServer(signed) as server:
            yield server.url, missing
    finally:
        files.shutdown()


def aoi() -> str:
    from tamrf_xr.simulate.geometry import region_grid

    grid = region_grid(REGION)
    west, south, east, north = grid.lonlat_bbox()
    inset_x, inset_y = (east - west) * 0.3, (north - south) * 0.3
    return f"{west + inset_x},{south + inset_y},{east - inset_x},{north - inset_y}"


def listening_addresses(root: psutil.Process) -> set[tuple[str, int]]:
    """The addresses every process of ``root``'s tree listens on (TCP)."""
    found = set()
    for process in [root, *root.children(recursive=True)]:
        try:
            for connection in process.net_connections(kind="tcp"):
                if connection.status == psutil.CONN_LISTEN:
                    found.add((connection.laddr.ip, connection.laddr.port))
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


@pytest.fixture(scope="module")
def secret_run(prefect_harness, signed_catalog, tmp_path_factory):
    """The run, with the secrets in its environment, and the addresses its processes
    listened on while it ran (sampled every 0.2 s)."""
    from prefect.settings import PREFECT_API_URL

    url, missing = signed_catalog
    out = tmp_path_factory.mktemp("secret-run") / "out"
    env = {**os.environ, **SECRETS, "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "PREFECT_API_URL": PREFECT_API_URL.value()}  # fmt: skip
    command = [sys.executable, "-m", "flows.cli", "run", "--catalog", "earth-search-v1",
               "--catalog-url", url, "--bbox", aoi(), "--start", "2022-06-01", "--end",
               "2022-06-16", "--dates", "2022-06-08", "--tile-size-m", "300", "--out-dir",
               str(out), "--no-progress", "--workers", "1"]  # fmt: skip
    started = dt.datetime.now(dt.UTC)
    process = subprocess.Popen(command, cwd=REPO_ROOT, env=env, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # fmt: skip
    listened: set[tuple[str, int]] = set()
    reader = threading.Thread(target=lambda: setattr(process, "text", process.stdout.read()))
    reader.start()
    root = psutil.Process(process.pid)
    while process.poll() is None:
        listened |= listening_addresses(root)
        time.sleep(0.2)
    reader.join()
    assert process.returncode == 0, process.text
    return out, process.text, listened, started, missing


def test_no_secret_in_any_file_the_run_wrote(secret_run):
    out, _output, _listened, _started, missing = secret_run
    files = [p for p in out.rglob("*") if p.is_file()]
    assert len(files) > 40  # stores, records, STAC, summary, quicklooks, broken-asset logs
    for path in files:
        content = path.read_bytes()
        leaked = [n for n in NEEDLES if n.encode() in content]
        assert not leaked, f"{path} holds {leaked}"
    # The broken (404) asset was recorded, under its unsigned URL: the path was exercised.
    summary = (out / "run-summary.json").read_text()
    assert missing in summary and f"?{REDACTED}" in summary


def test_no_secret_in_the_terminal_output(secret_run):
    _out, output, _listened, _started, missing = secret_run
    assert not [n for n in NEEDLES if n in output], output
    assert missing in output  # the broken asset is reported, redacted


def test_no_secret_in_the_prefect_logs_and_artifacts(secret_run):
    import asyncio

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, LogFilter, LogFilterTimestamp

    _out, _output, _listened, started, _missing = secret_run

    async def read() -> tuple[list, list]:
        async with get_client() as client:
            logs = await client.read_logs(
                log_filter=LogFilter(timestamp=LogFilterTimestamp(after_=started)), limit=200
            )
            artifacts = await client.read_artifacts(artifact_filter=ArtifactFilter(), limit=200)
        return logs, [a for a in artifacts if a.created and a.created >= started]

    logs, artifacts = asyncio.run(read())
    assert logs and artifacts  # the run logged and published
    texts = [log.message for log in logs]
    texts += [f"{a.data} {a.description}" for a in artifacts]
    for text in texts:
        leaked = [n for n in NEEDLES if n in text]
        assert not leaked, f"{leaked} in {text[:300]}"
    assert any(REDACTED in text for text in texts)  # the broken asset, redacted


def test_every_server_of_the_run_listens_on_loopback_only(secret_run):
    _out, _output, listened, _started, _missing = secret_run
    # The Dask scheduler, its workers and nannies, their HTTP endpoints: at least 3 sockets.
    assert len(listened) >= 3, listened
    exposed = {(ip, port) for ip, port in listened if ip not in ("127.0.0.1", "::1")}
    assert not exposed, f"listening beyond loopback: {exposed} (all: {sorted(listened)})"


def test_redaction_rules(monkeypatch):
    signed = f"https://bucket.s3.amazonaws.com/a/b.tif?{SIGNED_QUERY}"
    assert redact_url(signed) == f"https://bucket.s3.amazonaws.com/a/b.tif?{REDACTED}"
    assert redact_url("https://user:pass@host/x.tif") == f"https://{REDACTED}@host/x.tif"
    assert redact_url("/data/x.tif") == "/data/x.tif"
    text = f"'/vsicurl/{signed}' failed: HTTP 403 (key {SECRETS['AWS_SECRET_ACCESS_KEY']})"
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRETS["AWS_SECRET_ACCESS_KEY"])
    redacted = redact_text(text)
    assert SIGNATURE not in redacted and SECRETS["AWS_SECRET_ACCESS_KEY"] not in redacted
    expected = f"'/vsicurl/https://bucket.s3.amazonaws.com/a/b.tif?{REDACTED}' failed: "
    assert redacted == expected + f"HTTP 403 (key {REDACTED})"
