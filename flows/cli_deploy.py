"""``tamrf deploy-check PREFECT_FILE``: the deployments of a ``prefect.yaml`` checked against
their flows before ``prefect deploy`` (registered in :mod:`flows.cli` with
``app.command("deploy-check")(deploy_check)``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def deploy_check(
    prefect_file: Annotated[
        Path, typer.Argument(help="A prefect.yaml, e.g. infra/prefect.yaml.")
    ] = Path("infra/prefect.yaml"),
) -> None:
    """Check every deployment of PREFECT_FILE against its flow: entrypoint, work pool, the
    flow's required parameters present, no unknown one, values of the declared types. Run it
    where `prefect deploy` runs (the repository root). Exit status 2 when anything is wrong."""
    from flows.deployments import check_deployments

    try:
        problems = check_deployments(prefect_file)
    except ValueError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from None
    for problem in problems:
        typer.echo(f"error: {problem}", err=True)
    if problems:
        raise typer.Exit(2)
    typer.echo(f"ok: every deployment of {prefect_file} matches its flow")
