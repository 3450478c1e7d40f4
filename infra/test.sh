#!/usr/bin/env bash
# Set up the development environment and run the test suite (the README's test command; .ci/run calls it).
#   bash infra/test.sh            # default suite (excludes slow and gpu tests)
#   bash infra/test.sh -m slow    # extra pytest arguments are passed through
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null || PYTHON=python3

# PostgreSQL + PostGIS for the pgstac STAC API tests (Debian packages). Without them those tests
# skip with a reason; everything else still runs.
bash infra/install-postgis.sh || echo "warning: PostgreSQL/PostGIS not installed; pgstac tests will skip" >&2

if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
# The CPU build of torch is pinned in constraints.txt so a fresh install never pulls a CUDA build.
.venv/bin/python -m pip install --quiet -c constraints.txt -e ".[dev]"

.venv/bin/ruff check .
.venv/bin/ruff format --check .
exec .venv/bin/python -m pytest "$@"
