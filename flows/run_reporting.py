"""What an operator sees of a production run: terminal bars, one log line per tile, and
Prefect artifacts that update while tiles finish (a keyed progress artifact saying "N of M
tiles, K failed, ETA", a keyed table of the tiles so far, and the summary at the end)."""

from __future__ import annotations

import datetime as dt
import logging
import time
from typing import Any

from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)

from flows.terminal import TileBars
from pipelines.tile_plan import RegionPlan
from pipelines.tiles_in_flight import TileOutcome

__all__ = [
    "PROGRESS_KEY",
    "SUMMARY_KEY",
    "TILES_KEY",
    "FlowReporter",
    "publish_plan",
    "publish_summary",
]

PROGRESS_KEY = "tamrf-run-progress"
TILES_KEY = "tamrf-run-tiles"
SUMMARY_KEY = "tamrf-run-summary"
PLAN_KEY = "tamrf-run-plan"
_TABLE_EVERY_S = 5.0
"""The tile table is republished at most this often (and at the end): a continental run
must not flood the Prefect API with one table version per tile."""


def _tile_row(outcome: TileOutcome) -> dict[str, Any]:
    cubes = {c["sensor"]: c for c in outcome.summary.get("cubes", [])}

    def kept(sensor: str) -> str:
        cube = cubes.get(sensor)
        return "-" if cube is None else f"{len(cube['dates'])} / {len(cube['dropped_dates'])}"

    return {
        "tile": outcome.tile_id,
        "outcome": outcome.status,
        "attempts": outcome.attempts,
        "seconds": round(outcome.seconds, 1),
        "S2 dates kept / dropped": kept("sentinel-2"),
        "Landsat dates kept / dropped": kept("landsat"),
        "broken assets": len(outcome.summary.get("broken_assets", [])),
        "error": outcome.error or "",
    }


class FlowReporter:
    """A :class:`pipelines.tiles_in_flight.RunReporter` for Prefect and the terminal."""

    def __init__(self, logger: logging.Logger | logging.LoggerAdapter, bars: TileBars) -> None:
        self.logger = logger
        self.bars = bars
        self.total = 0
        self.rows: list[dict[str, Any]] = []
        self.failed = 0
        self.started = time.monotonic()
        self._artifact = None
        self._table_published = 0.0

    def planned(self, plan: RegionPlan) -> None:
        self.total = len(plan.pending())
        skipped = len(plan.tiles) - self.total
        self.logger.info("%d tiles: %d to compute, %d complete with the same inputs (skipped)",
                         len(plan.tiles), self.total, skipped)  # fmt: skip
        self._artifact = create_progress_artifact(
            0.0 if self.total else 100.0, key=PROGRESS_KEY, description=self._describe()
        )
        self.bars.overall(0, self.total)

    def tile_started(self, tile_id: str, attempt: int) -> None:
        if attempt > 1:
            self.logger.warning("tile %s: attempt %d after a transient error", tile_id, attempt)
        self.bars.tile(tile_id, 0, None)

    def tile_blocks(self, tile_id: str, done: int, total: int) -> None:
        self.bars.tile(tile_id, done, total)

    def tile_finished(self, outcome: TileOutcome) -> None:
        self.rows.append(_tile_row(outcome))
        self.bars.tile_ended(outcome.tile_id)
        self.bars.overall(len(self.rows), self.total)
        if outcome.status == "done":
            self.logger.info("tile %s: %s in %.1f s (attempt %d)", outcome.tile_id,
                             outcome.summary.get("status"), outcome.seconds,
                             outcome.attempts)  # fmt: skip
        else:
            self.failed += 1
            self.logger.error("tile %s FAILED after %d attempt(s): %s\n%s", outcome.tile_id,
                              outcome.attempts, outcome.error, outcome.details)  # fmt: skip
        if self._artifact is not None:
            share = 100.0 * len(self.rows) / max(self.total, 1)
            update_progress_artifact(self._artifact, share, description=self._describe())
        now = time.monotonic()
        if now - self._table_published >= _TABLE_EVERY_S or len(self.rows) == self.total:
            self._table_published = now
            create_table_artifact(self.rows, key=TILES_KEY,
                                  description="Tiles finished so far (this run)")  # fmt: skip

    def _describe(self) -> str:
        done = len(self.rows)
        text = f"{done} of {self.total} tiles, {self.failed} failed"
        if 0 < done < self.total:
            remaining = (time.monotonic() - self.started) / done * (self.total - done)
            text += f", ETA {dt.timedelta(seconds=round(remaining))}"
        return text


def publish_plan(plan: dict[str, Any]) -> None:
    """A plan (dry run) as a keyed table artifact."""
    rows = [
        {"tile": t["tile"], "status": t["status"], "S2 items": len(t["s2_items"]),
         "S2 dates": len(t["s2_dates"]), "Landsat items": len(t["landsat_items"]),
         "Landsat dates": len(t["landsat_dates"]), "GFLOP": t["gflops"],
         "estimated s": t["estimated_s"]}
        for t in plan["tiles"]
    ]  # fmt: skip
    total = plan["total"]
    create_table_artifact(
        rows,
        key=PLAN_KEY,
        description=(
            f"Plan: {total['tiles']} tiles, {total['to_compute']} to compute, "
            f"{total['gflops_to_compute']} GFLOP, about {total['estimated_s']} s of model time "
            f"at {plan['flop_rate_gflops']} GFLOP/s ({plan['rate_source']})"
        ),
    )


def publish_summary(summary: dict[str, Any]) -> None:
    """The run summary as a keyed markdown artifact (markdown must not be indented)."""
    found = summary["collections"]
    rows = "\n".join(
        f"| {c} | {s['count']} | {(s['first'] or '-')[:10]} | {(s['last'] or '-')[:10]} "
        f"| {s['mean_cloud_cover']} |"
        for c, s in found.items()
    )
    tile_rows = "\n".join(
        f"| {t['tile']} | {c['sensor']} | {len(c['dates'])} | {len(c['dropped_dates'])} "
        f"| {c['mean_clear_fraction']} |"
        for t in summary["tiles"]
        for c in t["cubes"]
    )
    level3 = summary["level3"]
    failed = "\n".join(f"- `{f['tile']}`: {f['error']}" for f in level3["failed"])
    broken = "\n".join(f"- {a['item_id']} {a['band']} ({a['date'][:10]}): `{a['href']}`"
                       for a in summary.get("broken_assets", []))  # fmt: skip
    stores = "\n".join(f"- `{s}`" for s in level3["stores"])
    create_markdown_artifact(
        "| collection | items | first | last | mean cloud cover % |\n|---|---|---|---|---|\n"
        + rows
        + "\n\n| tile | sensor | dates kept | dates dropped | mean clear share |\n"
        + "|---|---|---|---|---|\n"
        + tile_rows
        + f"\n\n**Level-3 stores** ({len(level3['tiles'])} tiles, "
        f"{len(level3['produced_now'])} produced in this run, {len(level3['skipped'])} already "
        f"complete, {len(level3['failed'])} failed; {len(level3['dates'])} dates):\n\n"
        + stores
        + f"\n\nSTAC collection: `{level3['stac']}`"
        + (f"\n\n**Failed tiles** (re-run the same command to retry them):\n\n{failed}"
           if failed else "")
        + (f"\n\n**Broken assets** (read as missing):\n\n{broken}" if broken else "")
        + ("\n\n**Untrained model weights: the values are not meaningful.**"
           if level3["untrained_model"] else ""),
        key=SUMMARY_KEY,
        description="Items found, tile cubes and the Level-3 output of the run",
    )  # fmt: skip
