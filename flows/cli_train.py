"""``tamrf build-dataset`` and ``tamrf train``: a training store, then a (resumable) run.

The same steps run as the Prefect flow ``tamrf-train`` (:mod:`flows.training_flow`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Annotated

import typer

from flows.cli_production import (
    AoiOption,
    BboxOption,
    CatalogOption,
    CatalogUrlOption,
    date_option,
    fail,
)

__all__ = ["build_dataset", "train"]


def _seeds(value: str) -> list[int]:
    try:
        return [int(s) for s in value.split(",") if s.strip()]
    except ValueError:
        raise typer.BadParameter(f"{value!r}: comma-separated integers") from None


def build_dataset(
    out: Annotated[Path, typer.Argument(help="New folder of the training store (Zarr).")],
    simulated: Annotated[
        bool, typer.Option(help="Simulated regions instead of a catalog.")
    ] = False,
    seeds: Annotated[str, typer.Option(help="Simulated: training region seeds.")] = "1001,1002",
    validation_seeds: Annotated[str, typer.Option(help="Simulated: validation seeds.")] = "2001",
    size_px: Annotated[int, typer.Option(help="Simulated: region side (10 m px).")] = 198,
    catalog: CatalogOption = None,
    catalog_url: CatalogUrlOption = None,
    aoi: AoiOption = None,
    bbox: BboxOption = None,
    start: Annotated[str, typer.Option(help="First day, YYYY-MM-DD.")] = "2022-01-01",
    end: Annotated[str, typer.Option(help="Last day (inclusive), YYYY-MM-DD.")] = "2022-12-31",
    patch_px: Annotated[int, typer.Option(help="Patch side at 10 m (multiple of 3).")] = 165,
    window_days: Annotated[int, typer.Option(help="Longest time window of a patch.")] = 365,
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
) -> None:
    """Build a training store: 10 m patches of both sensors' series (the spec's sampling
    rules), from a STAC catalog through the datacube pipeline, or from simulated regions."""
    from flows.terminal import progress_bars
    from pipelines.training.builder import DatasetRequest, build_from_catalog, build_from_simulation
    from tamrf_xr.simulate import SimulationConfig
    from tamrf_xr.training.store import PatchConfig

    try:
        request = DatasetRequest(out, PatchConfig(patch_px=patch_px, window_days=window_days))
        if out.exists() and any(out.iterdir()):
            raise FileExistsError(f"{out} exists and is not empty: choose a new folder")
        if simulated == (catalog is not None):
            raise ValueError("give --simulated or --catalog NAME (with --bbox or --aoi)")
        if simulated:

            def region(seed: int) -> SimulationConfig:
                return SimulationConfig(
                    seed=seed,
                    width_px=size_px,
                    height_px=size_px,
                    start=date_option(start),
                    end=date_option(end),
                    landsat_l2sr_fraction=0.0,
                )

            train_regions = [region(s) for s in _seeds(seeds)]
            validation_regions = [region(s) for s in _seeds(validation_seeds)]
        else:
            from flows.cli_production import production_request

            production = production_request(
                catalog,
                catalog_url,
                aoi,
                bbox,
                start,
                end,
                "SMS",
                None,
                out.parent / f".{out.name}-unused",
            )
    except (ValueError, FileExistsError) as error:
        raise fail(error) from None
    with progress_bars(progress) as bar:
        if simulated:
            summary = build_from_simulation(train_regions, validation_regions, request, bar)
        else:
            summary = build_from_catalog(production, request, bar)
    typer.echo(json.dumps(summary))


def train(
    store: Annotated[Path, typer.Argument(help="A training store (tamrf build-dataset).")],
    out_dir: Annotated[Path, typer.Argument(help="Run folder: checkpoints, logs, model/.")],
    steps: Annotated[int, typer.Option(help="Optimiser steps.")] = 20_000,
    init_checkpoint: Annotated[
        Path | None, typer.Option(help="Fine-tune from these weights (ours or imported).")
    ] = None,
    features: Annotated[int, typer.Option(help="Architecture: features (s1t3: 64).")] = 64,
    rdb_growth: Annotated[int, typer.Option(help="Architecture: RDB growth (32).")] = 32,
    rdbs_per_rrdb: Annotated[int, typer.Option(help="Architecture: RDBs per RRDB (3).")] = 3,
    rrdb_blocks: Annotated[int, typer.Option(help="Architecture: RRDBs per encoder (1).")] = 1,
    transformer_layers: Annotated[int, typer.Option(help="Architecture: layers (3).")] = 3,
    ffn_dim: Annotated[int, typer.Option(help="Architecture: FFN width (256).")] = 256,
    lr: Annotated[float, typer.Option(help="Peak learning rate.")] = 1e-4,
    warmup_steps: Annotated[int | None, typer.Option(help="Default: one epoch.")] = None,
    restart_steps: Annotated[int | None, typer.Option(help="Default: one epoch.")] = None,
    max_dates: Annotated[int, typer.Option(help="Dates per sample.")] = 50,
    s2_crop_px: Annotated[int, typer.Option(help="S2 border out of the data term.")] = 27,
    landsat_crop_px: Annotated[int, typer.Option(help="Landsat border (30 m px).")] = 9,
    cloudy_inputs: Annotated[
        str, typer.Option(help="keep (the spec's; as inference feeds the model) or fill (0).")
    ] = "keep",
    checkpoint_every: Annotated[int, typer.Option(help="Steps between checkpoints.")] = 200,
    validate_every: Annotated[int, typer.Option(help="Steps between validations.")] = 200,
    workers: Annotated[int, typer.Option(help="DataLoader worker processes.")] = 2,
    seed: Annotated[int, typer.Option(help="Seed of every draw.")] = 42,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    lpips_weights: Annotated[
        Path | None, typer.Option(help="Folder with vgg16.pth and lpips_vgg.pth.")
    ] = None,
    processes: Annotated[
        int, typer.Option(help="Processes (torchrun; one per GPU, or gloo on CPU).")
    ] = 1,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Train TAMRF with the spec's objective (or fine-tune), resuming the run in OUT_DIR from
    its last checkpoint; progress is also in OUT_DIR/train.log."""
    from flows.training_flow import training_request
    from tamrf_xr.training.store import TrainingStore

    try:
        TrainingStore(store)
        if init_checkpoint is not None and not init_checkpoint.exists():
            raise FileNotFoundError(f"--init-checkpoint {init_checkpoint} does not exist")
        request = training_request(
            store, out_dir, steps, init_checkpoint, features, rdb_growth, rdbs_per_rrdb,
            rrdb_blocks, transformer_layers, ffn_dim, lr, warmup_steps, restart_steps,
            max_dates, s2_crop_px, landsat_crop_px, cloudy_inputs, checkpoint_every,
            validate_every, workers, seed, device, lpips_weights,
        )  # fmt: skip
    except (ValueError, FileNotFoundError) as error:
        raise fail(error) from None
    summary = _run(request, processes, progress)
    if summary.get("resumed_from"):
        typer.echo(f"resumed from step {summary['resumed_from']}")
    typer.echo(f"model: {summary['model']}")
    typer.echo(f"log: {out_dir / 'train.log'}")


def _run(request, processes: int, progress: bool) -> dict:
    if processes > 1:
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
            json.dump(request.to_json(), handle)
        command = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node",
            str(processes),
            "-m",
            "pipelines.training.worker",
            handle.name,
        ]
        ran = subprocess.run(command, capture_output=True, text=True, env=dict(os.environ))
        os.unlink(handle.name)
        if ran.returncode != 0:
            typer.echo(ran.stderr[-4000:], err=True)
            raise typer.Exit(1)
        return json.loads(ran.stdout.strip().splitlines()[-1])
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    from pipelines.training.loop import train as run_training

    if not progress:
        return run_training(request)
    with Progress(
        TextColumn("train"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TextColumn("loss {task.fields[loss]:.4f}"),
        TimeRemainingColumn(),
    ) as bar:
        task = bar.add_task("train", total=request.steps, loss=float("nan"))

        def update(done: int, total: int, values: dict) -> None:
            bar.update(task, completed=done, total=total, loss=values["total"])

        return run_training(request, update)
