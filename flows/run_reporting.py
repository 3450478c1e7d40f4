"""What an operator sees of a production run: terminal bars, one log line per tile, and
Prefect artifacts that update while tiles finish (a keyed progress artifact saying "N of M
tiles, K failed, ETA", a keyed table of the tiles so far (:data:`TILE_COLUMNS`), and the
summary at the end, with the run's quicklooks embedded)."""

from __future__ import annotations

import base64
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
from pipelines.quicklooks import MAX_PNG_BYTES
from pipelines.storage import Location
from pipelines.tile_plan import RegionPlan
from pipelines.tiles_in_flight import TileOutcome

__all__ = [
    "PROGRESS_KEY",
    "SUMMARY_KEY",
    "TILES_KEY",
    "TILE_COLUMNS",
    "FlowReporter",
    "publish_plan",
    "publish_summary",
]

PROGRESS_KEY = "tamrf-run-progress"
TILES_KEY = "tamrf-run-tiles"
SUMMARY_KEY = "tamrf-run-summary"
PLAN_KEY = "tamrf-run-plan"
LOG = logging.getLogger(__name__)
_EMBEDDED_QUICKLOOKS = 4
_TABLE_EVERY_S = 5.0
"""The tile table is republished at most this often (and at the end): a continental run
must not flood the Prefect API with one table version per tile."""


TILE_COLUMNS = (
    "tile",
    "status",
    "S2 dates kept",
    "S2 clear fraction",
    "Landsat dates kept",
    "Landsat clear fraction",
    "duration (s)",
    "retries",
    "broken assets",
    "error",
)
"""The columns of the tile table, in order."""
_SENSORS = {"S2": "sentinel-2", "Landsat": "landsat"}


def _tile_row(outcome: TileOutcome) -> dict[str, Any]:
    """One row of the tile table: how the tile ended (``predicted``, ``no usable input...``
    or ``failed``), per sensor the dates kept of those found and the mean clear share of the
    kept dates (from the tile's cube summaries), the wall time of all attempts, the retries
    after transient errors, the broken assets read as missing and the last error."""
    cubes = {c["sensor"]: c for c in outcome.summary.get("cubes", [])}
    done = outcome.status == "done"
    row: dict[str, Any] = {
        "tile": outcome.tile_id,
        "status": outcome.summary.get("status", "done") if done else outcome.status,
    }
    for name, sensor in _SENSORS.items():
        cube = cubes.get(sensor)
        found = None if cube is None else len(cube["dates"]) + len(cube["dropped_dates"])
        row[f"{name} dates kept"] = "-" if cube is None else f"{len(cube['dates'])} of {found}"
        clear = None if cube is None else cube.get("mean_clear_fraction")
        row[f"{name} clear fraction"] = "-" if clear is None else round(clear, 2)
    row |= {
        "duration (s)": round(outcome.seconds, 1),
        "retries": outcome.attempts - 1,
        "broken assets": len(outcome.summary.get("broken_assets", [])),
        "error": outcome.error or "",
    }
    return row


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


def _quicklooks_markdown(locations: list[str]) -> str:
    """The quicklooks (:mod:`pipelines.quicklooks`) embedded as PNG data URIs, then where
    they are stored.

    Embedded, not linked: the Prefect UI renders the markdown in an operator's browser,
    which can reach neither a path on the machine that ran the flow nor a private bucket; a
    data URI keeps the artifact self-contained for local and object-store outputs alike.
    The artifact (which the server also emits as an event of at most 1.5 MB) stays small:
    at most :data:`_EMBEDDED_QUICKLOOKS` pictures, each under ``MAX_PNG_BYTES``.
    """
    if not locations:
        return ""
    images = []
    for location in locations[:_EMBEDDED_QUICKLOOKS]:
        try:
            data = Location.of(location).read_bytes()
        except OSError as error:  # listed below all the same
            LOG.warning("quicklook %s not embedded in the summary: %s", location, error)
            continue
        if len(data) <= MAX_PNG_BYTES:
            name = location.rsplit("/", 1)[-1]
            images.append(f"![{name}](data:image/png;base64,{base64.b64encode(data).decode()})")
    listed = "\n".join(f"- `{location}`" for location in locations)
    return "\n\n**Quicklooks**\n\n" + "\n\n".join(images) + "\n\n" + listed


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
           if level3["untrained_model"] else "")
        + _quicklooks_markdown(level3.get("quicklooks", [])),
        key=SUMMARY_KEY,
        description="Items found, tile cubes and the Level-3 output of the run",
    )  # fmt: skip
