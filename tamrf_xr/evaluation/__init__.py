"""The paper's evaluation operators: degradation to the sensors' grids, metrics, masking.

Pure NumPy: no model, no I/O. See README "Evaluation" for names, shapes and units.
"""

from tamrf_xr.evaluation.baselines import (
    bicubic_upsampling,
    linear_temporal_interpolation,
    starfm_fusion,
)
from tamrf_xr.evaluation.degradation import degradation_kernels, degrade
from tamrf_xr.evaluation.masking_strategies import STRATEGIES, masked_dates
from tamrf_xr.evaluation.metrics import (
    frequency_restoration,
    nrmse,
    radial_profile_db,
    rmse_per_date_band,
    spectral_angle_deg,
)
from tamrf_xr.evaluation.thermal_sharpening import dms_thermal_sharpening

__all__ = [
    "STRATEGIES",
    "bicubic_upsampling",
    "degradation_kernels",
    "degrade",
    "dms_thermal_sharpening",
    "frequency_restoration",
    "linear_temporal_interpolation",
    "masked_dates",
    "nrmse",
    "radial_profile_db",
    "rmse_per_date_band",
    "spectral_angle_deg",
    "starfm_fusion",
]
