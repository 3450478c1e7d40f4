"""The evaluation report: Markdown tables, PNG plots and a JSON of every figure.

:func:`write_report` turns an :class:`~tamrf_xr.evaluation.evaluate.EvaluationResult` into
``report.md`` (a wins-and-losses overview, then per task one table per reference and split:
band x method with RMSE, nRMSE, FR, BRISQUE and the pixels and dates behind each figure),
``report.json`` (the same figures, every per-date figure, the metadata) and the plots:
``<task>-bands.png`` (RMSE per band and method), ``<task>-strip.png`` (truth / inputs /
baselines / TAMRF on one date) and ``gap-length.png`` (error against the gap length).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pipelines.atomic_json import write_json_atomically
from tamrf_xr.evaluation.evaluate import EvaluationResult
from tamrf_xr.evaluation.protocols import TASKS, Strip
from tamrf_xr.evaluation.scoring import summarise

__all__ = ["write_report"]

REFERENCE_TITLES = {
    "observation": "against the observations (degraded prediction, clear pixels)",
    "truth": "against the simulator's 10 m truth (every pixel)",
}
SPLIT_TITLES = {
    "masked": "masked dates (not given as input)",
    "clear": "clear dates (given as input)",
}
UNITS = "RMSE in reflectance (LS_B10: Kelvin); FR in dB; BRISQUE: lower is better."


def _number(value: float | None, band: str = "", digits: int | None = None) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    if digits is None:
        digits = 3 if band == "LS_B10" else 4
    return f"{value:.{digits}f}"


def _methods(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """Methods in a stable order: TAMRF first, then the baselines as they came."""
    names = list(dict.fromkeys(r["method"] for r in rows))
    return sorted(names, key=lambda m: (not m.startswith("tamrf"), names.index(m)))


def _bands(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    return list(dict.fromkeys(r["band"] for r in rows))


def _table(rows: list[dict]) -> list[str]:
    lines = [
        "| band | method | RMSE | nRMSE | FR (dB) | BRISQUE | pixels | dates |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    methods = _methods(rows)
    for band in _bands(rows):
        in_band = {r["method"]: r for r in rows if r["band"] == band}
        finite = [r["rmse"] for r in in_band.values() if r["rmse"] is not None]
        best = min(finite) if finite else None
        for method in methods:
            r = in_band.get(method)
            if r is None:
                continue
            rmse = _number(r["rmse"], band)
            if best is not None and r["rmse"] == best and len(finite) > 1:
                rmse = f"**{rmse}**"
            lines.append(
                f"| {band} | {method} | {rmse} | {_number(r['nrmse'], digits=3)} | "
                f"{_number(r['fr_db'], digits=2)} | {_number(r['brisque'], digits=1)} | "
                f"{r['pixels']} | {r['dates']} |"
            )
    return lines


def _wins(summary: list[dict]) -> list[str]:
    """Per task, sensor, reference and split: how TAMRF's RMSE compares with the best baseline."""
    lines = [
        "| task | sensor | reference | split | bands where TAMRF is best | TAMRF ÷ best "
        "baseline RMSE (median over bands) | best baseline (most bands) |",
        "|---|---|---|---|---:|---:|---|",
    ]
    groups: dict[tuple, list[dict]] = {}
    for r in summary:
        groups.setdefault((r["task"], r["sensor"], r["reference"], r["split"]), []).append(r)
    for (task, sensor, reference, split), rows in groups.items():
        wins, compared, ratios, best_names = 0, 0, [], []
        for band in _bands(rows):
            by_method = {r["method"]: r["rmse"] for r in rows if r["band"] == band}
            tamrf = by_method.get("tamrf")
            baselines = {
                m: v for m, v in by_method.items() if not m.startswith("tamrf") and v is not None
            }
            if tamrf is None or not baselines:
                continue
            name, best = min(baselines.items(), key=lambda kv: kv[1])
            best_names.append(name)
            compared += 1
            wins += tamrf < best
            if best > 0:  # a baseline can be exact (linear on its own clear inputs)
                ratios.append(tamrf / best)
        if not compared:
            continue
        ratio = f"{np.median(ratios):.2f}" if ratios else "–"
        common = max(set(best_names), key=best_names.count)
        lines.append(
            f"| {task} | {sensor} | {reference} | {split} | {wins} of {compared} | {ratio} | "
            f"{common} |"
        )
    return lines


def _model_line(metadata: Mapping[str, Any]) -> str:
    model = metadata.get("model") or {}
    origin = model.get("origin") or {}
    kind = origin.get("kind", "file") if isinstance(origin, Mapping) else str(origin)
    if isinstance(origin, Mapping) and origin.get("name"):
        kind = f"{origin['name']} ({kind})"
    digest = model.get("weights_sha256") or model.get("file_sha256") or "?"
    architecture = model.get("architecture") or {}
    shape = (
        f", {architecture.get('rrdb_blocks')} RRDB / {architecture.get('transformer_layers')} "
        "transformer layers"
        if architecture
        else ""
    )
    return f"{kind} (sha256 {digest[:12]}…{shape})"


def _markdown(result: EvaluationResult, metadata: Mapping[str, Any], figures: dict) -> str:
    lines = [f"# TAMRF evaluation: {result.dataset}", ""]
    if metadata.get("untrained_model"):
        lines += [
            "> **The model is the UNTRAINED stand-in** (random weights): its figures say "
            "nothing about TAMRF and are here to show the protocol runs. Leave out "
            "`--checkpoint untrained` for the bundled model, or give trained weights.",
            "",
        ]
    lines += [
        f"- Dataset: {result.description}",
        f"- Model: {_model_line(metadata)}",
        f"- Protocol: border {result.config.border_px} px of each reference grid; gap-filling "
        f"hold-out `{result.config.holdout}` (GAPS g = {result.config.gap_days} days); dates "
        f"held out in turn or fused need a clear fraction >= "
        f"{result.config.min_reference_clear}",
        f"- BRISQUE: {metadata.get('brisque', 'not computed')}",
        "- Every method is scored on the same pixels (those where all methods of a task have "
        "a value). " + UNITS,
        f"- Wall time: {metadata.get('wall_time_s', '–')} s; tamrf-xr "
        f"{metadata.get('software', '–')}; {metadata.get('created', '')}",
        "",
    ]
    lines += [f"- Note: {note}" for note in result.notes]
    lines += ["", "## Where TAMRF wins and where it loses", "", *_wins(result.summary), ""]
    for task in TASKS:
        rows = [r for r in result.summary if r["task"] == task]
        if not rows:
            continue
        lines += [f"## {task}", ""]
        for reference in ("observation", "truth"):
            for split in ("masked", "clear"):
                part = [r for r in rows if r["reference"] == reference and r["split"] == split]
                if part:
                    lines += [f"### {SPLIT_TITLES[split]}, {REFERENCE_TITLES[reference]}", ""]
                    lines += [*_table(part), ""]
        for name in figures.get(task, []):
            lines += [f"![{task}: {name}]({name})", ""]
    return "\n".join(lines) + "\n"


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, np.generic):
        return _json_safe(value.item())
    return value


def _per_date(records: list[dict]) -> list[dict]:
    out = []
    for r in records:
        row = {k: v for k, v in r.items() if k not in ("sq", "abs")}
        row["rmse"] = math.sqrt(r["sq"] / r["pixels"]) if r["pixels"] else None
        out.append(row)
    return out


# ---------------------------------------------------------------------------------------------
# Plots
# ---------------------------------------------------------------------------------------------


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on servers and in CI
    import matplotlib.pyplot as plt

    return plt


def _band_bars(rows: list[dict], task: str, path: Path) -> None:
    """RMSE per band and method: a row per reference, reflectance and LST in their own
    panels (their units differ by two orders of magnitude)."""
    plt = _pyplot()
    split = "masked" if any(r["split"] == "masked" for r in rows) else "clear"
    references = [
        ref for ref in ("observation", "truth") if any(r["reference"] == ref for r in rows)
    ]
    groups = [
        g
        for g in ("reflectance", "LST")
        if any((r["band"] == "LS_B10") == (g == "LST") for r in rows)
    ]
    widths = [1 if g == "LST" else max(1, len({r["band"] for r in rows}) - 1) for g in groups]
    fig, axes = plt.subplots(
        len(references),
        len(groups),
        figsize=(10, 3.2 * len(references)),
        squeeze=False,
        gridspec_kw={"width_ratios": widths},
    )
    for i, reference in enumerate(references):
        for j, group in enumerate(groups):
            ax = axes[i, j]
            part = [
                r
                for r in rows
                if r["reference"] == reference
                and r["split"] == split
                and (r["band"] == "LS_B10") == (group == "LST")
            ]
            bands, methods = _bands(part), _methods(part)
            width = 0.8 / max(len(methods), 1)
            for k, method in enumerate(methods):
                by_band = {r["band"]: r["rmse"] for r in part if r["method"] == method}
                heights = [np.nan if by_band.get(b) is None else by_band[b] for b in bands]
                ax.bar(np.arange(len(bands)) + k * width, heights, width, label=method)
            ax.set_xticks(np.arange(len(bands)) + 0.4 - width / 2, bands, fontsize=8)
            ax.set_ylabel("RMSE (K)" if group == "LST" else "RMSE (reflectance)")
            ax.set_title(f"{task}: {split} dates, {reference}", fontsize=9)
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _gap_length(records: list[dict], path: Path) -> bool:
    """RMSE of each masked date (pooled over the sensor's reflectance bands) against its gap
    length (days to each pixel's nearest clear input, averaged), per method; False when there
    is no masked date."""
    masked = [
        r
        for r in records
        if r["task"] == "gap-filling" and r["split"] == "masked" and r["band"] != "LS_B10"
    ]
    if not masked:
        return False
    plt = _pyplot()
    pooled = summarise(masked, ("reference", "sensor", "method", "date", "gap_days"))
    panels = sorted({(r["reference"], r["sensor"]) for r in pooled})
    fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 3.4), squeeze=False)
    for ax, (reference, sensor) in zip(axes[0], panels, strict=True):
        part = [r for r in pooled if r["reference"] == reference and r["sensor"] == sensor]
        for method in _methods(part):
            points = sorted(
                (r["gap_days"], r["rmse"])
                for r in part
                if r["method"] == method and r["rmse"] is not None
            )
            if points:
                ax.plot(*zip(*points, strict=True), "o", label=method, markersize=4, alpha=0.8)
        ax.set_xlabel("days to the nearest clear input (mean over pixels)")
        ax.set_ylabel("RMSE, reflectance bands")
        ax.set_title(f"{sensor}, {reference}", fontsize=9)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return True


def _display(panels: dict[str, np.ndarray]) -> tuple[float, float]:
    """One stretch for every panel of a strip (2nd-98th percentile of all of them), so that
    a brighter or darker method looks brighter or darker."""
    values = np.concatenate([p[np.isfinite(p)].ravel() for p in panels.values()])
    if values.size == 0:
        return 0.0, 1.0
    low, high = np.percentile(values, [2, 98])
    return float(low), float(high if high > low else low + 1e-6)


def _strip(strip: Strip, path: Path) -> None:
    plt = _pyplot()
    low, high = _display(strip.panels)
    n = len(strip.panels)
    fig, axes = plt.subplots(1, n, figsize=(2.6 * n, 3.0), squeeze=False)
    for ax, (name, image) in zip(axes[0], strip.panels.items(), strict=True):
        scaled = np.clip((image - low) / (high - low), 0, 1)
        if scaled.ndim == 3:
            ax.imshow(np.nan_to_num(np.moveaxis(scaled, 0, -1)), interpolation="nearest")
        else:
            ax.imshow(
                np.ma.masked_invalid(scaled),
                cmap="inferno",
                vmin=0,
                vmax=1,
                interpolation="nearest",
            )
        ax.set_title(name, fontsize=7)
        ax.set_axis_off()
    fig.suptitle(f"{strip.task}, {strip.date}, {' '.join(strip.bands)}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def write_report(result: EvaluationResult, out_dir: Path, metadata: Mapping[str, Any]) -> Path:
    """Write ``report.md``, ``report.json`` and the PNGs into ``out_dir``; return the
    Markdown's path. The JSON is written last, whole or not at all, so that a report
    directory with a ``report.json`` is complete."""
    out_dir.mkdir(parents=True, exist_ok=True)
    # A report replaces the previous one whole: no figure of a task this run did not do.
    for stale in (
        "report.json",
        "gap-length.png",
        *(f"{t}-{kind}.png" for t in TASKS for kind in ("bands", "strip")),
    ):
        (out_dir / stale).unlink(missing_ok=True)
    figures: dict[str, list[str]] = {}
    for task in TASKS:
        rows = [r for r in result.summary if r["task"] == task]
        if rows:
            _band_bars(rows, task, out_dir / f"{task}-bands.png")
            figures.setdefault(task, []).append(f"{task}-bands.png")
    for strip in result.strips:
        _strip(strip, out_dir / f"{strip.task}-strip.png")
        figures.setdefault(strip.task, []).append(f"{strip.task}-strip.png")
    if _gap_length(result.records, out_dir / "gap-length.png"):
        figures.setdefault("gap-filling", []).append("gap-length.png")
    markdown = out_dir / "report.md"
    markdown.write_text(_markdown(result, metadata, figures))
    document = {
        "metadata": dict(metadata),
        "dataset": {
            "name": result.dataset,
            "description": result.description,
            "has_truth": result.has_truth,
        },
        "protocol": {
            "border_px": result.config.border_px,
            "gap_days": result.config.gap_days,
            "holdout": result.config.holdout,
            "min_reference_clear": result.config.min_reference_clear,
        },
        "notes": result.notes,
        "summary": result.summary,
        "per_date": _per_date(result.records),
        "figures": figures,
    }
    write_json_atomically(out_dir / "report.json", _json_safe(document))
    return markdown
