"""The 18 bands of the model: names, sensors, native resolutions, MTFs and spectral responses.

Model channel order (spec): 0-7 Landsat B1..B7, B10 (surface temperature); 8-17 Sentinel-2
B2 B3 B4 B5 B6 B7 B8 B8A B11 B12. Everything that needs a band list takes it from here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Sensor = Literal["landsat", "sentinel-2"]
Quantity = Literal["reflectance", "temperature"]

__all__ = [
    "BANDS",
    "LANDSAT_BANDS",
    "LANDSAT_NODATA_DN",
    "LANDSAT_SR_OFFSET",
    "LANDSAT_SR_SCALE",
    "LANDSAT_ST_OFFSET",
    "LANDSAT_ST_SCALE",
    "S2_BANDS",
    "S2_BOA_ADD_OFFSET_DN",
    "S2_NODATA_DN",
    "S2_SCALE",
    "Band",
    "band",
]

# Published DN encodings of the source products (uint16 DN -> physical value).
#
# Sentinel-2 L2A, ESA L2A product specification for processing baseline >= 04.00
# (2022-01-25 on): reflectance = (DN + BOA_ADD_OFFSET) / QUANTIFICATION_VALUE with
# QUANTIFICATION_VALUE = 10000 and BOA_ADD_OFFSET = -1000, i.e. the DN stores reflectance
# * 10000 + 1000; products of older baselines store no offset. Nodata DN 0.
S2_SCALE = 1e-4
S2_BOA_ADD_OFFSET_DN = 1000
S2_NODATA_DN = 0

# Landsat Collection 2 Level-2, USGS Collection 2 Level-2 Science Product Guide:
# surface reflectance = DN * 2.75e-05 - 0.2; surface temperature (K) = DN * 0.00341802
# + 149.0. Fill (nodata) DN 0.
LANDSAT_SR_SCALE = 2.75e-5
LANDSAT_SR_OFFSET = -0.2
LANDSAT_ST_SCALE = 0.00341802
LANDSAT_ST_OFFSET = 149.0
LANDSAT_NODATA_DN = 0


@dataclass(frozen=True)
class Band:
    """One spectral band of one sensor."""

    name: str
    """Project-wide identifier, e.g. ``"S2_B8A"`` or ``"LS_B10"``."""
    sensor: Sensor
    sensor_band: str
    """The band's name in the sensor's own nomenclature (``"B8A"``, ``"B10"``)."""
    asset_key: str
    """Earth Search v1 asset key (``"nir08"``); other catalogs map their keys to these."""
    common_name: str
    quantity: Quantity
    native_resolution: float
    """Ground sampling distance of the instrument in metres (LST: 100 m)."""
    delivered_resolution: float
    """Pixel size of the published product in metres (LST is delivered at 30 m)."""
    mtf: float
    """MTF at the Nyquist frequency of ``native_resolution`` (the spec's values)."""
    center_wavelength_um: float
    fwhm_um: float

    @property
    def file_band_id(self) -> str:
        """Zero-padded id used in S2 file names and Planetary Computer keys (``B02``, ``B8A``)."""
        if self.sensor_band[1:].isdigit():
            return f"B{self.sensor_band[1:]:0>2}"
        return self.sensor_band


def _s2(band_id: str, key: str, common: str, res: float, center: float, fwhm: float) -> Band:
    # The spec gives S2 10 m bands an MTF of 1 (identity kernel) and 20 m bands 0.3.
    return Band(
        f"S2_{band_id}", "sentinel-2", band_id, key, common, "reflectance",
        res, res, 1.0 if res == 10 else 0.3, center, fwhm,
    )  # fmt: skip


def _ls(band_id: str, key: str, common: str, center: float, fwhm: float) -> Band:
    return Band(
        f"LS_{band_id}", "landsat", band_id, key, common, "reflectance",
        30.0, 30.0, 0.3, center, fwhm,
    )  # fmt: skip


LANDSAT_BANDS: tuple[Band, ...] = (
    _ls("B1", "coastal", "coastal", 0.443, 0.016),
    _ls("B2", "blue", "blue", 0.482, 0.060),
    _ls("B3", "green", "green", 0.561, 0.057),
    _ls("B4", "red", "red", 0.655, 0.037),
    _ls("B5", "nir08", "nir08", 0.865, 0.028),
    _ls("B6", "swir16", "swir16", 1.609, 0.085),
    _ls("B7", "swir22", "swir22", 2.201, 0.187),
    # Surface temperature: TIRS samples at 100 m, USGS delivers it resampled to 30 m.
    Band(
        name="LS_B10",
        sensor="landsat",
        sensor_band="B10",
        asset_key="lwir11",
        common_name="lwir11",
        quantity="temperature",
        native_resolution=100.0,
        delivered_resolution=30.0,
        mtf=0.2,
        center_wavelength_um=10.895,
        fwhm_um=0.590,
    ),
)

S2_BANDS: tuple[Band, ...] = (
    _s2("B2", "blue", "blue", 10, 0.492, 0.066),
    _s2("B3", "green", "green", 10, 0.559, 0.036),
    _s2("B4", "red", "red", 10, 0.665, 0.031),
    _s2("B5", "rededge1", "rededge", 20, 0.704, 0.015),
    _s2("B6", "rededge2", "rededge", 20, 0.740, 0.015),
    _s2("B7", "rededge3", "rededge", 20, 0.783, 0.020),
    _s2("B8", "nir", "nir", 10, 0.833, 0.106),
    _s2("B8A", "nir08", "nir08", 20, 0.865, 0.021),
    _s2("B11", "swir16", "swir16", 20, 1.614, 0.091),
    _s2("B12", "swir22", "swir22", 20, 2.202, 0.175),
)

BANDS: tuple[Band, ...] = LANDSAT_BANDS + S2_BANDS
"""All 18 bands in model channel order."""

_BY_NAME = {b.name: b for b in BANDS}


def band(name: str) -> Band:
    """Look a band up by its project-wide name (``"S2_B4"``)."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise ValueError(f"unknown band {name!r}; known bands: {', '.join(_BY_NAME)}") from None
