"""A watchdog process that stops what a process started when that process dies without
cleaning up (SIGKILL, a crash in C code, an exit handler cut short).

No handler runs on SIGKILL, so the servers and workers a ``tamrf run`` started (the temporary
Prefect server, the demo's STAC server, Dask workers) would live on, listening. The watchdog
is a small separate process (this file, run as a script) that reads a pipe only its parent
holds. While its parent runs a command it remembers, every :data:`POLL_S`, the processes
descended from the parent that were not there when the command started (a process is its pid
and its start time, so a reused pid is another process); when the pipe closes (the
parent exited, for any reason), it stops those that still live: SIGTERM, then SIGKILL after
:data:`GRACE_S`. After a clean exit there is nothing left to stop, so it just leaves.

Guaranteed for a parent killed with SIGKILL (alone or with its whole process group: the
watchdog runs in a session of its own): every descendant that lived through one poll before
the death. Not guaranteed: one born in the last :data:`POLL_S` before it, or any when the
watchdog itself is killed by name or pid.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import sys
import time

import psutil

__all__ = ["GRACE_S", "POLL_S", "Watchdog"]

POLL_S = 0.2
"""Seconds between two looks at the parent's descendants."""
GRACE_S = 5.0
"""Seconds a remembered process gets to exit after SIGTERM before SIGKILL."""


class Watchdog:
    """The watchdog of this process, started on creation (one per process is enough)."""

    def __init__(self) -> None:
        # Run as a script, not `-m flows...`: it needs nothing of the project, so it starts
        # in a fraction of a second whatever the current directory.
        self.process = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), str(os.getpid())],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            close_fds=True,
            # Out of the run's process group: a Ctrl-C or a `kill -9 -PGID` of the group
            # does not reach it, and it stops what the run left in other sessions.
            start_new_session=True,
        )

    def watch(self) -> None:
        """Remember, from now on, the processes this one starts (until :meth:`pause`): those
        descended from it now are named, to be left alone."""
        existing = _descendants(psutil.Process(), exclude=self.process.pid)
        self._send(" ".join(["watch", *(f"{pid}:{start!r}" for pid, start in existing)]) + "\n")

    def pause(self) -> None:
        """Stop remembering new processes (those remembered are still stopped if this
        process dies without stopping them)."""
        self._send("pause\n")

    def _send(self, line: str) -> None:
        assert self.process.stdin is not None
        with contextlib.suppress(OSError):  # the watchdog is gone: nothing it could do
            self.process.stdin.write(line.encode())
            self.process.stdin.flush()


Identity = tuple[int, float]
"""(pid, start time): a process, whatever became of its pid."""


def _descendants(parent: psutil.Process, exclude: int) -> dict[Identity, psutil.Process]:
    """The parent's descendants (the watchdog, pid ``exclude``, aside) by identity."""
    found = {}
    with contextlib.suppress(psutil.Error):
        for child in parent.children(recursive=True):
            with contextlib.suppress(psutil.Error):
                if child.pid != exclude:
                    found[(child.pid, round(child.create_time(), 2))] = child
    return found


def _identities(words: list[str]) -> set[Identity]:
    """``pid:start`` words (see :meth:`Watchdog.watch`) as identities."""
    return {(int(pid), round(float(start), 2)) for pid, start in (w.split(":") for w in words)}


def _stop(processes: list[psutil.Process]) -> None:
    """SIGTERM each process that still lives (psutil checks it is the same process, not a
    reused pid), then SIGKILL those still there after GRACE_S."""
    alive = [p for p in processes if _alive(p)]
    for process in alive:
        with contextlib.suppress(psutil.Error):
            process.terminate()
    deadline = time.monotonic() + GRACE_S
    while (alive := [p for p in alive if _alive(p)]) and time.monotonic() < deadline:
        time.sleep(0.05)
    for process in alive:
        with contextlib.suppress(psutil.Error):
            process.kill()


def _alive(process: psutil.Process) -> bool:
    """Running, and not a zombie: a process whose parent is gone stays one until pid 1 reaps
    it, which a container's first process may never do."""
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def main() -> None:
    """Watch the parent until the pipe closes, then stop what it left behind."""
    # A Ctrl-C or a SIGTERM sent to the whole group is for the run: the watchdog stays to
    # stop what the run leaves behind.
    for number in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(number, signal.SIG_IGN)
    if os.getppid() != int(sys.argv[1]):
        return  # the parent died before the watchdog started: it watches nothing else
    parent = psutil.Process(os.getppid())
    remembered: dict[Identity, psutil.Process] = {}
    before: set[Identity] | None = None  # what lived when the command started (None: paused)
    pending = b""
    while True:
        ready, _, _ = select.select([0], [], [], POLL_S)
        if ready:
            chunk = os.read(0, 4096)
            if not chunk:
                break  # the parent exited (its end of the pipe closed)
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                word, *existing = line.decode().split()
                before = _identities(existing) if word == "watch" else None
        if before is not None:
            found = _descendants(parent, exclude=os.getpid())
            remembered |= {k: p for k, p in found.items() if k not in before}
    _stop(list(remembered.values()))


if __name__ == "__main__":
    main()
