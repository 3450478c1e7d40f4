"""Other processes for the tests: the ``tamrf`` command run as a user runs it, and a live
holder of an output directory's run lock.

Flow runs go through a subprocess rather than typer's CliRunner: Prefect's log handlers
keep the stream they first wrote to, and a CliRunner closes its stream when the command
returns, so a second in-process flow run would log into a closed file.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


class Ran:
    """A finished ``tamrf`` process: ``exit_code`` and ``output`` (stdout + stderr)."""

    def __init__(self, process: subprocess.CompletedProcess) -> None:
        self.exit_code = process.returncode
        self.output = process.stdout + process.stderr


def tamrf(args: list[str], timeout_s: float = 900) -> Ran:
    """``tamrf ARGS`` in a new process, on this session's Prefect server when one is set up
    (the ``prefect_harness`` fixture), else on a temporary one of its own."""
    from prefect.settings import PREFECT_API_URL

    env = {**os.environ, "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    if PREFECT_API_URL.value():
        env["PREFECT_API_URL"] = PREFECT_API_URL.value()
    command = [sys.executable, "-m", "flows.cli", *args]
    return Ran(subprocess.run(command, capture_output=True, text=True, env=env,
                              timeout=timeout_s, cwd=REPO_ROOT))  # fmt: skip


@contextlib.contextmanager
def lock_holder(out_dir: Path) -> Iterator[subprocess.Popen]:
    """Another live process holding the run lock of ``out_dir`` (killed with -9 on exit, as a
    crash would end it)."""
    code = (
        "import sys, time\nfrom pipelines.run_lock import RunLock\n"
        "lock = RunLock(sys.argv[1])\nlock.acquire()\nprint('locked', flush=True)\ntime.sleep(300)"
    )
    holder = subprocess.Popen([sys.executable, "-c", code, str(out_dir)],
                              stdout=subprocess.PIPE, text=True, cwd=REPO_ROOT)  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        yield holder
    finally:
        holder.kill()
        holder.wait()
