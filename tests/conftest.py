"""Session-wide pytest fixtures shared by every test module.

Keep this file general: fixtures used by a single module belong in that module.
"""

from __future__ import annotations

from pathlib import Path

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
