"""What ``tamrf run`` and ``tamrf plan`` check first, before torch, Prefect or Dask load.

Those imports take seconds; the checks here import only the light modules that hold them
(:mod:`pipelines.grid`, :mod:`pipelines.run_inputs`, :mod:`tamrf_xr.checkpoint_files`), so a
bad AOI, period, output date, checkpoint, output location or scheduler is refused in well
under 2 s, with one ``error:`` line, before anything is simulated, searched or written. The
request and the flows run the same check functions again (a flow started from the Prefect UI
or a deployment gets the same messages).
"""

from __future__ import annotations

import contextvars
from pathlib import Path
from typing import Annotated

import typer

__all__ = ["DEMO_PERIOD", "DebugOption", "check_first", "debugging", "set_debug"]

DEMO_PERIOD = ("2022-01-01", "2022-12-31")
"""The embedded demo's simulated period when --start/--end are not given."""

DebugOption = Annotated[
    bool,
    typer.Option(
        "--debug",
        help="On an error, also print its Python traceback (by default: one error line).",
    ),
]
"""A command that takes it calls :func:`set_debug` first; :func:`flows.cli_production.fail`
then prints the traceback too."""

_DEBUG = contextvars.ContextVar("tamrf_debug", default=False)


def set_debug(enabled: bool) -> None:
    """Whether the running command's errors come with their traceback (``--debug``)."""
    _DEBUG.set(enabled)


def debugging() -> bool:
    """Whether the running command was given ``--debug``."""
    return _DEBUG.get()


def check_first(
    *,
    catalog: str | None,
    aoi: Path | None,
    bbox: str | None,
    start: str | None,
    end: str | None,
    dates: str,
    checkpoint: Path | None,
    out_dir: str,
    scheduler: str | None,
    writing: bool,
) -> None:
    """Check the inputs of a run (``catalog`` None: the embedded demo, whose area is its
    simulated region and whose period defaults to :data:`DEMO_PERIOD`).

    Raises:
        ValueError: the first bad input, with what is wrong, why and the fix.
    """
    from pipelines.run_inputs import (
        check_dates_in_period,
        check_model,
        check_period,
        check_scheduler,
        check_writable,
        parse_dates,
        parse_day,
    )
    from pipelines.storage import Location

    if catalog is not None:
        _check_catalog_area(catalog, aoi, bbox)
    first = parse_day(_required(start, "--start", catalog) or DEMO_PERIOD[0], "--start")
    last = parse_day(_required(end, "--end", catalog) or DEMO_PERIOD[1], "--end")
    check_period(first, last)
    output_dates = parse_dates(dates)
    if not isinstance(output_dates, str):  # a cadence's dates are inside the period
        check_dates_in_period(output_dates, first, last)
    check_model(None if checkpoint is None else str(checkpoint))
    output = Location.of(out_dir)
    # The demo simulates into a local directory: it refuses an object store itself, with
    # that reason (pipelines.demo.region_request.check_demo_out_dir), whatever the store.
    if writing and (catalog is not None or output.is_local):
        check_writable(output)
    check_scheduler(scheduler)


def _required(value: str | None, option: str, catalog: str | None) -> str | None:
    """``value``, which a run on a catalog must be given (the demo has defaults)."""
    if value is None and catalog is not None:
        raise ValueError(f"{option} is required with --catalog: give YYYY-MM-DD")
    return value


def _check_catalog_area(catalog: str, aoi: Path | None, bbox: str | None) -> None:
    """The catalog profile exists and the AOI is a usable area in lon/lat."""
    from flows.cli_production import read_aoi
    from pipelines.catalogs import profile
    from pipelines.grid import aoi_geometry

    profile(catalog)
    bbox_values, geometry = read_aoi(aoi, bbox)
    aoi_geometry(geometry if geometry is not None else bbox_values)
