"""A regional production run on any STAC catalog: the library behind ``tamrf run`` and
``tamrf plan`` and their Prefect flows.

:func:`run_region` takes a :class:`ProductionRequest` (catalog, AOI, period, output dates,
model, output directory) and a cluster, and:

1. checks every parameter before anything is written (:func:`check_request`, with the checks
   of :mod:`pipelines.run_inputs`): the AOI, the period and dates, the catalog profile, the
   checkpoint, the output directory, the scheduler, and with one small request that the
   catalog answers and has items for the area and period; then searches the catalog once for
   the whole AOI (a failing search fails here, still with nothing written);
2. takes the output directory's lock (:class:`pipelines.run_lock.RunLock`: one run per
   output; a crashed run does not keep it);
3. plans the tiles (:mod:`pipelines.tile_plan`): the items whose footprints reach each
   tile, and the tile's status from the completion records of the stores (``done`` when the
   record's cache key, built from the tile, its inputs, the model and the parameters, is this
   run's: skipped; ``recompute`` when the inputs changed; ``new``);
4. creates one Level-3 store per UTM zone and produces the pending tiles with several in
   flight on the Dask cluster (:func:`pipelines.tiles_in_flight.run_tiles`: retries of
   transient errors, failures reported while the others finish);
5. consolidates the stores' metadata, writes their STAC collection and the run summary.

:func:`plan_region` is steps 1 and 3 plus a time estimate, and computes nothing.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import hashlib
import json
import os
import platform
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from shapely.geometry import box, mapping

import tamrf_xr
from pipelines.atomic_json import write_json_atomically
from pipelines.catalogs import CatalogProfile, profile
from pipelines.cluster import ClusterConfig, start_cluster
from pipelines.datacube import CubeConfig
from pipelines.grid import GridSpec, GridTile, aoi_geometry, cube_margin_px, tiles_for_aoi
from pipelines.level3 import (
    Level3Config,
    completion_records,
    consolidate,
    create_store,
)
from pipelines.level3_production import INPUT_OUTCOMES, TileJob, produce_tile
from pipelines.level3_stac import write_level3_collection
from pipelines.output_errors import writing
from pipelines.redaction import redact_url
from pipelines.run_inputs import (
    check_dates_in_period,
    check_model,
    check_period,
    check_scheduler,
    check_writable,
    parse_dates,
    period_notes,
)
from pipelines.run_lock import run_lock
from pipelines.run_span import run_span
from pipelines.search import SearchRequest, check_has_items, search_items
from pipelines.storage import Location
from pipelines.tile_plan import RegionPlan, TilePlan, plan_tiles, search_area
from pipelines.tiles_in_flight import RunReporter, TileOutcome, run_tiles
from tamrf_xr.inference import (
    InferenceConfig,
    ModelSource,
    model_margin_px,
    target_dates,
    untrained_checkpoint,
)
from tamrf_xr.inference.model_cache import resolve_device
from tamrf_xr.inference.predict import checkpoint_identity
from tamrf_xr.inference.throughput import measured_flop_rate
from tamrf_xr.models import UNTRAINED, bundled_checkpoint
from tamrf_xr.precision import check_precision, resolve_precision

__all__ = [
    "ProductionRequest",
    "TilesFailedError",
    "check_request",
    "parse_dates",
    "plan_region",
    "region_tiles",
    "run_region",
    "search_region",
]

UNTRAINED_MODEL_DIR = "models/untrained-s1t3"


class TilesFailedError(RuntimeError):
    """Some tiles failed; the others were written. ``summary`` is the run summary (already
    in ``run-summary.json``); a re-run retries the failed tiles."""

    def __init__(self, summary: dict[str, Any]) -> None:
        failed = summary["level3"]["failed"]
        super().__init__(
            f"{len(failed)} tile(s) failed: "
            + "; ".join(f"{f['tile']}: {f['error']}" for f in failed)
            + ". The other tiles are written; re-run the same command to retry the failed ones"
        )
        self.summary = summary


@dataclass(frozen=True)
class ProductionRequest:
    """What a production run makes. Pure values: checked on creation (see
    :func:`check_request` for the checks that touch files and the network)."""

    catalog: str
    """Catalog profile name (``earth-search-v1``, ``planetary-computer``, ``local``)."""
    aoi: Mapping[str, Any]
    """Area of interest: a GeoJSON geometry, Feature or FeatureCollection in lon/lat."""
    start: dt.date
    end: dt.date
    """The input period, inclusive."""
    out_dir: Path | str
    """Where the Level-3 stores, their STAC collection and the run summary go: a local
    directory (made absolute) or an fsspec URL such as ``s3://bucket/prefix`` (credentials
    from the environment, see :mod:`pipelines.storage`)."""
    catalog_url: str | None = None
    """STAC API root; default: the profile's public URL (override for internal mirrors)."""
    dates: str | tuple[str, ...] = "SMS"
    """Output dates: a cadence over the period (``SMS``: 1st and 15th, ``MS``, ``10D``) or
    ISO dates inside it."""
    checkpoint: str | None = None
    """Model weights (ours or the authors' ``.ckpt``); None: the bundled model
    (:func:`tamrf_xr.models.bundled_checkpoint`); ``"untrained"``: the untrained stand-in."""
    s2_collection: str | None = None
    """The profile's S2 collection to read (default its first: ``sentinel-2-l2a``); one only,
    as collections of one catalog repeat the same acquisitions."""
    max_cloud_cover: float | None = None
    """Keep items with ``eo:cloud_cover`` <= this percentage."""
    tile_size_m: float = 9_900.0
    encoding: str = "float32"
    chunk_px: int | None = None
    """Output block side (10 m px); None: the largest that fits the block memory budget."""
    precision: str = "auto"
    """Model arithmetic: ``auto`` (bf16 where the workers' hardware executes it natively: GPUs,
    CPUs with AMX or AVX512-BF16; else fp32), ``fp32``, ``bf16`` or ``fp16`` (GPU)."""
    tiles_in_flight: int = 2
    """Tiles computed at once: more keeps a large cluster busy (one tile's reads overlap
    another's model work); memory grows with it."""
    tile_retries: int = 2
    """Retries of a tile after a transient error (I/O, network, lost worker)."""
    clip_to: tuple[float, float, float, float] | None = None
    """Only read and predict inside these bounds (metres of EPSG ``clip_epsg``; only tiles
    of that CRS are kept), e.g. a simulated region."""
    clip_epsg: int | None = None
    tile_filter: tuple[str, ...] | None = None
    """Only these tile ids (an allow-list); None: every tile of the AOI."""
    flop_rate: float | None = None
    """FLOP/s of the model on the run's device, for plans; None: measured."""
    retry_broken: bool = False
    """Also recompute complete tiles whose record lists broken assets (read as missing then;
    by default such a tile is complete, its record and the summary say what was missing)."""
    extra_provenance: Mapping[str, Any] = field(default_factory=dict)
    """More facts for the stores' provenance (e.g. the simulated region of the demo)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "out_dir", Location.of(self.out_dir).native())
        profile(self.catalog)  # unknown profile: ValueError listing the known ones
        aoi_geometry(dict(self.aoi))  # empty, invalid, not lon/lat, across 180: ValueError
        check_period(self.start, self.end)  # reversed, before the sensors, in the future
        self.output_dates()  # dates outside the period: ValueError
        if self.s2_collection is not None and self.s2_collection not in self.profile.s2_collections:
            raise ValueError(
                f"catalog {self.catalog!r} has no S2 collection {self.s2_collection!r}: use one "
                f"of {list(self.profile.s2_collections)}"
            )
        if self.catalog_url is None and self.profile.url is None:
            raise ValueError(
                f"catalog profile {self.catalog!r} has no public URL: give --catalog-url"
            )
        if self.catalog_url is not None and not self.catalog_url.startswith(
            ("http://", "https://")
        ):
            raise ValueError(f"--catalog-url {self.catalog_url!r} is not an http(s) URL")
        if (self.clip_to is None) != (self.clip_epsg is None):
            raise ValueError("give clip_to and clip_epsg together")
        if self.tiles_in_flight < 1 or self.tile_retries < 0:
            raise ValueError("tiles_in_flight must be >= 1 and tile_retries >= 0")
        if self.flop_rate is not None and not self.flop_rate > 0:
            raise ValueError(f"flop_rate={self.flop_rate}: give a positive rate (GFLOP/s)")
        GridSpec(tile_size_m=self.tile_size_m)  # not a multiple of 30 m: ValueError
        Level3Config(encoding=self.encoding)  # type: ignore[arg-type]
        InferenceConfig(chunk_px=self.chunk_px)
        check_precision(self.precision)

    @property
    def profile(self) -> CatalogProfile:
        return profile(self.catalog)

    @property
    def url(self) -> str:
        return self.catalog_url or self.profile.url or ""

    @property
    def collections(self) -> tuple[str, str]:
        """(S2, Landsat) collection ids searched."""
        s2 = self.s2_collection or self.profile.s2_collections[0]
        return s2, self.profile.landsat_collection or ""

    def output_dates(self) -> list[str]:
        """The output dates (ISO), inside the period."""
        values = [str(d) for d in target_dates(
            self.dates if isinstance(self.dates, str) else list(self.dates), self.start, self.end
        )]  # fmt: skip
        check_dates_in_period(values, self.start, self.end)
        return values

    def inference(self) -> InferenceConfig:
        """Blocks and margin, the margin resolved from the checkpoint's architecture."""
        return InferenceConfig(chunk_px=self.chunk_px,
                               margin_px=model_margin_px(self.checkpoint))  # fmt: skip

    @property
    def output(self) -> Location:
        """:attr:`out_dir` as a :class:`pipelines.storage.Location`."""
        return Location.of(self.out_dir)

    def describe(self) -> dict[str, Any]:
        """JSON-able parameters (for summaries and the Prefect UI)."""
        return {
            "catalog": self.catalog,
            "catalog_url": redact_url(self.url),
            "collections": list(self.collections),
            "aoi_bounds": list(aoi_geometry(dict(self.aoi)).bounds),
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "dates": self.dates if isinstance(self.dates, str) else list(self.dates),
            "checkpoint": self.checkpoint,
            "max_cloud_cover": self.max_cloud_cover,
            "tile_size_m": self.tile_size_m,
            "encoding": self.encoding,
            "precision": self.precision,
            "out_dir": str(self.out_dir),
        }


# ---------------------------------------------------------------------------------------------
# Checks that touch files and the network (before anything is written)
# ---------------------------------------------------------------------------------------------


def check_request(
    request: ProductionRequest,
    *,
    writing: bool = True,
    catalog: bool = True,
    scheduler: str | None = None,
) -> None:
    """Checks of the checkpoint (read without executing anything), (``writing``) the output
    location, the Dask ``scheduler`` the run will use (None: a cluster it starts), and
    (``catalog``) that the catalog answers and holds items for the area and the period (one
    small request); writes nothing.

    Raises:
        ValueError: a checkpoint that is missing, truncated, of another architecture or
            carries code; an output location that is not writable; a scheduler that does not
            answer.
        pipelines.search.CatalogSearchError: the catalog does not answer or has nothing for
            the area and the period.
    """
    check_model(request.checkpoint)
    if writing:
        check_writable(request.output)
    check_scheduler(scheduler)
    if catalog:
        check_has_items(request.url, _search_request(request), modifier=request.profile.modifier())


def search_region(request: ProductionRequest) -> dict[str, list[dict[str, Any]]]:
    """ONE paged search for all the request's tiles and the period: item documents by
    collection (S2 then Landsat; either may be empty, not both). The area searched is the
    tiles grown by the inference margin, not only the AOI: tiles cover the AOI in whole
    tiles, and an item that reaches only their margins still feeds their edge pixels."""
    found = search_items(request.url, _search_request(request),
                         modifier=request.profile.modifier(),
                         require_each_collection=False)  # fmt: skip
    return {c: [i.to_dict() for i in found.get(c, [])] for c in request.collections}


def _search_request(request: ProductionRequest) -> SearchRequest:
    """The search of the request's tiles grown by the inference margin, over its period."""
    area = search_area(region_tiles(request), cube_margin_px(request.inference().margin_px))
    return SearchRequest(
        collections=request.collections,
        geometry=mapping(area),
        start=request.start,
        end=request.end,
        max_cloud_cover=request.max_cloud_cover,
    )


# ---------------------------------------------------------------------------------------------
# Planning
# ---------------------------------------------------------------------------------------------


def region_tiles(request: ProductionRequest) -> list[GridTile]:
    """The output tiles of the request: those the AOI touches (cut to ``clip_to`` and the
    ``tile_filter`` allow-list), sorted by (EPSG, row, column)."""
    tiles = tiles_for_aoi(dict(request.aoi), GridSpec(tile_size_m=request.tile_size_m))
    if request.clip_to is not None:
        clip = box(*request.clip_to)
        tiles = [t for t in tiles if t.epsg == request.clip_epsg
                 and box(*t.bounds).intersection(clip).area > 0]  # fmt: skip
    if request.tile_filter is not None:
        known = {t.tile_id for t in tiles}
        unknown = sorted(set(request.tile_filter) - known)
        if unknown:
            raise ValueError(f"tile(s) {unknown} are not in the AOI: its tiles are {sorted(known)}")
        tiles = [t for t in tiles if t.tile_id in request.tile_filter]
    if not tiles:
        raise ValueError("the AOI holds no output tile: widen it")
    return tiles


def _item_identity(item: Mapping[str, Any]) -> list[Any]:
    """What identifies an item's content: its id and update time (a reprocessed item gets a
    new time or id). Not its asset paths: those change with signing tokens, mirrors and moved
    directories while the data stay the same."""
    properties = item.get("properties", {})
    return [item["id"], properties.get("updated") or properties.get("datetime")]


def _run_parameters(request: ProductionRequest, cube: CubeConfig) -> dict[str, Any]:
    """Everything besides the tile, its inputs and the model that decides its values."""
    return {
        "dates": request.output_dates(),
        "inference": {**asdict(request.inference()), "origin": None},
        "cube": {"min_valid_fraction": cube.min_valid_fraction,
                 "landsat_resampling": cube.landsat_resampling, "masks": asdict(cube.masks)},
        "encoding": request.encoding,
        "precision": request.precision,
        "catalog_profile": request.catalog,
        "collections": list(request.collections),
        "clip_to": None if request.clip_to is None else list(request.clip_to),
    }  # fmt: skip


def _cache_key(plan: TilePlan, model: Mapping[str, Any] | None, parameters: Mapping) -> str:
    """sha256 of the tile, its inputs, the model's identity and the parameters."""
    document = {
        "tile": plan.tile_id,
        "inputs": sorted(_item_identity(i) for i in (*plan.s2_items, *plan.landsat_items)),
        "model": None if model is None else model.get("weights_sha256", model),
        "parameters": parameters,
    }
    return hashlib.sha256(json.dumps(document, sort_keys=True, default=str).encode()).hexdigest()


def _store_path(out_dir: Location, epsg: int) -> Location:
    return out_dir / "level3" / f"{epsg}.zarr"


def _with_status(
    plans: list[TilePlan], keys: Mapping[str, str], out_dir: Location, retry_broken: bool
) -> list[TilePlan]:
    """Plans with ``status`` from the completion records already in the stores."""
    records: dict[str, dict[str, Any]] = {}
    for epsg in sorted({p.tile.epsg for p in plans}):
        store = _store_path(out_dir, epsg)
        if store.is_nonempty():
            # Not a store (yet): create_store says what is wrong.
            with contextlib.suppress(ValueError):
                records |= completion_records(store)
    out = []
    for plan in plans:
        record = records.get(plan.tile_id)
        if record is None:
            status = "new"
        elif record.get("provenance", {}).get("cache_key") != keys[plan.tile_id]:
            status = "recompute"
        elif retry_broken and record["provenance"].get("broken_assets"):
            status = "recompute"  # read again: the assets may be back
        else:
            status = "done"
        out.append(TilePlan(**{**plan.__dict__, "status": status}))
    return out


def _model_identity(checkpoint: str) -> dict[str, Any]:
    """The checkpoint's identity without its path (moving a run directory must not make its
    stores look like another product)."""
    identity = checkpoint_identity(checkpoint)
    identity.pop("path")
    return identity


def _planned(
    request: ProductionRequest,
    items: Mapping[str, Sequence[Mapping[str, Any]]],
    checkpoint: str | None,
    cube: CubeConfig,
) -> tuple[list[TilePlan], dict[str, str]]:
    s2, landsat = request.collections
    plans = plan_tiles(region_tiles(request), items.get(s2, []), items.get(landsat, []),
                       len(request.output_dates()), request.inference(),
                       clip_to=request.clip_to)  # fmt: skip
    model = None if checkpoint is None else _model_identity(checkpoint)
    parameters = _run_parameters(request, cube)
    keys = {p.tile_id: _cache_key(p, model, parameters) for p in plans}
    return _with_status(plans, keys, request.output, request.retry_broken), keys


def _model_checkpoint(request: ProductionRequest, create: bool) -> tuple[Any, bool]:
    """(checkpoint path, untrained?) of the run: the given weights, the bundled model, or
    (``checkpoint="untrained"``) the untrained stand-in, written on ``create`` (a plan never
    writes: then it is None until a run made it)."""
    if request.checkpoint is None:
        return str(bundled_checkpoint()), False
    if request.checkpoint != UNTRAINED:
        return str(Path(request.checkpoint).absolute()), False
    directory = _untrained_directory(request.output)
    if create:
        return str(untrained_checkpoint(directory)), True
    return (str(directory) if (directory / "config.json").is_file() else None), True


def _untrained_directory(output: Location) -> Path:
    """Where the untrained stand-in is written: in the output directory, or for an object
    store in this user's cache (workers load the model from a local file)."""
    if output.is_local:
        return output.local_path / UNTRAINED_MODEL_DIR
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "tamrf-xr" / UNTRAINED_MODEL_DIR


def plan_region(
    request: ProductionRequest,
    device: str = "cpu",
    items: Mapping[str, Sequence[Mapping[str, Any]]] | None = None,
) -> RegionPlan:
    """The tiles, their items, dates, status and estimated cost, without computing a tile
    and without writing anything.

    Args:
        request: the run.
        device: where the model would run (``cpu``, ``cuda``, ``auto``), for the measured
            rate; ignored when ``request.flop_rate`` is given.
        items: the search result when already at hand (default: one search now).
    """
    check_request(request, writing=False, catalog=items is None)
    items = search_region(request) if items is None else items
    checkpoint, _ = _model_checkpoint(request, create=False)
    plans, _ = _planned(request, items, checkpoint, CubeConfig())
    if request.flop_rate:
        rate, source = request.flop_rate, "configured"
    else:
        device = resolve_device(device)
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise ValueError(
                f"device {device!r}: this machine has no CUDA device to measure the model's "
                "speed on; use --device cpu, or give the GPU's rate with --flop-rate GFLOPS"
            )
        precision = resolve_precision(request.precision, device)
        rate = measured_flop_rate(device, precision=precision)
        source = f"measured here on {device} ({precision})"
    return RegionPlan(tuple(plans), tuple(request.output_dates()), rate, source, device,
                      {c: len(v) for c, v in items.items()})  # fmt: skip


# ---------------------------------------------------------------------------------------------
# Running
# ---------------------------------------------------------------------------------------------


def _store_attrs(request: ProductionRequest, checkpoint: str, untrained: bool,
                 cube: CubeConfig) -> dict[str, Any]:  # fmt: skip
    """The stores' provenance: what must match when a run resumes a store."""
    parameters = _run_parameters(request, cube)
    return {
        "model": _model_identity(checkpoint),
        "untrained_model": untrained,
        "inference": parameters["inference"],
        "cube": parameters["cube"],
        "catalog_profile": request.catalog,
        "collections": parameters["collections"],
        "request": {"aoi_bounds": list(aoi_geometry(dict(request.aoi)).bounds),
                    "start": request.start.isoformat(), "end": request.end.isoformat()},
        "software": {"tamrf_xr": tamrf_xr.__version__, "python": platform.python_version()},
        **dict(request.extra_provenance),
    }  # fmt: skip


def _found_summary(items: Mapping[str, Sequence[Mapping[str, Any]]]) -> dict[str, Any]:
    def cover(item: Mapping[str, Any]) -> float:
        return item["properties"].get("eo:cloud_cover", 0.0) or 0.0

    out: dict[str, Any] = {}
    for collection, found in items.items():
        times = sorted(i["properties"]["datetime"] for i in found)
        out[collection] = {
            "count": len(found),
            "first": times[0] if times else None,
            "last": times[-1] if times else None,
            "mean_cloud_cover": round(sum(cover(i) for i in found) / len(found), 2)
            if found
            else None,
            "ids": [i["id"] for i in found],
        }
    return out


def _create_stores(
    request: ProductionRequest, plan: RegionPlan, attrs: Mapping[str, Any]
) -> dict[int, Path | str]:
    """One Level-3 store per UTM zone of the plan (or the existing one, when it was made with
    the same parameters: resume). A store holds every tile of the AOI in its zone, also
    when ``tile_filter`` runs only some of them now, so that runs with and without the
    filter share it."""
    config = Level3Config(encoding=request.encoding)  # type: ignore[arg-type]
    every_tile = region_tiles(dataclasses.replace(request, tile_filter=None))
    stores = {}
    for epsg in sorted({p.tile.epsg for p in plan.tiles}):
        tiles = [t for t in every_tile if t.epsg == epsg]
        path = _store_path(request.output, epsg)
        stores[epsg] = create_store(path, tiles, plan.output_dates, config, attrs=attrs)
    return stores


def _summary(
    run_id: str,
    request: ProductionRequest,
    items: Mapping[str, Sequence[Mapping[str, Any]]],
    plan: RegionPlan,
    outcomes: Sequence[TileOutcome],
    stores: Mapping[int, Path | str],
    stac: Path | str,
    untrained: bool,
    started: dt.datetime,
) -> dict[str, Any]:
    """The run summary (``run-summary.json``)."""
    done = [o for o in outcomes if o.status == "done"]
    failed = [o for o in outcomes if o.status == "failed"]
    broken = sorted({json.dumps(a, sort_keys=True) for o in done
                     for a in o.summary["broken_assets"]})  # fmt: skip
    return {
        "request": request.describe(),
        "run_id": run_id,
        "catalog": redact_url(request.url),
        "started": started.isoformat(timespec="seconds"),
        "finished": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "collections": _found_summary(items),
        "level3": {
            "stores": [str(s) for s in stores.values()],
            "store": str(next(iter(stores.values()))),
            "stac": str(stac),
            "dates": list(plan.output_dates),
            "tiles": [p.tile_id for p in plan.tiles],
            "produced_now": [o.tile_id for o in done],
            "skipped": [p.tile_id for p in plan.tiles if p.status == "done"],
            "failed": [
                {"tile": o.tile_id, "attempts": o.attempts, "error": o.error} for o in failed
            ],
            "outcomes": _tiles_by_outcome(done),
            "untrained_model": untrained,
        },
        "notes": period_notes(request.start, request.end),
        "tiles": [
            {
                **o.summary,
                "seconds": round(o.seconds, 1),
                "attempts": o.attempts,
                "started": o.started,
                "finished": o.finished,
            }
            for o in done
        ],
        "broken_assets": [json.loads(a) for a in broken],
    }


def _tiles_by_outcome(done: Sequence[TileOutcome]) -> dict[str, list[str]]:
    """The tiles produced now by input outcome (:data:`INPUT_OUTCOMES`: one sensor only, all
    cloudy, no input are recorded outcomes, not errors)."""
    by_outcome: dict[str, list[str]] = {key: [] for key in INPUT_OUTCOMES}
    for outcome in done:
        by_outcome.setdefault(outcome.summary.get("outcome", "both_sensors"), []).append(
            outcome.tile_id
        )
    return by_outcome


def run_region(
    request: ProductionRequest,
    cluster: ClusterConfig | None = None,
    reporter: RunReporter | None = None,
    items: Mapping[str, Sequence[Mapping[str, Any]]] | None = None,
    produce: Callable[..., dict[str, Any]] | None = None,
    summary_extra: Mapping[str, Any] | None = None,
    lock_held: bool = False,
) -> dict[str, Any]:
    """Produce the Level-3 stores of ``request`` (see the module docstring).

    Args:
        request: the run.
        cluster: the Dask cluster (default: a local one).
        reporter: receives the plan, tile starts, block progress and tile outcomes, in the
            calling thread (terminal bars, Prefect artifacts).
        items: the search result when already at hand (default: one search now).
        produce: the per-tile work (default :func:`produce_tile`; same signature).
        summary_extra: more entries for the summary (e.g. the demo's static catalog).
        lock_held: the caller already holds ``out_dir``'s :class:`RunLock` (the demo flow,
            which simulates into it first).

    Returns:
        The run summary, also written to ``out_dir/run-summary.json``. Failed tiles are in
        ``level3.failed`` (a re-run retries them).

    Raises:
        ValueError: a bad parameter (nothing written).
        pipelines.search.CatalogSearchError: the catalog cannot be searched or has nothing
            (nothing written).
        pipelines.run_lock.RunLockedError: another run holds the output directory.
        pipelines.output_errors.OutputWriteError: the output's file system is full or
            read-only (the stage and the path named): the run stops at once; the tiles that
            have their completion record are complete, a re-run computes the others.
    """
    cluster = cluster or ClusterConfig(dashboard_address=None)
    produce = produce or produce_tile
    check_request(request, catalog=items is None, scheduler=cluster.address)
    out = request.output
    lock = run_lock(out)
    if not lock_held:
        lock.ensure_free()  # before a search that may take minutes
    items = search_region(request) if items is None else items
    started = dt.datetime.now(dt.UTC)
    # Broken-asset records per run: a later run that reads an asset fine again must not
    # report it broken from an old record.
    run_id = f"{started:%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"
    with contextlib.nullcontext() if lock_held else lock:
        cube = CubeConfig()
        checkpoint, untrained = _model_checkpoint(request, create=True)
        plans, keys = _planned(request, items, checkpoint, cube)
        plan = RegionPlan(tuple(plans), tuple(request.output_dates()), request.flop_rate,
                          "configured" if request.flop_rate else "not measured", cluster.kind,
                          {c: len(v) for c, v in items.items()})  # fmt: skip
        with writing("creating the Level-3 stores", out / "level3"):
            stores = _create_stores(request, plan,
                                    _store_attrs(request, checkpoint, untrained, cube))  # fmt: skip
        pending = plan.pending()
        if reporter is not None:
            reporter.planned(plan)
        s2_collection, landsat_collection = request.collections
        outcomes: list[TileOutcome] = []
        if pending:
            with start_cluster(cluster) as running:
                model = running.model_source(ModelSource(checkpoint, precision=request.precision))
                jobs = {epsg: TileJob(store=store, profile=request.profile,
                                      dates=plan.output_dates, model=model, cube=cube,
                                      inference=request.inference(), clip_to=request.clip_to,
                                      broken_log=out / "broken-assets" / run_id)
                        for epsg, store in stores.items()}  # fmt: skip
                running.preload(model)

                def work(tile_plan: TilePlan, progress: Callable[[int, int], None]) -> dict:
                    tile_items = {s2_collection: list(tile_plan.s2_items),
                                  landsat_collection: list(tile_plan.landsat_items)}  # fmt: skip
                    job = jobs[tile_plan.tile.epsg]
                    key = keys[tile_plan.tile_id]
                    with span.tile():
                        return produce(tile_items, tile_plan.tile, job, cache_key=key,
                                       progress=progress)  # fmt: skip

                # One Dask span for every tile: the scheduler and the workers keep nothing per
                # tile (pipelines.run_span).
                with run_span(running.client) as span:
                    outcomes = run_tiles(pending, work, key=lambda p: p.tile_id,
                                         in_flight=request.tiles_in_flight,
                                         retries=request.tile_retries,
                                         reporter=reporter)  # fmt: skip
        for store in stores.values():
            with writing("consolidating the metadata of the Level-3 store", store):
                consolidate(store)
        with writing("writing the STAC collection", out / "level3" / "stac"):
            stac = write_level3_collection(list(stores.values()), out / "level3" / "stac")
        summary = _summary(run_id, request, items, plan, outcomes, stores, stac, untrained,
                           started)  # fmt: skip
        summary |= dict(summary_extra or {})
        # --- Quicklooks: small PNGs of the stores for operators (pipelines.quicklooks; imported
        # here, as matplotlib is only needed once a run has written its stores). ---
        from pipelines.quicklooks import write_quicklooks

        summary["level3"]["quicklooks"] = write_quicklooks(summary, request.out_dir)
        # --- end of quicklooks ---
        with writing("writing the run summary", out / "run-summary.json"):
            write_json_atomically(out / "run-summary.json", summary)
    return summary
