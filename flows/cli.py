"""The ``tamrf`` command line.

Heavy imports (rasterio, prefect, ...) happen inside the commands so that ``tamrf --help``
stays fast.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Annotated

import typer

from flows.cli_catalog import catalog_app

app = typer.Typer(
    help="tamrf-xr: Sentinel-2 + Landsat time-series fusion, from STAC catalogs to Level-3 Zarr.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
app.add_typer(catalog_app, name="catalog")


def _date(value: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not a date: use YYYY-MM-DD") from None


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
            start=_date(start),
            end=_date(end),
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
    from pipelines.simulated_catalog import write_simulated_catalog

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
def run(
    out_dir: Annotated[Path, typer.Option(help="Where the run writes its products.")] = Path(
        "tamrf-output"
    ),
    seed: Annotated[int, typer.Option(help="Seed of the simulated region.")] = 0,
    lon: Annotated[float, typer.Option(help="Longitude of the region centre.")] = 1.45,
    lat: Annotated[float, typer.Option(help="Latitude of the region centre.")] = 43.60,
    size_px: Annotated[int, typer.Option(help="Region side in 10 m pixels (multiple of 6).")] = 240,
    start: Annotated[str, typer.Option(help="First day, YYYY-MM-DD.")] = "2022-01-01",
    end: Annotated[str, typer.Option(help="Last day (inclusive), YYYY-MM-DD.")] = "2022-12-31",
    backend: Annotated[
        str, typer.Option(help="Local STAC API: rustac (embedded) or pgstac.")
    ] = "rustac",
    overwrite: Annotated[bool, typer.Option(help="Re-simulate over an existing product.")] = False,
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
    dates: Annotated[
        str, typer.Option(help="Output dates: SMS (1st and 15th), 10D, MS, or ISO dates a,b,c.")
    ] = "SMS",
    checkpoint: Annotated[
        Path | None, typer.Option(help="Model weights; default: an UNTRAINED stand-in.")
    ] = None,
    tile_size_m: Annotated[
        float, typer.Option(help="Output tile side, a multiple of 30 m.")
    ] = 9900.0,
    encoding: Annotated[str, typer.Option(help="Level-3 values: int16 or float32.")] = "int16",
    scheduler: Annotated[
        str | None, typer.Option(help="Address of an existing Dask scheduler.")
    ] = None,
    workers: Annotated[int, typer.Option(help="Local Dask worker processes.")] = 1,
) -> None:
    """The main job on the embedded default: simulate a region, serve it as a local STAC API
    on 127.0.0.1, query it, and write its Level-3 Zarr store (datacubes and TAMRF inference
    on a Dask cluster). A Prefect flow; it runs on a temporary local Prefect server unless
    PREFECT_API_URL points at one. A re-run resumes the missing tiles."""
    import os

    # No telemetry from a machine that may have no internet (and nothing to report home).
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    from flows.regional_run import regional_run

    if backend not in ("rustac", "pgstac"):
        raise typer.BadParameter(f"unknown backend {backend!r}: use rustac or pgstac")
    config = _simulation_config(seed=seed, lon=lon, lat=lat, size_px=size_px, start=start, end=end)
    try:
        summary = regional_run(
            config.to_json(), str(out_dir), backend, overwrite, progress, dates=dates,
            checkpoint=None if checkpoint is None else str(checkpoint), tile_size_m=tile_size_m,
            encoding=encoding, scheduler_address=scheduler, n_workers=workers,
        )  # fmt: skip
    except (FileExistsError, ValueError) as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"catalog: {summary['catalog']}")
    for collection, found in summary["collections"].items():
        typer.echo(
            f"{collection}: {found['count']} items {found['first'][:10]}..{found['last'][:10]}, "
            f"mean cloud cover {found['mean_cloud_cover']}%"
        )
    level3 = summary["level3"]
    typer.echo(
        f"level-3: {level3['store']} ({len(level3['tiles'])} tiles, {len(level3['dates'])} "
        f"dates, {len(level3['produced_now'])} tiles produced now); STAC: {level3['stac']}"
    )
    if level3["untrained_model"]:
        typer.echo("warning: no --checkpoint: the model weights are UNTRAINED (values are not "
                   "meaningful); see `tamrf import-checkpoint`")  # fmt: skip
    typer.echo(f"summary: {Path(out_dir).absolute() / 'run-summary.json'}")


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
