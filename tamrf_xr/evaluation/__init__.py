"""The paper's evaluation: operators, metrics, masking strategies, baselines, the four task
protocols and their scoring, BRISQUE, and :func:`evaluate` over an :class:`EvaluationDataset`.

Pure NumPy/SciPy (scikit-learn for the DMS baseline), no files; TAMRF enters as a
:data:`~tamrf_xr.evaluation.protocols.Predictor` (:func:`tamrf_predictor`). See README
"Evaluation" for names, shapes and units; ``pipelines.evaluation`` reads datasets from files
and writes the report.
"""

from tamrf_xr.evaluation.baselines import (
    bicubic_upsampling,
    linear_temporal_interpolation,
    starfm_fusion,
)
from tamrf_xr.evaluation.brisque import brisque_score
from tamrf_xr.evaluation.dataset import EvaluationDataset
from tamrf_xr.evaluation.degradation import degradation_kernels, degrade
from tamrf_xr.evaluation.evaluate import EvaluationResult, evaluate
from tamrf_xr.evaluation.masking_strategies import STRATEGIES, masked_dates
from tamrf_xr.evaluation.metrics import (
    error_sums,
    frequency_restoration,
    nrmse,
    radial_profile_db,
    rmse_per_date_band,
    spectral_angle_deg,
)
from tamrf_xr.evaluation.predictors import tamrf_predictor
from tamrf_xr.evaluation.protocols import (
    TASKS,
    ProtocolConfig,
    residual_compensation,
    run_task,
)
from tamrf_xr.evaluation.scoring import Scorer, summarise
from tamrf_xr.evaluation.simulated import simulated_dataset
from tamrf_xr.evaluation.thermal_sharpening import dms_thermal_sharpening

__all__ = [
    "STRATEGIES",
    "TASKS",
    "EvaluationDataset",
    "EvaluationResult",
    "ProtocolConfig",
    "Scorer",
    "bicubic_upsampling",
    "brisque_score",
    "degradation_kernels",
    "degrade",
    "dms_thermal_sharpening",
    "error_sums",
    "evaluate",
    "frequency_restoration",
    "linear_temporal_interpolation",
    "masked_dates",
    "nrmse",
    "radial_profile_db",
    "residual_compensation",
    "rmse_per_date_band",
    "run_task",
    "simulated_dataset",
    "spectral_angle_deg",
    "starfm_fusion",
    "summarise",
    "tamrf_predictor",
]
