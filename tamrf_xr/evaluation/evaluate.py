"""Run the protocols of several tasks on one dataset and pool their figures.

:func:`evaluate` is the whole evaluation without files: it returns every per-(date, band)
record, their pooled summary (:func:`~tamrf_xr.evaluation.scoring.summarise`), the image
strips and the notes of skipped tasks. ``pipelines.evaluation`` builds the datasets and
writes the report.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from tamrf_xr.evaluation.dataset import EvaluationDataset
from tamrf_xr.evaluation.protocols import (
    TASKS,
    Predictor,
    ProtocolConfig,
    Strip,
    run_task,
)
from tamrf_xr.evaluation.scoring import Quality, Scorer, summarise

__all__ = ["EvaluationResult", "evaluate"]


@dataclass
class EvaluationResult:
    """Everything a report shows."""

    dataset: str
    description: str
    has_truth: bool
    config: ProtocolConfig
    records: list[dict]
    """Per (task, method, sensor, date, band, reference): error sums, pixels, FR, BRISQUE."""
    summary: list[dict]
    """Pooled per (task, method, reference, split, sensor, band)."""
    strips: list[Strip] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def evaluate(
    dataset: EvaluationDataset,
    predictor: Predictor,
    tasks: Sequence[str] = TASKS,
    config: ProtocolConfig | None = None,
    quality: Quality | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> EvaluationResult:
    """TAMRF (``predictor``) and the baselines on ``tasks`` of ``dataset``.

    Args:
        quality: the no-reference score (BRISQUE) of an (H, W) image in [0, 1], or None.
        progress: ``(stage, done, total)`` as tasks advance.

    Raises:
        ValueError: an unknown task (before anything runs).
    """
    unknown = [t for t in tasks if t not in TASKS]
    if unknown:
        raise ValueError(f"unknown task(s) {unknown}: use {', '.join(TASKS)}")
    config = config or ProtocolConfig()
    scorer = Scorer(dataset, config.border_px, quality)
    records: list[dict] = []
    strips, notes = [], []
    for done, task in enumerate(tasks):
        result = run_task(task, dataset, predictor, scorer, config, progress)
        records += result.records
        if result.strip is not None:
            strips.append(result.strip)
        notes += [f"{task}: {note}" for note in result.notes]
        if progress:
            progress("tasks", done + 1, len(tasks))
    return EvaluationResult(
        dataset=dataset.name,
        description=dataset.description,
        has_truth=dataset.truth is not None,
        config=config,
        records=records,
        summary=summarise(records),
        strips=strips,
        notes=notes,
    )
