"""Configuration of a simulated region: one frozen dataclass, every field documented."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from dataclasses import dataclass
from typing import Any

__all__ = ["SimulationConfig"]


@dataclass(frozen=True)
class SimulationConfig:
    """Everything that defines a simulated region; the same config and seed give the same bytes."""

    seed: int = 0
    """Seed of every random draw (landscape, phenology, weather, noise, calendars)."""
    center_lon: float = 1.45
    """Longitude of the region centre (degrees)."""
    center_lat: float = 43.60
    """Latitude of the region centre (degrees); negative means southern hemisphere."""
    width_px: int = 240
    """Region width in 10 m pixels (a multiple of 6, so that the 20 m and 30 m grids nest)."""
    height_px: int = 240
    """Region height in 10 m pixels (a multiple of 6)."""
    start: dt.date = dt.date(2022, 1, 1)
    """First simulated day."""
    end: dt.date = dt.date(2022, 12, 31)
    """Last simulated day (inclusive)."""
    epsg: int | None = None
    """Sentinel-2 / truth CRS; default: the WGS 84 UTM zone of the centre (326xx / 327xx)."""

    cloud_cover_mean: float = 0.45
    """Mean fraction of the region under cloud on a given day (0-1)."""
    cloud_cover_concentration: float = 0.8
    """Concentration of the Beta law of daily cover: small values give many all-clear and
    all-cloudy days, large values keep every day near the mean."""
    cloud_persistence_days: float = 4.0
    """Correlation time of the weather: cloudy days come in spells of about this length."""
    cloudy_season: tuple[int, int] | None = None
    """Optional (first, last) day-of-year of an overcast season (cover forced to >= 0.95)."""

    s2_neighbour_orbit_coverage: float = 0.35
    """Fraction of the region width also seen by a neighbouring S2 relative orbit, whose swath
    edge crosses the region (out-of-swath nodata there); 0 disables the neighbour orbit."""
    landsat_neighbour_path_coverage: float = 0.3
    """Fraction of the region width covered by the neighbouring Landsat WRS-2 path (scene edge
    with fill crossing the region, acquired on other days); 0 disables it."""
    s2_tile_size_m: float = 109_800.0
    """Side of a Sentinel-2 tile (MGRS tiles: 109.8 km)."""
    s2_tile_step_m: float = 100_000.0
    """Spacing of S2 tiles (100 km, hence 9.8 km overlaps)."""
    landsat_scene_size_m: tuple[float, float] = (180_000.0, 185_000.0)
    """Landsat scene (along-track, across-track) size."""
    landsat_row_step_m: float = 160_000.0
    """Along-track spacing of WRS-2 rows (adjacent rows of one path overlap)."""
    landsat_path_step_m: float = 140_000.0
    """Across-track spacing of WRS-2 paths at the region's latitude (adjacent paths overlap)."""
    landsat_track_tilt_deg: float = 12.0
    """Angle between the Landsat ground track and grid north (scenes are tilted rectangles)."""

    s2_boa_offset_applied_fraction: float = 0.5
    """Fraction of processing-baseline >= 04.00 S2 items whose DNs had the +1000 offset removed
    (``earthsearch:boa_offset_applied: true``), like Earth Search's mixed archive."""
    landsat_l2sr_fraction: float = 0.1
    """Fraction of Landsat items published as L2SR (no surface temperature band)."""
    noise_scale: float = 1.0
    """Multiplier of the sensors' radiometric noise (0 gives noise-free observations)."""
    truth_every_days: int = 1
    """Cadence of the stored ground truth (1: every day)."""

    def __post_init__(self) -> None:
        for name in ("width_px", "height_px"):
            value = getattr(self, name)
            if value <= 0 or value % 6:
                raise ValueError(
                    f"{name}={value}: must be a positive multiple of 6 so that the 10, 20 and "
                    f"30 m grids nest; use e.g. {max(6, round(value / 6) * 6)}"
                )
        if self.end < self.start:
            raise ValueError(f"end {self.end} is before start {self.start}: swap them")
        if not -80.0 <= self.center_lat <= 84.0:
            raise ValueError(f"center_lat={self.center_lat}: UTM covers 80S..84N only")
        if not -180.0 <= self.center_lon <= 180.0:
            raise ValueError(f"center_lon={self.center_lon}: must be in [-180, 180]")
        for name in (
            "cloud_cover_mean",
            "s2_neighbour_orbit_coverage",
            "landsat_neighbour_path_coverage",
            "s2_boa_offset_applied_fraction",
            "landsat_l2sr_fraction",
        ):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name}={value}: must be a fraction in [0, 1]")
        if self.cloud_cover_concentration <= 0 or self.cloud_persistence_days <= 0:
            raise ValueError("cloud_cover_concentration and cloud_persistence_days must be > 0")
        if self.truth_every_days < 1:
            raise ValueError(f"truth_every_days={self.truth_every_days}: must be >= 1")
        if self.noise_scale < 0:
            raise ValueError(f"noise_scale={self.noise_scale}: must be >= 0")
        if self.s2_tile_step_m > self.s2_tile_size_m:
            raise ValueError("s2_tile_step_m must not exceed s2_tile_size_m (tiles must overlap)")

    @property
    def days(self) -> int:
        """Number of simulated days."""
        return (self.end - self.start).days + 1

    def to_json(self) -> str:
        """Canonical JSON (dates as ISO strings), stored with every simulated product."""

        def encode(value: Any) -> Any:
            if isinstance(value, dt.date):
                return value.isoformat()
            if isinstance(value, tuple):
                return list(value)
            return value

        return json.dumps(
            {k: encode(v) for k, v in dataclasses.asdict(self).items()}, sort_keys=True
        )

    @classmethod
    def from_json(cls, text: str) -> SimulationConfig:
        """Inverse of :meth:`to_json`."""
        raw = json.loads(text)
        for key in ("start", "end"):
            raw[key] = dt.date.fromisoformat(raw[key])
        for key in ("cloudy_season", "landsat_scene_size_m"):
            if raw.get(key) is not None:
                raw[key] = tuple(raw[key])
        return cls(**raw)
