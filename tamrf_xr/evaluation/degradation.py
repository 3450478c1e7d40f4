"""The spec's degradation operator: a 10 m prediction -> what each sensor would observe.

Per band, a Gaussian PSF whose transfer function equals the band's MTF at the Nyquist
frequency of its native resolution (:func:`tamrf_xr.degrade.gaussian_psf_kernel`), with one
kernel half-width SHARED by all bands of a sensor: ``ceil(max native resolution / 10)`` px,
i.e. 5 x 5 for Sentinel-2 (which truncates the 20 m bands' kernels) and 19 x 19 for Landsat
(LST taken as 90 m). A band with MTF 1 gets an exact identity kernel. The image is
reflect-padded by the half-width (the edge pixel is not repeated), convolved band by band, and
Landsat is then taken to 30 m by keeping the centre pixel of every 3 x 3 block (what bicubic
x1/3 with ``align_corners=False`` does on a 3x grid). Sentinel-2 stays at 10 m.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812 - the PyTorch convention

from tamrf_xr.bands import LANDSAT_BANDS, S2_BANDS, Band
from tamrf_xr.degrade import gaussian_psf_kernel

__all__ = ["LST_RESOLUTION_M", "degradation_kernels", "degrade", "degrade_tensor"]

Sensor = Literal["sentinel-2", "landsat"]
LST_RESOLUTION_M = 90.0
"""The resolution the operator gives LST (the spec's value; the instrument samples at 100 m)."""


def _resolution(band: Band) -> float:
    return LST_RESOLUTION_M if band.quantity == "temperature" else band.native_resolution


def _bands(sensor: Sensor) -> tuple[Band, ...]:
    if sensor not in ("sentinel-2", "landsat"):
        raise ValueError(f"unknown sensor {sensor!r}: use 'sentinel-2' or 'landsat'")
    return S2_BANDS if sensor == "sentinel-2" else LANDSAT_BANDS


def degradation_kernels(sensor: Sensor) -> np.ndarray:
    """(bands, 2h + 1, 2h + 1) float32 kernels of ``sensor`` in model band order, each summing
    to 1; ``h`` = ceil(max native resolution / 10) shared by the sensor's bands."""
    bands = _bands(sensor)
    half = math.ceil(max(_resolution(b) for b in bands) / 10.0)
    kernels = []
    for band in bands:
        if band.mtf >= 1.0:
            identity = np.zeros((2 * half + 1,) * 2, np.float32)
            identity[half, half] = 1.0
            kernels.append(identity)
        else:
            kernel = gaussian_psf_kernel(band.mtf, _resolution(band), half)
            kernels.append(np.asarray(kernel, np.float32))
    return np.stack(kernels)


def degrade_tensor(values: torch.Tensor, sensor: Sensor) -> torch.Tensor:
    """:func:`degrade` on a tensor, differentiable (the training losses degrade predictions).

    Args:
        values: (..., bands, H, W) at 10 m (any float dtype and device).

    Returns:
        S2 (..., 10, H, W); Landsat (..., 8, H/3, W/3); same dtype and device.
    """
    kernels = degradation_kernels(sensor)
    if values.ndim < 3 or values.shape[-3] != len(kernels):
        raise ValueError(
            f"{sensor} values must be (..., {len(kernels)}, H, W) in model band order; got "
            f"{tuple(values.shape)}"
        )
    half = kernels.shape[-1] // 2
    H, W = values.shape[-2:]
    if min(H, W) <= half:
        raise ValueError(f"images of {H} x {W} px are too small for the {2 * half + 1} px PSF")
    if sensor == "landsat" and (H % 3 or W % 3):
        raise ValueError(f"Landsat images must be multiples of 3 px at 10 m, got {H} x {W}")
    lead = values.shape[:-3]
    flat = values.reshape(-1, len(kernels), H, W)
    weight = torch.from_numpy(kernels)[:, None].to(dtype=values.dtype, device=values.device)
    # Reflect padding by the half-width (the edge pixel is not repeated), then one depthwise
    # convolution (PyTorch's conv2d is a correlation; the kernels are symmetric).
    out = F.conv2d(F.pad(flat, (half,) * 4, mode="reflect"), weight, groups=len(kernels))
    if sensor == "landsat":
        out = out[..., 1::3, 1::3]
    return out.reshape(*lead, *out.shape[-3:])


def degrade(values: np.ndarray, sensor: Sensor) -> np.ndarray:
    """Degrade 10 m values of one sensor's bands to that sensor's grid.

    Args:
        values: (..., bands, H, W) at 10 m, the sensor's bands in model order (10 for S2,
            8 for Landsat; reflectance, LST in Kelvin); H and W multiples of 3 for Landsat.

    Returns:
        float32: S2 (..., 10, H, W); Landsat (..., 8, H/3, W/3).

    Raises:
        ValueError: a band count or a size that does not fit the sensor.
    """
    tensor = torch.from_numpy(np.ascontiguousarray(values, np.float32))
    with torch.no_grad():
        return degrade_tensor(tensor, sensor).numpy()
