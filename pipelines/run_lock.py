"""One run per output directory.

Two runs writing the same Level-3 stores would interleave their tiles, records and summary,
so a run holds an exclusive lock on ``<out_dir>/.tamrf-run.lock`` for its whole duration.

The lock is a kernel lock (``fcntl.flock``) on an open file, not the file's existence: the
kernel drops it when the holder exits for any reason (crash, ``kill -9``, power loss of the
holder's machine on NFS v4 leases), so a crashed run never blocks the next one and no stale
file has to be removed by hand. The file's content (pid, host, start time, command) is only
there to tell the second run who holds the lock.

Object stores have no such lock: there :class:`ObjectStoreRunLock` creates the lock object
with a conditional PUT and keeps renewing it; :func:`run_lock` picks the right one.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import fcntl
import json
import os
import socket
import sys
import threading
import uuid
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from pipelines.output_errors import writing
from pipelines.storage import Location

__all__ = ["LOCK_NAME", "ObjectStoreRunLock", "RunLock", "RunLockedError", "run_lock"]

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
        holder = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "command": " ".join(sys.argv),
        }
        try:
            with writing("taking the run lock", self.path):  # a full disk: one clear error
                stream.seek(0)
                stream.truncate()
                stream.write(json.dumps(holder))
                stream.flush()
        except BaseException:
            stream.close()  # drops the kernel lock too
            raise
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


class ObjectStoreRunLock:
    """Exclusive lock of an output prefix on an object store, where no kernel lock exists.

    The lock is the object ``<prefix>/.tamrf-run.lock``, created with a conditional PUT (it
    fails when the object exists) and holding the holder's pid, host, start time and a
    ``renewed`` time that a background thread rewrites every :attr:`renew_every_s`. A lock
    is stale, and taken over, when its holder stopped renewing it for :attr:`stale_after_s`
    (a crashed or killed run, on any machine), or at once when its holder ran on this host
    and that process is gone. Release deletes the object if it is still this run's.
    """

    renew_every_s = 30.0
    stale_after_s = 180.0

    def __init__(self, out_dir: Location) -> None:
        self.out_dir = out_dir
        self.path = out_dir / LOCK_NAME
        self._token: str | None = None
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None

    def holder(self) -> dict[str, Any]:
        """What the lock object says of its holder ({} when absent or unreadable)."""
        try:
            return json.loads(self.path.read_bytes() or b"{}")
        except (OSError, ValueError):
            return {}

    def _is_stale(self, holder: dict[str, Any]) -> bool:
        if not holder:
            return True  # unreadable or vanished: nobody can be shown to hold it
        if holder.get("host") == socket.gethostname() and not _pid_alive(holder.get("pid")):
            return True
        renewed = holder.get("renewed") or holder.get("started")
        try:
            age = dt.datetime.now(dt.UTC) - dt.datetime.fromisoformat(renewed)
        except (TypeError, ValueError):
            return True
        return age.total_seconds() > self.stale_after_s

    def ensure_free(self) -> None:
        """Raise :class:`RunLockedError` when a live run holds the prefix (writes nothing)."""
        if self.path.exists() and not self._is_stale(self.holder()):
            raise self._locked_error()

    def _locked_error(self) -> RunLockedError:
        holder = self.holder()
        return RunLockedError(
            f"{self.out_dir} is in use by another tamrf run (pid {holder.get('pid')} on "
            f"{holder.get('host')}, started {holder.get('started')}, lock renewed "
            f"{holder.get('renewed')}): wait for it to finish, or give this run another "
            f"--out-dir. A crashed run's lock is taken over {self.stale_after_s:.0f} s after "
            "its last renewal."
        )

    def _document(self, started: str) -> bytes:
        now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        return json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": started,
                           "renewed": now, "command": " ".join(sys.argv),
                           "token": self._token}).encode()  # fmt: skip

    def acquire(self) -> None:
        """Take the lock or raise :class:`RunLockedError` naming the holder and the fix."""
        self._token = uuid.uuid4().hex
        started = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        if not self.path.create_exclusively(self._document(started)):
            if not self._is_stale(self.holder()):
                raise self._locked_error()
            self.path.remove()  # a crashed holder's lock
            if not self.path.create_exclusively(self._document(started)):
                raise self._locked_error()  # another run took it over first
        self._stop.clear()
        self._renewer = threading.Thread(target=self._renew, args=(started,),
                                         name="tamrf-run-lock", daemon=True)  # fmt: skip
        self._renewer.start()

    def _renew(self, started: str) -> None:
        while not self._stop.wait(self.renew_every_s):
            if self.holder().get("token") != self._token:
                return  # taken over (this run was presumed dead): never overwrite it
            with contextlib.suppress(OSError):  # a missed renewal is retried next period
                self.path.write_bytes(self._document(started))

    def release(self) -> None:
        if self._renewer is None:
            return
        self._stop.set()
        self._renewer.join()
        self._renewer = None
        if self.holder().get("token") == self._token:
            self.path.remove()

    def __enter__(self) -> ObjectStoreRunLock:
        self.acquire()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.release()


def _pid_alive(pid: Any) -> bool:
    """Whether a process with this pid runs on this host."""
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's live process
    return True


def run_lock(out_dir: str | os.PathLike[str] | Location) -> RunLock | ObjectStoreRunLock:
    """The lock of an output location: a kernel lock for a local (or network) file system,
    an :class:`ObjectStoreRunLock` for an object store."""
    location = Location.of(out_dir)
    return RunLock(location.local_path) if location.is_local else ObjectStoreRunLock(location)
