"""STAC API searches with pystac-client.

Every STAC API answers ``intersects``/``bbox``, ``datetime`` and ``collections``. The cloud
cover limit goes to the server as a CQL2 ``filter`` or a ``query`` only when the server
declares that it conforms; it is ALSO applied client-side, because embedded servers such as
``rustac serve`` ignore ``query``/``filter`` (and a server may claim more than it does).
Pages are followed to the end; transient HTTP errors (429, 5xx, refused or dropped
connections) and requests that get no answer within :data:`REQUEST_TIMEOUT_S` are retried with
exponential backoff, then fail with a :class:`CatalogSearchError` naming the catalog: a server
that accepts connections and never answers cannot hang a run.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pystac
from pystac_client import Client, ConformanceClasses, ItemSearch
from pystac_client.exceptions import APIError
from pystac_client.stac_api_io import StacApiIO
from requests.exceptions import RequestException
from shapely.geometry import mapping
from urllib3.util.retry import Retry

from pipelines.grid import aoi_geometry

__all__ = [
    "REQUEST_TIMEOUT_S",
    "CatalogSearchError",
    "SearchRequest",
    "bbox_union",
    "check_has_items",
    "check_reachable",
    "search_items",
]

_TRANSIENT = (429, 500, 502, 503, 504)
REQUEST_TIMEOUT_S: tuple[float, float] = (10.0, 60.0)
"""(connect, read) seconds of one request: a page of a large search answers within seconds on
public catalogs; a server that takes longer is retried, then reported."""


class CatalogSearchError(RuntimeError):
    """A catalog could not be searched, or the search found nothing."""


@dataclass(frozen=True)
class SearchRequest:
    """What to look for."""

    collections: tuple[str, ...]
    bbox: tuple[float, float, float, float] | None = None
    """(west, south, east, north) in degrees; or give ``geometry``."""
    start: dt.date | None = None
    end: dt.date | None = None
    """Inclusive."""
    geometry: dict | None = None
    """A GeoJSON geometry (lon/lat) instead of ``bbox``."""
    max_cloud_cover: float | None = None
    """Keep items with ``eo:cloud_cover`` <= this percentage."""

    def __post_init__(self) -> None:
        if not self.collections:
            raise ValueError("no collections to search: give at least one collection id")
        if (self.bbox is None) == (self.geometry is None):
            raise ValueError("give exactly one of bbox (lon/lat) or geometry (GeoJSON)")
        aoi_geometry(self.geometry if self.geometry is not None else self.bbox)  # validates
        if self.start is None or self.end is None or self.end < self.start:
            raise ValueError(f"dates {self.start}..{self.end}: give start <= end")
        if self.max_cloud_cover is not None and not 0 <= self.max_cloud_cover <= 100:
            raise ValueError(f"max_cloud_cover={self.max_cloud_cover}: a percentage, 0-100")

    @property
    def datetime_range(self) -> str:
        return f"{self.start.isoformat()}T00:00:00Z/{self.end.isoformat()}T23:59:59Z"

    def describe(self, url: str) -> str:
        area = (
            f"bbox {list(self.bbox)}"
            if self.bbox
            else f"{self.geometry['type']} AOI within "
            f"{[round(v, 5) for v in aoi_geometry(self.geometry).bounds]}"
        )
        return (
            f"catalog {url}, collections {list(self.collections)}, {area}, "
            f"dates {self.start}..{self.end}"
        )


def _open(
    url: str,
    retries: int,
    backoff_s: float,
    modifier: Any = None,
    timeout_s: float | tuple[float, float] = REQUEST_TIMEOUT_S,
) -> Client:
    retry = Retry(
        total=retries,
        backoff_factor=backoff_s,
        status_forcelist=_TRANSIENT,
        allowed_methods=frozenset({"GET", "POST"}),
        raise_on_status=False,
    )
    # Client.open sets the timeout of the StacApiIO it is given (None unless passed here).
    io = StacApiIO(max_retries=retry)
    return Client.open(url, stac_io=io, modifier=modifier, timeout=timeout_s)


def check_reachable(
    url: str,
    retries: int = 2,
    backoff_s: float = 0.5,
    timeout_s: float | tuple[float, float] = REQUEST_TIMEOUT_S,
) -> None:
    """Open the STAC API's landing page (one cheap request, retried ``retries`` times with
    backoff, each given ``timeout_s``), or raise :class:`CatalogSearchError` naming the URL
    and the fix."""
    _reachable_client(url, retries, backoff_s, None, timeout_s)


def _reachable_client(
    url: str,
    retries: int,
    backoff_s: float,
    modifier: Any,
    timeout_s: float | tuple[float, float],
) -> Client:
    """The opened client, or :class:`CatalogSearchError` naming the URL and the fix."""
    try:
        return _open(url, retries, backoff_s, modifier, timeout_s)
    except (APIError, OSError, RequestException, ValueError) as error:
        raise CatalogSearchError(
            f"cannot reach the STAC API at {url} ({type(error).__name__}: {error}): check the "
            "URL (--catalog-url) and the network; a local catalog is served with "
            "`tamrf catalog serve DIR`"
        ) from None


def check_has_items(
    url: str,
    request: SearchRequest,
    modifier: Any = None,
    retries: int = 2,
    backoff_s: float = 0.5,
    timeout_s: float | tuple[float, float] = REQUEST_TIMEOUT_S,
) -> None:
    """At least one item matches ``request`` (in any of its collections), asked with one
    small request: a run whose search would find nothing is refused before it writes
    anything (the full search may take minutes and happens later, in the run).

    Raises:
        CatalogSearchError: the catalog does not answer, or nothing matches (the message
            names the catalog, the area and the dates).
    """
    client = _reachable_client(url, retries, backoff_s, modifier, timeout_s)
    try:
        first = next(iter(_search(client, request, page_size=1, max_items=1).items()), None)
    except (APIError, OSError, RequestException) as error:
        raise CatalogSearchError(
            f"cannot search {request.describe(url)}: {error}. Check that the STAC API is "
            "running and reachable (for a local catalog: `tamrf catalog serve DIR`)."
        ) from error
    if first is None:
        raise _nothing_found(url, request, list(request.collections))


def _search(
    client: Client, request: SearchRequest, page_size: int, max_items: int | None = None
) -> ItemSearch:
    """The pystac-client search of ``request`` (the cloud limit sent to servers that take it)."""
    extra = (
        _server_side_cloud_filter(client, request.max_cloud_cover)
        if request.max_cloud_cover is not None
        else {}
    )
    area = (
        {"intersects": mapping(aoi_geometry(request.geometry))}
        if request.geometry is not None
        else {"bbox": list(request.bbox)}
    )
    return client.search(
        collections=list(request.collections),
        datetime=request.datetime_range,
        limit=page_size,
        max_items=max_items,
        **area,
        **extra,
    )


def _nothing_found(url: str, request: SearchRequest, empty: list[str]) -> CatalogSearchError:
    return CatalogSearchError(
        f"no items in collection(s) {empty} for {request.describe(url)}"
        + (
            f" with cloud cover <= {request.max_cloud_cover}%"
            if request.max_cloud_cover is not None
            else ""
        )
        + ": widen the area or the dates, or check the collection names"
    )


def _server_side_cloud_filter(client: Client, limit: float) -> dict[str, Any]:
    if client.conforms_to(ConformanceClasses.FILTER):
        return {"filter": {"op": "<=", "args": [{"property": "eo:cloud_cover"}, limit]},
                "filter_lang": "cql2-json"}  # fmt: skip
    if client.conforms_to(ConformanceClasses.QUERY):
        return {"query": {"eo:cloud_cover": {"lte": limit}}}
    return {}


def search_items(
    url: str,
    request: SearchRequest,
    page_size: int = 100,
    retries: int = 4,
    backoff_s: float = 0.5,
    modifier: Any = None,
    require_each_collection: bool = True,
    timeout_s: float | tuple[float, float] = REQUEST_TIMEOUT_S,
) -> dict[str, list[pystac.Item]]:
    """All items matching ``request``, by collection (each list sorted by datetime, id).

    Args:
        url: STAC API root.
        request: what to look for.
        page_size: items per page (all pages are read).
        retries: retries of a transient HTTP error, with exponential backoff.
        modifier: pystac-client modifier (e.g. Planetary Computer URL signing).
        require_each_collection: every collection must have a match (else: at least one).
        timeout_s: seconds (connect, read) one request may take before it is retried.

    Raises:
        CatalogSearchError: the catalog is unreachable, or a collection (every collection,
            with ``require_each_collection=False``) has no match; the message names the
            catalog, the AOI and the dates.
    """
    describe = request.describe(url)
    try:
        client = _open(url, retries, backoff_s, modifier, timeout_s)
        items = list(_search(client, request, page_size).items())
    except (APIError, OSError, RequestException) as error:
        raise CatalogSearchError(
            f"cannot search {describe}: {error}. Check that the STAC API is running and "
            "reachable (for a local catalog: `tamrf catalog serve DIR`)."
        ) from error
    if request.max_cloud_cover is not None:
        items = [
            i for i in items
            if i.properties.get("eo:cloud_cover", 0.0) <= request.max_cloud_cover
        ]  # fmt: skip
    by_collection: dict[str, list[pystac.Item]] = {c: [] for c in request.collections}
    for item in items:
        by_collection.setdefault(item.collection_id or "", []).append(item)
    empty = [c for c in request.collections if not by_collection[c]]
    if empty and (require_each_collection or len(empty) == len(request.collections)):
        raise _nothing_found(url, request, empty)
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
