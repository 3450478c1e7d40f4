"""STAC for Level-3 stores: one Item per Zarr store, in one Collection, as a static catalog.

Each Item describes one store (one UTM zone): its geometry is the lon/lat outline of the
store's tiles, its time range the first and last output date, and its ``data`` asset is the
store itself. Following the STAC Zarr best practices (radiantearth/stac-best-practices,
``best-practices-zarr.md``) the asset points at the root group, carries the media type
``application/vnd.zarr; version=3`` and lists the arrays as ``bands``, and a ``store`` link
points at the same root. (pystac's ``MediaType.ZARR``, ``application/vnd+zarr``, is the older
spelling without a version; the best practices' normative text uses the one above.)

Everything is validated offline with :func:`pipelines.stac_validation.validate_stac` before
it is saved; hrefs are relative, so the catalog and the stores can move together. The
catalog and the stores may live on a local file system or an object store (any fsspec URL):
documents are written through :class:`pipelines.storage.Location`, each whole or not at all.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pystac
import shapely
from pystac.stac_io import DefaultStacIO
from pystac.utils import make_relative_href
from shapely.geometry import mapping, shape

from pipelines.band_encoding import band_attrs
from pipelines.level3 import QUALITY_ATTRS, completed_tiles, read_definition
from pipelines.stac_validation import validate_stac
from pipelines.storage import Location
from tamrf_xr.bands import BANDS

__all__ = [
    "ZARR_MEDIA_TYPE",
    "LocationStacIO",
    "level3_item",
    "write_level3_collection",
    "zarr_media_type",
]

ZARR_MEDIA_TYPE = "application/vnd.zarr; version=3"


def zarr_media_type(zarr_format: int) -> str:
    """The STAC media type of a Zarr store of this format."""
    return f"application/vnd.zarr; version={zarr_format}"


PROJECTION_EXTENSION = "https://stac-extensions.github.io/projection/v1.1.0/schema.json"


class LocationStacIO(DefaultStacIO):
    """pystac I/O through :class:`pipelines.storage.Location`: local paths and fsspec URLs
    (pystac's own reads local files and HTTP only), each document written whole."""

    def read_text_from_href(self, href: str) -> str:
        return Location.of(href).read_text()

    def write_text_to_href(self, href: str, txt: str) -> None:
        Location.of(href).write_bytes(txt.encode())


def level3_item(store: str | Path | Location) -> pystac.Item:
    """The STAC Item of one Level-3 store (asset and ``store`` link with absolute hrefs).

    The id is the store's directory name without ``.zarr``. Properties: ``proj:epsg``,
    ``proj:shape`` (y, x) and ``proj:transform`` of the store's grid, and ``tamrf:tile_ids``,
    ``tamrf:dates`` (ISO 8601), ``tamrf:missing_tile_ids`` (tiles without a completion
    record when the item was made), ``tamrf:encoding``.
    """
    store = Location.of(store)
    definition = read_definition(store)
    west, _, _, north = definition.bounds
    # Union of the tiles' own outlines: neighbours share identical (densified) edges, so the
    # union dissolves them and contains every tile exactly (up to the 1e-9 degree rounding).
    outline = shapely.union_all([tile.lonlat_polygon() for tile in definition.grid_tiles])
    geometry = mapping(shapely.set_precision(shapely.normalize(outline), 1e-9))
    bbox = [round(v, 9) for v in shapely.bounds(shape(geometry)).tolist()]
    times = definition.time_index.to_pydatetime()
    done = completed_tiles(store)
    pixel = definition.spec.pixel_m
    media_type = zarr_media_type(definition.config.zarr_format)
    item = pystac.Item(
        id=store.name.removesuffix(".zarr"),
        geometry=geometry,
        bbox=bbox,
        datetime=None,
        start_datetime=times[0],
        end_datetime=times[-1],
        properties={
            "gsd": pixel,
            "proj:epsg": definition.epsg,
            "proj:shape": list(definition.shape[1:]),
            "proj:transform": [pixel, 0.0, west, 0.0, -pixel, north],
            "tamrf:tile_ids": definition.tile_ids,
            "tamrf:dates": list(definition.times),
            "tamrf:missing_tile_ids": [t for t in definition.tile_ids if t not in done],
            "tamrf:encoding": definition.config.encoding,
        },
        stac_extensions=[PROJECTION_EXTENSION],
    )
    item.add_asset(
        "data",
        pystac.Asset(
            href=store.url,
            media_type=media_type,
            title="TAMRF Level-3 Zarr store (root group)",
            roles=["data"],
            extra_fields={"bands": _bands()},
        ),
    )
    item.add_link(
        pystac.Link(rel="store", target=store.url, media_type=media_type, title="Zarr store")
    )
    return item


def write_level3_collection(
    stores: Sequence[str | Path | Location],
    out_dir: str | Path | Location,
    collection_id: str = "tamrf-level3",
    description: str = "TAMRF-SITS fusion of Sentinel-2 and Landsat: 18 bands at 10 m",
    license: str = "other",
) -> Path | str:
    """Write a self-contained static catalog: a Collection with one Item per store.

    Args:
        stores: Level-3 stores (directories or URLs); each becomes an Item named after it.
        out_dir: where ``collection.json`` and ``<item>/<item>.json`` go (a directory or URL).

    Returns:
        The path of ``collection.json`` (its URL on an object store).

    Raises:
        ValueError: no stores, two stores with the same name, or a store that is not a
            Level-3 store.
        pipelines.stac_validation.StacValidationError: a document does not validate.
    """
    items = [level3_item(store) for store in stores]
    if not items:
        raise ValueError("no Level-3 stores: nothing to catalogue")
    ids = [item.id for item in items]
    if len(set(ids)) != len(ids):
        raise ValueError(f"stores share names {ids}: give every store a distinct directory name")
    out_dir = Location.of(out_dir)
    collection = _collection(collection_id, items, description, license)
    collection.normalize_hrefs(out_dir.url)
    for item in items:
        # Relative to the item's JSON, so that catalog and stores move together.
        item.make_asset_hrefs_relative()
        for link in item.get_links("store"):
            link.target = make_relative_href(link.get_href(), item.get_self_href())
        validate_stac(item)
    validate_stac(collection)
    collection.save(catalog_type=pystac.CatalogType.SELF_CONTAINED, stac_io=LocationStacIO())
    return (out_dir / "collection.json").native()


def _collection(
    collection_id: str, items: list[pystac.Item], description: str, license: str
) -> pystac.Collection:
    west = min(i.bbox[0] for i in items)
    south = min(i.bbox[1] for i in items)
    east = max(i.bbox[2] for i in items)
    north = max(i.bbox[3] for i in items)
    start = min(i.common_metadata.start_datetime for i in items)
    end = max(i.common_metadata.end_datetime for i in items)
    epsgs = sorted({item.properties["proj:epsg"] for item in items})
    collection = pystac.Collection(
        id=collection_id,
        description=description,
        extent=pystac.Extent(
            pystac.SpatialExtent([[west, south, east, north]]),
            pystac.TemporalExtent([[start, end]]),
        ),
        license=license,
        title="tamrf-xr Level-3 stores",
        summaries=pystac.Summaries({"proj:epsg": epsgs}),
        stac_extensions=[PROJECTION_EXTENSION],
    )
    collection.add_items(items)
    return collection


def _bands() -> list[dict]:
    """STAC 1.1 ``bands`` of the asset: one per array, named as in the store."""
    bands = [{"name": b.name, "description": band_attrs(b)["long_name"]} for b in BANDS]
    for name, attrs in QUALITY_ATTRS.items():
        description = "; ".join(filter(None, (attrs["long_name"], attrs.get("comment"))))
        bands.append({"name": name, "description": description})
    return bands
