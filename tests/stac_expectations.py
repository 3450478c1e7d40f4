"""What a STAC API search must return, computed without any server (shared by the tests)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from shapely.geometry import box, shape

__all__ = ["expected_ids", "parse_time"]


def parse_time(text: str) -> datetime:
    """An RFC 3339 timestamp as an aware UTC datetime."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def expected_ids(
    items: Iterable[dict[str, Any]],
    bbox: list[float] | None = None,
    datetime: str | None = None,
    collections: list[str] | None = None,
) -> set[str]:
    """Ids of the items a STAC API search with these parameters must return.

    bbox: the item geometry intersects the box. datetime: ``start/end`` (``..`` open), both
    ends inclusive. collections: the item is in one of them.
    """
    start = end = None
    if datetime is not None:
        lo, hi = datetime.split("/")
        start = None if lo == ".." else parse_time(lo)
        end = None if hi == ".." else parse_time(hi)
    out = set()
    for item in items:
        if collections is not None and item["collection"] not in collections:
            continue
        if bbox is not None and not shape(item["geometry"]).intersects(box(*bbox)):
            continue
        t = parse_time(item["properties"]["datetime"])
        if (start is not None and t < start) or (end is not None and t > end):
            continue
        out.add(item["id"])
    return out
