"""The CF int16 packing of reflectance and temperature shared by the Level-3 store and the
truth store.

Every band is stored as int16 with CF ``scale_factor``/``add_offset`` and ``_FillValue``
:data:`INT16_FILL` (reflectance: 1e-4; temperature: 0.01 K around 300 K).
"""

from __future__ import annotations

import numpy as np

__all__ = ["INT16_FILL", "band_attrs", "int16_encoding"]

INT16_FILL = np.int16(-32768)


def int16_encoding(quantity: str) -> dict:
    if quantity == "temperature":
        scale, offset = 0.01, 300.0
    else:
        scale, offset = 1e-4, 0.0
    return {
        "dtype": "int16",
        "scale_factor": scale,
        "add_offset": offset,
        "_FillValue": INT16_FILL,
    }


def band_attrs(band) -> dict:
    return {
        "long_name": f"{band.sensor} {band.sensor_band} ({band.common_name})",
        "units": "K" if band.quantity == "temperature" else "1",
        "sensor": band.sensor,
        "sensor_band": band.sensor_band,
        "center_wavelength_um": band.center_wavelength_um,
        "native_resolution_m": band.native_resolution,
    }
