"""Offline JSON-schema validation of STAC Items, Collections and Catalogs.

pystac's validator downloads the extension schemas an object lists in ``stac_extensions``
(stac-validator also the core ones) at run time.  This module never touches the network: all
schemas ship as package data in ``pipelines/stac_schemas/`` and are served to jsonschema's
Draft 7 validator through a :class:`referencing.Registry` keyed by their canonical https URLs,
so references between schemas (item.json -> basics.json, projection -> GeoJSON Geometry, ...)
resolve locally.  A reference to anything not vendored fails loudly instead of being fetched.

Public API: :func:`validate_stac`, :class:`StacValidationError` (a ``ValueError``),
:class:`ValidationFailure`, :func:`known_schema_urls`, :func:`known_extension_urls`.

Where the schema files come from (see also each file's ``$id``/``title``):

* ``stac-v1.0.0-*.json`` -- STAC core 1.0.0 (item, basics, datetime, instrument, licensing,
  provider, collection, catalog): the JSON text that the ``rustac`` 0.9.18 wheel (PyPI,
  MIT OR Apache-2.0) embeds in its binary, extracted unchanged (plus a final newline); they are
  the stac-spec v1.0.0 schemas, Apache-2.0 (c) the STAC contributors.  pystac only ships 1.1.0.
* ``stac-v1.1.0-*.json`` -- STAC core 1.1.0, copied unchanged from the pystac 1.15.2 wheel
  (``pystac/validation/jsonschemas``, Apache-2.0); stac-spec v1.1.0, Apache-2.0.  Kept
  because pystac writes ``stac_version`` 1.1.0 by default.
* ``geojson-Feature.json``, ``geojson-Geometry.json`` -- the geojson.org schemas referenced by
  STAC core, copied unchanged from the same pystac wheel.
* ``projjson-v0.7.json`` -- PROJJSON v0.7 schema, copied unchanged from the pyproj wheel
  (``pyproj/proj_dir/share/proj``); MIT, copyright notice inside the file.
* ``ext-*.json`` -- STAC extension schemas.  No installable package ships them, so they were
  written for this project from the extensions' specifications
  (https://github.com/stac-extensions/<name>, Apache-2.0): same field names, types, enums,
  ranges and required fields, restructured (``if``/``then`` on ``type`` instead of ``oneOf``)
  so that failures point at the offending field.  Each file says so in its ``description``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from importlib import resources
from typing import Any

import pystac
from jsonschema import Draft7Validator, FormatChecker
from jsonschema.exceptions import ValidationError, relevance
from jsonschema_specifications import REGISTRY as METASCHEMAS
from referencing import Registry, Resource
from referencing.exceptions import NoSuchResource, Unresolvable
from referencing.jsonschema import DRAFT7

__all__ = [
    "StacValidationError",
    "ValidationFailure",
    "known_extension_urls",
    "known_schema_urls",
    "validate_stac",
]

_SCHEMA_DIR = "stac_schemas"
_STACSPEC = "https://schemas.stacspec.org"
_EXT = "https://stac-extensions.github.io"

_CORE_ITEM_PARTS = {
    "1.0.0": ("item", "basics", "datetime", "instrument", "licensing", "provider"),
    "1.1.0": (
        "item", "basics", "datetime", "instrument", "licensing", "provider",
        "bands", "common", "data-values",
    ),
}  # fmt: skip

#: Core schema validated for each (stac_version, type).
_CORE_SCHEMAS: dict[str, dict[str, str]] = {
    version: {
        "Feature": f"{_STACSPEC}/v{version}/item-spec/json-schema/item.json",
        "Collection": f"{_STACSPEC}/v{version}/collection-spec/json-schema/collection.json",
        "Catalog": f"{_STACSPEC}/v{version}/catalog-spec/json-schema/catalog.json",
    }
    for version in _CORE_ITEM_PARTS
}

#: Extension schema URL (exactly as written in ``stac_extensions``) -> local file.
_EXTENSION_FILES: dict[str, str] = {
    f"{_EXT}/{name}/v{version}/schema.json": f"ext-{name}-v{version}.json"
    for name, version in (
        ("eo", "1.0.0"),
        ("eo", "1.1.0"),
        ("file", "2.1.0"),
        ("grid", "1.1.0"),
        ("item-assets", "1.0.0"),
        ("landsat", "2.0.0"),
        ("mgrs", "1.0.0"),
        ("processing", "1.1.0"),
        ("projection", "1.0.0"),
        ("projection", "1.1.0"),
        ("projection", "2.0.0"),
        ("raster", "1.0.0"),
        ("raster", "1.1.0"),
        ("sat", "1.0.0"),
        ("sentinel-2", "1.0.0"),
        ("storage", "1.0.0"),
        ("view", "1.0.0"),
    )
}


def _core_files() -> dict[str, str]:
    """Canonical URL -> file name for the vendored STAC core schemas of every version."""
    files: dict[str, str] = {}
    for version, parts in _CORE_ITEM_PARTS.items():
        for part in parts:
            files[f"{_STACSPEC}/v{version}/item-spec/json-schema/{part}.json"] = (
                f"stac-v{version}-{part}.json"
            )
        for kind in ("collection", "catalog"):
            files[f"{_STACSPEC}/v{version}/{kind}-spec/json-schema/{kind}.json"] = (
                f"stac-v{version}-{kind}.json"
            )
    return files


#: Every canonical schema URL that resolves offline -> file in ``pipelines/stac_schemas``.
_SCHEMA_FILES: dict[str, str] = {
    **_core_files(),
    "https://geojson.org/schema/Feature.json": "geojson-Feature.json",
    "https://geojson.org/schema/Geometry.json": "geojson-Geometry.json",
    "https://proj.org/schemas/v0.7/projjson.schema.json": "projjson-v0.7.json",
    **_EXTENSION_FILES,
}


@dataclass(frozen=True)
class ValidationFailure:
    """One schema violation: where it is, which schema says so, and how to fix it."""

    schema_url: str
    json_path: str
    message: str
    fix: str

    def __str__(self) -> str:
        return (
            f"{self.json_path}: {self.message}\n"
            f"     schema: {self.schema_url}\n"
            f"     fix: {self.fix}"
        )


class StacValidationError(ValueError):
    """A STAC object does not validate against its core or extension schemas.

    ``str(error)`` lists every failure with the schema URL, the JSON path and a fix;
    the same data is available as :attr:`failures`.
    """

    def __init__(
        self, object_label: str, failures: list[ValidationFailure], footer: str = ""
    ) -> None:
        self.object_label = object_label
        self.failures: tuple[ValidationFailure, ...] = tuple(failures)
        n = len(self.failures)
        lines = [
            f"{object_label} failed offline STAC validation ({n} problem{'s' if n != 1 else ''}):"
        ]
        lines += [f"  {i}. {failure}" for i, failure in enumerate(self.failures, 1)]
        if footer:
            lines.append(footer)
        super().__init__("\n".join(lines))


def known_schema_urls() -> list[str]:
    """Canonical URLs of every schema available offline (core, GeoJSON, PROJJSON, extensions)."""
    return sorted(_SCHEMA_FILES)


def known_extension_urls() -> list[str]:
    """Extension schema URLs accepted in ``stac_extensions``."""
    return sorted(_EXTENSION_FILES)


def validate_stac(
    obj: Mapping[str, Any] | pystac.Item | pystac.Collection | pystac.Catalog,
) -> None:
    """Validate a STAC Item / Collection / Catalog against core + all listed extension schemas.

    The core schema is chosen by ``stac_version`` (1.0.0 or 1.1.0) and ``type``; every URL in
    ``stac_extensions`` must be one of :func:`known_extension_urls` -- an unknown one is a
    failure, never silently skipped.  Nothing is downloaded.

    Raises:
        StacValidationError: listing every failure (object id, schema URL, JSON path, fix).
        TypeError: ``obj`` is neither a mapping nor a pystac object.
    """
    raw = _as_mapping(obj)
    label = _label(raw)
    try:
        # The round trip turns tuples into lists (jsonschema only treats lists as arrays) and
        # rejects what a JSON file cannot hold: NaN/inf, datetime or numpy objects.
        data: dict[str, Any] = json.loads(json.dumps(raw, allow_nan=False))
    except (TypeError, ValueError) as exc:
        failure = ValidationFailure(
            schema_url="(none)",
            json_path="$",
            message=f"object is not valid JSON: {exc}",
            fix="use plain JSON values only (str, number, bool, null, list, dict); "
            "no NaN/inf, datetime or numpy objects",
        )
        raise StacValidationError(label, [failure]) from exc

    failures: list[ValidationFailure] = []
    core_url = _core_schema_url(data, failures)
    if core_url is not None:
        failures += _validate_against(core_url, data)

    extensions = data.get("stac_extensions", [])
    if isinstance(extensions, list):  # a non-list is reported by the core schema
        seen: set[str] = set()
        for index, ext_url in enumerate(extensions):
            if not isinstance(ext_url, str) or ext_url in seen:
                continue
            seen.add(ext_url)
            if ext_url in _EXTENSION_FILES:
                failures += _validate_against(ext_url, data)
            else:
                failures.append(_unknown_extension(ext_url, index))

    if failures:
        footer = ""
        if any(f.message == _UNKNOWN_EXTENSION for f in failures):
            # Listed once here rather than in every failure's fix.
            footer = "Known extension schemas:\n" + "\n".join(
                f"  - {url}" for url in known_extension_urls()
            )
        raise StacValidationError(label, _dedupe(failures), footer)


# ----------------------------------------------------------------------------- internals


def _as_mapping(obj: object) -> Mapping[str, Any]:
    """The STAC JSON of ``obj`` as a mapping (pystac objects are serialised without I/O)."""
    if isinstance(obj, pystac.STACObject):
        # transform_hrefs=False: no href resolution, hence no I/O of any kind.
        return obj.to_dict(include_self_link=False, transform_hrefs=False)
    if isinstance(obj, Mapping):
        return obj
    raise TypeError(
        f"validate_stac expects a dict or a pystac Item/Collection/Catalog, "
        f"got {type(obj).__name__}"
    )


def _label(data: Mapping[str, Any]) -> str:
    """'STAC Item <id>' etc., for the first line of the error message."""
    type_field = data.get("type")
    kinds = {"Feature": "Item", "Collection": "Collection", "Catalog": "Catalog"}
    kind = kinds.get(type_field, "object") if isinstance(type_field, str) else "object"
    object_id = data.get("id")
    return f"STAC {kind} {object_id!r}" if object_id is not None else f"STAC {kind} (no id)"


def _core_schema_url(data: Mapping[str, Any], failures: list[ValidationFailure]) -> str | None:
    version = data.get("stac_version")
    kind = data.get("type")
    by_type = _CORE_SCHEMAS.get(version) if isinstance(version, str) else None
    if by_type is None:
        failures.append(
            ValidationFailure(
                schema_url="(core schema)",
                json_path="$.stac_version",
                message=f"stac_version {version!r} has no local core schema",
                fix=f"set stac_version to one of {sorted(_CORE_SCHEMAS)}",
            )
        )
        return None
    url = by_type.get(kind) if isinstance(kind, str) else None
    if url is None:
        failures.append(
            ValidationFailure(
                schema_url="(core schema)",
                json_path="$.type",
                message=f"type {kind!r} is not a STAC object type",
                fix="set type to 'Feature' (Item), 'Collection' or 'Catalog'",
            )
        )
    return url


_UNKNOWN_EXTENSION = "no local schema for this extension, so it cannot be validated offline"


def _unknown_extension(url: str, index: int) -> ValidationFailure:
    return ValidationFailure(
        schema_url=url,
        json_path=f"$.stac_extensions[{index}]",
        message=_UNKNOWN_EXTENSION,
        fix=(
            "use one of the known extension schemas listed below, remove the URL if the object "
            "does not use that extension, or vendor its schema in pipelines/stac_schemas/ and "
            "register it in stac_validation._EXTENSION_FILES"
        ),
    )


def _refuse_retrieval(uri: str) -> Resource[Any]:
    # The registry's only fallback: any $ref outside the vendored set fails here instead of
    # being downloaded.
    raise NoSuchResource(ref=uri)


def _load_schema(filename: str) -> dict[str, Any]:
    text = resources.files("pipelines").joinpath(_SCHEMA_DIR, filename).read_text("utf-8")
    return json.loads(text)


@cache
def _registry() -> Registry[Any]:
    """All vendored schemas (plus the JSON-Schema metaschemas), keyed by canonical URL."""
    pairs: list[tuple[str, Resource[Any]]] = []
    for url, filename in _SCHEMA_FILES.items():
        contents = _load_schema(filename)
        resource = DRAFT7.create_resource(contents)
        pairs.append((url, resource))
        declared = str(contents.get("$id", "")).rstrip("#")
        if declared and declared != url:
            # stac-spec 1.1.0 common.json declares '$id': '.../commonjson' (upstream typo);
            # register that spelling too so refs made relative to it still resolve.
            pairs.append((declared, resource))
    registry: Registry[Any] = Registry(retrieve=_refuse_retrieval).with_resources(pairs)
    # Metaschemas: the core Collection schema refs draft-07 itself for `summaries`.
    return registry.combine(METASCHEMAS)


def _is_rfc3339_datetime(value: object) -> bool:
    """RFC 3339 date-time check, independent of jsonschema's optional format dependencies."""
    if not isinstance(value, str):
        return True
    match = _RFC3339.fullmatch(value)
    if match is None:
        return False
    # fromisoformat checks the calendar/clock ranges; keep at most 6 fractional digits.
    date, clock, fraction, zone = match.groups()
    normalised = f"{date}T{clock}{(fraction or '')[:7]}{'+00:00' if zone in 'Zz' else zone}"
    try:
        datetime.fromisoformat(normalised)
    except ValueError:
        return False
    return True


_RFC3339 = re.compile(r"(\d{4}-\d{2}-\d{2})[Tt](\d{2}:\d{2}:\d{2})(\.\d+)?([Zz]|[+-]\d{2}:\d{2})")
# Only date-time is format-checked: jsonschema's other checkers depend on optional packages,
# which would make validation results differ between machines.
_FORMAT_CHECKER = FormatChecker(formats=())
_FORMAT_CHECKER.checks("date-time")(_is_rfc3339_datetime)


@cache
def _validator(url: str) -> Draft7Validator:
    registry = _registry()
    schema = registry.contents(url)
    return Draft7Validator(schema, registry=registry, format_checker=_FORMAT_CHECKER)


def _validate_against(url: str, data: Mapping[str, Any]) -> list[ValidationFailure]:
    try:
        errors = list(_validator(url).iter_errors(data))
    except Unresolvable as exc:  # a packaging bug, not a property of the object
        raise RuntimeError(
            f"schema {url} references {exc!s}, which is not vendored in "
            f"pipelines/{_SCHEMA_DIR}; refusing to download it"
        ) from exc
    failures: list[ValidationFailure] = []
    for error in sorted(errors, key=lambda e: [str(p) for p in e.absolute_path]):
        failures += [_to_failure(url, leaf) for leaf in _leaves(error)]
    return failures


def _leaves(error: ValidationError) -> Iterator[ValidationError]:
    """The most specific errors behind ``error`` (descends into anyOf/oneOf branches)."""
    if not error.context or _is_require_any(error):
        yield error
        return
    # Report the alternative that came closest rather than one message per alternative
    # (GeoJSON geometries are a oneOf of 7 types; jsonschema's own best_match tends to pick
    # "is not of type 'null'"). Group the errors by branch and pick the branch whose errors
    # look least like "this is a different kind of object": the instance has the branch's
    # JSON type, then no mismatching 'type' discriminator, then fewest JSON-type mismatches,
    # then fewest errors.
    branches: dict[object, list[ValidationError]] = {}
    for sub in error.context:
        branch = sub.relative_schema_path[0] if sub.relative_schema_path else None
        branches.setdefault(branch, []).append(sub)
    closest = min(branches.values(), key=_branch_distance)
    # Within that branch take jsonschema's most relevant error, then descend on our terms
    # (best_match itself would descend into nested alternatives with its own heuristic).
    yield from _leaves(max(closest, key=relevance))


def _branch_distance(errors: list[ValidationError]) -> tuple[int, int, int, int]:
    other_json_type = sum(1 for e in errors if e.validator == "type" and not e.relative_path)
    discriminator = sum(
        1
        for e in errors
        if e.validator in ("enum", "const") and e.relative_path and e.relative_path[-1] == "type"
    )
    wrong_type = sum(1 for e in errors if e.validator == "type")
    return other_json_type, discriminator, wrong_type, len(errors)


def _is_require_any(error: ValidationError) -> bool:
    return error.validator in ("anyOf", "oneOf") and all(
        sub.validator == "required" for sub in error.context
    )


def _to_failure(url: str, error: ValidationError) -> ValidationFailure:
    path = error.json_path
    message = error.message
    if _is_require_any(error):
        names = sorted({name for sub in error.context for name in sub.validator_value})
        message = f"needs at least one of the fields {names}"
    elif _is_orphan_collection(error):
        message = "'collection' is set but no link has rel 'collection'"
    elif error.validator == "not":
        message = "this field is not allowed here"
    elif error.validator == "additionalProperties":
        # jsonschema's wording ("... does not match any of the regexes: '^(?!s2:)'") hides
        # the point: the field is not defined by the extension.
        message = f"unknown field(s) {_unexpected_keys(error)} for this schema"
    if len(message) > _MAX_MESSAGE:  # jsonschema quotes whole instances, e.g. a geometry
        message = message[: _MAX_MESSAGE - 3] + "..."
    return ValidationFailure(url, path, message, _fix(error, path))


_MAX_MESSAGE = 300


def _fix(error: ValidationError, path: str) -> str:
    """A short, concrete remedy for one error, keyed on the JSON-schema keyword."""
    keyword, expected, instance = error.validator, error.validator_value, error.instance
    if keyword == "required":
        # jsonschema reports one error per missing name: "'geometry' is a required property".
        named = _REQUIRED_MESSAGE.fullmatch(error.message)
        return f"add {named.group(1) if named else 'the missing field'} to {path}"
    if keyword == "type":
        types = " or ".join(expected) if isinstance(expected, list) else expected
        return f"make {path} a JSON {types} (got {_short(instance)})"
    if keyword == "enum":
        return f"use one of {_short(expected, 300)} for {path}"
    if keyword == "const":
        return f"set {path} to {expected!r}"
    if keyword in ("minimum", "exclusiveMinimum"):
        return f"use a value {'>=' if keyword == 'minimum' else '>'} {expected} for {path}"
    if keyword in ("maximum", "exclusiveMaximum"):
        return f"use a value {'<=' if keyword == 'maximum' else '<'} {expected} for {path}"
    if keyword == "pattern":
        return f"make {path} match the regular expression {expected}"
    if keyword == "format" and expected == "date-time":
        return f"write {path} as an RFC 3339 date-time in UTC, e.g. '2025-07-31T13:03:19Z'"
    if keyword == "format":
        return f"write {path} as a valid {expected}"
    if keyword in _COUNTED:
        bound = "at least" if keyword.startswith("min") else "at most"
        return f"give {path} {bound} {expected} {_COUNTED[keyword]}"
    if keyword == "additionalProperties":
        extras = _unexpected_keys(error)
        return (
            f"remove or rename {extras} in {path}: the schema defines no such field "
            "(check the spelling and the extension version)"
        )
    if _is_require_any(error):
        return f"add at least one of the listed fields to {path}"
    if _is_orphan_collection(error):
        return (
            "add a link {'rel': 'collection', 'href': ...} to $.links, or remove $.collection "
            "(STAC 1.0 requires both or neither)"
        )
    if keyword is None or keyword == "not":  # a `false` schema or `not`
        return f"remove {path}"
    return f"make {path} satisfy the schema's '{keyword}' rule ({_short(expected)})"


def _is_orphan_collection(error: ValidationError) -> bool:
    # STAC core: `collection` is only allowed with a rel="collection" link (else-branch `not`).
    return error.validator == "not" and list(error.absolute_path) == ["collection"]


_COUNTED = {
    "minItems": "items",
    "maxItems": "items",
    "minProperties": "properties",
    "maxProperties": "properties",
    "minLength": "characters",
    "maxLength": "characters",
}
_REQUIRED_MESSAGE = re.compile(r"(.+) is a required property")


def _unexpected_keys(error: ValidationError) -> list[str]:
    schema, instance = error.schema, error.instance
    if not isinstance(schema, dict) or not isinstance(instance, dict):
        return []
    declared = schema.get("properties", {})
    patterns = list(schema.get("patternProperties", {}))
    return [
        key
        for key in instance
        if key not in declared and not any(re.search(p, key) for p in patterns)
    ]


def _short(value: object, limit: int = 120) -> str:
    text = json.dumps(value, ensure_ascii=False) if not isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _dedupe(failures: list[ValidationFailure]) -> list[ValidationFailure]:
    # The same missing field can be reported by nested schemas (item.json and Feature.json).
    unique: dict[tuple[str, str], ValidationFailure] = {}
    for failure in failures:
        unique.setdefault((failure.json_path, failure.message), failure)
    return list(unique.values())
