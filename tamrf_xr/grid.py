"""North-up raster grids: the one place that does pixel arithmetic.

A :class:`RasterGrid` is a CRS, outer bounds and a square pixel size (odc-geo's ``GeoBox``
in spirit). Its shape, affine transform and pixel-centre coordinates follow from those
three, and every derived grid (another resolution, a margin, a clip) is built from it and
checked to hold whole pixels, so pixel edges never drift. The tiling of the output products
(:mod:`pipelines.grid`), the datacubes, the Level-3 stores and the simulator all describe
their rasters with it.

Example:
    >>> grid = RasterGrid(32631, (600_000.0, 4_999_400.0, 600_600.0, 5_000_000.0), 10.0)
    >>> grid.shape, grid.at(30.0).shape
    ((60, 60), (20, 20))
    >>> y, x = grid.coords()
    >>> float(x[0]), float(y[0])
    (600005.0, 4999995.0)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from pyproj import CRS, Transformer

__all__ = ["RasterGrid"]

_TOLERANCE = 1e-6
"""How far (in steps) a length may be from a whole number of steps: float rounding only."""


def _whole(length: float, step: float) -> bool:
    """Whether ``length`` is a whole number of ``step`` (within :data:`_TOLERANCE`)."""
    ratio = length / step
    return abs(ratio - round(ratio)) <= _TOLERANCE


def _snap(value: float, origin: float, step: float, rounding: Callable[[float], int]) -> float:
    """``value`` on the lattice ``origin + k * step`` (``rounding`` picks k); unchanged when it
    already lies there."""
    k = (value - origin) / step
    if abs(k - round(k)) <= _TOLERANCE:
        return value
    return origin + rounding(k) * step


@dataclass(frozen=True)
class RasterGrid:
    """A north-up grid of square pixels: CRS, outer bounds and pixel size.

    Raises:
        ValueError: bounds that are not four finite numbers with west < east and
            south < north, a resolution that is not positive, or bounds that do not hold a
            whole number of pixels.
    """

    epsg: int
    """EPSG code of the grid's CRS (the project's grids are projected CRSs in metres)."""
    bounds: tuple[float, float, float, float]
    """(west, south, east, north): the outer pixel edges, in metres of the CRS."""
    resolution: float
    """Pixel side in metres; the bounds hold a whole number of pixels each way."""

    def __post_init__(self) -> None:
        try:
            bounds = tuple(float(v) for v in self.bounds)
            resolution = float(self.resolution)
        except (TypeError, ValueError):
            raise ValueError(
                f"grid bounds {self.bounds!r} and resolution {self.resolution!r} must be "
                "numbers: (west, south, east, north) and a pixel size in metres"
            ) from None
        if len(bounds) != 4:
            raise ValueError(f"grid bounds {self.bounds!r} are not (west, south, east, north)")
        object.__setattr__(self, "epsg", int(self.epsg))
        object.__setattr__(self, "bounds", bounds)
        object.__setattr__(self, "resolution", resolution)
        west, south, east, north = bounds
        if not all(math.isfinite(v) for v in (*bounds, resolution)):
            raise ValueError(f"grid bounds {bounds} and resolution {resolution} must be finite")
        if not (west < east and south < north) or resolution <= 0:
            raise ValueError(f"empty grid: bounds {bounds}, resolution {resolution}")
        for extent in (east - west, north - south):
            if not _whole(extent, resolution):
                raise ValueError(
                    f"bounds {bounds} do not hold a whole number of "
                    f"{resolution} m pixels: snap them to the grid"
                )

    # -- pixels ------------------------------------------------------------------------

    @property
    def shape(self) -> tuple[int, int]:
        """(rows, columns)."""
        west, south, east, north = self.bounds
        return (round((north - south) / self.resolution), round((east - west) / self.resolution))

    @property
    def transform(self) -> tuple[float, float, float, float, float, float]:
        """Affine coefficients (a, b, c, d, e, f), rasterio's order: the pixel corner
        (column, row) is at x = a * column + c, y = e * row + f."""
        west, _, _, north = self.bounds
        return (self.resolution, 0.0, west, 0.0, -self.resolution, north)

    def coords(self) -> tuple[np.ndarray, np.ndarray]:
        """(y, x) pixel-centre coordinates, float64; y decreases from the north edge."""
        west, _, _, north = self.bounds
        rows, cols = self.shape
        y = north - (np.arange(rows) + 0.5) * self.resolution
        x = west + (np.arange(cols) + 0.5) * self.resolution
        return y, x

    def window(self, bounds: Sequence[float]) -> tuple[slice, slice]:
        """(rows, columns) of this grid covered by ``bounds`` (west, south, east, north),
        which must lie on its pixel edges, inside it."""
        w, s, e, n = (float(v) for v in bounds)
        west, _, _, north = self.bounds
        edges = [(north - n) / self.resolution, (north - s) / self.resolution,
                 (w - west) / self.resolution, (e - west) / self.resolution]  # fmt: skip
        if any(abs(v - round(v)) > _TOLERANCE for v in edges):
            raise ValueError(
                f"bounds {(w, s, e, n)} are not on the {self.resolution:g} m pixel edges of "
                f"the grid {self.bounds}"
            )
        row0, row1, col0, col1 = (round(v) for v in edges)
        rows, cols = self.shape
        if not (0 <= row0 < row1 <= rows and 0 <= col0 < col1 <= cols):
            raise ValueError(f"bounds {(w, s, e, n)} are not inside the grid {self.bounds}")
        return slice(row0, row1), slice(col0, col1)

    # -- derived grids -----------------------------------------------------------------

    def at(self, resolution: float) -> RasterGrid:
        """The same bounds at another ``resolution`` (which must divide them)."""
        return RasterGrid(self.epsg, self.bounds, resolution)

    def grown(self, metres: float) -> RasterGrid:
        """The bounds moved out by ``metres`` on every side (in, when negative); a whole
        number of pixels, so that the pixels stay where they are."""
        if not math.isfinite(metres) or not _whole(metres, self.resolution):
            raise ValueError(
                f"cannot grow a {self.resolution:g} m grid by {metres} m: use a multiple of "
                "the pixel size, so that its pixels stay aligned"
            )
        west, south, east, north = self.bounds
        return RasterGrid(
            self.epsg, (west - metres, south - metres, east + metres, north + metres),
            self.resolution,
        )  # fmt: skip

    def clipped(self, bounds: Sequence[float]) -> RasterGrid:
        """The part of the grid inside ``bounds`` (west, south, east, north, same CRS), which
        are first snapped outwards to this grid's pixel edges so the pixels stay aligned."""
        values = tuple(float(v) for v in bounds)
        if len(values) != 4:
            raise ValueError(f"clip bounds {tuple(bounds)} are not (west, south, east, north)")
        w, s, e, n = values
        west, south, east, north = self.bounds
        r = self.resolution
        snapped = (_snap(w, west, r, math.floor), _snap(s, north, r, math.floor),
                   _snap(e, west, r, math.ceil), _snap(n, north, r, math.ceil))  # fmt: skip
        clipped = (max(west, snapped[0]), max(south, snapped[1]),
                   min(east, snapped[2]), min(north, snapped[3]))  # fmt: skip
        if not (clipped[0] < clipped[2] and clipped[1] < clipped[3]):
            raise ValueError(
                f"clip bounds {values} do not overlap the grid {self.bounds}: nothing is left"
            )
        return RasterGrid(self.epsg, clipped, r)

    # -- checks and geography ----------------------------------------------------------

    def nests(self, step_m: float) -> bool:
        """Whether every edge lies on a multiple of ``step_m``: then the grids of every pixel
        size dividing ``step_m`` share these edges (60 m: the 10, 20 and 30 m grids nest)."""
        return all(_whole(v, step_m) for v in self.bounds)

    def lonlat_bbox(self) -> tuple[float, float, float, float]:
        """(west, south, east, north) in degrees (WGS 84) enclosing the grid; its edges are
        densified (21 points each) so that their curvature in lon/lat is included."""
        to_lonlat = Transformer.from_crs(
            CRS.from_epsg(self.epsg), CRS.from_epsg(4326), always_xy=True
        )
        west, south, east, north = to_lonlat.transform_bounds(*self.bounds, densify_pts=21)
        return (west, south, east, north)
