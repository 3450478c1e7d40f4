"""The evaluation as a Prefect flow, with the parameters of ``tamrf evaluate``.

Wiring only: one coarse task runs :func:`pipelines.evaluation.run_evaluation`; a keyed
progress artifact follows the tasks, and the report's overview (where TAMRF wins and loses)
and its Markdown are published as artifacts at the end.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    update_progress_artifact,
)
from prefect.cache_policies import NO_CACHE

from flows.terminal import progress_bars
from pipelines.evaluation.run import DEFAULT_EVALUATION_SCENE, EvaluationRequest, run_evaluation
from tamrf_xr.evaluation.protocols import TASKS

__all__ = ["EVALUATION_PROGRESS_KEY", "evaluation_flow", "evaluation_request"]

EVALUATION_PROGRESS_KEY = "tamrf-evaluation-progress"
EVALUATION_REPORT_KEY = "tamrf-evaluation-report"
SCENE = DEFAULT_EVALUATION_SCENE


def evaluation_request(
    out_dir: str | Path,
    checkpoint: str | Path | None = None,
    tasks: list[str] | tuple[str, ...] = TASKS,
    seed: int = SCENE.seed,
    size_px: int = SCENE.width_px,
    start: dt.date = SCENE.start,
    end: dt.date = SCENE.end,
    cloud_cover: float = SCENE.cloud_cover_mean,
    s2_cube: str | Path | None = None,
    landsat_cube: str | Path | None = None,
    s2_series: str | Path | None = None,
    border_px: int | None = None,
    holdout: str | None = None,
    brisque: bool = True,
    precision: str = "auto",
) -> EvaluationRequest:
    """A request from the flow's (or the command line's) parameters.

    Raises:
        ValueError: a simulated region the simulator refuses (its message says why).
    """

    def path(value: str | Path | None) -> Path | None:
        return None if value is None else Path(value)

    simulation = dataclasses.replace(
        SCENE, seed=seed, width_px=size_px, height_px=size_px, start=start, end=end,
        cloud_cover_mean=cloud_cover,
    )  # fmt: skip
    return EvaluationRequest(
        out_dir=Path(out_dir),
        checkpoint=path(checkpoint),
        tasks=tuple(tasks),
        simulation=simulation,
        s2_cube=path(s2_cube),
        landsat_cube=path(landsat_cube),
        s2_series=path(s2_series),
        border_px=border_px,
        holdout=holdout,
        brisque=brisque,
        precision=precision,
    )


@task(name="evaluate-model", cache_policy=NO_CACHE)
def evaluate_task(request: EvaluationRequest, show_progress: bool) -> dict[str, Any]:
    """The whole evaluation; returns the paths of the report and its overview rows."""
    logger = get_run_logger()
    artifact = create_progress_artifact(
        0.0, key=EVALUATION_PROGRESS_KEY, description="Evaluation: tasks done"
    )
    with progress_bars(show_progress) as bar:

        def progress(stage: str, done: int, total: int) -> None:
            bar(stage, done, total)
            if stage == "tasks":
                update_progress_artifact(artifact, 100.0 * done / total)
                logger.info("evaluation: %d of %d tasks done", done, total)

        report, result = run_evaluation(request, progress)
    return {
        "report": str(report),
        "json": str(report.with_suffix(".json")),
        "notes": result.notes,
        "dataset": result.dataset,
    }


@flow(name="tamrf-evaluate", log_prints=True)
def evaluation_flow(
    out_dir: str,
    checkpoint: str | None = None,
    tasks: list[str] = list(TASKS),  # noqa: B006 - Prefect shows a list default in its form
    seed: int = SCENE.seed,
    size_px: int = SCENE.width_px,
    start: dt.date = SCENE.start,
    end: dt.date = SCENE.end,
    cloud_cover: float = SCENE.cloud_cover_mean,
    s2_cube: str | None = None,
    landsat_cube: str | None = None,
    s2_series: str | None = None,
    border_px: int | None = None,
    holdout: str | None = None,
    brisque: bool = True,
    precision: str = "auto",
    show_progress: bool = False,
) -> dict[str, Any]:
    """TAMRF and the baselines on the paper's tasks; a report in ``out_dir``.

    Args:
        out_dir: folder of report.md, report.json and the plots.
        checkpoint: model weights; default the bundled model; ``untrained``: the untrained
            stand-in (flagged in the report).
        tasks: among gap-filling, band-sharpening, fusion, thermal-sharpening.
        seed, size_px, start, end, cloud_cover: the simulated region (the default dataset).
        s2_cube, landsat_cube: a cube pair (Zarr or NetCDF) instead of the simulated region.
        s2_series: a real S2 L2A series (openEO NetCDF) instead.
        border_px: reference-grid pixels ignored on every side (default the spec's 30, less
            for small images).
        holdout: gap-filling hold-out, gaps or clear-dates (default per dataset).
        brisque: compute BRISQUE (the slowest metric).
        precision: model arithmetic (auto, fp32, bf16, fp16).

    Returns:
        Paths of the report and its JSON, the dataset name and the notes.
    """
    request = evaluation_request(
        out_dir, checkpoint, tasks, seed, size_px, start, end, cloud_cover, s2_cube,
        landsat_cube, s2_series, border_px, holdout, brisque, precision,
    )  # fmt: skip
    outcome = evaluate_task(request, show_progress)
    report = Path(outcome["report"])
    create_markdown_artifact(
        report.read_text(),
        key=EVALUATION_REPORT_KEY,
        description=f"Evaluation report ({outcome['dataset']}); plots in {report.parent}",
    )
    return outcome
