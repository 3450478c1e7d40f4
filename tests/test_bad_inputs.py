"""Every bad input of a run is refused before any work starts, and the inputs that are not
errors end as recorded outcomes.

Refusals are run as a user runs them (a ``tamrf`` process): exit status 2, exactly one
``error:`` line naming the problem and the fix, no traceback (unless ``--debug``), under 2 s
of wall time for the whole process, and nothing written. The catalog URL of those runs does
not answer: a check that reached it would fail with another message.

Recorded outcomes (one sensor only, all cloudy, no input, several UTM zones) run the library
call behind ``tamrf run`` on small simulated regions served by a real STAC API.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import json
import os
import pickle
import shutil
import time
from pathlib import Path

import pytest
from cli_process import tamrf

from pipelines.demo.simulated_catalog import write_simulated_catalog
from pipelines.demo.stac_servers import RustacServer, free_port
from tamrf_xr.simulate import SimulationConfig
from tamrf_xr.simulate.geometry import region_grid

LIMIT_S = 2.0
"""Wall time allowed to a ``tamrf`` process that refuses its inputs."""
DEAD = f"http://127.0.0.1:{free_port()}"
"""A catalog URL nobody answers."""
BBOX = "1.40,43.55,1.50,43.65"
TODAY = dt.date.today()
FUTURE = (TODAY + dt.timedelta(days=400)).isoformat(), (TODAY + dt.timedelta(days=430)).isoformat()


class Exploit:
    """Pickles as a call of ``os.system``: a naive unpickler would run the command."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _polygon(*ring: tuple[float, float]) -> dict:
    return {"type": "Polygon", "coordinates": [[list(p) for p in (*ring, ring[0])]]}


AOIS = {
    "empty.geojson": {"type": "FeatureCollection", "features": []},
    "point.geojson": {"type": "Point", "coordinates": [1.45, 43.6]},
    "bowtie.geojson": _polygon((1.40, 43.55), (1.50, 43.65), (1.50, 43.55), (1.40, 43.65)),
    "antimeridian.geojson": _polygon(
        (179.5, -17.0), (-179.5, -17.0), (-179.5, -16.5), (179.5, -16.5)
    ),
    "projected.geojson": _polygon((370000, 4820000), (380000, 4820000), (380000, 4830000)),
}


def _checkpoints(root: Path) -> dict[str, Path]:
    """A truncated .ckpt, a checkpoint directory with its weights cut in half, one whose
    config describes another architecture than its tensors, an unrelated state dict and a
    .ckpt whose pickle calls os.system."""
    import torch

    from tamrf_xr.models import bundled_checkpoint

    made = {}
    state = {"state_dict": {"layer.weight": torch.zeros(64, 64)}, "epoch": 3}
    torch.save(state, root / "unrelated.ckpt")
    made["unrelated"] = root / "unrelated.ckpt"
    data = (root / "unrelated.ckpt").read_bytes()
    (root / "truncated.ckpt").write_bytes(data[: len(data) // 2])
    made["truncated-ckpt"] = root / "truncated.ckpt"
    torch.save({**state, "hyper_parameters": Exploit(root / "pwned")}, root / "evil.ckpt")
    made["evil"] = root / "evil.ckpt"
    for name in ("truncated-dir", "other-architecture"):
        made[name] = Path(shutil.copytree(bundled_checkpoint(), root / name))
    weights = made["truncated-dir"] / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    config = json.loads((made["other-architecture"] / "config.json").read_text())
    config["architecture"]["transformer_layers"] += 1  # the weights' checksum still matches
    (made["other-architecture"] / "config.json").write_text(json.dumps(config))
    return made


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, str]:
    """Placeholder -> value of every bad input (files made once for the module)."""
    root = tmp_path_factory.mktemp("inputs")
    values = {"@dead": DEAD, "@scheduler": f"tcp://127.0.0.1:{free_port()}"}
    for name, document in AOIS.items():
        (root / name).write_text(json.dumps(document))
        values[f"@{name}"] = str(root / name)
    (root / "not.geojson").write_text("a polygon, surely")
    nan_ring = "[[[1.4, 43.5], [1.5, NaN], [1.5, 43.6], [1.4, 43.5]]]"  # json.loads takes NaN
    (root / "nan.geojson").write_text(f'{{"type": "Polygon", "coordinates": {nan_ring}}}')
    (root / "a-file").write_text("not a directory")
    (root / "read-only").mkdir(mode=0o500)
    values |= {"@not.geojson": str(root / "not.geojson"), "@nan.geojson": str(root / "nan.geojson"),
               "@a-file": str(root / "a-file"), "@under-a-file": str(root / "a-file" / "out"),
               "@read-only": str(root / "read-only" / "out"),
               "@proc": "/proc/tamrf-bad-inputs/out",
               "@missing": str(root / "no-such-checkpoint")}  # fmt: skip
    values |= {f"@{name}": str(path) for name, path in _checkpoints(root).items()}
    values["@marker"] = str(root / "pwned")
    return values


BASES = {
    "run": ["run", "--catalog", "earth-search-v1", "--catalog-url", "@dead", "--bbox", BBOX,
            "--start", "2023-03-01", "--end", "2023-03-31", "--out-dir", "@out",
            "--no-progress"],
    "demo": ["run", "--out-dir", "@out", "--size-px", "36", "--no-progress"],
    "plan": ["plan", "--catalog", "earth-search-v1", "--catalog-url", "@dead", "--bbox", BBOX,
             "--start", "2023-03-01", "--end", "2023-03-31", "--out-dir", "@out",
             "--flop-rate", "10"],
}  # fmt: skip
"""Good inputs (the catalog aside) that each case changes."""

ROOT_BYPASSES_PERMISSIONS = pytest.mark.skipif(
    os.geteuid() == 0,
    reason="root writes into a mode 0o500 directory: this case cannot fail for root (the "
    "cases under a file and under /proc fail for every user)",
)

CASES = [
    # -- the area of interest ------------------------------------------------------------------
    ("run", {"--aoi": "@empty.geojson", "--bbox": None},
     ["FeatureCollection has no features", "fix the file or give --bbox"]),
    ("run", {"--aoi": "@not.geojson", "--bbox": None},
     ["is not a readable GeoJSON file", "give a GeoJSON geometry"]),
    ("run", {"--aoi": "@point.geojson", "--bbox": None},
     ["a Point has no area", "give a Polygon or MultiPolygon"]),
    ("run", {"--aoi": "@nan.geojson", "--bbox": None},
     ["non-finite coordinates", "fix the file"]),
    ("run", {"--bbox": "1.4,43.55,inf,43.65"}, ["non-finite value", "give four finite numbers"]),
    ("run", {"--bbox": "1.4,95,1.5,96"},
     ["not (west, south, east, north)", "latitudes in -90..90"]),
    ("run", {"--aoi": "@projected.geojson", "--bbox": None},
     ["not longitudes/latitudes", "reproject the file"]),
    ("run", {"--bbox": "1.4,43.55,1.5"}, ["got [1.4, 43.55, 1.5]", "give four numbers W,S,E,N"]),
    ("run", {"--aoi": "@bowtie.geojson", "--bbox": None},
     ["not a valid polygon", "Self-intersection", "fix the polygon", "shapely.make_valid"]),
    ("run", {"--bbox": "179.5,-17,-179.5,-16.5"},
     ["west < east", "crosses the antimeridian", "split it at 180 degrees",
      "--bbox 179.5,-17,180,-16.5 and --bbox -180,-17,-179.5,-16.5"]),
    ("run", {"--aoi": "@antimeridian.geojson", "--bbox": None},
     ["crosses the antimeridian", "from 179.5 to -179.5", "split it at 180 degrees",
      "MultiPolygon"]),
    ("run", {"--catalog": "earth-search"}, ["unknown catalog profile", "earth-search-v1"]),
    # -- dates ---------------------------------------------------------------------------------
    ("run", {"--start": "2023-13-01"},
     ["--start '2023-13-01' is not a date", "month must be in 1..12", "give YYYY-MM-DD"]),
    ("run", {"--dates": "2023-03-10,2023-02-30"},
     ["'2023-02-30' is not a date", "day is out of range", "YYYY-MM-DD dates"]),
    ("run", {"--start": "2023-03-31", "--end": "2023-03-01"},
     ["ends (2023-03-01) before it starts (2023-03-31)", "give --start <= --end"]),
    ("run", {"--dates": "2023-03-15,2023-04-15"},
     ["['2023-04-15'] are outside the period 2023-03-01..2023-03-31", "widen --start/--end"]),
    ("run", {"--start": "2010-01-01", "--end": "2012-12-31"},
     ["ends before any input exists", "Landsat 8 OLI/TIRS data from 2013-03-18",
      "Sentinel-2A MSI data from 2015-06-23", "choose a period that ends on 2013-03-18"]),
    ("run", {"--start": FUTURE[0], "--end": FUTURE[1]},
     [f"starts after today ({TODAY})", "Sentinel-2A MSI data from 2015-06-23",
      f"choose a period that starts by {TODAY}"]),
    # -- the checkpoint ------------------------------------------------------------------------
    ("run", {"--checkpoint": "@missing"},
     ["does not exist", "give a tamrf-xr checkpoint directory or the authors' .ckpt"]),
    ("run", {"--checkpoint": "@truncated-ckpt"},
     ["truncated or corrupt", "complete and unaltered"]),
    ("run", {"--checkpoint": "@truncated-dir"},
     ["model.safetensors is truncated", "complete and unaltered"]),
    ("run", {"--checkpoint": "@other-architecture"},
     ["not those of the architecture in config.json (another model)", "missing 12",
      "written by tamrf import-checkpoint or tamrf train"]),
    ("run", {"--checkpoint": "@unrelated"},
     ["not a TAMRF-SITS checkpoint", "the authors' .ckpt file"]),
    ("run", {"--checkpoint": "@evil"},
     ["carries code", "posix.system", "refused without executing anything",
      "from a trusted source"]),
    # -- the scheduler and the output ----------------------------------------------------------
    ("run", {"--scheduler": "@scheduler"},
     ["cannot reach the Dask scheduler at @scheduler", "start it or fix the address",
      "leave --scheduler out"]),
    ("run", {"--out-dir": "@a-file"}, ["is a file, not a directory", "give a directory"]),
    ("run", {"--out-dir": "@under-a-file"},
     ["@under-a-file is not writable", "is a file", "choose another --out-dir"]),
    ("run", {"--out-dir": "@proc"},
     ["@proc is not writable", "cannot create a file in /proc", "choose another --out-dir"]),
    pytest.param("run", {"--out-dir": "@read-only"},
                 ["@read-only is not writable", "fix the permissions"],
                 marks=ROOT_BYPASSES_PERMISSIONS, id="run-read-only-out-dir"),
    # -- the embedded demo (no --catalog): the same checks, before anything is simulated -------
    ("demo", {"--start": "2022-02-30"}, ["--start '2022-02-30' is not a date", "YYYY-MM-DD"]),
    ("demo", {"--start": "2022-06-01", "--end": "2022-05-01"},
     ["ends (2022-05-01) before it starts (2022-06-01)"]),
    ("demo", {"--start": "2011-01-01", "--end": "2011-03-31"}, ["ends before any input exists"]),
    ("demo", {"--dates": "2023-06-01"}, ["outside the period 2022-01-01..2022-12-31"]),
    ("demo", {"--checkpoint": "@evil"}, ["carries code", "refused without executing anything"]),
    ("demo", {"--checkpoint": "@truncated-dir"}, ["model.safetensors is truncated"]),
    ("demo", {"--scheduler": "@scheduler"}, ["cannot reach the Dask scheduler at @scheduler"]),
    ("demo", {"--out-dir": "@a-file"}, ["is a file, not a directory"]),
    ("demo", {"--out-dir": "@proc"}, ["@proc is not writable"]),
    # -- tamrf plan (it writes nothing, so the output location is not checked) -----------------
    ("plan", {"--aoi": "@bowtie.geojson", "--bbox": None}, ["not a valid polygon"]),
    ("plan", {"--start": "2010-01-01", "--end": "2010-12-31"}, ["ends before any input exists"]),
    ("plan", {"--checkpoint": "@other-architecture"}, ["another model"]),
]  # fmt: skip


def _param(case):
    """A case of the table as a pytest parameter with a readable id (``run-bbox=...``)."""
    if hasattr(case, "marks"):  # already a pytest.param
        return case
    command, change, _ = case
    what = "-".join(f"{k.strip('-')}={str(v).strip('@')}" for k, v in change.items() if v)
    return pytest.param(*case, id=f"{command}-{what}")


def _args(command: str, change: dict[str, str | None], values: dict[str, str]) -> list[str]:
    """The base arguments of ``command`` with ``change`` (None: drop the option), the
    placeholders replaced."""
    args = list(BASES[command])
    for option, value in change.items():
        index = args.index(option) if option in args else None
        if value is None:
            assert index is not None
            del args[index : index + 2]
        elif index is None:
            args += [option, value]
        else:
            args[index + 1] = value
    return [values.get(a, a) for a in args]


def _tree(path: Path) -> list[tuple[str, int]]:
    """What lies under ``path``: relative names and sizes."""
    return sorted((str(p.relative_to(path)), p.stat().st_size if p.is_file() else -1)
                  for p in path.rglob("*"))  # fmt: skip


def _refused(args: list[str]) -> tuple[str, float]:
    """Run ``tamrf ARGS``; its one error line (exit 2 checked) and its wall time."""
    started = time.monotonic()
    ran = tamrf(args, timeout_s=120)
    elapsed = time.monotonic() - started
    assert ran.exit_code == 2, ran.output
    assert "Traceback" not in ran.output, ran.output
    lines = ran.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), ran.output
    return lines[0], elapsed


@pytest.mark.parametrize(("command", "change", "expected"), [_param(c) for c in CASES])
def test_a_bad_input_is_refused_at_once_with_one_line_and_nothing_written(
    inputs, tmp_path, command, change, expected
):
    out = tmp_path / "out"
    values = {**inputs, "@out": str(out)}
    before = {p: _tree(p) for p in (tmp_path, Path(inputs["@a-file"]).parent)}
    line, elapsed = _refused(_args(command, change, values))
    for fragment in expected:  # with its placeholders replaced
        fragment = " ".join(values.get(word, word) for word in fragment.split(" "))
        assert fragment in line, line
    assert elapsed < LIMIT_S, f"{elapsed:.2f} s to refuse the input (limit {LIMIT_S} s): {line}"
    assert not out.exists(), "nothing written, nothing simulated"
    assert {p: _tree(p) for p in before} == before, "no file created or changed"
    assert not Path(inputs["@marker"]).exists(), "nothing of the checkpoint was executed"


def test_with_debug_the_traceback_comes_before_the_error_line(inputs, tmp_path):
    values = {**inputs, "@out": str(tmp_path / "out")}
    ran = tamrf([*_args("run", {"--checkpoint": "@evil"}, values), "--debug"], timeout_s=120)
    assert ran.exit_code == 2, ran.output
    assert ran.output.startswith("Traceback (most recent call last):"), ran.output
    assert "tamrf_xr/checkpoint_files.py" in ran.output, "the traceback reaches the check"
    errors = [line for line in ran.output.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "carries code" in errors[0]
    assert ran.output.strip().splitlines()[-1] == errors[0]
    assert not Path(inputs["@marker"]).exists()
    assert not (tmp_path / "out").exists()


def test_the_checkpoint_checks_execute_nothing_and_know_every_architecture(inputs):
    """In-process too: the pickle that calls os.system is refused and its marker never
    appears; the tensors the checks expect are exactly the model's, for several
    architectures (so a checkpoint of another one is told apart without torch)."""
    from tamrf_xr.checkpoint_files import CheckpointError, check_checkpoint, state_shapes
    from tamrf_xr.model import TAMRF, ModelConfig
    from tamrf_xr.models import bundled_checkpoint

    marker = Path(inputs["@marker"])
    plain = marker.parent / "plain-pickle.ckpt"
    plain.write_bytes(pickle.dumps(Exploit(marker)))
    for evil in (Path(inputs["@evil"]), plain):
        with pytest.raises(CheckpointError, match="carries code"):
            check_checkpoint(evil)
    assert not marker.exists()
    for config in (ModelConfig(), ModelConfig(rrdb_blocks=2, transformer_layers=1),
                   ModelConfig(features=16, rdb_growth=8, rdb_convs=3, rdbs_per_rrdb=2,
                               ffn_dim=32, output_bands=5)):  # fmt: skip
        shapes = {k: tuple(v.shape) for k, v in TAMRF(config).state_dict().items()}
        assert state_shapes(config) == shapes
    check_checkpoint(bundled_checkpoint())  # the real one passes


def test_the_check_and_the_loader_agree_on_the_authors_format(tmp_path):
    """A .ckpt in the authors' form passes the check and loads; the same with one tensor of
    another shape, or cut short in torch's older plain-pickle form, is refused by both."""
    import torch

    from tamrf_xr.checkpoint import load_model
    from tamrf_xr.checkpoint_files import CheckpointError, check_checkpoint, state_shapes
    from tamrf_xr.lightning_names import STATISTICS, official_name
    from tamrf_xr.model import ModelConfig

    config = ModelConfig(rrdb_blocks=2, transformer_layers=1)
    state = {official_name(key, config): torch.full(shape, 0.01)
             for key, shape in state_shapes(config).items()}  # fmt: skip
    state |= {name: torch.ones(10 if name.startswith("hr") else 8) for name in STATISTICS.values()}
    good, reshaped, cut = tmp_path / "s2t1.ckpt", tmp_path / "reshaped.ckpt", tmp_path / "cut.ckpt"
    torch.save({"state_dict": state, "hyper_parameters": {"lr": 1e-4}}, good)
    check_checkpoint(good)
    assert load_model(good).config == config
    name = official_name("decoder_conv2.weight", config)
    torch.save({"state_dict": {**state, name: torch.zeros(17, 136, 3, 3)}}, reshaped)
    with pytest.raises(CheckpointError, match=r"wrong shape 1 .*decoder\.2\.weight"):
        check_checkpoint(reshaped)
    with pytest.raises(CheckpointError, match="wrong shape"):
        load_model(reshaped)
    torch.save({"state_dict": state}, cut, _use_new_zipfile_serialization=False)
    cut.write_bytes(cut.read_bytes()[: cut.stat().st_size * 9 // 10])
    with pytest.raises(CheckpointError, match="is truncated: its tensors need"):
        check_checkpoint(cut)
    with pytest.raises(CheckpointError, match="truncated, corrupt or not a checkpoint"):
        load_model(cut)


# --- recorded outcomes: not errors ------------------------------------------------------------

REGION = {"seed": 3, "width_px": 96, "height_px": 96, "start": dt.date(2022, 6, 1),
          "end": dt.date(2022, 6, 12)}  # fmt: skip
OUTPUT_DATE = "2022-06-06"


@pytest.fixture(scope="module")
def catalogs(tmp_path_factory):
    """Two small simulated regions served by real STAC APIs: one with few clouds, one
    entirely overcast (cloud cover 1)."""
    with contextlib.ExitStack() as stack:
        urls = {}
        for name, cover in (("clear", 0.2), ("overcast", 1.0)):
            config = SimulationConfig(**REGION, cloud_cover_mean=cover)
            product = write_simulated_catalog(config, tmp_path_factory.mktemp(name),
                                              with_truth=False)  # fmt: skip
            urls[name] = stack.enter_context(RustacServer(product.catalog)).url
        yield urls


@pytest.fixture(scope="module")
def cluster():
    """One in-process Dask cluster for the runs of this module (reached by its address)."""
    from distributed import LocalCluster

    from pipelines.cluster import ClusterConfig

    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                      dashboard_address=None, protocol="tcp") as local:  # fmt: skip
        yield ClusterConfig(address=local.scheduler_address, dashboard_address=None)


def _one_tile_aoi() -> dict:
    """60 m around the centre of the 300 m output tile nearest the region's centre."""
    from pyproj import Transformer

    grid = region_grid(SimulationConfig(**REGION))
    west, south, east, north = grid.bounds
    x = round((west + east) / 2 / 300) * 300 + 150
    y = round((south + north) / 2 / 300) * 300 + 150
    to_lonlat = Transformer.from_crs(grid.epsg, 4326, always_xy=True)
    (w, e), (s, n) = to_lonlat.transform([x - 30, x + 30], [y - 30, y + 30])
    return _polygon((w, s), (e, s), (e, n), (w, n))


def _request(url: str, out: Path, aoi: dict | None = None):
    from pipelines.production import ProductionRequest

    return ProductionRequest(catalog="earth-search-v1", catalog_url=url,
                             aoi=aoi or _one_tile_aoi(), start=REGION["start"],
                             end=REGION["end"], out_dir=out, dates=(OUTPUT_DATE,),
                             tile_size_m=300.0)  # fmt: skip


def _printed(summary: dict, out: Path) -> str:
    from flows.cli_production import print_run_summary

    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        print_run_summary(summary, out)
    return printed.getvalue()


def test_a_tile_with_one_sensor_only_is_predicted_and_says_so(catalogs, cluster, tmp_path):
    from pipelines.level3 import completion_records
    from pipelines.production import run_region, search_region
    from pipelines.run_inputs import period_notes

    request = _request(catalogs["clear"], tmp_path / "out")
    items = search_region(request)
    assert items["sentinel-2-l2a"] and items["landsat-c2-l2"]
    items["landsat-c2-l2"] = []  # a catalog without Landsat here, or a mission's gap
    summary = run_region(request, cluster, items=items)
    (tile,) = summary["level3"]["tiles"]
    assert summary["level3"]["outcomes"]["one_sensor"] == [tile]
    assert summary["tiles"][0]["outcome"] == "one_sensor"
    assert summary["tiles"][0]["status"] == "predicted"
    record = completion_records(summary["level3"]["store"])[tile]["provenance"]
    assert record["outcome"] == "one_sensor" and record["inputs"]["landsat"] == []
    assert summary["notes"] == []  # 2022: both sensors fly
    notes = period_notes(dt.date(2014, 1, 1), dt.date(2015, 12, 31))
    printed = _printed({**summary, "notes": notes}, tmp_path)
    one_sensor = "predicted from one sensor only (the other had no item or no clear date)"
    assert f"1 tile(s) {one_sensor}: {tile}" in printed
    assert "note: Sentinel-2A MSI data start 2015-06-23: no Sentinel-2A MSI input before" in printed


def test_an_all_cloudy_tile_is_written_as_missing_and_recorded(catalogs, cluster, tmp_path):
    import numpy as np
    import xarray as xr

    from pipelines.level3 import completion_records
    from pipelines.production import run_region

    summary = run_region(_request(catalogs["overcast"], tmp_path / "out"), cluster)
    (tile,) = summary["level3"]["tiles"]
    assert summary["level3"]["outcomes"]["all_cloudy"] == [tile]
    assert summary["level3"]["failed"] == []
    record = completion_records(summary["level3"]["store"])[tile]["provenance"]
    assert record["outcome"] == "all_cloudy"
    assert record["status"] == "no usable input: written as missing"
    for cube in record["cubes"]:
        assert cube["items"] > 0 and cube["dates"] == [] and cube["dropped_dates"]
    values = xr.open_zarr(summary["level3"]["store"])["S2_B4"].values
    assert np.isnan(values).all(), "no clear date: the tile holds no value"
    printed = _printed(summary, tmp_path)
    assert "1 tile(s) items reach the tile but every date is below the clear-share" in printed


def test_an_aoi_across_utm_zones_makes_one_store_per_zone(cluster, tmp_path):
    """Across 6 E (zones 31 and 32): tiles of each zone go to that zone's store; with no
    item reaching them, each is written as missing with the outcome ``no_input``."""
    from pipelines.production import run_region

    aoi = _polygon((5.999, 45.0), (6.001, 45.0), (6.001, 45.001), (5.999, 45.001))
    request = _request(DEAD, tmp_path / "out", aoi)
    items = {"sentinel-2-l2a": [], "landsat-c2-l2": []}
    summary = run_region(request, cluster, items=items)
    stores = sorted(Path(s).name for s in summary["level3"]["stores"])
    assert stores == ["32631.zarr", "32632.zarr"]
    assert {t[:5] for t in summary["level3"]["tiles"]} == {"32631", "32632"}
    assert sorted(summary["level3"]["outcomes"]["no_input"]) == sorted(summary["level3"]["tiles"])


def test_an_aoi_split_at_the_antimeridian_runs_as_two_zones():
    """The fix the refusal gives works: one part on each side of 180 degrees is a valid AOI
    whose tiles fall in zones 60 and 1 (one store each), not a band around the globe."""
    from pipelines.grid import GridSpec, aoi_geometry, tiles_for_aoi

    east = _polygon((179.99, -16.9), (180.0, -16.9), (180.0, -16.89), (179.99, -16.89))
    west = _polygon((-180.0, -16.9), (-179.99, -16.9), (-179.99, -16.89), (-180.0, -16.89))
    split = {"type": "MultiPolygon", "coordinates": [east["coordinates"], west["coordinates"]]}
    assert aoi_geometry(split).area < 1e-3
    tiles = tiles_for_aoi(split, GridSpec(tile_size_m=990.0))
    assert {t.epsg for t in tiles} == {32760, 32701} and len(tiles) <= 8  # 2 x 2 a side


@pytest.mark.parametrize("command", ["run", "plan"])
def test_a_search_that_finds_nothing_is_refused_before_any_write(catalogs, tmp_path, command):
    """The catalog answers but holds nothing for the area and the period: one error line
    naming the catalog, the area and the dates, exit 2, nothing written (not even the
    output's lock); asked with one small request before the run starts."""
    out = tmp_path / "out"
    values = {"@dead": catalogs["clear"], "@out": str(out)}
    args = _args(command, {"--bbox": None, "--aoi": str(tmp_path / "aoi.geojson"),
                           "--start": "2023-06-01", "--end": "2023-06-30"}, values)  # fmt: skip
    (tmp_path / "aoi.geojson").write_text(json.dumps(_one_tile_aoi()))
    line, _ = _refused(args)
    collections = "['sentinel-2-l2a', 'landsat-c2-l2']"
    assert f"no items in collection(s) {collections} for catalog {catalogs['clear']}" in line
    assert "Polygon AOI within [" in line and "dates 2023-06-01..2023-06-30" in line
    assert "widen the area or the dates" in line
    assert not out.exists()


def test_period_notes_name_the_sensor_missing_from_part_of_the_period():
    from pipelines.run_inputs import check_period, period_notes

    day = dt.date
    assert period_notes(day(2020, 1, 1), day(2020, 12, 31), today=day(2024, 1, 1)) == []
    assert period_notes(day(2013, 4, 1), day(2014, 12, 31), today=day(2024, 1, 1)) == [
        "the period is before Sentinel-2A MSI (data from 2015-06-23): no Sentinel-2A MSI input"
    ]
    assert period_notes(day(2023, 12, 1), day(2024, 1, 31), today=day(2024, 1, 1)) == [
        "the period ends after today (2024-01-01): no input after today yet"
    ]
    check_period(day(2013, 3, 18), day(2013, 3, 18))  # Landsat 8's first day: allowed
    with pytest.raises(ValueError, match="ends before any input exists"):
        check_period(day(2013, 3, 1), day(2013, 3, 17))
