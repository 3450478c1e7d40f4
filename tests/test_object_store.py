"""Output on an object store: `tamrf run --out-dir s3://bucket/prefix` against a real
S3-compatible server (moto in server mode, a separate process on 127.0.0.1).

The run writes the Level-3 store, its completion records, the STAC collection and the
summary as objects; a re-run resumes from the records (only a withdrawn tile is computed
again, into byte-identical chunks); an analyst opens the store with a plain
``xr.open_zarr("s3://...")``; the credentials of the environment appear in no object; a
missing bucket is refused before any work, with the fix. The object-store run lock, which
replaces the kernel lock there, is tested on its own.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_process import tamrf
from test_production import CONFIG as REGION
from test_production import aoi_bbox

from pipelines.demo.simulated_catalog import write_simulated_catalog
from pipelines.demo.stac_servers import RustacServer, free_port

BUCKET = "tamrf-output"
ACCESS_KEY = "AKIAFAKETAMRFTEST0001"
SECRET_KEY = "fake/secret/key+never+written+anywhere"
TILE_M = "300"


@contextlib.contextmanager
def moto_server(log: Path, **server_env: str) -> Iterator[str]:
    """A moto S3 server process on 127.0.0.1 (``server_env``: its settings); its URL."""
    port = free_port()
    # Its request log goes to a file: an unread pipe would fill up and stall the server.
    with open(log, "w") as stream:
        server = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=subprocess.DEVNULL, stderr=stream, env={**os.environ, **server_env},
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"moto did not start: {log.read_text()}") from None
                time.sleep(0.2)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.kill()
        server.wait(timeout=30)


@contextlib.contextmanager
def environment(**values: str) -> Iterator[None]:
    """``values`` in this process's environment (and the commands it starts), then restored."""
    previous = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in previous.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def credentials(endpoint: str, key: str = ACCESS_KEY, secret: str = SECRET_KEY) -> dict:
    return {"AWS_ACCESS_KEY_ID": key, "AWS_SECRET_ACCESS_KEY": secret,
            "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL": endpoint}  # fmt: skip


@pytest.fixture(scope="module")
def s3_endpoint(tmp_path_factory) -> Iterator[str]:
    """A moto S3 server on 127.0.0.1, the environment's credentials pointing at it, and the
    output bucket created."""
    import boto3

    log = tmp_path_factory.mktemp("moto") / "server.log"
    with moto_server(log) as endpoint, environment(**credentials(endpoint)):
        boto3.session.Session().client("s3").create_bucket(Bucket=BUCKET)
        yield endpoint


@pytest.fixture(scope="module")
def catalog_url(tmp_path_factory) -> Iterator[str]:
    product = write_simulated_catalog(REGION, tmp_path_factory.mktemp("sim"), with_truth=False)
    with RustacServer(product.catalog) as server:
        yield server.url


def run_args(url: str, out: str, *extra: str) -> list[str]:
    return [
        "run", "--catalog", "earth-search-v1", "--catalog-url", url, "--bbox", aoi_bbox(),
        "--start", "2022-06-01", "--end", "2022-06-20", "--dates", "2022-06-08,2022-06-16",
        "--tile-size-m", TILE_M, "--out-dir", out, "--no-progress", "--workers", "1",
    ]  # fmt: skip


def objects(prefix: str) -> dict[str, bytes]:
    """Every object under ``prefix`` (``bucket/key``) and its bytes."""
    import fsspec

    fs = fsspec.filesystem("s3")
    fs.invalidate_cache()
    keys = fs.find(prefix)
    return fs.cat(keys) if keys else {}


@pytest.fixture(scope="module")
def s3_run(prefect_harness, s3_endpoint, catalog_url):
    out = f"s3://{BUCKET}/runs/first"
    result = tamrf(run_args(catalog_url, out))
    assert result.exit_code == 0, result.output
    return out, result.output


def test_a_run_writes_store_records_collection_and_summary_as_objects(s3_run):
    import fsspec
    import pystac
    import xarray as xr

    from pipelines.level3 import completion_records, open_level3
    from pipelines.level3_stac import LocationStacIO

    out, output = s3_run
    summary = json.loads(fsspec.open(f"{out}/run-summary.json").open().read())
    level3 = summary["level3"]
    store = level3["store"]
    assert store.startswith(f"{out}/level3/") and store.endswith(".zarr"), store
    assert len(level3["tiles"]) == 4 and sorted(level3["produced_now"]) == sorted(level3["tiles"])
    assert f"summary: {out}/run-summary.json" in output
    assert set(completion_records(store)) == set(level3["tiles"])
    # An analyst's plain xarray call through fsspec (credentials and endpoint from the
    # environment), and the decoded reader, see the same finite values.
    plain = xr.open_zarr(store)
    decoded = open_level3(store)
    assert plain["S2_B4"].dtype == "float32" and plain.sizes["time"] == 2
    values = plain["S2_B4"].values
    assert (values == decoded["S2_B4"].values)[~xr.ufuncs.isnan(values)].all()
    assert float(plain["S2_B4"].count()) == values.size  # every tile written, no gaps
    assert 0.0 < float(plain["S2_B4"].mean()) < 0.5  # reflectance, not DNs
    # The STAC collection is on the object store too, and its item leads to the store.
    collection = pystac.Collection.from_file(level3["stac"], stac_io=LocationStacIO())
    item = next(iter(collection.get_items()))
    assert item.assets["data"].get_absolute_href() == store
    # Nothing was written to a local folder named after the URL.
    assert not Path("s3:").exists() and not (Path(__file__).parents[1] / "s3:").exists()


def test_credentials_appear_in_no_object_of_the_run(s3_run):
    out, output = s3_run
    written = objects(out.removeprefix("s3://"))
    assert len(written) > 40  # arrays, chunks, records, collection, summary
    for key, content in written.items():
        assert ACCESS_KEY.encode() not in content and SECRET_KEY.encode() not in content, key
    assert ACCESS_KEY not in output and SECRET_KEY not in output


def test_a_rerun_resumes_from_the_records_and_rewrites_identical_chunks(s3_run, catalog_url):
    import fsspec

    from pipelines.level3 import completion_records

    out, _ = s3_run
    summary = json.loads(fsspec.open(f"{out}/run-summary.json").open().read())
    store = summary["level3"]["store"]
    before = objects(store.removeprefix("s3://"))
    again = tamrf(run_args(catalog_url, out))
    assert again.exit_code == 0, again.output
    resumed = json.loads(fsspec.open(f"{out}/run-summary.json").open().read())["level3"]
    assert resumed["produced_now"] == [] and sorted(resumed["skipped"]) == sorted(resumed["tiles"])
    # Withdraw one tile's record (as a crash between its chunks and its record leaves it):
    # the next run computes that tile only, into the same bytes.
    tile = sorted(resumed["tiles"])[1]
    fs = fsspec.filesystem("s3")
    fs.rm(f"{store.removeprefix('s3://')}/completed/{tile}", recursive=True)
    third = tamrf(run_args(catalog_url, out))
    assert third.exit_code == 0, third.output
    level3 = json.loads(fsspec.open(f"{out}/run-summary.json").open().read())["level3"]
    assert level3["produced_now"] == [tile]
    after = objects(store.removeprefix("s3://"))
    chunks = {k for k in before if "/c/" in k}
    assert chunks and {k for k in after if "/c/" in k} == chunks
    assert all(after[k] == before[k] for k in chunks)
    assert set(completion_records(store)) == set(level3["tiles"])


def test_a_missing_bucket_is_refused_before_any_work(s3_endpoint, catalog_url):
    started = time.monotonic()
    result = tamrf(run_args(catalog_url, "s3://no-such-bucket-here/run"))
    assert result.exit_code == 2, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "no-such-bucket-here" in errors[0] and "create it" in errors[0]
    assert "Traceback" not in result.output
    assert time.monotonic() - started < 60  # the check comes before cluster start-up
    assert not objects(f"{BUCKET}/run")


def test_a_bucket_these_credentials_cannot_write_is_refused_before_any_work(catalog_url, tmp_path):
    """On a server that enforces IAM (moto with authentication on after set-up), a user
    allowed to read but not to write the bucket gets one error naming the location and the
    permissions to grant, and nothing is written."""
    import boto3

    with moto_server(tmp_path / "iam.log", INITIAL_NO_AUTH_ACTION_COUNT="4") as endpoint:
        with environment(**credentials(endpoint, "AKIAIOSFODNN7EXAMPLE", "set-up")):
            boto3.session.Session().client("s3").create_bucket(Bucket="read-only")
            iam = boto3.session.Session().client("iam")
            iam.create_user(UserName="reader")
            policy = {"Version": "2012-10-17", "Statement": [{
                "Effect": "Allow", "Action": ["s3:GetObject", "s3:ListBucket"],
                "Resource": "*"}]}  # fmt: skip
            iam.put_user_policy(UserName="reader", PolicyName="read-only",
                                PolicyDocument=json.dumps(policy))  # fmt: skip
            key = iam.create_access_key(UserName="reader")["AccessKey"]
        reader = credentials(endpoint, key["AccessKeyId"], key["SecretAccessKey"])
        with environment(**reader):
            result = tamrf(run_args(catalog_url, "s3://read-only/run"))
            listed = (
                boto3.session.Session()
                .client("s3")
                .list_objects_v2(Bucket="read-only")
                .get("KeyCount")
            )
    assert result.exit_code == 2, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "s3://read-only/run is not writable" in errors[0], errors
    assert "s3:PutObject" in errors[0] and key["SecretAccessKey"] not in result.output
    assert listed == 0


def test_an_object_as_out_dir_is_refused(s3_endpoint, catalog_url):
    import fsspec

    fsspec.filesystem("s3").pipe_file(f"{BUCKET}/a-file", b"not a prefix")
    result = tamrf(run_args(catalog_url, f"s3://{BUCKET}/a-file"))
    assert result.exit_code == 2 and "is an object, not a prefix" in result.output


def test_the_embedded_demo_refuses_an_object_store_out_dir():
    from typer.testing import CliRunner

    from flows.cli import app

    result = CliRunner().invoke(app, ["run", "--out-dir", "s3://bucket/demo", "--no-progress"])
    assert result.exit_code == 2 and "local directory" in result.output


def test_an_interrupted_store_creation_on_an_object_store_is_replaced(s3_endpoint, tmp_path):
    from pipelines.grid import GridSpec, tiles_for_aoi
    from pipelines.level3 import create_store, read_definition
    from pipelines.storage import Location

    spec = GridSpec(tile_size_m=300.0)
    tiles = tiles_for_aoi(_small_aoi(), spec)[:2]
    times = ["2022-06-08", "2022-06-16"]
    target = Location.of(f"s3://{BUCKET}/interrupted/1.zarr")
    # What a creation killed during its upload leaves: arrays, no root metadata.
    (target / "S2_B4" / "zarr.json").write_json({"zarr_format": 3, "node_type": "array"})
    assert create_store(target, tiles, times) == target.url
    assert read_definition(target).tile_ids == [t.tile_id for t in tiles]
    assert create_store(target, tiles, times) == target.url  # a resume accepts it
    with pytest.raises(ValueError, match="other parameters"):
        create_store(target, tiles, ["2022-06-08"])


def test_the_object_store_lock_names_its_holder_and_is_taken_over_once_stale(s3_endpoint):
    from pipelines.run_lock import ObjectStoreRunLock, RunLockedError, run_lock
    from pipelines.storage import Location

    out = Location.of(f"s3://{BUCKET}/locked")
    first = run_lock(out)
    assert isinstance(first, ObjectStoreRunLock)
    first.renew_every_s = 0.2
    with first:
        holder = first.holder()
        assert holder["pid"] == os.getpid() and holder["host"] == socket.gethostname()
        second = ObjectStoreRunLock(out)
        with pytest.raises(RunLockedError, match=f"pid {os.getpid()}"):
            second.acquire()
        with pytest.raises(RunLockedError):
            second.ensure_free()
        time.sleep(0.6)
        assert first.holder()["renewed"] >= holder["renewed"]  # renewed while held
    assert not (out / ".tamrf-run.lock").exists()  # released: removed
    # A crashed holder on another host: taken over once it stopped renewing long enough.
    stale_at = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=ObjectStoreRunLock.stale_after_s + 5)
    crashed = {"pid": 1, "host": "elsewhere", "started": stale_at.isoformat(),
               "renewed": stale_at.isoformat(), "token": "dead"}  # fmt: skip
    (out / ".tamrf-run.lock").write_json(crashed)
    with ObjectStoreRunLock(out) as taker:
        assert taker.holder()["pid"] == os.getpid()
    # ... but not while it is fresh.
    fresh = {**crashed, "renewed": dt.datetime.now(dt.UTC).isoformat()}
    (out / ".tamrf-run.lock").write_json(fresh)
    with pytest.raises(RunLockedError, match="elsewhere"):
        ObjectStoreRunLock(out).acquire()


def _small_aoi():
    from shapely.geometry import box

    west, south, east, north = (float(v) for v in aoi_bbox().split(","))
    return box(west, south, east, north)
