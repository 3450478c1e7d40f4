"""The evaluation as a library call: dataset, model, protocols, report.

``run_evaluation(EvaluationRequest(...))`` is what ``tamrf evaluate`` and the Prefect flow
``tamrf-evaluate`` call. Everything that can be wrong with a request is checked before any
simulation or model load (:func:`check_evaluation_request`).
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipelines.evaluation.data import cube_pair_dataset, openeo_s2_dataset
from pipelines.evaluation.report import write_report
from tamrf_xr.evaluation.dataset import EvaluationDataset
from tamrf_xr.evaluation.evaluate import EvaluationResult, evaluate
from tamrf_xr.evaluation.predictors import tamrf_predictor
from tamrf_xr.evaluation.protocols import HOLDOUTS, TASKS, ProtocolConfig
from tamrf_xr.evaluation.simulated import simulated_dataset
from tamrf_xr.inference.model_cache import ModelSource, untrained_checkpoint
from tamrf_xr.inference.predict import checkpoint_identity
from tamrf_xr.models import UNTRAINED, bundled_checkpoint
from tamrf_xr.precision import check_precision
from tamrf_xr.simulate import SimulationConfig

__all__ = [
    "DEFAULT_EVALUATION_SCENE",
    "EvaluationRequest",
    "check_evaluation_request",
    "run_evaluation",
]

DEFAULT_EVALUATION_SCENE = SimulationConfig(
    seed=101,
    start=dt.date(2022, 3, 1),
    end=dt.date(2022, 8, 31),
    landsat_l2sr_fraction=0.0,
)
"""The default dataset: a 2.4 km simulated region over six months of spring and summer (three
GAPS windows), seed 101 (training scenes use other seeds), every Landsat date with its LST.
About 50 S2 and 36 Landsat dates: minutes on 2 cores."""
MIN_INNER_PX = 20
"""The automatic border leaves at least this many reference-grid pixels across."""
UNTRAINED_MODEL_DIR = "models/untrained-s1t3"


@dataclass(frozen=True)
class EvaluationRequest:
    """One evaluation: which model, on which dataset, which tasks, where the report goes."""

    out_dir: Path
    """Folder of the report (created; an existing report in it is replaced)."""
    checkpoint: Path | None = None
    """Model weights (ours or the authors' ``.ckpt``); None: the bundled model; ``untrained``:
    the untrained stand-in, flagged in the report."""
    tasks: tuple[str, ...] = TASKS
    simulation: SimulationConfig = DEFAULT_EVALUATION_SCENE
    """The simulated region (used unless a cube pair or an S2 series is given)."""
    s2_cube: Path | None = None
    landsat_cube: Path | None = None
    """A cube pair in predict's conventions (Zarr or NetCDF), both or neither."""
    s2_series: Path | None = None
    """A real S2 L2A series as openEO NetCDF (the real samples' format)."""
    border_px: int | None = None
    """Reference-grid pixels ignored on every side; None: the spec's 30, or less where 30
    would leave fewer than :data:`MIN_INNER_PX` pixels (noted in the report)."""
    holdout: str | None = None
    """Gap-filling hold-out; None: ``gaps``, or ``clear-dates`` for an S2 series."""
    brisque: bool = True
    precision: str = "auto"
    device: str = "cpu"
    extra_metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def dataset_kind(self) -> str:
        if self.s2_series is not None:
            return "s2-series"
        if self.s2_cube is not None or self.landsat_cube is not None:
            return "cubes"
        return "simulated"


def check_evaluation_request(request: EvaluationRequest) -> None:
    """Every error a request can hold, before any work.

    Raises:
        ValueError: unknown tasks or hold-out, a half cube pair, both a cube pair and a
            series, a negative border, an unknown precision.
        FileNotFoundError: a checkpoint or dataset file that does not exist.
        NotADirectoryError: an output path that is a file.
    """
    unknown = [t for t in request.tasks if t not in TASKS]
    if unknown or not request.tasks:
        raise ValueError(f"tasks {list(request.tasks)}: choose among {', '.join(TASKS)}")
    if request.holdout is not None and request.holdout not in HOLDOUTS:
        raise ValueError(f"holdout {request.holdout!r}: use one of {', '.join(HOLDOUTS)}")
    if (request.s2_cube is None) != (request.landsat_cube is None):
        raise ValueError("give both --s2-cube and --landsat-cube (a cube pair), or neither")
    if request.s2_series is not None and request.s2_cube is not None:
        raise ValueError("give a cube pair or an S2 series, not both")
    if request.border_px is not None and request.border_px < 0:
        raise ValueError(f"border {request.border_px} px must be >= 0")
    check_precision(request.precision)
    for name in ("checkpoint", "s2_cube", "landsat_cube", "s2_series"):
        path = getattr(request, name)
        if path is not None and str(path) != UNTRAINED and not Path(path).exists():
            raise FileNotFoundError(f"--{name.replace('_', '-')} {path} does not exist")
    if request.out_dir.exists() and not request.out_dir.is_dir():
        raise NotADirectoryError(f"the output {request.out_dir} is a file: give a folder")


def _dataset(request: EvaluationRequest, progress) -> EvaluationDataset:
    if request.dataset_kind == "s2-series":
        return openeo_s2_dataset(request.s2_series)
    if request.dataset_kind == "cubes":
        return cube_pair_dataset(request.s2_cube, request.landsat_cube)
    return simulated_dataset(
        request.simulation, progress=lambda done, total: progress("simulate", done, total)
    )


def automatic_border(dataset: EvaluationDataset, requested: int | None) -> tuple[int, str | None]:
    """(border, note): the requested border, or the spec's 30 px where it leaves
    :data:`MIN_INNER_PX` reference pixels across every non-empty reference grid, else the
    largest border that does (with a note saying so)."""
    if requested is not None:
        return requested, None
    sides = [
        min(c.sizes["y"], c.sizes["x"]) for c in (dataset.s2, dataset.landsat) if c.sizes["time"]
    ]
    largest = max(0, (min(sides) - MIN_INNER_PX) // 2) if sides else 30
    if largest >= 30:
        return 30, None
    return largest, (
        f"border reduced from the spec's 30 px to {largest} px: the images are too "
        f"small ({min(sides)} px on their smallest reference grid)"
    )


def _quality(enabled: bool) -> tuple[Callable | None, str]:
    if not enabled:
        return None, "not computed (--no-brisque)"
    from tamrf_xr.evaluation.brisque import BRISQUE_DESCRIPTION, brisque_score

    return brisque_score, BRISQUE_DESCRIPTION


def run_evaluation(
    request: EvaluationRequest,
    progress: Callable[[str, int, int], None] | None = None,
) -> tuple[Path, EvaluationResult]:
    """Build the dataset, run the tasks, write the report.

    Returns:
        (path of ``report.md``, the result).
    """
    check_evaluation_request(request)
    progress = progress or (lambda *_: None)
    started = time.perf_counter()
    out_dir = request.out_dir.absolute()
    out_dir.mkdir(parents=True, exist_ok=True)
    if request.checkpoint is None:
        checkpoint, untrained = str(bundled_checkpoint()), False
    elif str(request.checkpoint) == UNTRAINED:
        checkpoint, untrained = str(untrained_checkpoint(out_dir / UNTRAINED_MODEL_DIR)), True
    else:
        checkpoint, untrained = str(Path(request.checkpoint).absolute()), False
    dataset = _dataset(request, progress)
    border, border_note = automatic_border(dataset, request.border_px)
    holdout = request.holdout or ("clear-dates" if request.dataset_kind == "s2-series" else "gaps")
    config = ProtocolConfig(border_px=border, holdout=holdout)
    quality, quality_note = _quality(request.brisque)
    source = ModelSource(checkpoint, device=request.device, precision=request.precision)
    result = evaluate(dataset, tamrf_predictor(source), request.tasks, config, quality, progress)
    if border_note:
        result.notes.insert(0, border_note)
    identity = checkpoint_identity(checkpoint)
    identity.pop("path")
    from tamrf_xr import __version__

    metadata = {
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "software": __version__,
        "model": identity,
        "untrained_model": untrained,
        "precision": request.precision,
        "tasks": list(request.tasks),
        "dataset_kind": request.dataset_kind,
        "simulation": (
            request.simulation.to_json() if request.dataset_kind == "simulated" else None
        ),
        "brisque": quality_note,
        "wall_time_s": round(time.perf_counter() - started, 1),
        **request.extra_metadata,
    }
    return write_report(result, out_dir, metadata), result
