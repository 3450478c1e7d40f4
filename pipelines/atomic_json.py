"""JSON files that readers see whole or not at all."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["write_json_atomically"]


def write_json_atomically(target: Path, document: Mapping[str, Any]) -> None:
    """Write ``document`` to ``target`` through a flushed temporary file and a rename:
    readers see no ``target``, the old one or the whole new one, never a part."""
    temporary = target.with_name(f".{target.name.lstrip('.')}.{uuid.uuid4().hex}.tmp")
    with open(temporary, "w") as stream:
        json.dump(document, stream, indent=2)
        stream.flush()
        os.fsync(stream.fileno())
    os.replace(temporary, target)
