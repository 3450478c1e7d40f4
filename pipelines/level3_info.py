"""What a Level-3 store holds, for people: :func:`describe_store` (a JSON-able dict) and
:func:`format_store_description` (a few lines of text), behind ``tamrf info STORE``.

Everything is read from the store's metadata and completion records (no data chunk is
read): its grid and dates (``tamrf:level3``), the model and run settings it was created with
(``tamrf:provenance``, as ``pipelines.production`` writes them: ``model``,
``untrained_model``, ``inference``, ``cube``, ``catalog_profile``, ``collections``,
``request``, ``software``; any of them may be missing) and, per completed tile, the input
items and broken assets its record lists (record ``provenance``: ``inputs`` as
``{sensor: [{id, scaling}]}``, ``broken_assets`` as a list).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pyproj import CRS, Transformer

from pipelines.level3 import (
    FORMAT_VERSION,
    completion_records,
    read_definition,
    read_provenance,
)
from pipelines.storage import Location

__all__ = ["describe_store", "format_store_description"]

_SENSORS = {"s2": ("sentinel-2", "s2", "S2"), "landsat": ("landsat", "Landsat")}
"""Our name of each sensor, and the keys of a record's ``inputs`` that mean it."""
_RUN_KEYS = ("inference", "cube", "catalog_profile", "collections", "request", "software")
_MAX_LISTED = 8
"""Tile ids listed by name in the text before "and N more"."""


def describe_store(path: str | Path) -> dict[str, Any]:
    """What the Level-3 store at ``path`` holds, as a JSON-serialisable dict.

    Keys: ``path`` (absolute, or a URL), ``zarr_format``, ``format_version``, ``epsg``,
    ``crs`` (its name), ``bounds`` (west, south, east, north in metres of the store CRS),
    ``bounds_lonlat`` (the same box in degrees, densified edges), ``pixel_size_m``,
    ``tile_size_m``, ``tile_size_px``, ``shape`` ({time, y, x}), ``dates`` ({first, last,
    count, all}; ISO 8601, UTC), ``encoding`` (the store's config: ``encoding``,
    ``reflectance_keep_bits``, ``temperature_keep_bits`` (float32 mantissa bits kept; None:
    exact, or int16), ``time_chunk``, ``compression``, ``compression_level``,
    ``zarr_format``; and ``open_zarr_dtype``, the type a plain ``xr.open_zarr`` decodes the
    bands to: float32, or float64 for int16), ``tiles``
    ({count, complete, missing, complete_ids, missing_ids}, in store order), ``model`` (the
    model's identity, None when not recorded), ``untrained`` (bool; None when not recorded),
    ``run`` (the other provenance entries present: inference, cube, catalog profile,
    collections, request, software), ``inputs`` ({per_tile: {tile_id: {s2_items,
    landsat_items, items_by_sensor, broken_assets, status}}, s2_items, landsat_items,
    items (distinct item ids over all complete tiles), broken_assets (total)}).

    Raises:
        ValueError: ``path`` is not a Level-3 store (the message says how to fix it).
    """
    path = Location.of(path)
    definition = read_definition(path)
    provenance = read_provenance(path)
    records = completion_records(path)
    west, south, east, north = definition.bounds
    to_lonlat = Transformer.from_crs(definition.epsg, 4326, always_xy=True)
    lonlat = to_lonlat.transform_bounds(west, south, east, north, densify_pts=21)
    n_time, height, width = definition.shape
    ids = definition.tile_ids
    untrained = provenance.get("untrained_model")
    return {
        "path": str(path),
        "zarr_format": definition.config.zarr_format,
        "format_version": FORMAT_VERSION,  # read_definition refuses any other
        "epsg": definition.epsg,
        "crs": CRS.from_epsg(definition.epsg).name,
        "bounds": [west, south, east, north],
        "bounds_lonlat": [round(v, 6) for v in lonlat],
        "pixel_size_m": definition.spec.pixel_m,
        "tile_size_m": definition.spec.tile_size_m,
        "tile_size_px": definition.spec.tile_px,
        "shape": {"time": n_time, "y": height, "x": width},
        "dates": {
            "first": definition.times[0],
            "last": definition.times[-1],
            "count": len(definition.times),
            "all": list(definition.times),
        },
        "encoding": {
            "encoding": definition.config.encoding,
            "reflectance_keep_bits": definition.config.reflectance_keep_bits,
            "temperature_keep_bits": definition.config.temperature_keep_bits,
            "time_chunk": definition.config.time_chunk,
            "compression": definition.config.compression,
            "compression_level": definition.config.compression_level,
            "zarr_format": definition.config.zarr_format,
            # xarray decodes CF packing to the type of the JSON scale_factor (float64)
            "open_zarr_dtype": "float64" if definition.config.encoding == "int16" else "float32",
        },
        "tiles": {
            "count": len(ids),
            "complete": sum(i in records for i in ids),
            "missing": sum(i not in records for i in ids),
            "complete_ids": [i for i in ids if i in records],
            "missing_ids": [i for i in ids if i not in records],
        },
        "model": provenance.get("model"),
        "untrained": None if untrained is None else bool(untrained),
        "run": {key: provenance[key] for key in _RUN_KEYS if key in provenance},
        "inputs": _inputs([records[i] for i in ids if i in records]),
    }


def _inputs(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Per tile and in all, the items and broken assets the records list."""
    per_tile: dict[str, dict[str, Any]] = {}
    distinct: dict[str, set[str]] = {name: set() for name in _SENSORS}
    every: set[str] = set()
    broken_total = 0
    for record in records:
        provenance = record.get("provenance")
        provenance = provenance if isinstance(provenance, Mapping) else {}
        inputs = provenance.get("inputs")
        inputs = inputs if isinstance(inputs, Mapping) else {}
        by_sensor = {str(sensor): _item_ids(items) for sensor, items in inputs.items()}
        broken = provenance.get("broken_assets")
        n_broken = len(broken) if isinstance(broken, list) else 0
        broken_total += n_broken
        counts = {}
        for name, keys in _SENSORS.items():
            found = set().union(*(by_sensor.get(key, set()) for key in keys))
            distinct[name] |= found
            counts[f"{name}_items"] = len(found)
        every |= set().union(*by_sensor.values())
        per_tile[str(record.get("tile_id"))] = {
            **counts,
            "items_by_sensor": {sensor: len(ids) for sensor, ids in by_sensor.items()},
            "broken_assets": n_broken,
            "status": provenance.get("status"),
        }
    return {
        "per_tile": per_tile,
        **{f"{name}_items": len(ids) for name, ids in distinct.items()},
        "items": len(every),
        "broken_assets": broken_total,
    }


def _item_ids(items: Any) -> set[str]:
    """The ids of a record's item list (``[{id, scaling}]``; bare ids accepted)."""
    if not isinstance(items, list):
        return set()
    ids = (item.get("id") if isinstance(item, Mapping) else item for item in items)
    return {str(i) for i in ids if i is not None}


def format_store_description(info: Mapping[str, Any]) -> str:
    """A few aligned lines of text saying what :func:`describe_store` found."""
    tiles, dates, encoding = info["tiles"], info["dates"], info["encoding"]
    shape, inputs = info["shape"], info["inputs"]
    w, s, e, n = info["bounds"]
    lw, ls, le, ln = info["bounds_lonlat"]
    packing = _packing(encoding)
    broken = inputs["broken_assets"]
    missing = ""
    if tiles["missing_ids"]:
        listed = tiles["missing_ids"][:_MAX_LISTED]
        more = len(tiles["missing_ids"]) - len(listed)
        missing = f"; missing: {', '.join(listed)}" + (f" and {more} more" if more else "")
    lines = [
        ("store", f"{info['path']} (Zarr v{info['zarr_format']}, layout {info['format_version']})"),
        ("grid", f"EPSG:{info['epsg']} ({info['crs']}), {_m(info['pixel_size_m'])} m pixels, "
                 f"{shape['x']} x {shape['y']} px, tiles of {_m(info['tile_size_m'])} m "
                 f"({info['tile_size_px']} px)"),
        ("bounds", f"x {_m(w)}..{_m(e)} m, y {_m(s)}..{_m(n)} m; "
                   f"lon {lw:.5f}..{le:.5f}, lat {ls:.5f}..{ln:.5f}"),
        ("dates", f"{dates['count']} from {dates['first']} to {dates['last']}"),
        ("encoding", f"{packing}, {encoding['compression']} level "
                     f"{encoding['compression_level']}, {encoding['time_chunk']} dates per chunk"),
        ("tiles", f"{tiles['complete']} of {tiles['count']} complete{missing}"),
        ("model", _model_line(info)),
        ("inputs", f"{inputs['items']} items over the complete tiles ({inputs['s2_items']} "
                   f"Sentinel-2, {inputs['landsat_items']} Landsat), "
                   f"{broken} broken asset{'' if broken == 1 else 's'}"),
    ]  # fmt: skip
    width = max(len(label) for label, _ in lines)
    text = [f"{label:<{width}}  {value}" for label, value in lines]
    if info.get("untrained"):
        text.append("UNTRAINED model: values are not meaningful")
    return "\n".join(text)


def _packing(encoding: Mapping[str, Any]) -> str:
    """How the bands are stored, and what a plain ``xr.open_zarr`` decodes them to."""
    if encoding["encoding"] == "int16":
        return "int16 with CF scale/offset (xr.open_zarr: float64; open_level3: float32)"
    bits = {
        "reflectance": encoding.get("reflectance_keep_bits"),
        "temperature": encoding.get("temperature_keep_bits"),
    }
    if all(b is None for b in bits.values()):
        return "float32, exact (xr.open_zarr: float32)"
    parts = " / ".join(
        f"exact {quantity}" if b is None else f"{b} bits {quantity}" for quantity, b in bits.items()
    )
    return f"float32 (mantissa rounded to {parts}; xr.open_zarr: float32)"


def _model_line(info: Mapping[str, Any]) -> str:
    """Checksum and origin of the weights (``checkpoint_identity``), and whether trained."""
    model = info.get("model")
    state = {True: "UNTRAINED", False: "trained"}.get(info.get("untrained"), "training unknown")
    if not isinstance(model, Mapping) or not model:
        return f"not recorded ({state})"
    parts = []
    checksum = model.get("weights_sha256") or model.get("file_sha256")
    if checksum:
        parts.append(f"weights sha256 {str(checksum)[:12]}")
    origin = model.get("origin")
    if isinstance(origin, Mapping):  # imported: the source file; a named model; else its kind
        origin = origin.get("imported_from") or origin.get("name") or origin.get("kind")
    if origin:
        parts.append(f"from {origin}")
    return f"{', '.join(parts) or 'recorded'} ({state})"


def _m(value: float) -> str:
    """Metres without a useless ``.0``."""
    return f"{value:.0f}" if float(value).is_integer() else f"{value:g}"
