"""The 10 m land-cover map and the static per-pixel surface properties.

Sharp-edged agricultural parcels in strips on a rotated grid (so edges are not aligned with
the pixel grid), forest patches, a town with roof/asphalt texture, roads along some parcel
edges plus main roads, a meandering river and sometimes a lake. Each parcel ("unit") has its
own crop calendar, soil brightness and temperature offset; a fine texture adds within-field
variability.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

import numpy as np

from tamrf_xr.simulate.fields import rng_for, smooth_field
from tamrf_xr.simulate.spectra import band_reflectances

__all__ = ["LandCover", "Landscape", "make_landscape"]


class LandCover(IntEnum):
    """Land-cover classes of the simulated truth (stored as uint8 flags in the truth store)."""

    WATER = 0
    URBAN = 1
    ROAD = 2
    DECIDUOUS_FOREST = 3
    CONIFER_FOREST = 4
    GRASSLAND = 5
    SUMMER_CROP = 6
    WINTER_CROP = 7
    FALLOW = 8


@dataclass(frozen=True)
class Phenology:
    """Per-pixel parameters of the vegetation-fraction curve, each (H, W) float32.

    ``v(doy) = vmin + (vmax - vmin) (s((doy - sos)/k_up) - s((doy - eos)/k_down))
               + winter (1 - s((doy - sos)/k_up)) + winter s((doy - sow)/8)``
    with ``s`` the logistic function: a double-logistic season plus, for winter crops, the
    green cover established before winter and re-emerging after autumn sowing.
    """

    vmin: np.ndarray
    vmax: np.ndarray
    sos: np.ndarray
    eos: np.ndarray
    k_up: np.ndarray
    k_down: np.ndarray
    winter: np.ndarray
    sow: np.ndarray


@dataclass(frozen=True)
class Landscape:
    """Static description of the simulated surface at 10 m (H rows, W columns)."""

    landcover: np.ndarray
    """(H, W) uint8 :class:`LandCover` codes."""
    unit_id: np.ndarray
    """(H, W) int32 parcel / patch identifier."""
    green: np.ndarray
    """(17, H, W) float32 reflectance of the full green canopy, reflective bands in model order."""
    background: np.ndarray
    """(17, H, W) float32 reflectance of what lies under/between the canopy (soil, residue,
    roofs, asphalt, water)."""
    phenology: Phenology
    heating_k: np.ndarray
    """(H, W) float32 K: how much warmer than air the non-vegetated part gets at full sun."""
    temperature_offset_k: np.ndarray
    """(H, W) float32 K: per-parcel offset (soil moisture, exposure)."""
    snow_susceptibility: np.ndarray
    """(H, W) float32 in [0, 1]: 0 water, about 0.4 under forest canopy, 1 open land."""

    @property
    def is_water(self) -> np.ndarray:
        return self.landcover == LandCover.WATER


_CLASS_PROBABILITIES = {
    LandCover.SUMMER_CROP: 0.32,
    LandCover.WINTER_CROP: 0.28,
    LandCover.GRASSLAND: 0.22,
    LandCover.FALLOW: 0.08,
    LandCover.DECIDUOUS_FOREST: 0.06,
    LandCover.CONIFER_FOREST: 0.04,
}


def _parcels(rng: np.random.Generator, u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, list]:
    """Split the rotated (u, v) plane into strips across u and parcels along v (metres)."""
    u0, u1 = float(u.min()), float(u.max())
    v0, v1 = float(v.min()), float(v.max())
    strip_edges = [u0 - rng.uniform(0, 200)]
    while strip_edges[-1] < u1:
        strip_edges.append(strip_edges[-1] + rng.uniform(90, 400))
    strip_edges_arr = np.asarray(strip_edges)
    strip = np.clip(np.searchsorted(strip_edges_arr, u, side="right") - 1, 0, None)
    unit = np.zeros(u.shape, dtype=np.int32)
    next_id = 0
    for s in range(len(strip_edges_arr)):
        in_strip = strip == s
        if not in_strip.any():
            continue
        cuts = [v0 - rng.uniform(0, 300)]
        while cuts[-1] < v1:
            cuts.append(cuts[-1] + rng.uniform(70, 450))
        local = np.searchsorted(np.asarray(cuts), v[in_strip], side="right") - 1
        unit[in_strip] = next_id + local
        next_id += len(cuts)
    return unit, strip_edges


def _distance_to_polyline(x: np.ndarray, y: np.ndarray, px: np.ndarray, py: np.ndarray):
    """Distance (same units) from each (x, y) to a dense polyline given by its vertices."""
    best = np.full(x.shape, np.inf)
    for i in range(len(px) - 1):
        ax, ay, bx, by = px[i], py[i], px[i + 1], py[i + 1]
        dx, dy = bx - ax, by - ay
        t = np.clip(((x - ax) * dx + (y - ay) * dy) / (dx * dx + dy * dy + 1e-12), 0, 1)
        best = np.minimum(best, np.hypot(x - (ax + t * dx), y - (ay + t * dy)))
    return best


def make_landscape(seed: int, height: int, width: int, pixel_m: float = 10.0) -> Landscape:
    """Draw a landscape.

    Args:
        seed: simulation seed.
        height, width: size of the 10 m grid.
        pixel_m: pixel size in metres.

    Returns:
        The :class:`Landscape` of shape (H, W).
    """
    rng = rng_for(seed, "landscape")
    rows, cols = np.mgrid[0:height, 0:width].astype(np.float64)
    x, y = (cols + 0.5) * pixel_m, (rows + 0.5) * pixel_m
    angle = np.deg2rad(rng.uniform(-25, 25))
    u = x * np.cos(angle) + y * np.sin(angle)
    v = -x * np.sin(angle) + y * np.cos(angle)

    unit, strip_edges = _parcels(rng, u, v)
    n_units = int(unit.max()) + 1
    classes = np.array(list(_CLASS_PROBABILITIES), dtype=np.uint8)
    probabilities = np.array(list(_CLASS_PROBABILITIES.values()))
    unit_class = rng.choice(classes, size=n_units, p=probabilities / probabilities.sum())
    landcover = unit_class[unit].astype(np.uint8)

    # Forest patches ignore parcel edges (woods are older than the field pattern).
    scale = max(height, width) / 6
    forest = smooth_field(rng, (height, width), scale) > 1.1
    conifer = smooth_field(rng, (height, width), scale) > 0.3
    landcover[forest] = np.where(
        conifer[forest], LandCover.CONIFER_FOREST, LandCover.DECIDUOUS_FOREST
    )

    # A town: a blob around a random centre; inside, 30-50 m blocks of roofs, streets, gardens.
    cy, cx = rng.uniform(0.2, 0.8) * height * pixel_m, rng.uniform(0.2, 0.8) * width * pixel_m
    radius = rng.uniform(0.08, 0.18) * min(height, width) * pixel_m
    wobble = smooth_field(rng, (height, width), scale / 2) * radius * 0.25
    town = np.hypot(x - cx, y - cy) + wobble < radius
    landcover[town] = LandCover.URBAN

    # Roads: a few parcel strip edges, plus two main roads across the region.
    road = np.zeros((height, width), dtype=bool)
    for edge in rng.choice(strip_edges, size=min(3, len(strip_edges)), replace=False):
        road |= np.abs(u - edge) < pixel_m * 0.55
    for _ in range(2):
        theta = rng.uniform(0, np.pi)
        offset = rng.uniform(0.2, 0.8) * width * pixel_m
        road |= np.abs(x * np.cos(theta) + y * np.sin(theta) - offset) < pixel_m * 0.9
    landcover[road] = LandCover.ROAD

    # A meandering river through a random point of the region, and a lake one time in two.
    length = max(height, width) * pixel_m
    s = np.linspace(-length, length, 400)
    heading = rng.uniform(0, np.pi)
    amplitude, wavelength = rng.uniform(0.03, 0.1) * length, rng.uniform(0.3, 0.7) * length
    lateral = amplitude * np.sin(2 * np.pi * s / wavelength + rng.uniform(0, 2 * np.pi))
    through_x = rng.uniform(0.25, 0.75) * width * pixel_m
    through_y = rng.uniform(0.25, 0.75) * height * pixel_m
    px = through_x + s * np.cos(heading) - lateral * np.sin(heading)
    py = through_y + s * np.sin(heading) + lateral * np.cos(heading)
    water = _distance_to_polyline(x, y, px, py) < rng.uniform(15, 35)
    if rng.random() < 0.5:
        water |= smooth_field(rng, (height, width), scale) > 2.3
    landcover[water] = LandCover.WATER

    return _surface_properties(rng, landcover, unit, n_units)


def _surface_properties(
    rng: np.random.Generator, landcover: np.ndarray, unit: np.ndarray, n_units: int
) -> Landscape:
    height, width = landcover.shape
    lc = landcover
    texture = smooth_field(rng, (height, width), 2.5, octaves=2)  # within-field variability
    texture_fine = rng.standard_normal((height, width)).astype(np.float32)

    def per_unit(low: float, high: float) -> np.ndarray:
        return rng.uniform(low, high, size=n_units)[unit].astype(np.float32)

    endmember = {name: band_reflectances(name).astype(np.float32) for name in (
        "green_vegetation", "conifer", "dry_vegetation", "soil", "water", "asphalt", "roof",
    )}  # fmt: skip

    def spectrum(name: str) -> np.ndarray:
        return endmember[name][:, None, None]

    # Background: soil of per-parcel brightness mixed with crop residue / dry grass.
    soil_brightness = per_unit(0.7, 1.3) * (1 + 0.05 * texture)
    residue = per_unit(0.0, 0.5)
    residue = np.where(lc == LandCover.GRASSLAND, per_unit(0.5, 0.9), residue)
    background = (1 - residue) * soil_brightness * spectrum("soil") + residue * spectrum(
        "dry_vegetation"
    )
    # Towns: roofs, streets and gardens in 20-50 m blocks.
    cells = rng.random((height // 4 + 1, width // 4 + 1))
    block = np.repeat(np.repeat(cells, 4, axis=0), 4, axis=1)[:height, :width]
    roof_fraction = np.clip(0.35 + 0.5 * block + 0.1 * texture_fine, 0, 1).astype(np.float32)
    urban_background = roof_fraction * spectrum("roof") + (1 - roof_fraction) * spectrum("asphalt")
    background = np.where(lc == LandCover.URBAN, urban_background, background)
    background = np.where(
        lc == LandCover.ROAD, spectrum("asphalt") * (1 + 0.03 * texture), background
    )
    background = np.where(
        lc == LandCover.WATER, spectrum("water") * (1 + 0.1 * texture), background
    )

    canopy_brightness = per_unit(0.85, 1.15) * (1 + 0.04 * texture)
    is_conifer = lc == LandCover.CONIFER_FOREST
    green = (
        np.where(is_conifer, spectrum("conifer"), spectrum("green_vegetation")) * canopy_brightness
    )

    def by_class(values: dict[LandCover, np.ndarray | float], default: float) -> np.ndarray:
        out = np.full((height, width), default, dtype=np.float32)
        for cls, value in values.items():
            mask = lc == cls
            out[mask] = value[mask] if isinstance(value, np.ndarray) else value
        return out

    C = LandCover
    vmax = by_class({
        C.SUMMER_CROP: per_unit(0.8, 0.95), C.WINTER_CROP: per_unit(0.8, 0.95),
        C.GRASSLAND: per_unit(0.7, 0.9), C.FALLOW: per_unit(0.2, 0.4),
        C.DECIDUOUS_FOREST: per_unit(0.85, 0.95), C.CONIFER_FOREST: per_unit(0.85, 0.9),
        C.URBAN: 0.35 * (1 - roof_fraction), C.ROAD: 0.05,
    }, 0.0)  # fmt: skip
    vmin = by_class({
        C.SUMMER_CROP: per_unit(0.0, 0.05), C.WINTER_CROP: per_unit(0.0, 0.05),
        C.GRASSLAND: per_unit(0.35, 0.55), C.FALLOW: per_unit(0.02, 0.1),
        C.DECIDUOUS_FOREST: per_unit(0.15, 0.3), C.CONIFER_FOREST: vmax - 0.05,
        C.URBAN: 0.15 * (1 - roof_fraction), C.ROAD: 0.02,
    }, 0.0)  # fmt: skip
    sos = by_class({
        C.SUMMER_CROP: per_unit(125, 160), C.WINTER_CROP: per_unit(60, 85),
        C.GRASSLAND: per_unit(70, 100), C.FALLOW: per_unit(80, 120),
        C.DECIDUOUS_FOREST: per_unit(100, 125), C.CONIFER_FOREST: per_unit(90, 120),
        C.URBAN: 90.0, C.ROAD: 90.0,
    }, 90.0) + 2.5 * texture  # fmt: skip
    eos = by_class({
        C.SUMMER_CROP: per_unit(235, 275), C.WINTER_CROP: per_unit(170, 195),
        C.GRASSLAND: per_unit(180, 230), C.FALLOW: per_unit(180, 230),
        C.DECIDUOUS_FOREST: per_unit(280, 310), C.CONIFER_FOREST: per_unit(280, 320),
        C.URBAN: 280.0, C.ROAD: 280.0,
    }, 280.0) + 2.5 * texture  # fmt: skip
    k_up = by_class({C.GRASSLAND: per_unit(10, 18)}, 0.0) + np.where(
        lc == C.GRASSLAND, 0.0, per_unit(6, 10)
    )
    # Harvests are abrupt: crops fall within days, trees shed leaves over weeks.
    k_down = by_class({
        C.SUMMER_CROP: per_unit(2, 4), C.WINTER_CROP: per_unit(2, 4),
        C.DECIDUOUS_FOREST: per_unit(8, 12),
    }, 10.0)  # fmt: skip
    winter = by_class({C.WINTER_CROP: per_unit(0.2, 0.35)}, 0.0)
    sow = by_class({C.WINTER_CROP: per_unit(290, 320)}, 1000.0)

    heating = by_class({
        C.URBAN: 12.0 + 4 * (1 - roof_fraction), C.ROAD: 17.0, C.WATER: 0.0,
        C.GRASSLAND: 11.0, C.CONIFER_FOREST: 6.0, C.DECIDUOUS_FOREST: 7.0,
    }, 15.0) * (1 + 0.05 * texture)  # fmt: skip
    offset = per_unit(-1.5, 1.5) + 0.3 * texture
    snow_susceptibility = by_class(
        {C.WATER: 0.0, C.CONIFER_FOREST: 0.35, C.DECIDUOUS_FOREST: 0.6, C.URBAN: 0.8}, 1.0
    )
    return Landscape(
        landcover=lc,
        unit_id=unit.astype(np.int32),
        green=green.astype(np.float32),
        background=background.astype(np.float32),
        phenology=Phenology(vmin, vmax, sos, eos, k_up, k_down, winter, sow),
        heating_k=heating.astype(np.float32),
        temperature_offset_k=offset.astype(np.float32),
        snow_susceptibility=snow_susceptibility,
    )
