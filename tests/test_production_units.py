"""The parts of a production run that need no catalog: tiles in flight (concurrency bound,
retries, failure isolation, reporting thread), items by footprint, the plan's cost, the
output lock and the AOI checks."""

from __future__ import annotations

import datetime as dt
import itertools
import threading
import time

import pytest
from run_recorder import Recorder
from shapely.geometry import box, mapping

from pipelines.grid import GridSpec, aoi_geometry, tiles_for_aoi
from pipelines.run_lock import RunLock, RunLockedError
from pipelines.tile_plan import plan_tiles
from pipelines.tiles_in_flight import run_tiles
from tamrf_xr.flops import forward_flops
from tamrf_xr.inference import InferenceConfig
from tamrf_xr.model import ModelConfig


def test_tiles_run_at_most_in_flight_at_once_and_report_in_the_calling_thread():
    alive, peak, lock = [0], [0], threading.Lock()

    def produce(tile: str, progress) -> dict:
        with lock:
            alive[0] += 1
            peak[0] = max(peak[0], alive[0])
        for block in range(1, 4):
            time.sleep(0.02)
            progress(block, 3)
        with lock:
            alive[0] -= 1
        return {"tile": tile}

    tiles = [f"t{i}" for i in range(9)]
    reporter = Recorder()
    outcomes = run_tiles(tiles, produce, key=str, in_flight=3, reporter=reporter)
    assert [o.tile_id for o in outcomes] == tiles, "outcomes in the order of the work"
    assert all(o.status == "done" and o.summary == {"tile": o.tile_id} for o in outcomes)
    assert peak[0] == 3, "three tiles in flight, never more"
    assert reporter.threads == {threading.get_ident()}
    for tile in tiles:
        blocks = [c[2] for c in reporter.calls if c[0] == "blocks" and c[1] == tile]
        assert blocks == [1, 2, 3]
    spans = sorted((o.started, o.finished) for o in outcomes)
    assert any(b[0] < a[1] for a, b in itertools.pairwise(spans))


def test_transient_errors_are_retried_and_others_fail_at_once_without_stopping_the_run():
    attempts: dict[str, int] = {}

    def produce(tile: str, progress) -> dict:
        attempts[tile] = attempts.get(tile, 0) + 1
        if tile == "flaky" and attempts[tile] < 3:
            raise ConnectionResetError("reset by peer")
        if tile == "dead":
            raise OSError("disk on fire")
        if tile == "bug":
            raise KeyError("band")
        return {}

    work = ["ok", "flaky", "dead", "bug", "ok2"]
    outcomes = {o.tile_id: o for o in run_tiles(work, produce, str, in_flight=2, retries=2,
                                                  backoff_s=0.001)}  # fmt: skip
    assert outcomes["flaky"].status == "done" and outcomes["flaky"].attempts == 3
    assert outcomes["dead"].status == "failed" and outcomes["dead"].attempts == 3
    assert "OSError: disk on fire" in outcomes["dead"].error
    assert outcomes["bug"].status == "failed" and outcomes["bug"].attempts == 1
    assert "not transient" in outcomes["bug"].error and "KeyError" in outcomes["bug"].details
    assert outcomes["ok"].status == outcomes["ok2"].status == "done"


def test_items_go_to_the_tiles_their_footprints_reach():
    """Three footprints: west half, east half, a strip far away; 600 m tiles."""
    aoi = (1.40, 43.60, 1.44, 43.62)
    tiles = tiles_for_aoi(aoi, GridSpec(tile_size_m=600.0))
    assert len(tiles) > 8

    def item(name: str, footprint) -> dict:  # fmt: skip
        return {"id": name, "geometry": mapping(footprint), "bbox": list(footprint.bounds),
                "properties": {"datetime": "2022-06-01T10:30:00Z"}}  # fmt: skip

    west = item("west", box(1.40, 43.60, 1.415, 43.62))
    east = item("east", box(1.43, 43.60, 1.44, 43.62))
    far = item("far", box(2.0, 43.60, 2.1, 43.62))
    inference = InferenceConfig(chunk_px=60, margin_px=6)
    plans = plan_tiles(tiles, [west, east, far], [], 2, inference)
    seen = {p.tile_id: {i["id"] for i in p.s2_items} for p in plans}
    assert not any("far" in ids for ids in seen.values())
    assert any(ids == {"west"} for ids in seen.values())
    assert any(ids == {"east"} for ids in seen.values())
    for plan in plans:
        assert plan.s2_dates == (("2022-06-01",) if plan.s2_items else ())
        if not plan.s2_items:
            assert plan.flops == 0
        else:  # a 72 x 72 cube (60 + 2 x 6): one block, the tile, with the cube as context
            assert plan.cube_shape == (72, 72)
            expected = forward_flops(ModelConfig(), 72, 72, 1, 0, 2, context=(6, 6, 6, 6))
            assert plan.flops == expected.total
            # one margin: less than predicting the whole cube, more than the tile alone
            whole = forward_flops(ModelConfig(), 72, 72, 1, 0, 2).total
            alone = forward_flops(ModelConfig(), 60, 60, 1, 0, 2).total
            assert alone < plan.flops < whole


def _locked_elsewhere(out) -> bool:
    """Whether another process finds ``out`` locked."""
    import subprocess
    import sys

    code = (
        "import sys\nfrom pipelines.run_lock import RunLock, RunLockedError\n"
        "try:\n    RunLock(sys.argv[1]).acquire()\n"
        "except RunLockedError:\n    sys.exit(3)"
    )
    return subprocess.run([sys.executable, "-c", code, str(out)]).returncode == 3


def test_a_lock_is_exclusive_and_its_probe_writes_nothing(tmp_path):
    out = tmp_path / "out"
    with RunLock(out) as lock:
        assert lock.holder()["pid"] > 0
        assert _locked_elsewhere(out)
        with pytest.raises(RunLockedError, match="in use by another tamrf run"):
            RunLock(out).acquire()
        with pytest.raises(RunLockedError, match="in use by another tamrf run"):
            RunLock(out).ensure_free()
    assert not _locked_elsewhere(out)
    RunLock(out).ensure_free()
    RunLock(tmp_path / "new").ensure_free()
    assert not (tmp_path / "new").exists(), "probing creates nothing"


@pytest.mark.parametrize(
    ("aoi", "message"),
    [
        ({"type": "FeatureCollection", "features": []}, "has no features"),
        ({"type": "Feature", "geometry": None}, "has no geometry"),
        ({"type": "Polygon", "coordinates": [[[0, 0]]]}, "not a usable GeoJSON"),
        ({"type": "Blob", "coordinates": []}, "not a usable GeoJSON"),
        (
            {"type": "Polygon", "coordinates": [[[0, 0], [1, 1], [1, 0], [0, 1], [0, 0]]]},
            "empty or invalid",
        ),  # a bow tie
        (mapping(box(370000, 4820000, 380000, 4830000)), "not longitudes/latitudes"),
        ({"type": "Point", "coordinates": [1.4, 43.6]}, "empty or invalid"),
    ],
)
def test_bad_aois_are_clear_errors(aoi, message):
    with pytest.raises(ValueError, match=message):
        aoi_geometry(aoi)


def test_a_feature_collection_is_the_union_of_its_features():
    parts = [box(1.40, 43.60, 1.41, 43.61), box(1.45, 43.60, 1.46, 43.61)]
    collection = {"type": "FeatureCollection",
                  "features": [{"type": "Feature", "geometry": mapping(p), "properties": {}}
                               for p in parts]}  # fmt: skip
    assert aoi_geometry(collection).area == pytest.approx(sum(p.area for p in parts))


def test_production_modules_import_neither_the_demo_nor_the_simulator(repo_root):
    """Demo and test infrastructure stay out of production code (imports read from source,
    function-level imports included)."""
    import ast

    forbidden = ("pipelines.demo", "tamrf_xr.simulate", "flows")
    for path in sorted((repo_root / "pipelines").glob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                assert not name.startswith(forbidden), f"{path.name} imports {name}"


def test_a_failing_reporter_does_not_stop_the_tiles():
    class Broken(Recorder):
        def tile_finished(self, outcome) -> None:
            raise ConnectionError("the Prefect API is down")

    outcomes = run_tiles([f"t{i}" for i in range(4)], lambda tile, progress: {}, str,
                         in_flight=2, reporter=Broken())  # fmt: skip
    assert [o.status for o in outcomes] == ["done"] * 4


def test_an_interrupted_run_starts_no_more_tiles():
    """Ctrl-C (here raised by the reporter, in the thread that waits) cancels the queued
    tiles; the one running finishes its attempt."""
    started: list[str] = []

    class Interrupting(Recorder):
        def tile_started(self, tile_id: str, attempt: int) -> None:
            raise KeyboardInterrupt

    def produce(tile: str, progress) -> dict:
        started.append(tile)
        time.sleep(0.3)
        return {}

    with pytest.raises(KeyboardInterrupt):
        run_tiles([f"t{i}" for i in range(6)], produce, str, in_flight=1,
                  reporter=Interrupting())  # fmt: skip
    assert started == ["t0"]


def test_tiles_at_the_antimeridian_search_and_take_items_on_both_sides():
    """Zone-60 tiles east of 179.9 E reach past 180: their outlines and the search area are
    split at the antimeridian (not a polygon around the globe), and an item just west of
    180 W reaches them."""
    from pipelines.search import SearchRequest
    from pipelines.tile_plan import assign_items, search_area

    tiles = tiles_for_aoi((179.8, -17.0, 180.0, -16.8), GridSpec())
    area = search_area(tiles, 60)
    assert area.geom_type == "MultiPolygon" and area.is_valid
    assert area.area < 1.0, "two slivers, not a band around the globe"
    day = dt.date(2022, 6, 1)
    SearchRequest(collections=("x",), geometry=mapping(area), start=day, end=day)  # valid

    def item(name: str, footprint) -> dict:  # fmt: skip
        return {"id": name, "geometry": mapping(footprint), "bbox": list(footprint.bounds),
                "properties": {"datetime": "2022-06-01T22:30:00Z"}}  # fmt: skip

    across = item("across", box(-180.0, -17.0, -179.95, -16.8))
    far = item("far", box(0.0, -17.0, 1.0, -16.8))
    grids = [t.grid(margin_px=60) for t in tiles]
    assigned = assign_items(grids, [across, far])
    reached = [t for t, found in zip(tiles, assigned, strict=True) if found]
    assert reached and all(i["id"] == "across" for found in assigned for i in found)
    easternmost = max(t.column for t in tiles)
    assert all(t.column == easternmost for t in reached), "only tiles that reach past 180"
    assert len(reached) < len(tiles)
