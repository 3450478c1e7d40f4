"""Physical values to the DN encodings that the real catalogs publish.

- Sentinel-2 L2A: uint16, reflectance = (DN + offset) / 10000, nodata 0. From processing
  baseline 04.00 (2022-01-25) the product stores DN + 1000 (BOA_ADD_OFFSET = -1000); Earth
  Search removed that offset from part of its archive when converting to COG and says so in
  ``earthsearch:boa_offset_applied``.
- Landsat Collection 2 Level 2: SR reflectance = DN * 2.75e-5 - 0.2; ST Kelvin =
  DN * 0.00341802 + 149.0; uint16, nodata 0.

The published constants live in :mod:`tamrf_xr.bands`; the decoding rules live with the
catalog profiles (pipelines). This module is their exact inverse for the simulator.
"""

from __future__ import annotations

import numpy as np

from tamrf_xr.bands import (
    LANDSAT_SR_OFFSET,
    LANDSAT_SR_SCALE,
    LANDSAT_ST_OFFSET,
    LANDSAT_ST_SCALE,
    S2_BOA_ADD_OFFSET_DN,
    S2_SCALE,
)

__all__ = [
    "encode_landsat_sr",
    "encode_landsat_st",
    "encode_s2",
]

_UINT16_MAX = np.iinfo(np.uint16).max


def _to_uint16(dn: np.ndarray, valid: np.ndarray) -> np.ndarray:
    # DN 0 is reserved for nodata (S2_NODATA_DN = LANDSAT_NODATA_DN = 0 in tamrf_xr.bands):
    # valid pixels are clipped to 1 (as the real products do).
    out = np.clip(np.rint(dn), 1, _UINT16_MAX).astype(np.uint16)
    out[~valid] = 0
    return out


def encode_s2(reflectance: np.ndarray, valid: np.ndarray, add_offset: bool) -> np.ndarray:
    """Sentinel-2 reflectance to uint16 DN; ``add_offset``: store the +1000 baseline offset."""
    dn = reflectance.astype(np.float64) / S2_SCALE
    if add_offset:
        dn += S2_BOA_ADD_OFFSET_DN
    return _to_uint16(dn, valid)


def encode_landsat_sr(reflectance: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Landsat C2 L2 surface reflectance to uint16 DN."""
    return _to_uint16(
        (reflectance.astype(np.float64) - LANDSAT_SR_OFFSET) / LANDSAT_SR_SCALE, valid
    )


def encode_landsat_st(kelvin: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Landsat C2 L2 surface temperature (K) to uint16 DN."""
    return _to_uint16((kelvin.astype(np.float64) - LANDSAT_ST_OFFSET) / LANDSAT_ST_SCALE, valid)
