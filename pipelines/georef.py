"""CF / GeoZarr georeferencing of xarray datasets on a north-up grid."""

from __future__ import annotations

import numpy as np
import shapely
import shapely.affinity
import xarray as xr
from pyproj import CRS, Transformer
from shapely.geometry.base import BaseGeometry

from tamrf_xr.grid import RasterGrid

__all__ = ["grid_coords", "reproject_geometry", "split_at_antimeridian", "with_grid_mapping"]

_WORLD = shapely.box(-180.0, -90.0, 180.0, 90.0)


def reproject_geometry(
    geometry: BaseGeometry, src_epsg: int, dst_epsg: int, max_segment: float
) -> BaseGeometry:
    """``geometry`` from one CRS to another, edges first densified to ``max_segment`` (in
    source units) so that straight edges stay where they are after reprojection. Also takes
    a NumPy array of geometries (one vectorised reprojection for all of them)."""
    transformer = Transformer.from_crs(src_epsg, dst_epsg, always_xy=True)

    def apply(xy: np.ndarray) -> np.ndarray:
        x, y = transformer.transform(xy[:, 0], xy[:, 1])
        return np.column_stack([x, y])

    return shapely.transform(shapely.segmentize(geometry, max_segment), apply)


def split_at_antimeridian(geometry: BaseGeometry) -> BaseGeometry:
    """A lon/lat polygon reprojected from a UTM zone at the antimeridian has vertices on
    both sides of +/-180 and, read naively, spans the whole globe. Such a geometry (wider than
    180 degrees) is returned as the two parts on either side of the antimeridian (a
    MultiPolygon, as GeoJSON requires); any other is returned unchanged."""
    west, _, east, _ = geometry.bounds
    if east - west <= 180.0:
        return geometry

    def unwrapped(xy: np.ndarray) -> np.ndarray:
        return np.column_stack([np.where(xy[:, 0] < 0, xy[:, 0] + 360.0, xy[:, 0]), xy[:, 1]])

    continuous = shapely.transform(geometry, unwrapped)  # longitudes 0..360
    east_part = continuous.intersection(_WORLD)
    west_part = shapely.affinity.translate(
        continuous.intersection(shapely.box(180.0, -90.0, 540.0, 90.0)), xoff=-360.0
    )
    return shapely.union_all([east_part, west_part])


def grid_coords(grid: RasterGrid) -> dict:
    """The pixel-centre ``x``/``y`` coordinates of ``grid`` (:meth:`RasterGrid.coords`) with
    their CF attributes, for ``xarray.Dataset(coords=...)``."""
    y, x = grid.coords()
    return {
        "x": ("x", x, {"standard_name": "projection_x_coordinate", "units": "m", "axis": "X"}),
        "y": ("y", y, {"standard_name": "projection_y_coordinate", "units": "m", "axis": "Y"}),
    }


def with_grid_mapping(
    ds: xr.Dataset, epsg: int, x0: float, y0: float, pixel_m: float
) -> xr.Dataset:
    """Add a ``spatial_ref`` grid-mapping variable (CF attributes, WKT and GDAL GeoTransform)
    and point every (y, x) variable at it, so xarray+rioxarray and GDAL see the CRS."""
    crs = CRS.from_epsg(epsg)
    attrs = crs.to_cf()
    attrs["spatial_ref"] = attrs["crs_wkt"]
    attrs["GeoTransform"] = f"{x0} {pixel_m} 0.0 {y0} 0.0 {-pixel_m}"
    ds = ds.assign_coords(spatial_ref=xr.DataArray(np.int32(0), attrs=attrs))
    for name, variable in ds.data_vars.items():
        if {"y", "x"} <= set(variable.dims):
            ds[name].attrs["grid_mapping"] = "spatial_ref"
    return ds
