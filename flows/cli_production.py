"""``tamrf run --catalog ...`` and ``tamrf plan``: production runs on any STAC catalog.

The options are declared once (the ``*Option`` aliases) and shared by both commands. Every
parameter is checked before Prefect or a cluster starts, so a typo costs a second and
writes nothing.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import traceback
from pathlib import Path
from typing import Annotated, Any

import typer

from flows.cli_checks import DebugOption, check_first, debugging, set_debug
from pipelines.storage import Location

__all__ = ["fail", "plan", "print_run_summary", "production_request", "run_on_catalog", "tile_ids"]

CatalogOption = Annotated[
    str | None,
    typer.Option(
        help="Catalog profile: earth-search-v1, planetary-computer or local. "
        "Without it, `tamrf run` runs the embedded demo."
    ),
]
CatalogUrlOption = Annotated[
    str | None, typer.Option(help="STAC API root overriding the profile's (an internal mirror).")
]
AoiOption = Annotated[
    Path | None, typer.Option(help="AOI: a GeoJSON file (geometry, Feature or FeatureCollection).")
]
BboxOption = Annotated[str | None, typer.Option(help="AOI as W,S,E,N in degrees (lon/lat).")]
DatesOption = Annotated[
    str, typer.Option(help="Output dates: SMS (1st and 15th), 10D, MS, or ISO dates a,b,c.")
]
CheckpointOption = Annotated[
    Path | None,
    typer.Option(
        help="Model weights (ours or the authors' .ckpt); default: the bundled model "
        "(trained on simulated regions); `untrained`: random weights (flagged)."
    ),
]
S2CollectionOption = Annotated[
    str | None, typer.Option(help="S2 collection of the profile (default: its first).")
]
CloudOption = Annotated[
    float | None, typer.Option(help="Keep items with eo:cloud_cover <= this percentage.")
]
TileSizeOption = Annotated[float, typer.Option(help="Output tile side, a multiple of 30 m.")]
TilesOption = Annotated[str | None, typer.Option(help="Only these tile ids (comma-separated).")]
RetryBrokenOption = Annotated[
    bool,
    typer.Option(help="Also recompute complete tiles whose record lists broken assets."),
]


def date_option(value: str) -> dt.date:
    """A YYYY-MM-DD command-line value (a bad one is a usage error)."""
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not a date: use YYYY-MM-DD") from None


def _date(value: str | None, name: str) -> dt.date:
    from pipelines.run_inputs import parse_day

    if value is None:
        raise ValueError(f"{name} is required with --catalog: give YYYY-MM-DD")
    return parse_day(value, name)


def read_aoi(aoi: Path | None, bbox: str | None) -> tuple[list[float] | None, dict | None]:
    """(bbox, None) from ``--bbox W,S,E,N`` or (None, GeoJSON document) from ``--aoi FILE``;
    the area itself is checked by :func:`pipelines.grid.aoi_geometry`."""
    if (aoi is None) == (bbox is None):
        raise ValueError("give exactly one AOI: --aoi FILE.geojson or --bbox W,S,E,N")
    if bbox is not None:
        try:
            values = [float(v) for v in bbox.split(",")]
        except ValueError:
            raise ValueError(f"--bbox {bbox!r} is not four numbers: give W,S,E,N in degrees, "
                             "e.g. --bbox 1.40,43.55,1.50,43.65") from None  # fmt: skip
        return values, None
    assert aoi is not None
    try:
        document = json.loads(aoi.read_text())
    except (OSError, ValueError) as error:
        raise ValueError(f"--aoi {aoi} is not a readable GeoJSON file ({error}): give a GeoJSON "
                         "geometry, Feature or FeatureCollection in lon/lat") from None  # fmt: skip
    if not isinstance(document, dict):
        raise ValueError(f"--aoi {aoi} holds a JSON {type(document).__name__}, not a GeoJSON "
                         "object: give a geometry, Feature or FeatureCollection")  # fmt: skip
    return None, document


def tile_ids(text: str | None) -> tuple[str, ...] | None:
    """``--tiles A,B`` as a tuple of tile ids (None: every tile)."""
    return None if text is None else tuple(t.strip() for t in text.split(","))


def production_request(
    catalog: str, catalog_url: str | None, aoi: Path | None, bbox: str | None,
    start: str | None, end: str | None, dates: str, checkpoint: Path | None, out_dir: str,
    **options: Any,
) -> Any:  # fmt: skip
    """A checked :class:`pipelines.production.ProductionRequest` from command-line values
    (a bad value: ``error: ...`` on stderr and exit status 2)."""
    from flows.production_run import request_from_parameters
    from pipelines.production import parse_dates

    try:
        bbox_values, geometry = read_aoi(aoi, bbox)
        return request_from_parameters(
            catalog, _date(start, "--start"), _date(end, "--end"), str(out_dir), bbox_values,
            geometry, catalog_url=catalog_url, dates=parse_dates(dates),
            checkpoint=None if checkpoint is None else str(checkpoint), **options,
        )  # fmt: skip
    except ValueError as error:
        raise fail(error) from None


def fail(error: Exception) -> typer.Exit:
    """``error: ...`` on stderr, one line, and the exit status 2 to raise (a run that cannot
    start); with ``--debug``, the error's traceback before it."""
    if debugging():
        typer.echo("".join(traceback.format_exception(error)).rstrip(), err=True)
    typer.echo(f"error: {error}", err=True)
    return typer.Exit(2)


def run_on_catalog(request: Any, cluster: dict[str, Any], progress: bool, dry_run: bool) -> None:
    """Check ``request`` (files, catalog) and run the production flow; exit 2 on a bad
    parameter or a locked output, 1 when tiles failed."""
    from pipelines.cluster_specs import ClusterStartError
    from pipelines.production import TilesFailedError, check_request
    from pipelines.run_lock import RunLockedError, run_lock
    from pipelines.search import CatalogSearchError

    try:
        check_request(request, writing=not dry_run)
    except (ValueError, CatalogSearchError) as error:
        raise fail(error) from None
    described = request.describe()
    try:
        # The lock is taken here, before the flow starts, so that a second run on the same
        # output is refused in one line (inside the flow, Prefect would log a traceback).
        lock = contextlib.nullcontext() if dry_run else run_lock(request.output)
        with lock:
            result = _production_flow(request, cluster, progress, dry_run)
    except TilesFailedError as failure:
        result = failure.summary
    except (ValueError, CatalogSearchError, RunLockedError, FileExistsError,
            ClusterStartError) as error:  # fmt: skip
        raise fail(error) from None
    if dry_run:
        from pipelines.tile_plan import format_plan

        typer.echo(format_plan(result))
        return
    typer.echo(f"catalog: {described['catalog_url']} ({request.catalog})")
    print_run_summary(result, request.out_dir)


def _production_flow(request: Any, cluster: dict[str, Any], progress: bool, dry_run: bool) -> Any:
    """The ``tamrf-production-run`` flow of ``request`` (the caller holds its lock)."""
    from flows.production_run import production_run

    return production_run(
        request.catalog, request.start, request.end, str(request.out_dir),
        **_flow_aoi(request.aoi), catalog_url=request.catalog_url,
        dates=request.dates if isinstance(request.dates, str) else ",".join(request.dates),
        checkpoint=request.checkpoint, s2_collection=request.s2_collection,
        max_cloud_cover=request.max_cloud_cover, tile_size_m=request.tile_size_m,
        encoding=request.encoding, precision=request.precision,
        tiles_in_flight=request.tiles_in_flight,
        tiles=None if request.tile_filter is None else list(request.tile_filter),
        flop_rate_gflops=None if request.flop_rate is None else request.flop_rate / 1e9,
        retry_broken=request.retry_broken, dry_run=dry_run, show_progress=progress,
        lock_held=not dry_run, **cluster,
    )  # fmt: skip


def _flow_aoi(aoi: dict[str, Any]) -> dict[str, Any]:
    """The AOI as the flow's ``bbox`` when it is a lon/lat box (a short, readable parameter
    in the Prefect UI), else as ``aoi``."""
    from shapely.geometry import box, shape

    geometry = shape(aoi.get("geometry", aoi)) if aoi.get("type") != "FeatureCollection" else None
    if geometry is not None and geometry.equals(box(*geometry.bounds)):
        return {"bbox": list(geometry.bounds)}
    return {"aoi": dict(aoi)}


def print_run_summary(summary: dict[str, Any], out_dir: str | Path) -> None:
    """What a run made, on the terminal; exit 1 when tiles failed."""
    from pipelines.level3_production import INPUT_OUTCOMES

    for collection, found in summary["collections"].items():
        span = (f"{found['first'][:10]}..{found['last'][:10]}, mean cloud cover "
                f"{found['mean_cloud_cover']}%") if found["count"] else "none"  # fmt: skip
        typer.echo(f"{collection}: {found['count']} items {span}")
    level3 = summary["level3"]
    typer.echo(
        f"level-3: {', '.join(level3['stores'])} ({len(level3['tiles'])} tiles, "
        f"{len(level3['dates'])} dates; {len(level3['produced_now'])} produced now, "
        f"{len(level3['skipped'])} already complete, {len(level3['failed'])} failed); "
        f"STAC: {level3['stac']}"
    )
    for asset in summary.get("broken_assets", []):
        typer.echo(f"broken asset (read as missing): {asset['item_id']} {asset['band']}: "
                   f"{asset['error']}")  # fmt: skip
    for outcome, tiles in level3.get("outcomes", {}).items():
        if tiles and outcome != "both_sensors":
            typer.echo(f"{len(tiles)} tile(s) {INPUT_OUTCOMES[outcome]}: {', '.join(tiles)}")
    for note in summary.get("notes", []):
        typer.echo(f"note: {note}")
    if level3["untrained_model"]:
        typer.echo("warning: --checkpoint untrained: the model weights are UNTRAINED (values "
                   "are not meaningful)")  # fmt: skip
    typer.echo(f"summary: {Location.of(out_dir) / 'run-summary.json'}")
    if level3["failed"]:
        for failed in level3["failed"]:
            typer.echo(f"error: tile {failed['tile']} failed after {failed['attempts']} "
                       f"attempt(s): {failed['error']}", err=True)  # fmt: skip
        typer.echo("re-run the same command to retry the failed tiles (complete tiles are "
                   "skipped)", err=True)  # fmt: skip
        raise typer.Exit(1)


def plan(
    catalog: Annotated[
        str, typer.Option(help="Catalog profile: earth-search-v1, planetary-computer or local.")
    ],
    start: Annotated[str, typer.Option(help="First day of the period, YYYY-MM-DD.")],
    end: Annotated[str, typer.Option(help="Last day (inclusive), YYYY-MM-DD.")],
    catalog_url: CatalogUrlOption = None,
    aoi: AoiOption = None,
    bbox: BboxOption = None,
    dates: DatesOption = "SMS",
    checkpoint: CheckpointOption = None,
    out_dir: Annotated[
        str,
        typer.Option(help="Output directory or URL (its complete tiles are marked done)."),
    ] = "tamrf-output",
    s2_collection: S2CollectionOption = None,
    max_cloud_cover: CloudOption = None,
    tile_size_m: TileSizeOption = 9900.0,
    tiles: TilesOption = None,
    retry_broken: RetryBrokenOption = False,
    device: Annotated[
        str, typer.Option(help="Device of the measured model rate: cpu, cuda or auto.")
    ] = "auto",
    flop_rate: Annotated[
        float | None, typer.Option(help="Model speed in GFLOP/s instead of measuring it.")
    ] = None,
    json_path: Annotated[
        Path | None, typer.Option("--json", help="Also write the whole plan as JSON here.")
    ] = None,
    debug: DebugOption = False,
) -> None:
    """Plan a production run without computing a tile: the tiles, the items per tile and
    sensor, their dates, each tile's status (new, done, recompute) and its estimated model
    FLOPs and time, and the totals. One paged search of the catalog."""
    set_debug(debug)
    try:  # before the heavy imports below: a bad input costs a fraction of a second
        check_first(catalog=catalog, aoi=aoi, bbox=bbox, start=start, end=end, dates=dates,
                    checkpoint=checkpoint, out_dir=out_dir, scheduler=None,
                    writing=False)  # fmt: skip
    except ValueError as error:
        raise fail(error) from None
    from pipelines.production import plan_region
    from pipelines.search import CatalogSearchError
    from pipelines.tile_plan import format_plan

    request = production_request(
        catalog, catalog_url, aoi, bbox, start, end, dates, checkpoint, out_dir,
        s2_collection=s2_collection, max_cloud_cover=max_cloud_cover, tile_size_m=tile_size_m,
        tile_filter=tile_ids(tiles),
        flop_rate=None if flop_rate is None else flop_rate * 1e9, retry_broken=retry_broken,
    )  # fmt: skip
    try:
        result = plan_region(request, device).to_dict()
    except (ValueError, CatalogSearchError) as error:
        raise fail(error) from None
    typer.echo(format_plan(result))
    if json_path is not None:
        json_path.write_text(json.dumps(result, indent=2) + "\n")
        typer.echo(f"plan: {json_path}")
