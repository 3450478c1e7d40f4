"""Cloud-Optimized GeoTIFF writing (rasterio / GDAL's COG driver)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio
from affine import Affine

__all__ = ["write_cog"]


def write_cog(
    path: Path,
    data: np.ndarray,
    epsg: int,
    transform: tuple[float, float, float, float, float, float],
    nodata: int | float | None,
) -> None:
    """Write one single-band COG (DEFLATE + horizontal predictor, 256 px tiles, overviews).

    Args:
        path: output file; its parent must exist.
        data: (rows, cols) array; its dtype is the file's.
        epsg: CRS code.
        transform: affine coefficients (a, b, c, d, e, f), north-up.
        nodata: nodata value to declare, or None.
    """
    if data.ndim != 2:
        raise ValueError(f"write_cog takes one band (rows, cols); got shape {data.shape}")
    # Masks and QA bit fields must never be averaged: nearest-neighbour overviews for all
    # integer data keeps every overview value a value that exists in the band.
    with rasterio.open(
        path,
        "w",
        driver="COG",
        width=data.shape[1],
        height=data.shape[0],
        count=1,
        dtype=data.dtype.name,
        crs=f"EPSG:{epsg}",
        transform=Affine(*transform),
        nodata=nodata,
        compress="DEFLATE",
        predictor=2,
        blocksize=256,
        overview_resampling="nearest",
    ) as dataset:
        dataset.write(data, 1)
