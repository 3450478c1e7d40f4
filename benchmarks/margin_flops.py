"""Model FLOPs per output pixel against the FLOPs of the tile's own pixels, per tile size.

Analytic (``tamrf_xr.flops.forward_flops``), no timing. For a tile of ``T x T`` 10 m pixels
inside a large run (context on every side):

- **now**: the cube is the tile grown once by the receptive-field margin (60 px for s1t3);
  ``predict`` cuts the TILE into blocks (:func:`tamrf_xr.inference.predict.block_layout`,
  automatic size under the block memory budget) and each block reads up to the margin of the
  cube around it; the model computes each stage only where the block needs it
  (``tamrf_xr.inference.throughput.cube_flops``, what ``tamrf plan`` reports).
- **before** (commit a88df71): the cube was the tile grown by the margin, ``predict`` cut the
  CUBE into blocks of 480 px (a last block smaller than the margin merged into the previous
  one), grew every block by the margin again (NaN beyond the cube) and ran the whole network
  on every block.

The reference is ``forward_flops`` of the tile alone (T x T, no context): the cost of its own
pixels. Target: now / reference <= 1.3 at the default tile size (9.9 km, 990 px).

Usage::

    python benchmarks/margin_flops.py              # writes benchmarks/results/margin_flops.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from tamrf_xr.flops import forward_flops
from tamrf_xr.inference.predict import InferenceConfig
from tamrf_xr.inference.throughput import cube_flops
from tamrf_xr.model import ModelConfig
from tamrf_xr.receptive_field import receptive_field_radius

TARGET = 1.3
DEFAULT_TILE_PX = 990
TILE_SIZES_PX = (990, 660, 480, 330, 240, 120)
DATES = {  # (S2, Landsat, output) dates
    "16+10 kept, 24 out": (16, 10, 24),
    "73+45 (a year, all kept), 24 out": (73, 45, 24),
}


def _before(tile: int, margin: int, t_s: int, t_l: int, t_q: int, model: ModelConfig) -> int:
    """FLOPs of the previous scheme (see the module docstring)."""
    n = tile + 2 * margin
    sizes = [480] * (n // 480) + ([n % 480] if n % 480 else [])
    if len(sizes) > 1 and sizes[-1] < margin:
        sizes[-2] += sizes.pop()
    return sum(
        forward_flops(model, h + 2 * margin, w + 2 * margin, t_s, t_l, t_q).total
        for h in sizes
        for w in sizes
    )


def measure() -> dict[str, Any]:
    model = ModelConfig()
    margin = receptive_field_radius(model)
    config = InferenceConfig(margin_px=margin)
    rows = []
    for label, (t_s, t_l, t_q) in DATES.items():
        for tile in TILE_SIZES_PX:
            reference = forward_flops(model, tile, tile, t_s, t_l, t_q).total
            shape = (tile + 2 * margin, tile + 2 * margin)
            window = ((margin, margin + tile), (margin, margin + tile))
            now = cube_flops(shape, window, t_s, t_l, t_q, config, model)
            rows.append({
                "dates": label, "tile_px": tile, "reference_flops": reference,
                "now_flops": now, "before_flops": _before(tile, margin, t_s, t_l, t_q, model),
                "now_ratio": now / reference,
                "before_ratio": _before(tile, margin, t_s, t_l, t_q, model) / reference,
            })  # fmt: skip
    return {"benchmark": "margin_flops", "margin_px": margin, "rows": rows}


def markdown(result: dict[str, Any]) -> str:
    lines = [
        f"Model FLOPs / FLOPs of the tile's own pixels (margin {result['margin_px']} px, s1t3).",
        "",
        "| dates | tile px | before | now | now <= 1.3 |",
        "|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        ok = "PASS" if r["now_ratio"] <= TARGET else "FAIL"
        mark = " (default)" if r["tile_px"] == DEFAULT_TILE_PX else ""
        lines.append(
            f"| {r['dates']} | {r['tile_px']}{mark} | {r['before_ratio']:.3f} "
            f"| **{r['now_ratio']:.3f}** | {ok} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/margin_flops.json"))
    args = parser.parse_args(argv)
    result = measure()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(markdown(result))
    return result


if __name__ == "__main__":
    main()
