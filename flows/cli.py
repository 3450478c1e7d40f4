"""The ``tamrf`` command line.

Heavy imports (rasterio, prefect, ...) happen inside the commands so that ``tamrf --help``
stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from flows.cli_catalog import catalog_app
from flows.cli_checks import DEMO_PERIOD, DebugOption, check_first, set_debug
from flows.cli_deploy import deploy_check
from flows.cli_evaluate import evaluate
from flows.cli_info import info
from flows.cli_production import (
    AoiOption,
    BboxOption,
    CatalogOption,
    CatalogUrlOption,
    CheckpointOption,
    CloudOption,
    DatesOption,
    RetryBrokenOption,
    S2CollectionOption,
    TileSizeOption,
    TilesOption,
    date_option,
    plan,
)
from flows.cli_train import build_dataset, train
from flows.process_cleanup import stops_cleanly

app = typer.Typer(
    help="tamrf-xr: Sentinel-2 + Landsat time-series fusion, from STAC catalogs to Level-3 Zarr.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
app.add_typer(catalog_app, name="catalog")
app.command("plan")(plan)
app.command("info")(info)
app.command("deploy-check")(deploy_check)
app.command("evaluate")(evaluate)
app.command("build-dataset")(build_dataset)
app.command("train")(train)


def _simulation_config(
    *, seed: int, lon: float, lat: float, size_px: int, start: str, end: str, **extra
):
    """A square region's SimulationConfig from command-line values (bad values: usage error)."""
    from tamrf_xr.simulate import SimulationConfig

    try:
        return SimulationConfig(
            seed=seed,
            center_lon=lon,
            center_lat=lat,
            width_px=size_px,
            height_px=size_px,
            start=date_option(start),
            end=date_option(end),
            **extra,
        )
    except ValueError as error:
        raise typer.BadParameter(str(error)) from None


@app.command()
def simulate(
    out_dir: Annotated[Path, typer.Argument(help="New directory for the simulated product.")],
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same bytes).")] = 0,
    lon: Annotated[float, typer.Option(help="Longitude of the region centre.")] = 1.45,
    lat: Annotated[float, typer.Option(help="Latitude of the region centre.")] = 43.60,
    size_px: Annotated[int, typer.Option(help="Region side in 10 m pixels (multiple of 6).")] = 240,
    start: Annotated[str, typer.Option(help="First day, YYYY-MM-DD.")] = "2022-01-01",
    end: Annotated[str, typer.Option(help="Last day (inclusive), YYYY-MM-DD.")] = "2022-12-31",
    cloud_cover: Annotated[float, typer.Option(help="Mean daily cloud cover, 0-1.")] = 0.45,
    truth: Annotated[bool, typer.Option(help="Write the ground-truth Zarr store.")] = True,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing product.")] = False,
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
) -> None:
    """Simulate a region: COGs + STAC items in Earth Search v1 form, and the ground truth."""
    from flows.terminal import progress_bars
    from pipelines.demo.simulated_catalog import write_simulated_catalog

    config = _simulation_config(
        seed=seed, lon=lon, lat=lat, size_px=size_px, start=start, end=end,
        cloud_cover_mean=cloud_cover,
    )  # fmt: skip
    try:
        with progress_bars(progress) as bar:
            product = write_simulated_catalog(
                config, out_dir, overwrite=overwrite, with_truth=truth, progress=bar
            )
    except FileExistsError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from None
    counts = ", ".join(f"{n} {c} items" for c, n in product.item_counts.items())
    typer.echo(f"wrote {counts}")
    typer.echo(f"catalog: {product.catalog}")
    if truth:
        typer.echo(f"truth:   {product.truth}")


@app.command()
@stops_cleanly  # SIGTERM/SIGINT/SIGKILL: one error line, nothing left running
def run(
    catalog: CatalogOption = None,
    catalog_url: CatalogUrlOption = None,
    aoi: AoiOption = None,
    bbox: BboxOption = None,
    start: Annotated[
        str | None, typer.Option(help="First day, YYYY-MM-DD (demo default: 2022-01-01).")
    ] = None,
    end: Annotated[
        str | None, typer.Option(help="Last day (inclusive), YYYY-MM-DD (demo: 2022-12-31).")
    ] = None,
    dates: DatesOption = "SMS",
    checkpoint: CheckpointOption = None,
    out_dir: Annotated[
        str,
        typer.Option(
            help="Where the run writes its products: a directory, or with --catalog an "
            "object store (s3://bucket/prefix; credentials from the environment)."
        ),
    ] = "tamrf-output",
    s2_collection: S2CollectionOption = None,
    max_cloud_cover: CloudOption = None,
    tile_size_m: TileSizeOption = 9900.0,
    tiles: TilesOption = None,
    retry_broken: RetryBrokenOption = False,
    encoding: Annotated[
        str,
        typer.Option(
            help="Level-3 values: float32 (default, mantissa rounded to the int16 precision "
            "class) or int16 (about 0.8 x the storage; plain xarray decodes it to float64)."
        ),
    ] = "float32",
    precision: Annotated[
        str,
        typer.Option(
            help="Model arithmetic: auto (bf16 where the hardware runs it natively: GPUs, CPUs "
            "with AMX or AVX512-BF16; else fp32), fp32, bf16 or fp16 (GPU)."
        ),
    ] = "auto",
    tiles_in_flight: Annotated[int, typer.Option(help="Tiles computed at once.")] = 2,
    scheduler: Annotated[
        str | None, typer.Option(help="Address of an existing Dask scheduler.")
    ] = None,
    cluster: Annotated[
        str,
        typer.Option(
            help="Cluster to start: auto (local GPUs when present), cpu or cuda (local), or "
            "a spec of infra/clusters by name: local, slurm, kubernetes..."
        ),
    ] = "auto",
    cluster_spec: Annotated[
        str | None,
        typer.Option(help="Cluster spec YAML file to start (its kind decides; infra/clusters)."),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            help="Dask workers: local CPU processes (default one per 2 cores), or the count a "
            "cluster spec scales to."
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option(help="Plan only (as `tamrf plan`), through the Prefect flow.")
    ] = False,
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
    seed: Annotated[int, typer.Option(help="Demo: seed of the simulated region.")] = 0,
    lon: Annotated[float, typer.Option(help="Demo: longitude of the region centre.")] = 1.45,
    lat: Annotated[float, typer.Option(help="Demo: latitude of the region centre.")] = 43.60,
    size_px: Annotated[
        int, typer.Option(help="Demo: region side in 10 m pixels (multiple of 6).")
    ] = 240,
    backend: Annotated[
        str, typer.Option(help="Demo: local STAC API, rustac (embedded) or pgstac.")
    ] = "rustac",
    overwrite: Annotated[bool, typer.Option(help="Demo: re-simulate the region.")] = False,
    debug: DebugOption = False,
) -> None:
    """Produce Level-3 Zarr stores (datacubes and TAMRF inference on a Dask cluster), as a
    Prefect flow. With --catalog: an AOI and a period from that STAC catalog. Without it: the
    embedded demo (a simulated region served as a local STAC API on 127.0.0.1). It runs on a
    temporary local Prefect server unless PREFECT_API_URL points at one. A re-run computes
    only the tiles that are missing, failed or whose inputs changed."""
    import os

    from flows.cli_production import fail
    from pipelines.cluster_specs import resolve_cluster_spec

    set_debug(debug)
    # No telemetry from a machine that may have no internet (and nothing to report home).
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    try:
        # The cluster choice first, before torch and the cluster libraries load: a mistyped
        # --cluster or a broken spec file costs a fraction of a second.
        resolve_cluster_spec(cluster, cluster_spec, scheduler)
        # Then every input that can be checked without torch, Prefect or Dask (well under
        # 2 s): the AOI, the period and dates, the checkpoint, the output and the scheduler.
        check_first(catalog=catalog, aoi=aoi, bbox=bbox, start=start, end=end, dates=dates,
                    checkpoint=checkpoint, out_dir=out_dir, scheduler=scheduler,
                    writing=not dry_run)  # fmt: skip
        from pipelines.cluster import ClusterConfig

        ClusterConfig(address=scheduler, kind=cluster, n_workers=workers, spec=cluster_spec)
    except ValueError as error:
        raise fail(error) from None
    if catalog is not None:
        from flows.cli_production import production_request, run_on_catalog, tile_ids

        request = production_request(
            catalog, catalog_url, aoi, bbox, start, end, dates, checkpoint, out_dir,
            s2_collection=s2_collection, max_cloud_cover=max_cloud_cover,
            tile_size_m=tile_size_m, encoding=encoding, precision=precision,
            tiles_in_flight=tiles_in_flight, tile_filter=tile_ids(tiles),
            retry_broken=retry_broken,
        )  # fmt: skip
        cluster_options = {"scheduler_address": scheduler, "cluster_kind": cluster,
                           "n_workers": workers, "cluster_spec": cluster_spec}  # fmt: skip
        run_on_catalog(request, cluster_options, progress, dry_run)
        return
    catalog_only = {"--aoi": aoi, "--bbox": bbox, "--catalog-url": catalog_url,
                    "--dry-run": dry_run or None, "--tiles": tiles,
                    "--max-cloud-cover": max_cloud_cover, "--s2-collection": s2_collection,
                    "--retry-broken": retry_broken or None}  # fmt: skip
    given = [name for name, value in catalog_only.items() if value is not None]
    if given:
        raise typer.BadParameter(
            f"{', '.join(given)} need(s) --catalog (a STAC catalog); without --catalog, "
            "`tamrf run` runs the embedded demo"
        )
    _run_demo(
        out_dir, seed, lon, lat, size_px, start or DEMO_PERIOD[0], end or DEMO_PERIOD[1], backend,
        overwrite, progress, dates, checkpoint, tile_size_m, encoding, precision, scheduler,
        workers, tiles_in_flight, cluster, cluster_spec,
    )  # fmt: skip


def _run_demo(
    out_dir: str, seed: int, lon: float, lat: float, size_px: int, start: str, end: str,
    backend: str, overwrite: bool, progress: bool, dates: str, checkpoint: Path | None,
    tile_size_m: float, encoding: str, precision: str, scheduler: str | None,
    workers: int | None, in_flight: int, cluster: str, cluster_spec: str | None = None,
) -> None:  # fmt: skip
    """The embedded demo: simulate, serve, run (the regional_run flow)."""
    from flows.cli_production import fail, print_run_summary
    from flows.regional_run import checked_demo_request
    from pipelines.cluster_specs import ClusterStartError
    from pipelines.production import TilesFailedError
    from pipelines.run_lock import RunLockedError, run_lock
    from pipelines.search import CatalogSearchError

    if backend not in ("rustac", "pgstac"):
        raise typer.BadParameter(f"unknown backend {backend!r}: use rustac or pgstac")
    try:  # the simulated region: one error line, as every other bad input of a run
        config = _simulation_config(seed=seed, lon=lon, lat=lat, size_px=size_px, start=start,
                                    end=end)  # fmt: skip
    except typer.BadParameter as error:
        raise fail(error) from None
    options = {"dates": dates, "checkpoint": None if checkpoint is None else str(checkpoint),
               "tile_size_m": tile_size_m, "encoding": encoding, "precision": precision,
               "tiles_in_flight": in_flight}  # fmt: skip
    try:
        # Checked, then locked here before the flow starts: a second run on the same output
        # is refused in one line (inside the flow, Prefect would log a traceback), and a bad
        # parameter writes nothing (not even the lock file).
        checked_demo_request(config, out_dir, **options)
        with run_lock(out_dir):
            summary = _demo_flow(config, out_dir, backend, overwrite, progress, options,
                                 scheduler, workers, cluster, cluster_spec)  # fmt: skip
    except TilesFailedError as failure:
        summary = failure.summary
    except (FileExistsError, ValueError, CatalogSearchError, RunLockedError,
            ClusterStartError) as error:  # fmt: skip
        raise fail(error) from None
    typer.echo(f"catalog: {summary['catalog']}")
    print_run_summary(summary, out_dir)


def _demo_flow(
    config: Any, out_dir: str, backend: str, overwrite: bool, progress: bool,
    options: dict[str, Any], scheduler: str | None, workers: int | None, cluster: str,
    cluster_spec: str | None,
) -> dict[str, Any]:  # fmt: skip
    """The ``tamrf-regional-run`` flow (the caller holds the output's lock)."""
    from flows.regional_run import regional_run

    return regional_run(
        str(out_dir), seed=config.seed, center_lon=config.center_lon,
        center_lat=config.center_lat, size_px=config.width_px, start=config.start,
        end=config.end, backend=backend, overwrite=overwrite, show_progress=progress,
        scheduler_address=scheduler, n_workers=workers, cluster_kind=cluster,
        cluster_spec=cluster_spec, lock_held=True, **options,
    )  # fmt: skip


@app.command("import-checkpoint")
def import_checkpoint(
    source: Annotated[Path, typer.Argument(help="The authors' PyTorch-Lightning .ckpt file.")],
    destination: Annotated[Path, typer.Argument(help="New tamrf-xr checkpoint directory.")],
    overwrite: Annotated[bool, typer.Option(help="Replace an existing destination.")] = False,
) -> None:
    """Convert the published TAMRF-SITS checkpoint (968639_s1t3.ckpt) to this project's
    format (safetensors + JSON), without executing anything stored in the file."""
    from tamrf_xr.checkpoint import CheckpointError
    from tamrf_xr.lightning_import import import_lightning_checkpoint

    if not source.is_file():
        typer.echo(f"error: {source} does not exist or is not a file", err=True)
        raise typer.Exit(2)
    try:
        loaded = import_lightning_checkpoint(source, destination, overwrite=overwrite)
    except FileExistsError as error:
        typer.echo(f"error: {error}; pass --overwrite to replace it", err=True)
        raise typer.Exit(2) from None
    except CheckpointError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from None
    n = len(loaded.model.state_dict())
    typer.echo(f"imported {n} tensors from {source} into {destination}")
    typer.echo(f"weights sha256: {loaded.checksum}")


if __name__ == "__main__":  # pragma: no cover
    app()
