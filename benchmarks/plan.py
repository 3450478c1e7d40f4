"""How long `tamrf plan` takes for a continental AOI, without the catalog's search time.

The items of one search are given to ``pipelines.production.plan_region`` (so nothing is
downloaded): synthetic but realistically sized footprints of one month over the AOI,
Sentinel-2 as 110 km squares on each UTM zone's 100 km grid seen every 5 days, Landsat as
185 km squares every 8 days. The plan tiles the AOI (9.9 km tiles), assigns every item to the
tiles its footprint reaches (grown by the inference margin), and estimates each tile's FLOPs
at a given rate (no measuring pass). Reported: tiles, items, item-tile pairs and seconds per
step (tiling, the plan), in one run.

Usage::

    python benchmarks/plan.py                 # Europe-sized box, one month
    python benchmarks/plan.py --bbox 1,43,3,45 --quick

Writes ``--out`` (JSON, default benchmarks/results/plan.json) and prints a table.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def synthetic_items(
    bbox: tuple[float, float, float, float], start: dt.date, days: int, size_km: float,
    revisit_days: int, collection: str, prefix: str,
) -> list[dict[str, Any]]:  # fmt: skip
    """Square footprints of ``size_km`` on a grid over ``bbox``; each square is seen every
    ``revisit_days``, on a day that shifts with its column (neighbouring orbits)."""
    west, south, east, north = bbox
    step_lat = size_km * 0.9 / 111.0
    half_lat = size_km / 2 / 111.0
    items = []
    for row, lat in enumerate(np.arange(south - step_lat, north + step_lat, step_lat)):
        cos = max(np.cos(np.radians(lat)), 0.2)
        step_lon, half_lon = step_lat / cos, half_lat / cos
        for column, lon in enumerate(np.arange(west - step_lon, east + step_lon, step_lon)):
            for day in range(column % revisit_days, days, revisit_days):
                when = start + dt.timedelta(days=day)
                ring = [[lon - half_lon, lat - half_lat], [lon + half_lon, lat - half_lat],
                        [lon + half_lon, lat + half_lat], [lon - half_lon, lat + half_lat],
                        [lon - half_lon, lat - half_lat]]  # fmt: skip
                items.append({
                    "type": "Feature", "id": f"{prefix}_{row}_{column}_{when:%Y%m%d}",
                    "collection": collection,
                    "geometry": {"type": "Polygon", "coordinates": [ring]},
                    "bbox": [lon - half_lon, lat - half_lat, lon + half_lon, lat + half_lat],
                    "properties": {"datetime": f"{when.isoformat()}T10:30:00Z"},
                    "assets": {},
                })  # fmt: skip
    return items


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bbox", default="-10,36,30,60", help="W,S,E,N in degrees")
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--quick", action="store_true", help="a 2 x 2 degree box")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/plan.json")
    args = parser.parse_args()
    bbox = (1.0, 43.0, 3.0, 45.0) if args.quick else tuple(float(v) for v in args.bbox.split(","))

    from pipelines.grid import GridSpec, tiles_for_aoi
    from pipelines.production import ProductionRequest, plan_region

    start = dt.date(2023, 6, 1)
    s2 = synthetic_items(bbox, start, args.days, 110.0, 5, "sentinel-2-l2a", "S2")
    landsat = synthetic_items(bbox, start, args.days, 185.0, 8, "landsat-c2-l2", "LC")
    request = ProductionRequest(
        catalog="earth-search-v1", aoi={"type": "Polygon", "coordinates": [[
            [bbox[0], bbox[1]], [bbox[2], bbox[1]], [bbox[2], bbox[3]], [bbox[0], bbox[3]],
            [bbox[0], bbox[1]]]]},
        start=start, end=start + dt.timedelta(days=args.days - 1), dates="SMS",
        out_dir=ROOT / "benchmarks/results/plan-out-never-written", flop_rate=100e9,
    )  # fmt: skip
    clock = time.perf_counter()
    tiles = tiles_for_aoi(bbox, GridSpec())
    tiling_s = time.perf_counter() - clock
    clock = time.perf_counter()
    plan = plan_region(request, items={"sentinel-2-l2a": s2, "landsat-c2-l2": landsat})
    plan_s = time.perf_counter() - clock
    pairs = sum(len(t.s2_items) + len(t.landsat_items) for t in plan.tiles)
    result = {
        "bbox": list(bbox),
        "days": args.days,
        "tiles": len(plan.tiles),
        "s2_items": len(s2),
        "landsat_items": len(landsat),
        "item_tile_pairs": pairs,
        "tiling_s": round(tiling_s, 2),
        "plan_s": round(plan_s, 2),
        "model_pflop": round(plan.total_flops / 1e15, 2),
        "python": platform.python_version(),
        "machine": platform.machine(),
    }
    assert len(tiles) == len(plan.tiles)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print("| AOI | tiles | S2 items | Landsat items | item-tile pairs | tiling s | plan s |")
    print("|---|---|---|---|---|---|---|")
    print(f"| {bbox} | {len(plan.tiles)} | {len(s2)} | {len(landsat)} | {pairs} "
          f"| {tiling_s:.1f} | {plan_s:.1f} |")  # fmt: skip
    print(f"written: {args.out}")


if __name__ == "__main__":
    main()
