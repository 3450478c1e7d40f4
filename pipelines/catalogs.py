"""Catalog profiles: how each STAC catalog publishes Sentinel-2 L2A and Landsat C2 L2.

A profile knows a catalog's collection ids, the asset key of every model band and mask, and
the rule that turns an item's DNs into reflectance / Kelvin. The rule is decided per item
(processing baseline, Earth Search's ``earthsearch:boa_offset_applied`` flag, L2SP vs L2SR)
and returned as a :class:`ScalingRule` that names itself, so every output can record which
rule was applied to which input. Adding a catalog is one new :class:`CatalogProfile`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from tamrf_xr.bands import (
    LANDSAT_BANDS,
    LANDSAT_NODATA_DN,
    LANDSAT_SR_OFFSET,
    LANDSAT_SR_SCALE,
    LANDSAT_ST_OFFSET,
    LANDSAT_ST_SCALE,
    S2_BANDS,
    S2_BOA_ADD_OFFSET_DN,
    S2_NODATA_DN,
    S2_SCALE,
)

__all__ = [
    "EARTH_SEARCH_V1",
    "LOCAL",
    "PLANETARY_COMPUTER",
    "PROFILES",
    "BoaOffsetPolicy",
    "CatalogProfile",
    "ScalingRule",
    "item_epsg",
    "profile",
]

BoaOffsetPolicy = Literal["trust-flag", "from-baseline"]
"""How to decide whether an Earth Search S2 item's DNs still carry the +1000 offset:
``trust-flag`` follows ``earthsearch:boa_offset_applied`` (known to be wrong for some 2022-2023
scenes), ``from-baseline`` assumes every baseline >= 04.00 item still carries it."""

_BASELINE_WITH_OFFSET = (4, 0)
LANDSAT_SR = (LANDSAT_SR_SCALE, LANDSAT_SR_OFFSET)
LANDSAT_ST = (LANDSAT_ST_SCALE, LANDSAT_ST_OFFSET)


@dataclass(frozen=True)
class ScalingRule:
    """``value = DN * scale + offset`` for the valid DNs (``DN != nodata``) of one item's band."""

    scale: float
    offset: float
    nodata: int | None
    name: str
    """Which rule was applied, for provenance (e.g. ``s2-baseline>=04.00-offset-in-dn``)."""

    def apply(self, dn: Any) -> Any:
        """float32 values of a NumPy or dask DN array; NaN where ``DN == nodata`` (and where
        the DN is already NaN, as the readers deliver pixels without data)."""
        values = dn.astype(np.float32) * np.float32(self.scale) + np.float32(self.offset)
        if self.nodata is None:
            return values
        return np.where(dn != self.nodata, values, np.float32(np.nan))

    def to_dict(self) -> dict[str, Any]:
        return {
            "scale": self.scale,
            "offset": self.offset,
            "nodata": self.nodata,
            "rule": self.name,
        }


def _baseline(item: Mapping[str, Any]) -> tuple[int, int] | None:
    raw = item.get("properties", {}).get("s2:processing_baseline")
    if raw is None:
        return None
    try:
        major, minor = str(raw).split(".")[:2]
        return int(major), int(minor)
    except ValueError:
        raise ValueError(
            f"item {item.get('id')!r}: unreadable s2:processing_baseline {raw!r} (expected NN.NN)"
        ) from None


def item_epsg(item: Mapping[str, Any]) -> int:
    """The item's EPSG code from ``proj:epsg`` (STAC 1.0 catalogs) or ``proj:code`` (1.1)."""
    properties = item.get("properties", {})
    if properties.get("proj:epsg") is not None:
        return int(properties["proj:epsg"])
    code = properties.get("proj:code")
    if isinstance(code, str) and code.upper().startswith("EPSG:"):
        return int(code.split(":", 1)[1])
    raise ValueError(
        f"item {item.get('id')!r} has neither proj:epsg nor an EPSG proj:code: its CRS is "
        "unknown; pass the output grid's CRS explicitly"
    )


@dataclass(frozen=True)
class CatalogProfile:
    """One catalog's conventions (see the module docstring)."""

    name: str
    url: str | None
    s2_collections: tuple[str, ...]
    landsat_collection: str | None
    s2_assets: Mapping[str, str]
    """Band name (``S2_B8A``) -> asset key."""
    s2_scl_asset: str
    landsat_assets: Mapping[str, str]
    landsat_qa_pixel_asset: str = "qa_pixel"
    landsat_qa_radsat_asset: str = "qa_radsat"
    landsat_qa_aerosol_asset: str | None = "qa_aerosol"
    """SR_QA_AEROSOL (high aerosol is masked); None where a catalog does not publish it."""
    s2_offset_source: Literal["earthsearch-flag", "raster-bands", "baseline"] = "baseline"
    """Where the S2 DN offset comes from: Earth Search's flag (``sentinel-2-l2a``), the
    assets' ``raster:bands`` (trusted, e.g. ``sentinel-2-c1-l2a``), or the baseline alone."""
    boa_offset_policy: BoaOffsetPolicy = "trust-flag"
    requester_pays: bool = False
    """Assets on s3:// need ``AWS_REQUEST_PAYER=requester`` (and credentials)."""
    signer: str | None = None
    """Dotted path of a pystac-client ``modifier`` that signs asset URLs, imported on use."""
    per_collection_s2_offset_source: Mapping[str, str] = field(default_factory=dict)

    # -- assets ------------------------------------------------------------------------------

    def s2_asset_keys(self) -> dict[str, str]:
        """Every S2 asset the pipeline reads: the 10 bands then the SCL."""
        return {**self.s2_assets, "SCL": self.s2_scl_asset}

    def landsat_asset_keys(self, item: Mapping[str, Any] | None = None) -> dict[str, str]:
        """Every Landsat asset to read; without ``lwir11`` for an L2SR item (no thermal)."""
        keys = dict(self.landsat_assets)
        if item is not None and not self.has_thermal(item):
            keys.pop("LS_B10", None)
        keys |= {"QA_PIXEL": self.landsat_qa_pixel_asset, "QA_RADSAT": self.landsat_qa_radsat_asset}
        if self.landsat_qa_aerosol_asset is not None:
            keys["QA_AEROSOL"] = self.landsat_qa_aerosol_asset
        return keys

    def has_thermal(self, item: Mapping[str, Any]) -> bool:
        correction = item.get("properties", {}).get("landsat:correction")
        if correction is not None:
            return correction == "L2SP"
        return self.landsat_assets["LS_B10"] in item.get("assets", {})

    # -- scaling -----------------------------------------------------------------------------

    def s2_scaling(self, item: Mapping[str, Any], band_name: str = "S2_B4") -> ScalingRule:
        """DN -> reflectance rule of one S2 item (the same for its 10 bands)."""
        baseline = _baseline(item)
        source = self.per_collection_s2_offset_source.get(
            item.get("collection", ""), self.s2_offset_source
        )
        if source == "raster-bands":
            asset = item.get("assets", {}).get(self.s2_assets[band_name], {})
            bands = asset.get("raster:bands") or [{}]
            scale, offset = bands[0].get("scale"), bands[0].get("offset")
            if scale is not None:
                return ScalingRule(
                    float(scale), float(offset or 0.0), S2_NODATA_DN, "s2-raster-bands"
                )
            source = "baseline"  # no declaration: fall back on the baseline rule
        in_dn = baseline is not None and baseline >= _BASELINE_WITH_OFFSET
        if source == "earthsearch-flag" and in_dn and self.boa_offset_policy == "trust-flag":
            flag = item.get("properties", {}).get("earthsearch:boa_offset_applied")
            if flag is True:
                return ScalingRule(S2_SCALE, 0.0, S2_NODATA_DN, "s2-earthsearch-boa-offset-applied")
            if flag is False:
                return ScalingRule(
                    S2_SCALE,
                    -S2_BOA_ADD_OFFSET_DN * S2_SCALE,
                    S2_NODATA_DN,
                    "s2-earthsearch-boa-offset-in-dn",
                )
        if in_dn:
            return ScalingRule(
                S2_SCALE,
                -S2_BOA_ADD_OFFSET_DN * S2_SCALE,
                S2_NODATA_DN,
                "s2-baseline>=04.00-offset-in-dn",
            )
        return ScalingRule(S2_SCALE, 0.0, S2_NODATA_DN, "s2-baseline<04.00-no-offset")

    def landsat_scaling(self, band_name: str) -> ScalingRule:
        """DN -> reflectance (SR) or Kelvin (ST) rule of a Landsat band."""
        if band_name == "LS_B10":
            return ScalingRule(*LANDSAT_ST, LANDSAT_NODATA_DN, "landsat-c2-l2-st")
        if band_name in self.landsat_assets:
            return ScalingRule(*LANDSAT_SR, LANDSAT_NODATA_DN, "landsat-c2-l2-sr")
        raise ValueError(f"unknown Landsat band {band_name!r}; known: {list(self.landsat_assets)}")

    # -- access ------------------------------------------------------------------------------

    def gdal_env(self, hrefs: list[str] | tuple[str, ...] = ()) -> dict[str, str]:
        """GDAL configuration to read this catalog's assets."""
        env = {"GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR", "GDAL_HTTP_MAX_RETRY": "3",
               "GDAL_HTTP_RETRY_DELAY": "1"}  # fmt: skip
        if self.requester_pays or any(h.startswith("s3://") for h in hrefs):
            env["AWS_REQUEST_PAYER"] = "requester"
        return env

    def modifier(self) -> Callable[[Any], Any] | None:
        """The pystac-client ``modifier`` that signs URLs (None when not needed)."""
        if self.signer is None:
            return None
        module_name, _, attribute = self.signer.rpartition(".")
        try:
            module = __import__(module_name, fromlist=[attribute])
        except ImportError:
            raise ImportError(
                f"catalog {self.name!r} needs {module_name!r} to sign asset URLs: "
                "pip install 'tamrf-xr[planetary-computer]'"
            ) from None
        return getattr(module, attribute)


_ES_S2 = {b.name: b.asset_key for b in S2_BANDS}


_LANDSAT = {b.name: b.asset_key for b in LANDSAT_BANDS}

EARTH_SEARCH_V1 = CatalogProfile(
    name="earth-search-v1",
    url="https://earth-search.aws.element84.com/v1",
    s2_collections=("sentinel-2-l2a", "sentinel-2-c1-l2a"),
    landsat_collection="landsat-c2-l2",
    s2_assets=_ES_S2,
    s2_scl_asset="scl",
    landsat_assets=_LANDSAT,
    s2_offset_source="earthsearch-flag",
    per_collection_s2_offset_source={"sentinel-2-c1-l2a": "raster-bands"},
    requester_pays=True,
)
PLANETARY_COMPUTER = CatalogProfile(
    name="planetary-computer",
    url="https://planetarycomputer.microsoft.com/api/stac/v1",
    s2_collections=("sentinel-2-l2a",),
    landsat_collection="landsat-c2-l2",
    # Planetary Computer keys by band id; its B8A says "rededge": map by key, not common name.
    s2_assets={b.name: b.file_band_id for b in S2_BANDS},
    s2_scl_asset="SCL",
    landsat_assets=_LANDSAT,
    s2_offset_source="baseline",
    signer="planetary_computer.sign_inplace",
)
LOCAL = CatalogProfile(
    name="local",
    url=None,
    s2_collections=("sentinel-2-l2a",),
    landsat_collection="landsat-c2-l2",
    s2_assets=_ES_S2,
    s2_scl_asset="scl",
    landsat_assets=_LANDSAT,
    s2_offset_source="earthsearch-flag",
)
"""The project's simulated catalogs (Earth Search v1 form) served on 127.0.0.1."""

PROFILES: dict[str, CatalogProfile] = {
    p.name: p for p in (EARTH_SEARCH_V1, PLANETARY_COMPUTER, LOCAL)
}


def profile(name: str) -> CatalogProfile:
    """Look a profile up by name."""
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(f"unknown catalog profile {name!r}; known: {sorted(PROFILES)}") from None
