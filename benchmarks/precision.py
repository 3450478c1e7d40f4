"""Numerical difference of reduced-precision inference (bf16 / fp16 autocast) to fp32.

Runs the same forward pass (random weights, reference "ls2s2_all" statistics, simulated-like
standardised inputs) in fp32 and at the reduced precision, and reports per band group the mean,
RMS and max absolute difference in standardised units and in physical units (reflectance,
Kelvin), and the time of each pass. Writes JSON and prints a short table.

    python benchmarks/precision.py                       # CPU, bf16
    python benchmarks/precision.py --device cuda --precision fp16
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import time
from pathlib import Path

import torch

from tamrf_xr.model import TAMRF
from tamrf_xr.normalisation import REFERENCE_LS2S2_ALL
from tamrf_xr.precision import autocast, cpu_has_native_bf16

GROUPS = {"Landsat SR (B1-B7)": slice(0, 7), "Landsat LST (B10)": slice(7, 8),
          "S2 (B2-B12)": slice(8, 18)}  # fmt: skip


def _forward(model, inputs, queries, device, precision):
    start = time.perf_counter()
    with torch.no_grad(), autocast(device, precision):
        out = model(*inputs, queries)
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()
    return out.float(), time.perf_counter() - start


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", choices=["bf16", "fp16"], default="bf16")
    parser.add_argument("--size", type=int, default=165)
    parser.add_argument("--dates", type=int, default=13, help="S2:Landsat 8:5")
    parser.add_argument("--queries", type=int, default=4)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/precision.json"))
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device(args.device)
    model = TAMRF().eval().to(device)
    t_s = round(args.dates * 8 / 13)
    t_l = args.dates - t_s
    g = torch.Generator().manual_seed(1)
    size = args.size
    inputs = (
        torch.randn(1, t_s, 10, size, size, generator=g).to(device),
        torch.linspace(0, 360, t_s)[None].to(device),
        torch.randn(1, t_l, 8, size // 3, size // 3, generator=g).to(device),
        torch.linspace(3, 355, t_l)[None].to(device),
    )
    queries = torch.linspace(10, 350, args.queries).tolist()
    reference, t32 = _forward(model, inputs, queries, device, "fp32")
    reduced, t_reduced = _forward(model, inputs, queries, device, args.precision)
    physical_ref = REFERENCE_LS2S2_ALL.unstandardise(reference.cpu())
    physical_red = REFERENCE_LS2S2_ALL.unstandardise(reduced.cpu())
    rows = []
    for name, channels in GROUPS.items():
        d_std = (reduced - reference)[:, :, channels].abs().cpu()
        d_phys = (physical_red - physical_ref)[:, :, channels].abs()
        rows.append({
            "group": name,
            "unit": "K" if "LST" in name else "reflectance",
            "standardised": {"mean": d_std.mean().item(), "rms": d_std.pow(2).mean().sqrt().item(),
                             "max": d_std.max().item()},
            "physical": {"mean": d_phys.mean().item(), "rms": d_phys.pow(2).mean().sqrt().item(),
                         "max": d_phys.max().item()},
        })  # fmt: skip
    result = {
        "benchmark": "precision",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "device": str(device),
        "precision": args.precision,
        "native_bf16_cpu": cpu_has_native_bf16(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "tile": size,
        "t_s": t_s,
        "t_l": t_l,
        "queries": args.queries,
        "weights": "random (seed 0); statistics: ls2s2_all reference",
        "seconds": {"fp32": t32, args.precision: t_reduced},
        "speedup": t32 / t_reduced,
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{args.precision} vs fp32 on {device}, {size}x{size} px, {t_s}+{t_l} dates, "
          f"{args.queries} queries; speed-up {result['speedup']:.2f}x")  # fmt: skip
    print("| bands | mean (std.) | max (std.) | mean (physical) | max (physical) |")
    print("|---|---|---|---|---|")
    for row in rows:
        s, p = row["standardised"], row["physical"]
        print(f"| {row['group']} | {s['mean']:.2e} | {s['max']:.2e} | {p['mean']:.2e} "
              f"{row['unit']} | {p['max']:.2e} {row['unit']} |")  # fmt: skip
    return result


if __name__ == "__main__":
    main()
