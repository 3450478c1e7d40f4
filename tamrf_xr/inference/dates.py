"""Output dates: an explicit list, or a cadence over a period."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import numpy as np
import pandas as pd

__all__ = ["CADENCES", "target_dates"]

CADENCES = {
    "SMS": "the 1st and 15th of each month",
    "MS": "the 1st of each month",
    "<n>D": "every n days from the start (e.g. 10D)",
}


def target_dates(
    dates: Sequence[dt.date | str | np.datetime64] | str,
    start: dt.date | str | None = None,
    end: dt.date | str | None = None,
) -> np.ndarray:
    """The output dates as sorted unique ``datetime64[D]``.

    Args:
        dates: explicit dates, or a cadence (see :data:`CADENCES`; any pandas frequency works).
        start, end: the period of a cadence (inclusive).

    Raises:
        ValueError: an unknown cadence, a cadence without its period, or no date at all.
    """
    if isinstance(dates, str):
        if start is None or end is None:
            raise ValueError(f"the cadence {dates!r} needs a start and an end date")
        try:
            values = pd.date_range(pd.Timestamp(start), pd.Timestamp(end), freq=dates)
        except ValueError:
            raise ValueError(
                f"unknown cadence {dates!r}: use one of "
                + ", ".join(f"{k} ({v})" for k, v in CADENCES.items())
            ) from None
        out = values.values.astype("datetime64[D]")
    else:
        out = np.array([np.datetime64(pd.Timestamp(d).date(), "D") for d in dates])
    out = np.unique(out)
    if out.size == 0:
        raise ValueError(f"no output date in {dates!r} between {start} and {end}")
    return out
