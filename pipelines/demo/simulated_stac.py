"""STAC Items and Collections for simulated products, in Earth Search v1 form.

Asset keys, ``raster:bands`` scale/offset, ``proj:*``, ``eo:*``, ``view:*``, ``mgrs:*``,
``s2:*`` and ``landsat:*`` properties and item ids follow what Earth Search v1 publishes for
``sentinel-2-l2a`` and ``landsat-c2-l2``, so the search and datacube code runs unchanged on
simulated and real catalogs. Items carry ``tamrf:simulated: true`` so that nobody mistakes them
for real products.
"""

from __future__ import annotations

import datetime as dt

import pystac
import shapely
from shapely.geometry import mapping

from pipelines.georef import reproject_geometry
from tamrf_xr.bands import (
    LANDSAT_BANDS,
    LANDSAT_SR_OFFSET,
    LANDSAT_SR_SCALE,
    LANDSAT_ST_OFFSET,
    LANDSAT_ST_SCALE,
    S2_BANDS,
    S2_SCALE,
)
from tamrf_xr.simulate import SimulatedItem

__all__ = [
    "LANDSAT_ASSET_FILES",
    "S2_ASSET_FILES",
    "collection",
    "landsat_item",
    "s2_item",
]

_EXT = "https://stac-extensions.github.io"
S2_EXTENSIONS = [
    f"{_EXT}/projection/v1.1.0/schema.json",
    f"{_EXT}/sentinel-2/v1.0.0/schema.json",
    f"{_EXT}/view/v1.0.0/schema.json",
    f"{_EXT}/raster/v1.1.0/schema.json",
    f"{_EXT}/mgrs/v1.0.0/schema.json",
    f"{_EXT}/eo/v1.1.0/schema.json",
    f"{_EXT}/grid/v1.1.0/schema.json",
]
LANDSAT_EXTENSIONS = [
    f"{_EXT}/raster/v1.1.0/schema.json",
    f"{_EXT}/eo/v1.1.0/schema.json",
    f"{_EXT}/view/v1.0.0/schema.json",
    f"{_EXT}/projection/v1.1.0/schema.json",
    f"{_EXT}/landsat/v2.0.0/schema.json",
]
COG_MEDIA_TYPE = "image/tiff; application=geotiff; profile=cloud-optimized"

S2_ASSET_FILES = {b.asset_key: b.file_band_id for b in S2_BANDS} | {"scl": "SCL"}
"""Earth Search v1 file stem of each S2 asset."""
LANDSAT_ASSET_FILES = {
    "coastal": "SR_B1", "blue": "SR_B2", "green": "SR_B3", "red": "SR_B4", "nir08": "SR_B5",
    "swir16": "SR_B6", "swir22": "SR_B7", "lwir11": "ST_B10", "qa_pixel": "QA_PIXEL",
    "qa_radsat": "QA_RADSAT", "qa_aerosol": "SR_QA_AEROSOL",
}  # fmt: skip
"""USGS file suffix of each Landsat asset."""

_LANDSAT_QA_ASSETS = {
    "qa_pixel": (
        "Pixel Quality Assessment Band",
        ["cloud", "cloud-shadow", "snow-ice", "water-mask"],
    ),
    "qa_radsat": (
        "Radiometric Saturation and Terrain Occlusion Quality Assessment Band",
        ["saturation"],
    ),
    "qa_aerosol": ("Aerosol Quality Assessment Band", ["data-mask", "water-mask"]),
}
_S2_TITLES = {
    "blue": "Blue (band 2) - 10m", "green": "Green (band 3) - 10m", "red": "Red (band 4) - 10m",
    "rededge1": "Red Edge 1 (band 5) - 20m", "rededge2": "Red Edge 2 (band 6) - 20m",
    "rededge3": "Red Edge 3 (band 7) - 20m", "nir": "NIR 1 (band 8) - 10m",
    "nir08": "NIR 2 (band 8A) - 20m", "swir16": "SWIR 1 (band 11) - 20m",
    "swir22": "SWIR 2 (band 12) - 20m",
}  # fmt: skip


def _lonlat_geometry(footprint: shapely.Polygon, epsg: int) -> dict:
    """Footprint polygon in lon/lat, edges densified so that reprojection keeps them straight."""
    lonlat = reproject_geometry(footprint, epsg, 4326, max_segment=1000.0)
    return mapping(shapely.set_precision(shapely.normalize(lonlat), 1e-9))


def _created(item: SimulatedItem) -> str:
    # Deterministic "processing time" so that the same seed gives the same bytes.
    created = item.acquisition.datetime + dt.timedelta(hours=3)
    return created.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _asset(href: str, raster, title: str, roles: list[str], bands: dict) -> pystac.Asset:
    extra = {
        "gsd": raster.resolution,
        "proj:shape": list(raster.data.shape),
        "proj:transform": list(raster.transform),
        "raster:bands": [bands],
    }
    return pystac.Asset(
        href=href, media_type=COG_MEDIA_TYPE, title=title, roles=roles, extra_fields=extra
    )


def s2_item(item: SimulatedItem, hrefs: dict[str, str], region_epsg: int) -> pystac.Item:
    """Earth Search v1 ``sentinel-2-l2a`` item of a simulated acquisition.

    Args:
        item: the simulated item.
        hrefs: asset key -> href of its COG.
        region_epsg: CRS of the footprint (the simulation grid's).
    """
    acq = item.acquisition
    code = acq.grid_code
    zone, latitude_band, square = int(code[:2]), code[2], code[3:]
    # Baseline >= 04.00 declares the -0.1 offset whether or not Earth Search removed it from
    # the DNs; only ``earthsearch:boa_offset_applied`` tells (see data conventions).
    offset = -0.1 if acq.processing_baseline >= "04.00" else 0.0
    stac_item = _new_item(item, region_epsg, S2_EXTENSIONS)
    stac_item.properties.update(
        {
            "created": _created(item),
            "platform": acq.platform,
            "constellation": "sentinel-2",
            "instruments": ["msi"],
            "eo:cloud_cover": item.cloud_cover,
            "proj:epsg": region_epsg,
            "mgrs:utm_zone": zone,
            "mgrs:latitude_band": latitude_band,
            "mgrs:grid_square": square,
            "grid:code": f"MGRS-{code}",
            "view:sun_azimuth": round(item.sun_azimuth, 6),
            "view:sun_elevation": round(item.sun_elevation, 6),
            **{f"s2:{k}_percentage": v for k, v in item.class_percentages.items()},
            "s2:product_type": "S2MSI2A",
            "s2:processing_baseline": acq.processing_baseline,
            "s2:product_uri": (
                f"S2{acq.platform[-1].upper()}_MSIL2A_{acq.datetime:%Y%m%dT%H%M%S}_"
                f"N{acq.processing_baseline.replace('.', '')}_R{acq.orbit:03d}_T{code}_"
                f"{acq.datetime:%Y%m%dT%H%M%S}.SAFE"
            ),
            "s2:sequence": "0",
            "earthsearch:boa_offset_applied": bool(acq.boa_offset_applied),
            "tamrf:simulated": True,
        }
    )
    by_key = {b.asset_key: b for b in S2_BANDS}
    for key, raster in item.assets.items():
        if key == "scl":
            bands = {"nodata": 0, "data_type": "uint8", "spatial_resolution": raster.resolution}
            title, roles, eo = "Scene classification map (SCL)", ["data"], None
        else:
            band = by_key[key]
            bands = {
                "nodata": 0, "data_type": "uint16", "spatial_resolution": raster.resolution,
                "scale": S2_SCALE, "offset": offset,
            }  # fmt: skip
            title, roles = _S2_TITLES[key], ["data", "reflectance"]
            eo = {
                "name": band.file_band_id,
                "common_name": band.common_name,
                "center_wavelength": band.center_wavelength_um,
                "full_width_half_max": band.fwhm_um,
            }
        asset = _asset(hrefs[key], raster, title, roles, bands)
        if eo is not None:
            asset.extra_fields = {"eo:bands": [eo], **asset.extra_fields}
        stac_item.add_asset(key, asset)
    return stac_item


def landsat_item(item: SimulatedItem, hrefs: dict[str, str], region_epsg: int) -> pystac.Item:
    """Earth Search v1 / USGS ``landsat-c2-l2`` item of a simulated acquisition."""
    acq = item.acquisition
    any_raster = item.assets["qa_pixel"]
    path, row = acq.grid_code[:3], acq.grid_code[3:]
    stac_item = _new_item(item, region_epsg, LANDSAT_EXTENSIONS)
    stac_item.properties.update(
        {
            "created": _created(item),
            "platform": acq.platform,
            "instruments": ["oli", "tirs"],
            "description": "Landsat Collection 2 Level-2",
            "gsd": 30,
            "eo:cloud_cover": item.cloud_cover,
            "landsat:cloud_cover_land": item.cloud_cover,
            "view:off_nadir": 0,
            "view:sun_azimuth": round(item.sun_azimuth, 6),
            "view:sun_elevation": round(item.sun_elevation, 6),
            "landsat:wrs_type": "2",
            "landsat:wrs_path": path,
            "landsat:wrs_row": row,
            "landsat:scene_id": (
                f"LC{acq.platform[-1]}{path}{row}{acq.datetime:%Y}"
                f"{acq.datetime.timetuple().tm_yday:03d}LGN00"
            ),
            "landsat:collection_category": "T1",
            "landsat:collection_number": "02",
            "landsat:correction": acq.correction,
            "proj:epsg": any_raster.epsg,
            "proj:shape": list(any_raster.data.shape),
            "proj:transform": list(any_raster.transform),
            "tamrf:simulated": True,
        }
    )
    by_key = {b.asset_key: b for b in LANDSAT_BANDS}
    for key, raster in item.assets.items():
        if key in by_key:
            band = by_key[key]
            thermal = band.quantity == "temperature"
            bands = {
                "nodata": 0, "data_type": "uint16", "spatial_resolution": 30,
                "scale": LANDSAT_ST_SCALE if thermal else LANDSAT_SR_SCALE,
                "offset": LANDSAT_ST_OFFSET if thermal else LANDSAT_SR_OFFSET,
            }  # fmt: skip
            if thermal:
                bands["unit"] = "kelvin"
            title = (
                f"{'Surface Temperature' if thermal else 'Surface Reflectance'} {band.sensor_band}"
            )
            roles = ["data", "temperature" if thermal else "reflectance"]
            eo = {
                "name": f"{'TIRS' if thermal else 'OLI'}_{band.sensor_band}",
                "common_name": band.common_name,
                "center_wavelength": band.center_wavelength_um,
                "full_width_half_max": band.fwhm_um,
            }
            asset = _asset(hrefs[key], raster, title, roles, bands)
            if thermal:
                asset.extra_fields["gsd"] = 100
            asset.extra_fields = {"eo:bands": [eo], **asset.extra_fields}
        else:
            dtype = raster.data.dtype.name
            bands = {"unit": "bit index", "data_type": dtype, "spatial_resolution": 30}
            if raster.nodata is not None:
                bands["nodata"] = raster.nodata
            title, roles = _LANDSAT_QA_ASSETS[key]
            asset = _asset(hrefs[key], raster, title, roles, bands)
        stac_item.add_asset(key, asset)
    return stac_item


def _new_item(item: SimulatedItem, region_epsg: int, extensions: list[str]) -> pystac.Item:
    acq = item.acquisition
    geometry = _lonlat_geometry(acq.footprint, region_epsg)
    bbox = [round(v, 9) for v in shapely.bounds(shapely.geometry.shape(geometry)).tolist()]
    return pystac.Item(
        id=acq.item_id,
        geometry=geometry,
        bbox=bbox,
        datetime=acq.datetime,
        properties={},
        collection=acq.collection,
        stac_extensions=list(extensions),
    )


def collection(collection_id: str, items: list[pystac.Item], description: str) -> pystac.Collection:
    """A Collection whose extent covers ``items`` (lon/lat bbox, first-last datetime)."""
    if not items:
        raise ValueError(f"collection {collection_id!r} has no items: nothing to describe")
    west = min(i.bbox[0] for i in items)
    south = min(i.bbox[1] for i in items)
    east = max(i.bbox[2] for i in items)
    north = max(i.bbox[3] for i in items)
    times = sorted(i.datetime for i in items)
    platforms = sorted({i.properties["platform"] for i in items})
    out = pystac.Collection(
        id=collection_id,
        description=description,
        extent=pystac.Extent(
            pystac.SpatialExtent([[west, south, east, north]]),
            pystac.TemporalExtent([[times[0], times[-1]]]),
        ),
        license="CC0-1.0",
        title=f"{collection_id} (simulated by tamrf-xr)",
        summaries=pystac.Summaries({"platform": platforms}),
    )
    out.add_items(items)
    return out
