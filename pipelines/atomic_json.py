"""JSON files that readers see whole or not at all (local paths and object-store URLs)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from pipelines.storage import Location

__all__ = ["write_json_atomically"]


def write_json_atomically(
    target: str | os.PathLike[str] | Location, document: Mapping[str, Any]
) -> None:
    """Write ``document`` to ``target``: readers see no ``target``, the old one or the whole
    new one, never a part (a flushed temporary file and a rename on a local file system, one
    PUT on an object store: :meth:`pipelines.storage.Location.write_json`)."""
    Location.of(target).write_json(document)
