"""``tamrf evaluate``: the paper's tasks, the baselines and a report, in the terminal.

The same parameters run as the Prefect flow ``tamrf-evaluate``
(:func:`flows.evaluation_flow.evaluation_flow`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from flows.cli_production import CheckpointOption, date_option, fail

__all__ = ["evaluate"]

_SCENE_HELP = "Simulated region (the default dataset): "


def evaluate(
    out_dir: Annotated[Path, typer.Argument(help="Folder of the report (report.md, .json, PNGs).")],
    checkpoint: CheckpointOption = None,
    tasks: Annotated[
        str,
        typer.Option(
            help="Comma-separated: gap-filling, band-sharpening, fusion, thermal-sharpening."
        ),
    ] = "gap-filling,band-sharpening,fusion,thermal-sharpening",
    seed: Annotated[int, typer.Option(help=_SCENE_HELP + "seed.")] = 101,
    size_px: Annotated[int, typer.Option(help=_SCENE_HELP + "side in 10 m px (x6).")] = 240,
    start: Annotated[str, typer.Option(help=_SCENE_HELP + "first day.")] = "2022-03-01",
    end: Annotated[str, typer.Option(help=_SCENE_HELP + "last day.")] = "2022-08-31",
    cloud_cover: Annotated[float, typer.Option(help=_SCENE_HELP + "mean cloud cover.")] = 0.45,
    s2_cube: Annotated[
        Path | None, typer.Option(help="A Sentinel-2 input cube (Zarr/NetCDF) instead.")
    ] = None,
    landsat_cube: Annotated[
        Path | None, typer.Option(help="The Landsat input cube of the pair.")
    ] = None,
    s2_series: Annotated[
        Path | None, typer.Option(help="A real S2 L2A series (openEO NetCDF) instead.")
    ] = None,
    border_px: Annotated[
        int | None,
        typer.Option(help="Reference pixels ignored per side (default 30, less if too small)."),
    ] = None,
    holdout: Annotated[
        str | None,
        typer.Option(help="Gap-filling hold-out: gaps (g=30) or clear-dates (one at a time)."),
    ] = None,
    brisque: Annotated[bool, typer.Option(help="Compute BRISQUE.")] = True,
    precision: Annotated[
        str, typer.Option(help="Model arithmetic: auto, fp32, bf16 or fp16 (GPU).")
    ] = "auto",
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
) -> None:
    """Evaluate TAMRF against the baselines on the paper's four tasks and write a report.

    Default dataset: a simulated region (scored against the observations and its 10 m truth).
    Default model: the bundled one; `--checkpoint untrained` evaluates random weights (the
    report says so)."""
    from flows.evaluation_flow import evaluation_request
    from flows.terminal import progress_bars
    from pipelines.evaluation.run import check_evaluation_request, run_evaluation

    try:
        request = evaluation_request(
            out_dir, checkpoint, [t.strip() for t in tasks.split(",") if t.strip()], seed,
            size_px, date_option(start), date_option(end), cloud_cover, s2_cube, landsat_cube,
            s2_series, border_px, holdout, brisque, precision,
        )  # fmt: skip
        check_evaluation_request(request)
    except (ValueError, FileNotFoundError, NotADirectoryError) as error:
        raise fail(error) from None
    with progress_bars(progress) as bar:
        report, result = run_evaluation(request, bar)
    for note in result.notes:
        typer.echo(f"note: {note}")
    if result_untrained(report):
        typer.echo("warning: --checkpoint untrained: the model is the UNTRAINED stand-in (its "
                   "figures are not meaningful)")  # fmt: skip
    typer.echo(f"report: {report}")
    typer.echo(f"figures: {report.with_suffix('.json')}")


def result_untrained(report: Path) -> bool:
    """Whether the report's model is the untrained stand-in (from its JSON)."""
    import json

    return bool(json.loads(report.with_suffix(".json").read_text())["metadata"]["untrained_model"])
