"""``tamrf catalog ...``: serve a static STAC catalog as a local STAC API."""

from __future__ import annotations

import signal
import time
from enum import StrEnum
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer

catalog_app = typer.Typer(help="Local STAC API servers.", no_args_is_help=True)


class BackendChoice(StrEnum):
    """The ``--backend`` values (see :mod:`pipelines.demo.stac_servers`)."""

    rustac = "rustac"
    pgstac = "pgstac"


def _interrupt(signum: int, frame: FrameType | None) -> None:
    # SIGTERM behaves like Ctrl-C: the KeyboardInterrupt unwinds through start() or the wait
    # loop below, and both stop the server on their way out.
    raise KeyboardInterrupt


@catalog_app.command("serve")
def serve(
    path: Annotated[
        Path, typer.Argument(help="A static STAC catalog.json, or the directory holding it.")
    ],
    backend: Annotated[
        BackendChoice,
        typer.Option(help="rustac: in memory, pip only. pgstac: PostgreSQL + stac-fastapi."),
    ] = BackendChoice.rustac,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[
        int | None, typer.Option(help="TCP port; a free one when omitted.", min=1, max=65535)
    ] = None,
    dsn: Annotated[
        str | None,
        typer.Option(
            help="pgstac only: an existing database (postgresql://user:pw@host:port/db) "
            "instead of a throwaway PostgreSQL cluster."
        ),
    ] = None,
    timeout: Annotated[float, typer.Option(help="Seconds the server may take to start.")] = 120.0,
) -> None:
    """Serve PATH as a STAC API until Ctrl-C or SIGTERM, then shut everything down."""
    from pipelines.demo.stac_servers import (
        BackendUnavailableError,
        CatalogError,
        PortInUseError,
        ServerStartError,
        create_server,
    )

    if dsn is not None and backend is not BackendChoice.pgstac:
        raise typer.BadParameter("--dsn only applies to --backend pgstac", param_hint="--dsn")
    try:
        server = create_server(
            path, backend.value, host=host, port=port, dsn=dsn, start_timeout_s=timeout
        )
    except CatalogError as exc:
        raise typer.BadParameter(str(exc), param_hint="PATH") from exc
    except ValueError as exc:  # an unusable DSN
        raise typer.BadParameter(str(exc), param_hint="--dsn") from exc

    previous = {sig: signal.signal(sig, _interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        server.start()
        content = server.content
        typer.echo(
            f"Serving {len(content.items)} items in {len(content.collections)} collections "
            f"of {content.source} with {backend.value}"
        )
        typer.echo(f"STAC API: {server.url}")
        typer.echo("Press Ctrl-C to stop.")
        while server.alive():
            time.sleep(0.5)
        typer.echo(f"error: the {backend.value} server stopped unexpectedly", err=True)
        typer.echo(server.recent_logs(), err=True)
        raise typer.Exit(1)
    except KeyboardInterrupt:
        typer.echo("Stopping ...")
    except PortInUseError as exc:
        raise typer.BadParameter(str(exc), param_hint="--port") from exc
    except (BackendUnavailableError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    except ServerStartError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    finally:
        # A second Ctrl-C must not interrupt the shutdown and leave PostgreSQL behind.
        for sig in previous:
            signal.signal(sig, signal.SIG_IGN)
        server.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    typer.echo("Stopped.")
