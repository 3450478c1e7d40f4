"""STAC API searches with pystac-client.

Only the parameters that every STAC API honours (bbox, datetime, collections) are sent to the
server; embedded servers such as ``rustac serve`` ignore ``query``/``filter``, so nothing here
depends on them.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

import pystac
from pystac_client import Client
from pystac_client.exceptions import APIError

__all__ = ["CatalogSearchError", "SearchRequest", "bbox_union", "search_items"]


class CatalogSearchError(RuntimeError):
    """A catalog could not be searched, or the search found nothing."""


@dataclass(frozen=True)
class SearchRequest:
    """What to look for."""

    collections: tuple[str, ...]
    bbox: tuple[float, float, float, float]
    """(west, south, east, north) in degrees."""
    start: dt.date
    end: dt.date
    """Inclusive."""

    @property
    def datetime_range(self) -> str:
        return f"{self.start.isoformat()}T00:00:00Z/{self.end.isoformat()}T23:59:59Z"


def search_items(
    url: str, request: SearchRequest, page_size: int = 100
) -> dict[str, list[pystac.Item]]:
    """All items matching ``request``, by collection (each list sorted by datetime, id).

    Raises:
        CatalogSearchError: the catalog is unreachable, or a collection has no match.
    """
    describe = (
        f"catalog {url}, collections {list(request.collections)}, bbox {list(request.bbox)}, "
        f"dates {request.start}..{request.end}"
    )
    try:
        client = Client.open(url)
        search = client.search(
            collections=list(request.collections),
            bbox=list(request.bbox),
            datetime=request.datetime_range,
            limit=page_size,
        )
        items = list(search.items())
    except (APIError, OSError) as error:
        raise CatalogSearchError(
            f"cannot search {describe}: {error}. Check that the STAC API is running and "
            "reachable (for a local catalog: `tamrf catalog serve DIR`)."
        ) from error
    by_collection: dict[str, list[pystac.Item]] = {c: [] for c in request.collections}
    for item in items:
        by_collection.setdefault(item.collection_id or "", []).append(item)
    empty = [c for c in request.collections if not by_collection[c]]
    if empty:
        raise CatalogSearchError(
            f"no items in collection(s) {empty} for {describe}: widen the area or the dates, "
            "or check the collection names"
        )
    for collection_items in by_collection.values():
        collection_items.sort(key=lambda i: (i.datetime, i.id))
    return by_collection


def bbox_union(boxes: Sequence[Sequence[float]]) -> tuple[float, float, float, float]:
    """Smallest (west, south, east, north) containing every box."""
    return (
        min(b[0] for b in boxes),
        min(b[1] for b in boxes),
        max(b[2] for b in boxes),
        max(b[3] for b in boxes),
    )
