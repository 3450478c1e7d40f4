"""Checks of a run's inputs that need neither torch, Prefect nor Dask: the period and its
output dates, the model checkpoint, the output location and the Dask scheduler (the AOI:
:func:`pipelines.grid.aoi_geometry`).

``tamrf run`` and ``tamrf plan`` call them before anything heavy is imported, so that a bad
input costs well under 2 s and writes nothing; :class:`pipelines.production.ProductionRequest`
and :func:`pipelines.production.check_request` call the same functions, so that a flow
started from the Prefect UI or a deployment refuses the same inputs with the same message.
Every message says what is wrong, why, and what to do.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
import tempfile
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlsplit

from pipelines.storage import Location, StorageError
from tamrf_xr.checkpoint_files import check_checkpoint
from tamrf_xr.models import UNTRAINED

__all__ = [
    "SENSOR_DATA_START",
    "check_dates_in_period",
    "check_model",
    "check_period",
    "check_scheduler",
    "check_writable",
    "parse_dates",
    "parse_day",
    "period_notes",
]

SENSOR_DATA_START = {
    "Landsat 8 OLI/TIRS": dt.date(2013, 3, 18),
    "Sentinel-2A MSI": dt.date(2015, 6, 23),
}
"""First day of data of the sensors a run reads (Landsat 9 and Sentinel-2B came later)."""

SCHEDULER_TIMEOUT_S = 3.0
"""How long a scheduler may take to accept a connection (Dask itself waits 30 s and more)."""


def parse_day(value: str, option: str) -> dt.date:
    """A ``YYYY-MM-DD`` value of ``option`` (e.g. ``--start``)."""
    try:
        return dt.date.fromisoformat(value)
    except ValueError as error:
        raise ValueError(f"{option} {value!r} is not a date ({error}): give YYYY-MM-DD") from None


def parse_dates(text: str) -> str | tuple[str, ...]:
    """A cadence (``SMS``, ``10D``...) or comma-separated ISO dates, as typed by a user."""
    text = text.strip()
    if text[:4].isdigit():
        values = tuple(v.strip() for v in text.split(",") if v.strip())
        for value in values:
            try:
                dt.date.fromisoformat(value)
            except ValueError as error:
                raise ValueError(
                    f"output date {value!r} is not a date ({error}): give --dates as "
                    "YYYY-MM-DD dates separated by commas, or a cadence (SMS, MS, 10D)"
                ) from None
        return values
    return text


def _lifetimes() -> str:
    return ", ".join(f"{sensor} data from {day}" for sensor, day in SENSOR_DATA_START.items())


def check_period(start: dt.date, end: dt.date, today: dt.date | None = None) -> None:
    """The input period: in order, and overlapping the sensors' data (from the first
    sensor's first day until today)."""
    if end < start:
        raise ValueError(
            f"the period ends ({end}) before it starts ({start}): give --start <= --end"
        )
    first = min(SENSOR_DATA_START.values())
    if end < first:
        raise ValueError(
            f"the period {start}..{end} ends before any input exists ({_lifetimes()}): choose "
            f"a period that ends on {first} or later"
        )
    today = today or dt.date.today()
    if start > today:
        raise ValueError(
            f"the period {start}..{end} starts after today ({today}): no acquisition exists "
            f"yet ({_lifetimes()}); choose a period that starts by {today}"
        )


def period_notes(start: dt.date, end: dt.date, today: dt.date | None = None) -> list[str]:
    """What the run should say of a period that only part of the sensors cover (allowed: the
    model fuses whatever dates there are)."""
    notes = []
    for sensor, first in SENSOR_DATA_START.items():
        if end < first:
            notes.append(f"the period is before {sensor} (data from {first}): no {sensor} input")
        elif start < first:
            notes.append(f"{sensor} data start {first}: no {sensor} input before that day")
    today = today or dt.date.today()
    if end > today:
        notes.append(f"the period ends after today ({today}): no input after today yet")
    return notes


def check_dates_in_period(dates: Sequence[str], start: dt.date, end: dt.date) -> None:
    """Output dates (ISO) inside the input period: the model fills gaps between
    observations, it does not extrapolate beyond them."""
    outside = [d for d in dates if not start.isoformat() <= d <= end.isoformat()]
    if outside:
        raise ValueError(
            f"output date(s) {outside} are outside the period {start}..{end}: "
            "predict dates inside the input period, or widen --start/--end"
        )


def check_model(checkpoint: str | None) -> None:
    """The ``--checkpoint`` value: None (the bundled model), ``untrained``, or a checkpoint
    that :func:`tamrf_xr.checkpoint_files.check_checkpoint` accepts (read without torch and
    without executing anything in it)."""
    if checkpoint is not None and checkpoint != UNTRAINED:
        check_checkpoint(checkpoint)


def check_writable(output: Location) -> None:
    """The output location can be written: a directory (or object-store prefix) that exists
    or can be created, where this user may create files."""
    if not output.is_local:
        _check_object_store(output)
        return
    out_dir = output.local_path
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(
            f"output location {out_dir} is a file, not a directory: give a directory "
            "(--out-dir) that is new or holds a previous run's output"
        )
    existing = out_dir
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise ValueError(
            f"output location {out_dir} is not writable ({existing} is a file, so nothing can "
            "be created under it): choose another --out-dir"
        )
    problem = _creation_problem(existing)
    if problem:
        raise ValueError(
            f"output location {out_dir} is not writable ({problem}): choose another --out-dir "
            f"or fix the permissions of {existing}"
        )


def _creation_problem(directory: Path) -> str:
    """Why nothing can be created in ``directory`` ('' when something can). Asks the kernel
    by creating an unnamed temporary file (gone when closed): permission bits alone do not
    tell, e.g. for root on a read-only file system or under /proc."""
    if not os.access(directory, os.W_OK | os.X_OK):
        return f"{directory} does not let this user write"
    try:
        with tempfile.TemporaryFile(dir=directory):
            return ""
    except OSError as error:
        return f"cannot create a file in {directory}: {error.strerror or error}"


def _check_object_store(output: Location) -> None:
    if output.is_file():
        raise ValueError(
            f"output location {output} is an object, not a prefix: give a prefix under which "
            "the run may write (--out-dir)"
        )
    try:
        output.check_writable()
    except StorageError as error:
        raise ValueError(str(error)) from None


def _scheduler_endpoint(address: str) -> tuple[str, int] | None:
    """(host, port) of a TCP scheduler address (``tcp://`` or ``tls://``, or ``HOST:PORT``);
    None for the other transports (inproc, ucx), which no socket can probe."""
    parts = urlsplit(address if "://" in address else f"tcp://{address}")
    if parts.scheme not in ("tcp", "tls"):
        return None
    try:
        port = parts.port or 8786
    except ValueError:
        port = None
    if not parts.hostname or port is None:
        raise ValueError(
            f"--scheduler {address!r} is not a scheduler address: give tcp://HOST:PORT (the "
            "address the scheduler prints, e.g. tcp://10.0.0.5:8786)"
        )
    return parts.hostname, port


def check_scheduler(address: str | None, timeout_s: float = SCHEDULER_TIMEOUT_S) -> None:
    """An existing Dask scheduler accepts a connection within ``timeout_s``. Dask's client
    waits 30 s and more before it gives up, and a run meets it only after planning and
    creating its stores: checked first, a wrong address costs seconds and writes nothing."""
    endpoint = None if address is None else _scheduler_endpoint(address)
    if endpoint is None:
        return
    try:
        with socket.create_connection(endpoint, timeout=timeout_s):
            pass
    except OSError as error:
        reason = "no answer" if isinstance(error, TimeoutError) else error.strerror or str(error)
        raise ValueError(
            f"cannot reach the Dask scheduler at {address} ({reason} within {timeout_s:g} s): "
            "start it or fix the address (--scheduler tcp://HOST:PORT), or leave --scheduler "
            "out to start a local cluster"
        ) from None
