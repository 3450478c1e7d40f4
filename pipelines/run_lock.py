"""One run per output directory.

Two runs writing the same Level-3 stores would interleave their tiles, records and summary,
so a run holds an exclusive lock on ``<out_dir>/.tamrf-run.lock`` for its whole duration.

The lock is a kernel lock (``fcntl.flock``) on an open file, not the file's existence: the
kernel drops it when the holder exits for any reason (crash, ``kill -9``, power loss of the
holder's machine on NFS v4 leases), so a crashed run never blocks the next one and no stale
file has to be removed by hand. The file's content (pid, host, start time, command) is only
there to tell the second run who holds the lock.
"""

from __future__ import annotations

import datetime as dt
import errno
import fcntl
import json
import os
import socket
import sys
from pathlib import Path
from types import TracebackType
from typing import IO, Any

__all__ = ["LOCK_NAME", "RunLock", "RunLockedError"]

LOCK_NAME = ".tamrf-run.lock"


class RunLockedError(RuntimeError):
    """Another live run holds the output directory."""


class RunLock:
    """Exclusive lock of an output directory (a context manager; creates the directory)."""

    def __init__(self, out_dir: str | os.PathLike[str]) -> None:
        self.out_dir = Path(out_dir)
        self.path = self.out_dir / LOCK_NAME
        self._stream: IO[str] | None = None

    def holder(self) -> dict[str, Any]:
        """What the lock file says of its holder ({} when unreadable)."""
        try:
            return json.loads(self.path.read_text() or "{}")
        except (OSError, ValueError):
            return {}

    def ensure_free(self) -> None:
        """Raise :class:`RunLockedError` when a live run holds the directory, without
        creating anything (a quick check before slow work such as a continental search)."""
        if not self.path.is_file():
            return
        with open(self.path) as stream:
            try:
                fcntl.flock(stream.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as error:
                if error.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                    raise
                raise self._locked_error() from None
            fcntl.flock(stream.fileno(), fcntl.LOCK_UN)

    def _locked_error(self) -> RunLockedError:
        holder = self.holder()
        who = (
            f"pid {holder.get('pid')} on {holder.get('host')}, started {holder.get('started')}"
            if holder
            else "another process"
        )
        return RunLockedError(
            f"{self.out_dir} is in use by another tamrf run ({who}): wait for it to "
            "finish, or give this run another --out-dir. The lock is released "
            "automatically when that process ends, even if it crashes."
        )

    def acquire(self) -> None:
        """Take the lock or raise :class:`RunLockedError` naming the holder and the fix."""
        self.out_dir.mkdir(parents=True, exist_ok=True)
        # "a+" never truncates: the holder's description stays readable until we own the lock.
        stream = open(self.path, "a+")  # noqa: SIM115 (held open for the run's duration)
        try:
            fcntl.flock(stream.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            stream.close()
            if error.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise
            raise self._locked_error() from None
        stream.seek(0)
        stream.truncate()
        stream.write(
            json.dumps(
                {
                    "pid": os.getpid(),
                    "host": socket.gethostname(),
                    "started": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                    "command": " ".join(sys.argv),
                }
            )
        )
        stream.flush()
        self._stream = stream

    def release(self) -> None:
        if self._stream is None:
            return
        stream, self._stream = self._stream, None
        # The file stays (removing it would race with a waiting run that opened it); the
        # kernel lock is what counts.
        fcntl.flock(stream.fileno(), fcntl.LOCK_UN)
        stream.close()

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.release()
