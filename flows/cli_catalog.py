"""``tamrf catalog ...``: serve a static STAC catalog as a local STAC API."""

from __future__ import annotations

import typer

catalog_app = typer.Typer(help="Local STAC API servers.", no_args_is_help=True)
