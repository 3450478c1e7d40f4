"""Production runs on a STAC API serving items in Earth Search v1 form: the `tamrf run
--catalog` command with several tiles in flight on a real LocalCluster, `tamrf plan`,
resume, retries and failures, the output lock and the bad parameters."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import io
import itertools
import json
import os
import time
from pathlib import Path

import pytest
import typer
from cli_process import lock_holder, tamrf
from run_recorder import Recorder
from typer.testing import CliRunner

from pipelines.demo.simulated_catalog import write_simulated_catalog
from pipelines.demo.stac_servers import RustacServer, free_port
from tamrf_xr.simulate import SimulationConfig
from tamrf_xr.simulate.geometry import region_grid

CONFIG = SimulationConfig(
    seed=11,
    width_px=168,
    height_px=168,
    start=dt.date(2022, 6, 1),
    end=dt.date(2022, 6, 20),
    cloud_cover_mean=0.2,
)
TILE_M = "300"  # 30 px tiles; the AOI below spans 2 x 2 of them


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> tuple[str, dict]:
    """The simulated region's items (Earth Search v1 form) served by a real STAC API, with
    the red band COG of the clearest S2 item truncated (a broken asset), and that item."""
    from pipelines.demo.stac_servers import load_static_catalog

    product = write_simulated_catalog(CONFIG, tmp_path_factory.mktemp("sim"), with_truth=False)
    items = [i for i in load_static_catalog(product.catalog).items
             if i["collection"] == "sentinel-2-l2a"]  # fmt: skip
    clearest = min(items, key=lambda i: (i["properties"]["eo:cloud_cover"], i["id"]))
    red = Path(product.catalog).parent / clearest["assets"]["red"]["href"]
    if not red.is_file():  # hrefs relative to the item document
        red = (
            next(Path(product.catalog).parent.rglob(f"{clearest['id']}.json")).parent
            / (clearest["assets"]["red"]["href"])
        )
    data = red.resolve().read_bytes()
    red.resolve().write_bytes(data[: len(data) // 3])
    with RustacServer(product.catalog) as server:
        yield server.url, clearest


@pytest.fixture(scope="module")
def catalog_url(served) -> str:
    return served[0]


def aoi_bbox() -> str:
    """A lon/lat box of 400 m around the tile corner nearest the region's centre: 2 x 2
    tiles whose cubes (tile + 600 m of margin) lie within the region."""
    from pyproj import Transformer

    grid = region_grid(CONFIG)
    west, south, east, north = grid.bounds
    size = float(TILE_M)
    x = round((west + east) / 2 / size) * size
    y = round((south + north) / 2 / size) * size
    to_lonlat = Transformer.from_crs(grid.epsg, 4326, always_xy=True)
    lon0, lat0 = to_lonlat.transform(x - 200, y - 200)
    lon1, lat1 = to_lonlat.transform(x + 200, y + 200)
    return f"{lon0},{lat0},{lon1},{lat1}"


def run_args(url: str, out: Path, *extra: str) -> list[str]:
    return [
        "run", "--catalog", "earth-search-v1", "--catalog-url", url, "--bbox", aoi_bbox(),
        "--start", "2022-06-01", "--end", "2022-06-20", "--dates", "2022-06-08,2022-06-16",
        "--tile-size-m", TILE_M, "--out-dir", str(out), "--no-progress", *extra,
    ]  # fmt: skip


def invoke(args: list[str]):
    """The command in this process (commands that fail before Prefect starts, and plans)."""
    from flows.cli import app

    return CliRunner().invoke(app, args)


@pytest.fixture(scope="module")
def production(prefect_harness, catalog_url, tmp_path_factory):
    out = tmp_path_factory.mktemp("production") / "out"
    result = tamrf(run_args(catalog_url, out, "--tiles-in-flight", "3", "--workers", "2"))
    assert result.exit_code == 0, result.output
    return out, json.loads((out / "run-summary.json").read_text()), result.output


def test_run_on_an_earth_search_form_catalog_writes_every_tile(production):
    from pipelines.level3 import completion_records, open_level3

    _out, summary, output = production
    level3 = summary["level3"]
    assert len(level3["tiles"]) == 4 and sorted(level3["produced_now"]) == sorted(level3["tiles"])
    assert level3["failed"] == [] and level3["skipped"] == []
    assert summary["request"]["collections"] == ["sentinel-2-l2a", "landsat-c2-l2"]
    assert "earth-search-v1" in output and "level-3:" in output
    records = completion_records(level3["store"])
    assert set(records) == set(level3["tiles"])
    for record in records.values():
        provenance = record["provenance"]
        assert len(provenance["cache_key"]) == 64
        rules = {
            rule["rule"]
            for item in provenance["inputs"]["sentinel-2"]
            for rule in item["scaling"].values()
        }
        assert rules and all(r.startswith("s2-earthsearch-") for r in rules)
    ds = open_level3(level3["store"])
    assert ds["S2_B4"].dtype == "float32"
    assert float(ds["S2_B4"].count()) > 0


def test_a_broken_cog_reaches_the_tile_records_and_the_summary(production, served):
    from pipelines.level3 import completion_records

    _, summary, output = production
    item = served[1]
    assert {(a["item_id"], a["band"]) for a in summary["broken_assets"]} == {(item["id"], "S2_B4")}
    assert f"broken asset (read as missing): {item['id']} S2_B4" in output
    records = completion_records(summary["level3"]["store"])

    def recorded(record: dict) -> bool:
        return any(a["item_id"] == item["id"] for a in record["provenance"]["broken_assets"])

    def read_it(record: dict) -> bool:
        return any(i["id"] == item["id"] for i in record["provenance"]["inputs"]["sentinel-2"])

    with_it = [r for r in records.values() if recorded(r)]
    used = [r for r in records.values() if read_it(r)]
    assert used and len(with_it) == len(used), "every tile that read it records it"


def test_several_tiles_were_in_flight_at_once(production):
    _, summary, _ = production
    spans = sorted((t["started"], t["finished"]) for t in summary["tiles"])
    overlapping = any(b[0] < a[1] for a, b in itertools.pairwise(spans))
    assert overlapping, f"tiles ran one after another: {spans}"


def test_plan_after_the_run_marks_every_tile_done_without_computing(production, catalog_url):
    out, summary, _ = production
    records_before = sorted((out / "level3").rglob("completed/*/zarr.json"))
    mtimes = [p.stat().st_mtime_ns for p in records_before]
    plan_json = out.parent / "plan.json"
    args = run_args(catalog_url, out)[1:-1]  # the run's options, minus --no-progress
    result = invoke(["plan", *args, "--flop-rate", "10", "--json", str(plan_json)])
    assert result.exit_code == 0, result.output
    plan = json.loads(plan_json.read_text())
    assert sorted(t["tile"] for t in plan["tiles"]) == sorted(summary["level3"]["tiles"])
    assert {t["status"] for t in plan["tiles"]} == {"done"}
    assert plan["total"]["to_compute"] == 0 and plan["total"]["estimated_s"] == 0
    found = set(summary["collections"]["sentinel-2-l2a"]["ids"])
    for tile in plan["tiles"]:
        assert tile["s2_items"] and set(tile["s2_items"]) <= found
        assert tile["gflops"] > 0
        assert tile["estimated_s"] == pytest.approx(tile["gflops"] / 10, abs=0.1)
        assert len(tile["s2_dates"]) <= len(tile["s2_items"])
    assert "tiles, 0 to compute" in result.output
    assert [p.stat().st_mtime_ns for p in records_before] == mtimes, "a plan writes nothing"


def test_a_second_run_skips_complete_tiles_and_redoes_a_missing_one(production, catalog_url):
    import shutil

    from pipelines.level3 import completion_records

    out, summary, _ = production
    again = tamrf(run_args(catalog_url, out))
    assert again.exit_code == 0, again.output
    second = json.loads((out / "run-summary.json").read_text())
    assert second["level3"]["produced_now"] == []
    assert sorted(second["level3"]["skipped"]) == sorted(summary["level3"]["tiles"])

    store = Path(summary["level3"]["store"])
    victim = summary["level3"]["tiles"][0]
    before = completion_records(store)[summary["level3"]["tiles"][1]]["written_at"]
    shutil.rmtree(store / "completed" / victim)
    third = tamrf(run_args(catalog_url, out, "--tiles", victim))  # the store is shared
    assert third.exit_code == 0, third.output
    resumed = json.loads((out / "run-summary.json").read_text())
    assert resumed["level3"]["produced_now"] == [victim]
    records = completion_records(store)
    assert victim in records
    assert records[summary["level3"]["tiles"][1]]["written_at"] == before, "not rewritten"


def test_progress_and_tile_table_artifacts_are_keyed(production):
    from prefect.artifacts import Artifact

    from flows.run_reporting import TILE_COLUMNS

    progress = Artifact.get("tamrf-run-progress")
    assert progress is not None and "of" in (progress.description or "")
    tiles = Artifact.get("tamrf-run-tiles")
    assert tiles is not None
    rows = json.loads(tiles.data)
    assert rows and all(list(row) == list(TILE_COLUMNS) for row in rows)
    for row in rows:
        assert row["status"] == "predicted" and row["retries"] == 0 and row["error"] == ""
        kept, found = (int(n) for n in row["S2 dates kept"].split(" of "))
        assert 0 < kept <= found
        assert 0 < row["S2 clear fraction"] <= 1 and row["duration (s)"] > 0
    summary = Artifact.get("tamrf-run-summary")
    assert summary is not None and "Level-3 stores" in summary.data
    assert "**Quicklooks**" in summary.data and "data:image/png;base64," in summary.data


def test_transient_failures_are_retried_and_a_failed_tile_does_not_stop_the_others(
    catalog_url, tmp_path
):
    """One tile fails once with an I/O error (retried, then written), one fails for good
    (reported, no record); the others finish; the next run redoes only the failed one."""
    from flows.cli_production import print_run_summary, production_request
    from pipelines.cluster import ClusterConfig
    from pipelines.level3 import completion_records
    from pipelines.level3_production import produce_tile
    from pipelines.production import region_tiles, run_region

    out = tmp_path / "out"
    request = production_request(
        "earth-search-v1", catalog_url, None, aoi_bbox(), "2022-06-01", "2022-06-20",
        "2022-06-12", None, out, tile_size_m=float(TILE_M), tile_retries=1,
    )  # fmt: skip
    calls: dict[str, int] = {}
    flaky, broken = (t.tile_id for t in region_tiles(request)[:2])

    def produce(items, tile, job, **kwargs):
        calls[tile.tile_id] = calls.get(tile.tile_id, 0) + 1
        if tile.tile_id == flaky and calls[tile.tile_id] == 1:
            raise OSError("connection reset while reading a COG")
        if tile.tile_id == broken:
            raise ValueError("a programming error")
        return produce_tile(items, tile, job, **kwargs)

    cluster = ClusterConfig(n_workers=1, kind="cpu", dashboard_address=None)
    reporter = Recorder()
    summary = run_region(request, cluster, reporter, produce=produce)
    level3 = summary["level3"]
    assert calls[flaky] == 2 and calls[broken] == 1
    # The model blocks of each tile were reported as they finished (one 150 px block here).
    for tile in level3["produced_now"]:
        assert ("blocks", tile, 1, 1) in reporter.calls
    assert ("started", flaky, 2) in reporter.calls
    assert [f["tile"] for f in level3["failed"]] == [broken]
    assert "ValueError: a programming error (not transient" in level3["failed"][0]["error"]
    assert flaky in level3["produced_now"]
    assert set(level3["produced_now"]) == set(level3["tiles"]) - {broken}
    assert broken not in completion_records(level3["store"])

    # The command says so, with the way out, and exits 1. (A StringIO, not capsys: Prefect's
    # log handlers may bind the current stderr, and capsys closes its stream afterwards.)
    printed = io.StringIO()
    with contextlib.redirect_stderr(printed), pytest.raises(typer.Exit) as exit_status:
        print_run_summary(summary, out)
    assert exit_status.value.exit_code == 1
    assert f"tile {broken} failed" in printed.getvalue()
    assert "re-run the same command" in printed.getvalue()

    again = run_region(request, cluster)
    assert again["level3"]["produced_now"] == [broken]
    assert again["level3"]["failed"] == []


def test_a_second_run_on_the_same_output_is_refused_while_the_first_lives(
    prefect_harness, catalog_url, tmp_path
):
    """The lock is held by a live process (another run): refused with a clear message and
    nothing written; once that process is killed (-9, no clean-up), the lock is free."""
    from pipelines.run_lock import RunLock, RunLockedError

    out = tmp_path / "out"
    with lock_holder(out) as holder:
        before = sorted(p.name for p in out.iterdir())
        result = tamrf(run_args(catalog_url, out))
        assert result.exit_code == 2, result.output
        assert "in use by another tamrf run" in result.output
        assert f"pid {holder.pid}" in result.output
        assert sorted(p.name for p in out.iterdir()) == before, "nothing written"
        with pytest.raises(RunLockedError):
            RunLock(out).acquire()
    with RunLock(out) as lock:  # a crashed holder does not keep the lock
        assert lock.holder()["pid"] == os.getpid()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"--bbox": "2,43,1,44"}, "not (west, south, east, north)"),
        ({"--start": "2022-06-20", "--end": "2022-06-01"}, "ends (2022-06-01) before it starts"),
        ({"--dates": "2022-07-15"}, "outside the period"),
        ({"--catalog": "no-such-catalog"}, "unknown catalog profile"),
        ({"--catalog-url": "dead"}, "cannot reach the STAC API"),
        ({"--checkpoint": "missing"}, "checkpoint"),
        ({"--checkpoint": "not-a-model"}, "is not readable as a model"),
        ({"--checkpoint": "a-file"}, "not a PyTorch checkpoint"),
        ({"--out-dir": "under-a-file"}, "not writable"),
        ({"--aoi": "empty.geojson", "--bbox": None}, "has no features"),
        ({"--tile-size-m": "100"}, "multiple of 30"),
        ({"--precision": "half"}, "precision 'half'"),
    ],
)
def test_bad_parameters_are_rejected_up_front_with_nothing_written(
    catalog_url, tmp_path, change, message
):
    out = tmp_path / "out"
    (tmp_path / "empty.geojson").write_text('{"type": "FeatureCollection", "features": []}')
    (tmp_path / "a-file").write_text("x")
    (tmp_path / "not-a-model").mkdir()
    (tmp_path / "not-a-model" / "config.json").write_text("{not json")
    values = {
        "dead": f"http://127.0.0.1:{free_port()}",
        "missing": str(tmp_path / "no-such-checkpoint"),
        "not-a-model": str(tmp_path / "not-a-model"),
        "under-a-file": str(tmp_path / "a-file" / "out"),
        "a-file": str(tmp_path / "a-file"),
        "empty.geojson": str(tmp_path / "empty.geojson"),
    }
    args = run_args(catalog_url, out)
    for option, value in change.items():
        index = args.index(option) if option in args else None
        if value is None:
            del args[index : index + 2]
        elif index is None:
            args += [option, values.get(value, value)]
        else:
            args[index + 1] = values.get(value, value)
    started = time.monotonic()
    result = invoke(args)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert not out.exists(), "nothing written"
    assert time.monotonic() - started < 30, "rejected before any heavy work"


def test_a_tile_whose_inputs_changed_is_planned_for_recomputing(production, catalog_url):
    """The cache key follows the inputs: an item reprocessed since the run (a new `updated`)
    marks the tiles it reaches `recompute`, the others stay `done`."""
    from flows.cli_production import production_request
    from pipelines.level3 import completion_records
    from pipelines.production import plan_region, search_region

    out, _, _ = production
    request = production_request(
        "earth-search-v1", catalog_url, None, aoi_bbox(), "2022-06-01", "2022-06-20",
        "2022-06-08,2022-06-16", None, out, tile_size_m=float(TILE_M), flop_rate=1e10,
    )  # fmt: skip
    items = search_region(request)
    assert {t.status for t in plan_region(request, items=items).tiles} == {"done"}
    # Tiles whose record lists a broken asset are complete, unless asked to read them again.
    again = plan_region(dataclasses.replace(request, retry_broken=True), items=items)
    with_broken = {t for t, r in completion_records(next((out / "level3").glob("*.zarr"))).items()
                   if r["provenance"]["broken_assets"]}  # fmt: skip
    assert with_broken and {t.tile_id for t in again.tiles if t.status == "recompute"} == (
        with_broken
    )
    landsat = items["landsat-c2-l2"]
    landsat[0] = {**landsat[0], "properties": {**landsat[0]["properties"],
                                               "updated": "2030-01-01T00:00:00Z"}}  # fmt: skip
    plan = plan_region(request, items=items)
    reached = {t.tile_id for t in plan.tiles
               if any(i["id"] == landsat[0]["id"] for i in t.landsat_items)}  # fmt: skip
    assert reached
    assert {t.tile_id for t in plan.tiles if t.status == "recompute"} == reached
    assert len(plan.pending()) == len(reached)


def test_a_dry_run_of_the_flow_plans_and_writes_nothing(prefect_harness, catalog_url, tmp_path):
    from prefect.artifacts import Artifact

    out = tmp_path / "out"
    result = tamrf(run_args(catalog_url, out, "--dry-run"))
    assert result.exit_code == 0, result.output
    assert "4 tiles, 4 to compute" in result.output and "GFLOP/s" in result.output
    assert not out.exists(), "a dry run writes nothing"
    plan = Artifact.get("tamrf-run-plan")
    assert plan is not None and "4 tiles, 4 to compute" in (plan.description or "")
