"""Benchmark of one TAMRF forward pass on one tile: time, peak memory, FLOP/s vs a matmul peak.

For every number of input dates (S2:Landsat = 8:5, ``t_s = round(n * 8 / 13)``,
``t_l = n - t_s``) on a ``size x size`` tile (Landsat ``size/3``) with ``--queries`` query
dates, in eval mode under ``torch.no_grad``:

- wall time: median of ``--repeats`` forward passes after one warm-up pass;
- peak memory: the forward's working memory over a baseline taken after the imports, the
  model and the inputs exist. CUDA: ``torch.cuda.max_memory_allocated`` (reset just before the
  forward) minus ``torch.cuda.memory_allocated`` at that point. CPU: peak RSS
  (``resource.getrusage(RUSAGE_SELF).ru_maxrss``, the high-water mark reset just before the
  forward where Linux allows it) minus the RSS just before the forward. Every case runs in a
  fresh subprocess, so cases do not contaminate each other;
- FLOPs: ``tamrf_xr.flops.forward_flops`` (analytic; multiply-add = 2 FLOPs);
- achieved FLOP/s = FLOPs / median time, compared with the best FLOP/s of a large matmul
  (``--matmul-size``, default 4096) in the same dtype on the same device and thread count,
  measured in the same run: the practical peak.

Usage::

    python benchmarks/model_kernel.py --device cpu --threads 2 --repeats 1
    python benchmarks/model_kernel.py --device cuda --dtype bf16

Writes ``--out`` (JSON, default benchmarks/results/model_kernel.json) and prints a markdown
table with the targets marked PASS/FAIL.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

# Targets (see README): peak working memory at 128 dates, its growth from 64 to 128 dates,
# and the fraction of the practical fp32 peak reached at every date count.
TARGET_MEMORY_128_BYTES = 2.0e9
TARGET_MEMORY_RATIO = 2.2
TARGET_EFFICIENCY = 0.6
EFFICIENCY_DATES = (16, 128)
"""The date counts (inclusive range) the efficiency target applies to."""
MB = 1e6

SWEEP = {  # name -> knobs (memory_mb, encoder_batch_dates, channels_last) for --sweep
    "previous defaults (256 MB, 8 dates/batch, NCHW)": (256.0, 8, False),
    "1 date/batch, 256 MB, NCHW": (256.0, 1, False),
    "1 date/batch, 16 MB, NCHW": (16.0, 1, False),
    "1 date/batch, 4 MB, NHWC": (4.0, 1, True),
    "1 date/batch, 16 MB, NHWC": (16.0, 1, True),
    "1 date/batch, 64 MB, NHWC": (64.0, 1, True),
}

PARTS = {  # module name in TAMRF -> analytic part (tamrf_xr.flops.ForwardFlops)
    "s2_encoder": "s2_encoder",
    "landsat_encoder": "landsat_encoder",
    "landsat_upsample_conv": "landsat_encoder",
    "temporal_decoder": "temporal_decoder",
    "decoder_conv1": "spatial_decoder",
    "decoder_conv2": "spatial_decoder",
}


def split_dates(n: int) -> tuple[int, int]:
    """(t_s, t_l) for n input dates at S2:Landsat = 8:5."""
    t_s = round(n * 8 / 13)
    return t_s, n - t_s


# -- environment ---------------------------------------------------------------------------


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def model_provenance() -> dict[str, Any]:
    """The model source actually imported, and whether it is the committed one."""
    import hashlib

    import tamrf_xr.model

    source = Path(tamrf_xr.model.__file__).resolve()
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    repo = Path(__file__).resolve().parents[1]

    def git(*args: str) -> bytes | None:
        try:
            done = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, check=True)
        except (OSError, subprocess.CalledProcessError):
            return None
        return done.stdout

    commit = git("rev-parse", "HEAD")
    committed = git("show", "HEAD:tamrf_xr/model.py")
    return {
        "model_py": str(source),
        "model_py_sha256": digest,
        "git_commit": commit.decode().strip() if commit else None,
        "model_py_is_committed_version": (
            hashlib.sha256(committed).hexdigest() == digest if committed is not None else None
        ),
    }


def environment(device: str, threads: int) -> dict[str, Any]:
    import torch

    env: dict[str, Any] = {
        "device": device,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "threads": threads,
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "platform": platform.platform(),
        "load_average_1min": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        **model_provenance(),
    }
    if device == "cuda":
        env["gpu"] = torch.cuda.get_device_name(0)
        env["cuda"] = torch.version.cuda
        env["cudnn_allow_tf32"] = torch.backends.cudnn.allow_tf32
        env["matmul_allow_tf32"] = torch.backends.cuda.matmul.allow_tf32
    return env


# -- measurements (run inside the worker subprocesses) -------------------------------------


def _sync(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


def _rss_bytes() -> int:
    """Current resident set size (Linux /proc; elsewhere the peak so far, conservative)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return _maxrss_bytes()


def _maxrss_bytes() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # bytes on macOS, KiB on Linux


def _malloc_trim() -> bool:
    """glibc's ``malloc_trim(0)``: return free heap pages to the OS (False if unavailable)."""
    import ctypes

    try:
        return bool(ctypes.CDLL("libc.so.6").malloc_trim(0) or True)
    except (OSError, AttributeError):
        return False


def _reset_rss_peak() -> bool:
    """Reset the kernel's RSS high-water mark (Linux >= 4.0: write 5 to clear_refs)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def matmul_peak(device: str, dtype: str, threads: int, n: int, repeats: int) -> dict[str, Any]:
    """Best FLOP/s of an n x n x n matmul (2 n^3 FLOPs) after one warm-up."""
    import torch

    torch.set_num_threads(threads)
    torch_dtype = torch.bfloat16 if dtype == "bf16" else torch.float32
    g = torch.Generator().manual_seed(0)
    a = torch.randn(n, n, generator=g).to(device=device, dtype=torch_dtype)
    b = torch.randn(n, n, generator=g).to(device=device, dtype=torch_dtype)
    times = []
    for i in range(repeats + 1):
        _sync(device)
        start = time.perf_counter()
        torch.mm(a, b)
        _sync(device)
        if i:
            times.append(time.perf_counter() - start)
    flops = 2 * n**3
    return {
        "n": n,
        "dtype": dtype,
        "seconds": times,
        "flops": flops,
        "flop_per_s": flops / min(times),
    }


def _inputs(t_s: int, t_l: int, t_q: int, size: int, device: str):
    import torch

    g = torch.Generator().manual_seed(0)
    s2 = torch.randn(1, t_s, 10, size, size, generator=g).to(device)
    landsat = torch.randn(1, t_l, 8, size // 3, size // 3, generator=g).to(device)
    s2_days = torch.linspace(0, 360, t_s)[None].to(device)
    landsat_days = torch.linspace(3, 363, t_l)[None].to(device)
    query_days = torch.linspace(0, 364, t_q).to(device)
    return s2, s2_days, landsat, landsat_days, query_days


def _part_hooks(model, seconds: dict[str, float], device: str) -> list:
    """Forward hooks that add the wall time of every part's module calls to ``seconds``."""
    handles = []
    names = dict(PARTS)
    names.update({f"temporal_encoder.{i}": "temporal_encoder" for i in range(64)})
    for name, module in model.named_modules():
        part = names.get(name)
        if part is None:
            continue
        starts: list[float] = []

        def pre(_module, _args, starts=starts):
            _sync(device)
            starts.append(time.perf_counter())

        def post(_module, _args, _out, starts=starts, part=part):
            _sync(device)
            seconds[part] = seconds.get(part, 0.0) + time.perf_counter() - starts.pop()

        handles += [module.register_forward_pre_hook(pre), module.register_forward_hook(post)]
    return handles


def _pixel_chunk(model, t: int, t_q: int, element_bytes: int) -> int | None:
    """The transformer's pixels per chunk (a private method of the model: None if gone)."""
    try:
        return model._pixels_per_chunk(t, t_q, element_bytes)
    except (AttributeError, TypeError):
        return None


def run_case(case: dict[str, Any]) -> dict[str, Any]:
    """One date count, in this (fresh) process: time, peak memory, FLOPs."""
    import torch

    from tamrf_xr.flops import forward_flops
    from tamrf_xr.inference.kernel_settings import KernelSettings
    from tamrf_xr.model import TAMRF, ModelConfig

    device, n, size, t_q = case["device"], case["dates"], case["size"], case["queries"]
    torch.set_num_threads(case["threads"])
    torch.manual_seed(0)
    t_s, t_l = split_dates(n)
    config = ModelConfig()
    model = TAMRF(config).to(device).eval()
    # The settings workers run with (tamrf_xr.inference.cached_model), each overridable.
    settings = KernelSettings.for_device(
        device, case["memory_mb"], case["encoder_batch_dates"], case["channels_last"]
    )
    settings.apply(model)
    if case["pixel_chunk"]:
        model.pixel_chunk = case["pixel_chunk"]
    inputs = _inputs(t_s, t_l, t_q, size, device)
    autocast = torch.autocast(device, dtype=torch.bfloat16, enabled=case["dtype"] == "bf16")

    def forward():
        with torch.no_grad(), autocast:
            return model(*inputs)

    # The same matmul as the run's practical peak, here, just before this case: shows
    # whether the machine was as fast during this case (shared machines, clocks).
    local_peak = matmul_peak(device, case["dtype"], case["threads"], case["matmul_size"], 2)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    _sync(device)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
        baseline = torch.cuda.memory_allocated()
    else:
        # Free heap kept by the workers' malloc settings (WORKER_ENV) would otherwise hide
        # part of the pass's memory in the baseline: give it back first.
        trimmed = _malloc_trim()
        reset = _reset_rss_peak()
        baseline = _rss_bytes()
    times = []
    for i in range(case["repeats"] + 1):
        start = time.perf_counter()
        out = forward()
        _sync(device)
        if i:
            times.append(time.perf_counter() - start)
        del out
    if device == "cuda":
        peak_total = torch.cuda.max_memory_allocated()
        memory = {"method": "cuda.max_memory_allocated - memory_allocated before forward"}
    else:
        peak_total = _maxrss_bytes()
        memory = {
            "method": "ru_maxrss - RSS before forward (after malloc_trim)",
            "high_water_mark_reset": reset,
            "malloc_trim": trimmed,
        }
    memory.update(baseline_bytes=baseline, peak_total_bytes=peak_total)

    flops = forward_flops(config, size, size, t_s, t_l, t_q)
    median = statistics.median(times)
    row: dict[str, Any] = {
        "dates": n,
        "t_s": t_s,
        "t_l": t_l,
        "t_q": t_q,
        "pixel_chunk": _pixel_chunk(model, t_s + t_l, t_q, 2 if case["dtype"] == "bf16" else 4),
        "encoder_batch_dates": model.encoder_batch_dates,
        "memory_mb": settings.memory_mb,
        "channels_last": settings.channels_last,
        "setting": case.get("setting"),
        "seconds": times,
        "median_s": median,
        "peak_memory_bytes": peak_total - baseline,
        "memory": memory,
        "flops": flops.to_dict(),
        "flop_per_s": flops.total / median,
        "matmul_flop_per_s_before_case": local_peak["flop_per_s"],
        "load_average_1min_before_case": load,
    }
    if case["parts"]:  # one more forward with per-part timing hooks
        seconds: dict[str, float] = {}
        handles = _part_hooks(model, seconds, device)
        start = time.perf_counter()
        forward()
        _sync(device)
        elapsed = time.perf_counter() - start
        for handle in handles:
            handle.remove()
        parts = flops.parts()
        row["parts"] = {
            part: {"seconds": s, "flops": parts[part], "flop_per_s": parts[part] / s}
            for part, s in seconds.items()
        }
        row["parts"]["other"] = {"seconds": elapsed - sum(seconds.values()), "flops": 0}
        row["parts_total_s"] = elapsed
    if case["profile"]:  # one more forward under torch.profiler: top ops by self time
        from torch.profiler import ProfilerActivity, profile

        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device == "cuda" else [])
        with profile(activities=activities, record_shapes=False) as prof:
            forward()
            _sync(device)
        key = "self_device_time_total" if device == "cuda" else "self_cpu_time_total"
        events = sorted(prof.key_averages(), key=lambda e: getattr(e, key), reverse=True)
        row["profile_top_ops"] = [
            {"op": e.key, "calls": e.count, "self_s": getattr(e, key) / 1e6} for e in events[:15]
        ]
    return row


# -- driver ----------------------------------------------------------------------------------


def _worker_command(case: dict[str, Any]) -> list[str]:
    return [sys.executable, str(Path(__file__).resolve()), "--worker", json.dumps(case)]


def run_in_subprocess(case: dict[str, Any]) -> dict[str, Any]:
    # The environment of the run's worker processes (threads, OpenMP waits, malloc).
    from pipelines.cluster import WORKER_ENV

    env = os.environ | WORKER_ENV
    done = subprocess.run(_worker_command(case), capture_output=True, text=True, env=env)
    if done.returncode:
        raise RuntimeError(
            f"case {case['dates']} dates failed (exit {done.returncode}):\n{done.stderr[-4000:]}"
        )
    return json.loads(done.stdout.strip().splitlines()[-1])


def _verdict(ok: bool | None) -> str:
    return "N/A" if ok is None else ("PASS" if ok else "FAIL")


def evaluate(rows: list[dict[str, Any]], peak: float, dtype: str) -> dict[str, Any]:
    by_dates = {r["dates"]: r for r in rows}
    memory_128 = by_dates[128]["peak_memory_bytes"] if 128 in by_dates else None
    ratio = (
        by_dates[128]["peak_memory_bytes"] / by_dates[64]["peak_memory_bytes"]
        if 128 in by_dates and 64 in by_dates
        else None
    )
    efficiency = {r["dates"]: r["flop_per_s"] / peak for r in rows}
    lo, hi = EFFICIENCY_DATES
    targeted = [e for d, e in efficiency.items() if lo <= d <= hi]
    worst = min(targeted) if targeted else None
    return {
        "ratios": {
            "memory_128_over_64": ratio,
            "achieved_over_peak": efficiency,
            "achieved_over_peak_min": worst,
        },
        "targets": [
            {
                "target": "peak memory at 128 dates < 2 GB (2e9 bytes)",
                "value_bytes": memory_128,
                "result": _verdict(
                    None if memory_128 is None else memory_128 < TARGET_MEMORY_128_BYTES
                ),
            },
            {
                "target": f"memory(128)/memory(64) < {TARGET_MEMORY_RATIO}",
                "value": ratio,
                "result": _verdict(None if ratio is None else ratio < TARGET_MEMORY_RATIO),
            },
            {
                "target": f"achieved/peak FLOP/s >= {TARGET_EFFICIENCY} in fp32 at {lo}-{hi} dates",
                "value": worst,
                "result": _verdict(
                    None if dtype != "fp32" or worst is None else worst >= TARGET_EFFICIENCY
                ),
            },
        ],
    }


def markdown(result: dict[str, Any]) -> str:
    env, peak = result["environment"], result["peak_matmul"]
    s = result["settings"]
    targets = "; ".join(f"{t['target']}: **{t['result']}**" for t in result["targets"])
    device = env.get("gpu", env["cpu_model"])
    lines = [
        f"TAMRF forward, {s['size']}x{s['size']} px tile, {s['queries']} queries, "
        f"{s['dtype']}, {env['device']} ({device}), {env['threads']} threads, torch "
        f"{env['torch']}, {result['date'][:10]}, model.py of commit "
        f"{(env['git_commit'] or '?')[:7]}"
        f"{'' if env['model_py_is_committed_version'] else ' (MODIFIED)'}. "
        f"Practical peak: {peak['n']}^3 {peak['dtype']} "
        f"matmul = {peak['flop_per_s'] / 1e9:.1f} GFLOP/s.",
        "",
        "Knobs: "
        + ", ".join(
            f"{k}={s[k]}"
            for k in ("memory_mb", "encoder_batch_dates", "pixel_chunk", "channels_last")
        )
        + f" (None: model default); median of {s['repeats']} after 1 warm-up.",
        "",
        f"Targets: {targets}.",
        "",
        "| dates (S2+L) | pixel chunk | time (s) | peak memory (MB) | TFLOP | GFLOP/s "
        "| achieved/peak | matmul GFLOP/s before case |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        lines.append(
            f"| {r['dates']} ({r['t_s']}+{r['t_l']}) | {r['pixel_chunk']} | {r['median_s']:.2f} "
            f"| {r['peak_memory_bytes'] / MB:.0f} | {r['flops']['total'] / 1e12:.3f} "
            f"| {r['flop_per_s'] / 1e9:.1f} "
            f"| {result['ratios']['achieved_over_peak'][r['dates']]:.2f} "
            f"| {r['matmul_flop_per_s_before_case'] / 1e9:.0f} |"
        )
    ratio = result["ratios"]["memory_128_over_64"]
    if ratio is not None:
        lines += ["", f"memory(128)/memory(64) = {ratio:.2f}"]
    parts_rows = [r for r in result["rows"] if "parts" in r]
    if parts_rows:
        lines += ["", "| dates | part | s | share | GFLOP/s | /peak |", "|---|---|---|---|---|---|"]
        for r in parts_rows:
            for part, p in r["parts"].items():
                rate = p["flops"] / p["seconds"] if p["seconds"] > 0 else 0.0
                lines.append(
                    f"| {r['dates']} | {part} | {p['seconds']:.2f} "
                    f"| {p['seconds'] / r['parts_total_s']:.0%} | {rate / 1e9:.1f} "
                    f"| {rate / peak['flop_per_s']:.2f} |"
                )
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument(
        "--dtype",
        choices=["fp32", "bf16", "auto"],
        default="fp32",
        help="auto: bf16 where the hardware runs it natively (tamrf_xr.precision), else fp32",
    )
    p.add_argument("--dates", default="8,16,32,64,128", help="input date counts, comma-separated")
    p.add_argument("--size", type=int, default=165, help="tile side at 10 m (multiple of 3)")
    p.add_argument("--queries", type=int, default=12)
    p.add_argument("--repeats", type=int, default=3, help="timed passes after one warm-up")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    p.add_argument("--memory-mb", type=float, default=None, help="model.set_memory_budget")
    p.add_argument("--encoder-batch-dates", type=int, default=None, help="model.set_memory_budget")
    p.add_argument("--pixel-chunk", type=int, default=None, help="model.set_memory_budget")
    p.add_argument(
        "--channels-last",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="NHWC convolutions (default: the workers' setting, on CPU only)",
    )
    p.add_argument(
        "--sweep",
        action="store_true",
        help="time every knob setting of SWEEP at --dates (default 16,64), one run; "
        "writes --out with '_sweep' appended",
    )
    p.add_argument("--matmul-size", type=int, default=4096)
    p.add_argument("--matmul-repeats", type=int, default=5)
    p.add_argument("--parts", action="store_true", help="one more pass timing each part")
    p.add_argument("--profile", action="store_true", help="one more pass under torch.profiler")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/model_kernel.json"))
    p.add_argument(
        "--report", type=Path, help="re-evaluate and print the table of an earlier --out JSON"
    )
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.size % 3:
        p.error(f"--size must be a multiple of 3, got {args.size}")
    return args


def _case(args: argparse.Namespace, threads: int, n: int, **knobs: Any) -> dict[str, Any]:
    """One subprocess case from the command line, ``knobs`` overriding it."""
    case = {
        "device": args.device,
        "dtype": args.dtype,
        "dates": n,
        "size": args.size,
        "queries": args.queries,
        "repeats": args.repeats,
        "threads": threads,
        "memory_mb": args.memory_mb,
        "encoder_batch_dates": args.encoder_batch_dates,
        "pixel_chunk": args.pixel_chunk,
        "channels_last": args.channels_last,
        "matmul_size": args.matmul_size,
        "parts": args.parts,
        "profile": args.profile,
    }
    return case | knobs


def sweep(args: argparse.Namespace, threads: int) -> dict[str, Any]:
    """Every setting of :data:`SWEEP` at each date count, in one run: the fastest becomes the
    default (tamrf_xr.inference.kernel_settings)."""
    dates = [int(d) for d in (args.dates if args.dates != "8,16,32,64,128" else "16,64").split(",")]
    peak = matmul_peak(args.device, args.dtype, threads, args.matmul_size, args.matmul_repeats)
    rows = []
    # Interleaved by date count, so that a busy spell of a shared machine hits every setting.
    for n in dates:
        for name, (memory_mb, batch, channels_last) in SWEEP.items():
            knobs = {"memory_mb": memory_mb, "encoder_batch_dates": batch,
                     "channels_last": channels_last, "setting": name}  # fmt: skip
            case = _case(args, threads, n, **knobs, parts=False, profile=False)
            row = run_in_subprocess(case)
            rows.append(row)
            memory = row["peak_memory_bytes"] / MB
            print(f"{n} dates, {name}: {row['median_s']:.2f} s, {memory:.0f} MB", file=sys.stderr)
    best_peak = max([peak["flop_per_s"]] + [r["matmul_flop_per_s_before_case"] for r in rows])
    result = {
        "benchmark": "model_kernel_sweep",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "environment": environment(args.device, threads),
        "settings": {
            "size": args.size,
            "queries": args.queries,
            "dates": dates,
            "dtype": args.dtype,
            "repeats": args.repeats,
        },
        "peak_flop_per_s": best_peak,
        "rows": rows,
    }
    args.out = args.out.with_name(args.out.stem + "_sweep.json")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(sweep_markdown(result))
    print(f"\nwrote {args.out}", file=sys.stderr)
    return result


def sweep_markdown(result: dict[str, Any]) -> str:
    """Time per setting and date count, relative to the previous defaults (same run)."""
    dates = result["settings"]["dates"]
    reference = next(iter(SWEEP))
    time = {(r["setting"], r["dates"]): r for r in result["rows"]}
    peak = result["peak_flop_per_s"]
    lines = [
        f"Knob sweep, {result['settings']['size']} px, {result['settings']['queries']} queries, "
        f"{result['settings']['dtype']}, {result['environment']['threads']} threads, "
        f"{result['date'][:10]}; practical peak {peak / 1e9:.0f} GFLOP/s.",
        "",
        "| setting | " + " | ".join(f"{n} dates: s (x faster, /peak, MB)" for n in dates) + " |",
        "|---|" + "---|" * len(dates),
    ]
    for name in SWEEP:
        cells = []
        for n in dates:
            row, base = time[(name, n)], time[(reference, n)]
            cells.append(
                f"{row['median_s']:.2f} ({base['median_s'] / row['median_s']:.2f}x, "
                f"{row['flop_per_s'] / peak:.2f}, {row['peak_memory_bytes'] / MB:.0f})"
            )
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    fastest = {n: min(SWEEP, key=lambda name, n=n: time[(name, n)]["median_s"]) for n in dates}
    lines += ["", "Fastest: " + "; ".join(f"{n} dates: {f}" for n, f in fastest.items())]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    if args.worker:
        print(json.dumps(run_case(json.loads(args.worker))))
        return {}
    if args.report:
        result = json.loads(args.report.read_text())
        peak = result["peak_matmul"]
        peak["flop_per_s"] = max(
            [2 * peak["n"] ** 3 / min(peak["seconds"])]
            + [r["matmul_flop_per_s_before_case"] for r in result["rows"]]
        )
        result.update(evaluate(result["rows"], peak["flop_per_s"], result["settings"]["dtype"]))
        print(markdown(result))
        return result
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device visible")
    threads = args.threads or torch.get_num_threads()
    torch.set_num_threads(threads)
    if args.dtype == "auto":
        from tamrf_xr.precision import resolve_precision

        args.dtype = resolve_precision("auto", args.device)
    if args.sweep:
        return sweep(args, threads)
    dates = [int(d) for d in args.dates.split(",")]
    peak = matmul_peak(args.device, "fp32", threads, args.matmul_size, args.matmul_repeats)
    result: dict[str, Any] = {
        "benchmark": "model_kernel",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "environment": environment(args.device, threads),
        "settings": {
            "size": args.size,
            "landsat_size": args.size // 3,
            "queries": args.queries,
            "dates": dates,
            "dtype": args.dtype,
            "repeats": args.repeats,
            "memory_mb": args.memory_mb,
            "encoder_batch_dates": args.encoder_batch_dates,
            "pixel_chunk": args.pixel_chunk,
            "channels_last": args.channels_last,
        },
        "peak_matmul": peak,
        "rows": [],
    }
    if args.dtype == "bf16":
        result["peak_matmul_fp32"] = peak
        result["peak_matmul"] = peak = matmul_peak(
            args.device, "bf16", threads, args.matmul_size, args.matmul_repeats
        )
    for n in dates:
        case = _case(args, threads, n)
        row = run_in_subprocess(case)
        result["rows"].append(row)
        print(
            f"{n} dates: {row['median_s']:.2f} s, {row['peak_memory_bytes'] / MB:.0f} MB, "
            f"{row['flop_per_s'] / 1e9:.1f} GFLOP/s",
            file=sys.stderr,
            flush=True,
        )
    # The practical peak is measured again after the cases (clock and neighbour noise on
    # shared machines) ...
    again = matmul_peak(args.device, peak["dtype"], threads, args.matmul_size, args.matmul_repeats)
    peak["seconds"] += again["seconds"]
    # ... and before every case (in the worker): the peak is the best of all of them.
    peak["flop_per_s"] = max(
        [peak["flop_per_s"], again["flop_per_s"]]
        + [r["matmul_flop_per_s_before_case"] for r in result["rows"]]
    )
    result["environment"]["load_average_1min_end"] = (
        os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    )
    result.update(evaluate(result["rows"], peak["flop_per_s"], args.dtype))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(markdown(result))
    print(f"\nwrote {args.out}", file=sys.stderr)
    return result


if __name__ == "__main__":
    main()
