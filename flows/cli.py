"""The ``tamrf`` command line.

Heavy imports (rasterio, prefect, ...) happen inside the commands so that ``tamrf --help``
stays fast.
"""

from __future__ import annotations

import typer

from flows.cli_catalog import catalog_app

app = typer.Typer(
    help="tamrf-xr: Sentinel-2 + Landsat time-series fusion, from STAC catalogs to Level-3 Zarr.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
app.add_typer(catalog_app, name="catalog")


if __name__ == "__main__":  # pragma: no cover
    app()
