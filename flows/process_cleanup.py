"""A ``tamrf run`` that stops part-way stops cleanly: one ``error:`` line, the exit status,
and no process left behind, whatever stopped it.

- **SIGTERM and SIGHUP** (a supervisor, ``kill``, a closed terminal) raise :class:`Terminated`,
  a ``KeyboardInterrupt``: the same unwinding as Ctrl-C, so every ``with`` block of the run
  closes what it opened (the tiles stop, the Dask cluster and its workers, the demo's STAC
  server, the output's lock) and Python's exit handlers run, where Prefect stops the temporary
  server it started when ``PREFECT_API_URL`` is not set. Python's default SIGTERM action ends
  the process without either: that server stayed up, listening. A second SIGTERM or SIGHUP
  while the run unwinds is ignored (a supervisor's SIGKILL comes next if it waits too long).
- **Ctrl-C** reaches the whole process group of the terminal. Prefect starts its temporary
  server in that group, so the server died with the run, before Prefect had reported the
  run's end, and Prefect's client then retried for minutes at exit: the server is started in
  a session of its own instead (:func:`_prefect_server_in_own_session`).
- **SIGKILL** runs no handler: :mod:`flows.child_watchdog` stops the processes the command
  started once the process is gone.
- **Exit status**: 128 + the signal (130 SIGINT, 143 SIGTERM, 129 SIGHUP); 1 when the output
  could not be written (:class:`~pipelines.output_errors.OutputWriteError`). Complete tiles
  keep their records, so the same command resumes.

:func:`stops_cleanly` puts all of this around a command; the rest of the code only has to
clean up in ``finally``/``with`` blocks, as it would for Ctrl-C.
"""

from __future__ import annotations

import contextlib
import functools
import signal
import subprocess
from collections.abc import Callable, Iterator
from types import FrameType
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

import typer

if TYPE_CHECKING:
    from flows.child_watchdog import Watchdog

__all__ = ["Terminated", "stops_cleanly"]

P = ParamSpec("P")
R = TypeVar("R")

_TERMINATING = (signal.SIGTERM, signal.SIGHUP)
_PREFECT_SERVER_APP = "prefect.server.api.server:create_app"
"""The uvicorn factory in the command line of Prefect's temporary server."""
_WATCHDOG: list[Watchdog] = []
"""This process's watchdog, started by the first command (one serves them all)."""


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised where the main thread runs (as Ctrl-C raises
    ``KeyboardInterrupt``)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _terminate(signum: int, frame: FrameType | None) -> None:
    for number in _TERMINATING:  # the first one unwinds; a second would cut the clean-up
        signal.signal(number, signal.SIG_IGN)
    raise Terminated(signum)


@contextlib.contextmanager
def _terminating_signals_raise() -> Iterator[None]:
    """SIGTERM and SIGHUP raise :class:`Terminated` in the block (main thread only: signal
    handlers cannot be set elsewhere; a command run in another thread keeps the defaults)."""
    previous = {}
    with contextlib.suppress(ValueError):
        for number in _TERMINATING:
            previous[number] = signal.signal(number, _terminate)
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


@contextlib.contextmanager
def _watched() -> Iterator[None]:
    """The processes started in the block are stopped by the watchdog if this process dies
    without stopping them."""
    from flows.child_watchdog import Watchdog  # psutil: only once a command runs

    if not _WATCHDOG:
        _WATCHDOG.append(Watchdog())
    _WATCHDOG[0].watch()
    try:
        yield
    finally:
        _WATCHDOG[0].pause()


@contextlib.contextmanager
def _prefect_server_in_own_session() -> Iterator[None]:
    """Prefect's temporary server, when started in the block, gets a session (and process
    group) of its own: the terminal's Ctrl-C reaches the run, which stops the server after
    Prefect's last report (Prefect stops it at exit).

    Prefect offers no setting for this; it starts the server with ``subprocess.Popen``, so
    ``Popen`` is replaced for the block by a subclass that changes only that command (other
    processes start as asked; the import of Prefect's server, 1.3 s, is left to Prefect)."""
    original = subprocess.Popen

    class OwnSessionForPrefectServer(original):  # type: ignore[misc, valid-type]
        def __init__(self, args: Any, *more: Any, **options: Any) -> None:
            if _PREFECT_SERVER_APP in (args if isinstance(args, (list, tuple)) else [args]):
                options["start_new_session"] = True
            super().__init__(args, *more, **options)

    subprocess.Popen = OwnSessionForPrefectServer  # type: ignore[misc]
    try:
        yield
    finally:
        subprocess.Popen = original  # type: ignore[misc]


def _interrupted(stop: KeyboardInterrupt) -> typer.Exit:
    """The one line of an interrupted run, and its exit status."""
    signum = stop.signum if isinstance(stop, Terminated) else signal.SIGINT
    name = signal.Signals(signum).name
    typer.echo(
        f"error: the run was stopped by {name} before it finished: tiles with a completion "
        "record are complete, the others count as missing; re-run the same command to "
        "compute only those",
        err=True,
    )
    return typer.Exit(128 + signum)


def stops_cleanly(command: Callable[P, R]) -> Callable[P, R]:
    """Wrap a command (see the module docstring): signals end it as Ctrl-C does, with one
    error line; an unwritable output too; the processes it starts never outlive it."""
    from pipelines.output_errors import OutputWriteError

    @functools.wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        with _watched(), _terminating_signals_raise(), _prefect_server_in_own_session():
            try:
                return command(*args, **kwargs)
            except KeyboardInterrupt as stop:
                raise _interrupted(stop) from None
            except OutputWriteError as error:
                typer.echo(f"error: {error}", err=True)
                raise typer.Exit(1) from None

    return wrapper
