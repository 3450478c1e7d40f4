"""Which items each output tile needs, and what each tile will cost, from one search.

A regional or continental run searches the catalog ONCE (paged) for the whole AOI and then
assigns every item to the tiles its footprint intersects (a spatial index over the
footprints, in lon/lat), each tile grown by the inference margin so that the context around
its edges is read too. No per-tile query storm: a continent's plan costs one search plus
geometry.

The estimate of a tile is the analytic FLOP count of the model over the exact blocks it will
compute (:func:`tamrf_xr.inference.throughput.cube_flops`) divided by a FLOP rate, measured
here or given. Dates are counted per local solar day (one date per overpass, as the cubes
merge same-day items); the clear-share filter of the cubes needs the quality layers and is
applied when the tile runs, so a plan's dates are an upper bound.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import shapely
from shapely import STRtree
from shapely.geometry import box, shape
from shapely.geometry.base import BaseGeometry

from pipelines.datacube import solar_date
from pipelines.georef import reproject_geometry, split_at_antimeridian
from pipelines.grid import GridTile
from tamrf_xr.grid import RasterGrid
from tamrf_xr.inference import InferenceConfig
from tamrf_xr.inference.throughput import cube_flops
from tamrf_xr.model import ModelConfig

__all__ = [
    "RegionPlan",
    "TilePlan",
    "assign_items",
    "format_plan",
    "plan_tiles",
    "search_area",
]

_MAX_SEARCH_VERTICES = 2_000
"""Above this, a zone's search outline is replaced by its convex hull (a STAC API takes the
geometry in the request body; a staircase of thousands of tile edges gains nothing)."""


@dataclass(frozen=True)
class TilePlan:
    """One output tile and what it needs."""

    tile: GridTile
    s2_items: tuple[Mapping[str, Any], ...]
    """STAC item documents whose footprints intersect the tile grown by the margin."""
    landsat_items: tuple[Mapping[str, Any], ...]
    s2_dates: tuple[str, ...]
    """Distinct local solar dates (ISO) of ``s2_items``."""
    landsat_dates: tuple[str, ...]
    cube_shape: tuple[int, int]
    """(rows, columns) of the 10 m cube the model runs on (tile + margin, clipped)."""
    flops: int
    """Model FLOPs of the tile (every block with its margin); 0 without any input date."""
    status: str = "new"
    """``new`` (no completion record), ``done`` (a record with the same inputs, model and
    parameters: skipped), ``recompute`` (a record made from other inputs)."""

    @property
    def tile_id(self) -> str:
        return self.tile.tile_id

    def summary(self, rate: float | None) -> dict[str, Any]:
        """JSON-able summary (item ids, not documents)."""
        return {
            "tile": self.tile_id,
            "epsg": self.tile.epsg,
            "bounds": list(self.tile.bounds),
            "status": self.status,
            "s2_items": [i["id"] for i in self.s2_items],
            "landsat_items": [i["id"] for i in self.landsat_items],
            "s2_dates": list(self.s2_dates),
            "landsat_dates": list(self.landsat_dates),
            "cube_shape": list(self.cube_shape),
            "gflops": round(self.flops / 1e9, 1),
            "estimated_s": None if not rate else round(self.flops / rate, 1),
        }


@dataclass(frozen=True)
class RegionPlan:
    """Every tile of a run, its inputs and its cost."""

    tiles: tuple[TilePlan, ...]
    output_dates: tuple[str, ...]
    flop_rate: float | None
    """FLOP/s used for the time estimates (None: no estimate)."""
    rate_source: str
    """Where the rate comes from (``measured on cpu``, ``configured``)."""
    device: str
    items_found: Mapping[str, int] = field(default_factory=dict)
    """Items returned by the search, per collection."""

    @property
    def total_flops(self) -> int:
        return sum(t.flops for t in self.tiles)

    def pending(self) -> list[TilePlan]:
        """The tiles a run computes (``new`` and ``recompute``)."""
        return [t for t in self.tiles if t.status != "done"]

    def to_dict(self) -> dict[str, Any]:
        pending = self.pending()
        todo_flops = sum(t.flops for t in pending)
        return {
            "output_dates": list(self.output_dates),
            "device": self.device,
            "flop_rate_gflops": None if not self.flop_rate else round(self.flop_rate / 1e9, 2),
            "rate_source": self.rate_source,
            "items_found": dict(self.items_found),
            "tiles": [t.summary(self.flop_rate) for t in self.tiles],
            "total": {
                "tiles": len(self.tiles),
                "to_compute": len(pending),
                "gflops": round(self.total_flops / 1e9, 1),
                "gflops_to_compute": round(todo_flops / 1e9, 1),
                "estimated_s": None
                if not self.flop_rate
                else round(todo_flops / self.flop_rate, 1),
            },
        }


def _footprint(item: Mapping[str, Any]) -> BaseGeometry:
    """An item's footprint in lon/lat (its geometry, else its bbox)."""
    if item.get("geometry"):
        return shape(item["geometry"])
    bbox = item["bbox"]
    half = len(bbox) // 2
    return box(bbox[0], bbox[1], bbox[half], bbox[half + 1])


def _outlines(grids: Sequence[RasterGrid]) -> np.ndarray:
    """Each grid's outline in lon/lat (edges densified), reprojected zone by zone in one
    vectorised call: a continent has ~10^5 tiles."""
    outlines = np.empty(len(grids), dtype=object)
    for epsg in sorted({g.epsg for g in grids}):
        index = [k for k, g in enumerate(grids) if g.epsg == epsg]
        boxes = shapely.box(*np.array([grids[k].bounds for k in index]).T)
        outlines[index] = [split_at_antimeridian(o)
                           for o in reproject_geometry(boxes, epsg, 4326, 500.0)]  # fmt: skip
    return outlines


def assign_items(
    grids: Sequence[RasterGrid], items: Sequence[Mapping[str, Any]]
) -> list[list[Mapping[str, Any]]]:
    """For each grid, the items whose footprint intersects it (in the input order)."""
    out: list[list[Mapping[str, Any]]] = [[] for _ in grids]
    if not items or not grids:
        return out
    tree = STRtree([_footprint(i) for i in items])
    grid_index, item_index = tree.query(_outlines(grids), predicate="intersects")
    for g, i in sorted(zip(grid_index.tolist(), item_index.tolist(), strict=True)):
        out[g].append(items[i])
    return out


def search_area(tiles: Sequence[GridTile], margin_px: int) -> BaseGeometry:
    """The lon/lat area to search for ``tiles``: every tile grown by the inference margin
    (an item that reaches only a tile's margin still feeds its edge pixels), zone by zone."""
    parts = []
    for epsg in sorted({t.epsg for t in tiles}):
        zone = [t for t in tiles if t.epsg == epsg]
        m = margin_px * zone[0].spec.pixel_m
        local = shapely.union_all([box(w - m, s - m, e + m, n + m)
                                   for w, s, e, n in (t.bounds for t in zone)])  # fmt: skip
        outline = reproject_geometry(local, epsg, 4326, zone[0].spec.tile_size_m / 4)
        outline = split_at_antimeridian(outline)
        if shapely.get_num_coordinates(outline) > _MAX_SEARCH_VERTICES:
            outline = outline.convex_hull
        parts.append(outline)
    return shapely.union_all(parts)


def plan_tiles(
    tiles: Sequence[GridTile],
    s2_items: Sequence[Mapping[str, Any]],
    landsat_items: Sequence[Mapping[str, Any]],
    n_output_dates: int,
    inference: InferenceConfig,
    model: ModelConfig | None = None,
    clip_to: tuple[float, float, float, float] | None = None,
) -> list[TilePlan]:
    """Each tile's items (by footprint), dates and FLOPs.

    Args:
        tiles: the output tiles.
        s2_items, landsat_items: STAC item documents of the whole AOI (one search).
        n_output_dates: output dates per tile.
        inference: blocks and margin, resolved (the cube is the tile grown by
            ``margin_px``, the output the tile: :meth:`GridTile.prediction_grids`).
        model: the architecture (FLOPs); default s1t3.
        clip_to: cut cubes to these bounds (tile CRS), as a run does.
    """
    margin = inference.margin_px or 0
    both = [t.prediction_grids(margin, clip_to) for t in tiles]
    grids = [cube for cube, _ in both]
    s2_by_tile = assign_items(grids, s2_items)
    landsat_by_tile = assign_items(grids, landsat_items)
    # Per item once, not per (tile, item): parsing dates dominates on a continent.
    solar = {id(i): solar_date(i).isoformat() for i in (*s2_items, *landsat_items)}

    @functools.cache
    def flops_of(shape: tuple[int, int], window: tuple[tuple[int, int], tuple[int, int]],
                 t_s: int, t_l: int) -> int:  # fmt: skip
        return cube_flops(shape, window, t_s, t_l, n_output_dates, inference, model)

    plans = []
    for tile, (grid, output), s2, landsat in zip(tiles, both, s2_by_tile, landsat_by_tile,
                                                  strict=True):  # fmt: skip
        s2_dates = tuple(sorted({solar[id(i)] for i in s2}))
        landsat_dates = tuple(sorted({solar[id(i)] for i in landsat}))
        ny, nx = grid.shape
        rows, cols = grid.window(output.bounds)
        window = ((rows.start, rows.stop), (cols.start, cols.stop))
        flops = flops_of((ny, nx), window, len(s2_dates), len(landsat_dates))
        plans.append(TilePlan(tile, tuple(s2), tuple(landsat), s2_dates, landsat_dates,
                              (ny, nx), flops))  # fmt: skip
    return plans


def format_plan(plan: Mapping[str, Any], max_rows: int = 50) -> str:
    """A plan (:meth:`RegionPlan.to_dict`) as a text table with totals."""
    lines = [
        f"{'tile':<20} {'status':<9} {'S2 items':>8} {'S2 dates':>8} {'LS items':>8} "
        f"{'LS dates':>8} {'GFLOP':>10} {'est. s':>9}"
    ]
    for tile in plan["tiles"][:max_rows]:
        estimate = "-" if tile["estimated_s"] is None else f"{tile['estimated_s']:.0f}"
        lines.append(
            f"{tile['tile']:<20} {tile['status']:<9} {len(tile['s2_items']):>8} "
            f"{len(tile['s2_dates']):>8} {len(tile['landsat_items']):>8} "
            f"{len(tile['landsat_dates']):>8} {tile['gflops']:>10.0f} {estimate:>9}"
        )
    if len(plan["tiles"]) > max_rows:
        lines.append(f"... {len(plan['tiles']) - max_rows} more tiles (all in --json output)")
    total = plan["total"]
    rate = plan["flop_rate_gflops"]
    lines.append("")
    lines.append(
        f"{total['tiles']} tiles, {total['to_compute']} to compute; "
        f"{len(plan['output_dates'])} output dates "
        f"({plan['output_dates'][0]}..{plan['output_dates'][-1]})"
    )
    found = ", ".join(f"{n} {c}" for c, n in plan["items_found"].items())
    lines.append(f"items found: {found or 'none'}")
    if rate:
        hours = total["estimated_s"] / 3600
        lines.append(
            f"model: {total['gflops_to_compute']:.0f} GFLOP to compute at {rate:.1f} GFLOP/s "
            f"({plan['rate_source']}, device {plan['device']}): about {hours:.2f} h of model "
            "time on one device (reads and writes not included)"
        )
    else:
        lines.append(f"model: {total['gflops_to_compute']:.0f} GFLOP to compute")
    return "\n".join(lines)
