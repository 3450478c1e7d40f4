"""The main job: a real Prefect flow (test harness server), a real local STAC API, real files."""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from pipelines.demo.stac_servers import RustacServer, free_port
from pipelines.search import CatalogSearchError, SearchRequest, search_items
from tamrf_xr.simulate import SimulationConfig

REGION = {"seed": 7, "size_px": 48, "start": dt.date(2022, 5, 1), "end": dt.date(2022, 5, 31)}
"""The demo flow's typed parameters of the simulated region."""
CONFIG = SimulationConfig(seed=7, width_px=48, height_px=48, start=REGION["start"],
                          end=REGION["end"])  # fmt: skip


TILE_M = 300.0  # small output tiles: the 480 m region spans several


@pytest.fixture(scope="module")
def first_run(prefect_harness, tmp_path_factory):
    from flows.regional_run import regional_run

    out = tmp_path_factory.mktemp("run")
    summary = regional_run(str(out), **REGION, tile_size_m=TILE_M)
    return out, summary


def test_run_finds_every_simulated_item(first_run):
    out, summary = first_run
    written = json.loads((out / "run-summary.json").read_text())
    assert written == summary
    product = out / "simulated"
    for collection in ("sentinel-2-l2a", "landsat-c2-l2"):
        on_disk = sorted(p.name for p in (product / "stac" / collection).iterdir() if p.is_dir())
        found = summary["collections"][collection]
        assert sorted(found["ids"]) == on_disk
        assert found["count"] == len(on_disk) > 0
        assert CONFIG.start.isoformat() <= found["first"][:10] <= found["last"][:10]
        assert found["last"][:10] <= CONFIG.end.isoformat()


def test_run_assembles_the_cubes_of_every_tile(first_run):
    _, summary = first_run
    assert len(summary["tiles"]) > 1, "the region spans several output tiles"
    for tile in summary["tiles"]:
        sensors = {c["sensor"]: c for c in tile["cubes"]}
        assert set(sensors) == {"sentinel-2", "landsat"}
        for cube in sensors.values():
            kept, dropped = cube["dates"], [d["date"][:10] for d in cube["dropped_dates"]]
            assert not set(kept) & set(dropped)
            assert all("min_valid_fraction" in d["reason"] or "no data" in d["reason"]
                       for d in cube["dropped_dates"])  # fmt: skip
        assert tile["broken_assets"] == []


def test_run_writes_a_georeferenced_level3_store(first_run):
    import rioxarray  # noqa: F401 (registers .rio)

    from pipelines.level3 import completed_tiles, open_level3
    from tamrf_xr.simulate.geometry import region_grid

    _, summary = first_run
    level3 = summary["level3"]
    # The bundled model by default (trained weights, not the flagged stand-in).
    assert not level3["untrained_model"] and level3["dates"] == ["2022-05-01", "2022-05-15"]
    from pipelines.level3_info import describe_store, format_store_description

    described = format_store_description(describe_store(level3["store"]))
    assert "from tamrf-sim-small (trained)" in described and "UNTRAINED" not in described
    assert completed_tiles(level3["store"]) == set(level3["tiles"]) == set(level3["produced_now"])
    ds = open_level3(level3["store"])
    assert ds.rio.crs.to_epsg() == region_grid(CONFIG).epsg
    west, south, east, north = region_grid(CONFIG).bounds
    inside = ((ds.x > west) & (ds.x < east) & (ds.y > south) & (ds.y < north)).values
    finite = np.isfinite(ds["S2_B4"].values)
    assert finite[:, inside].all() and not finite[:, ~inside].any(), "predicted on the region"
    assert 200 < float(ds["LS_B10"].mean()) < 400  # Kelvin
    stac = json.loads(Path(level3["stac"]).read_text())
    assert stac["type"] == "Collection"


def chunk_bytes(store: Path) -> dict[str, bytes]:
    """Every data chunk of a store (records and metadata aside)."""
    return {
        str(p.relative_to(store)): p.read_bytes()
        for p in sorted(store.rglob("*"))
        if p.is_file() and "completed" not in p.parts and not p.name.startswith(("zarr.json", "."))
    }


def test_an_interrupted_run_resumes_the_missing_tiles_to_the_same_bytes(first_run, tmp_path):
    """A crash in the middle of a tile leaves garbage in its chunks and no record: the next
    run computes that tile (and only it) again, and the store ends as an uninterrupted one."""
    import shutil

    import zarr

    from flows.regional_run import regional_run
    from pipelines.level3 import read_definition

    out, summary = first_run
    copy = tmp_path / "run"
    shutil.copytree(out, copy)
    store = copy / "level3" / Path(summary["level3"]["store"]).name
    definition = read_definition(store)
    victim = definition.grid_tiles[1]
    region = definition.region(victim)
    group = zarr.open_group(store, mode="r+")
    for name in ("S2_B4", "LS_B10"):
        group[name][:, region["y"], region["x"]] = 123  # half-written tile
    shutil.rmtree(store / "completed" / victim.tile_id)

    again = regional_run(str(copy), **REGION, tile_size_m=TILE_M)
    assert again["level3"]["produced_now"] == [victim.tile_id]
    assert chunk_bytes(store) == chunk_bytes(Path(summary["level3"]["store"]))


def test_run_publishes_a_summary_artifact(first_run):
    from prefect.artifacts import Artifact

    artifact = Artifact.get("tamrf-run-summary")
    assert artifact is not None
    assert "sentinel-2-l2a" in artifact.data and "landsat-c2-l2" in artifact.data
    assert "dates kept" in artifact.data


def test_second_run_reuses_the_product_and_other_config_is_refused(first_run):
    from flows.regional_run import regional_run

    out, summary = first_run
    marker = out / "simulated" / "simulation.json"
    before = marker.stat().st_mtime_ns
    again = regional_run(str(out), **REGION, tile_size_m=TILE_M)
    assert marker.stat().st_mtime_ns == before
    assert again["collections"] == summary["collections"]
    assert again["level3"]["produced_now"] == [], "every tile was complete"

    with pytest.raises(FileExistsError, match="--overwrite"):
        regional_run(str(out), **{**REGION, "seed": 8})
    assert marker.stat().st_mtime_ns == before  # nothing written over


def test_cli_run(prefect_harness, tmp_path):
    from flows.cli import app

    result = CliRunner().invoke(
        app,
        [
            "run", "--out-dir", str(tmp_path), "--size-px", "36", "--start", "2022-07-01",
            "--end", "2022-07-20", "--no-progress",
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert re.search(r"sentinel-2-l2a: \d+ items", result.output)
    assert (tmp_path / "run-summary.json").is_file()


def test_search_errors_name_the_catalog_area_and_dates(first_run):
    out, _ = first_run
    request = SearchRequest(
        collections=("sentinel-2-l2a",),
        bbox=(1.0, 43.0, 2.0, 44.0),
        start=dt.date(2022, 5, 1),
        end=dt.date(2022, 5, 31),
    )
    dead = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(CatalogSearchError, match=re.escape(dead)) as error:
        search_items(dead, request, retries=1, backoff_s=0.01)
    assert "2022-05-01" in str(error.value) and "sentinel-2-l2a" in str(error.value)

    with RustacServer(out / "simulated" / "stac" / "catalog.json") as server:
        before_data = SearchRequest(
            collections=("sentinel-2-l2a", "landsat-c2-l2"),
            bbox=request.bbox,
            start=dt.date(2015, 1, 1),
            end=dt.date(2015, 12, 31),
        )
        with pytest.raises(CatalogSearchError, match="no items in collection"):
            search_items(server.url, before_data)


def test_readme_test_command_is_what_ci_runs(repo_root: Path):
    readme = (repo_root / "README.md").read_text()
    ci = (repo_root / ".ci" / "run").read_text()
    assert "bash infra/test.sh" in readme
    assert re.search(r"^bash infra/test.sh\s*$", ci, flags=re.M)


def test_a_demo_run_on_a_busy_output_is_refused_before_simulating(prefect_harness, tmp_path):
    """Two demo runs on one directory used to write the same simulated product at once."""
    from cli_process import lock_holder

    from flows.regional_run import regional_run
    from pipelines.run_lock import RunLockedError

    out = tmp_path / "out"
    with lock_holder(out) as holder:
        with pytest.raises(RunLockedError, match=f"pid {holder.pid}"):
            regional_run(str(out), **REGION, tile_size_m=TILE_M)
        assert not (out / "simulated").exists(), "nothing simulated into a busy directory"


def test_a_demo_run_with_a_bad_parameter_fails_before_simulating(prefect_harness, tmp_path):
    from flows.regional_run import regional_run

    out = tmp_path / "out"
    with pytest.raises(ValueError, match="does not exist"):
        regional_run(str(out), **REGION, checkpoint=str(tmp_path / "no-checkpoint"))
    with pytest.raises(ValueError, match="outside the period"):
        regional_run(str(out), **REGION, dates="2030-01-01")
    assert not (out / "simulated").exists(), "nothing simulated for a run that cannot go on"
