"""Session-wide pytest fixtures shared by every test module.

Keep this file general: fixtures used by a single module belong in that module.
"""

from __future__ import annotations

from pathlib import Path

# Prefect configures its log handlers when its API is first imported (prefect.main, loaded
# lazily by `from prefect import flow`), binding the stderr of that moment: load it now, under
# pytest's session-wide capture, not first inside a CliRunner whose stream is closed when its
# command returns (later flow runs would then log into a closed file).
import prefect.main  # noqa: F401
import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def real_data_root() -> Path:
    """``../shared/data/real`` next to the repository (real metadata and rasters, not in git)."""
    return Path(__file__).parents[1].parent / "shared" / "data" / "real"


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """The repository root (where pyproject.toml is)."""
    return REPO_ROOT


@pytest.fixture(scope="session")
def real_data_dir() -> Path:
    """``../shared/data/real``; skips the test when that folder is absent.

    Tests that use it should carry ``@pytest.mark.realdata``.
    """
    root = real_data_root()
    if not root.is_dir():
        pytest.skip(
            f"real data folder {root} is absent: put the shared data next to the repository "
            "(../shared/data/real) to run the realdata tests"
        )
    return root


@pytest.fixture(scope="session")
def prefect_harness():
    """A temporary Prefect API for the session (a real server with a throwaway database)."""
    import os

    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield
