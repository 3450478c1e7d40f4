"""Writes of a run's output that fail for good: a full disk, a read-only file system, a quota.

Retrying such a write minutes later hits the same wall, and so would every other tile of the
run: :func:`writing` turns the operating system's error into an :class:`OutputWriteError` that
names the stage and the path, and the run stops (:mod:`pipelines.tiles_in_flight` does not
retry it). What the run wrote stays consistent: a tile's completion record follows its data,
so a tile cut short has no record and the next run computes it.
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["OutputWriteError", "writing"]

_ALWAYS_OUTPUT = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS})
"""Errors that only a write gives: whatever file they name, the output is not writable."""
_DENIED = frozenset({errno.EACCES, errno.EPERM})
"""Errors that a read gives too: an output error only when they name a file of the output."""


class OutputWriteError(RuntimeError):
    """The run's output cannot be written (``stage`` to ``path``): no retry helps; free space
    or fix the file system, then re-run (complete tiles are kept)."""

    def __init__(self, stage: str, path: str, reason: str, code: int | None = None) -> None:
        super().__init__(stage, path, reason, code)
        self.stage, self.path, self.reason, self.code = stage, path, reason, code

    def __str__(self) -> str:
        name = f" [{errno.errorcode[self.code]}]" if self.code in errno.errorcode else ""
        return (
            f"{self.stage} to {self.path}: {self.reason}{name}: free space there or make it "
            "writable (or choose another --out-dir), then re-run the same command: complete "
            "tiles are kept and only the missing ones are computed"
        )


def _is_output_error(error: OSError, path: str) -> bool:
    if error.errno in _ALWAYS_OUTPUT:
        return True
    if error.errno not in _DENIED or not error.filename:
        return False
    try:  # a denied read of an input (a COG, a checkpoint) is not an output error
        return Path(os.fspath(error.filename)).absolute().is_relative_to(Path(path).absolute())
    except (TypeError, ValueError):
        return False


@contextlib.contextmanager
def writing(stage: str, path: str | os.PathLike[str] | Any) -> Iterator[None]:
    """Raise :class:`OutputWriteError` for ``stage`` (e.g. ``writing tile X chunks``) when
    the block fails with an error that a retry cannot fix (no space, read-only, quota, or
    permission denied on a file under ``path``); other errors pass unchanged."""
    try:
        yield
    except OSError as error:
        if not _is_output_error(error, str(path)):
            raise
        reason = error.strerror or str(error)
        raise OutputWriteError(stage, str(path), reason, error.errno) from error
