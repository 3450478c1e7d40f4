"""``tamrf info STORE``: what a Level-3 store holds (registered in :mod:`flows.cli` with
``app.command("info")(info)``)."""

from __future__ import annotations

import json
from typing import Annotated

import typer


def info(
    store: Annotated[
        str,
        typer.Argument(
            help="A Level-3 Zarr store (directory or URL), e.g. level3/32631.zarr or "
            "s3://bucket/run/level3/32631.zarr."
        ),
    ],
    json_output: Annotated[
        bool,
        typer.Option("--json", help="Print everything as JSON (all dates and tile ids)."),
    ] = False,
) -> None:
    """Say what STORE holds: grid, dates, encoding, complete and missing tiles, the model
    (and whether it is untrained) and the input items. Reads metadata only."""
    from pipelines.level3_info import describe_store, format_store_description

    try:
        description = describe_store(store)
    except ValueError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from None
    if json_output:
        typer.echo(json.dumps(description, indent=2))
    else:
        typer.echo(format_store_description(description))
