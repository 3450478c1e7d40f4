"""Local STAC API servers for a static STAC catalog on disk, started and stopped by code.

Two backends share one interface (:class:`StacServer`: ``start()``, ``stop()``, ``url``,
context manager):

* :class:`RustacServer`: ``rustac serve``, in memory, needs only ``pip install rustac``;
  answers bbox/datetime/collections/ids searches and paging (ignores ``query``/``filter``).
* :class:`PgstacServer`: stac-fastapi-pgstac on a throwaway PostgreSQL/PostGIS cluster (or
  an existing database): the full STAC API, as in production.

Example::

    from pipelines.demo.stac_servers import create_server

    with create_server("data/catalog", backend="rustac") as server:
        items = Client.open(server.url).search(bbox=bbox, datetime="2024-06").item_collection()
"""

from __future__ import annotations

import os
from typing import Literal

from pipelines.demo.stac_servers.common import (
    BackendUnavailableError,
    CatalogContent,
    CatalogError,
    PortInUseError,
    ServerConfig,
    ServerStartError,
    StacServer,
    StacServerError,
    free_port,
    load_static_catalog,
    port_is_free,
)
from pipelines.demo.stac_servers.pgstac import (
    Availability,
    PgstacConfig,
    PgstacServer,
    find_postgres,
    pgstac_availability,
)
from pipelines.demo.stac_servers.rustac import RustacConfig, RustacServer, find_rustac

Backend = Literal["rustac", "pgstac"]
BACKENDS: tuple[Backend, ...] = ("rustac", "pgstac")

__all__ = [
    "BACKENDS",
    "Availability",
    "Backend",
    "BackendUnavailableError",
    "CatalogContent",
    "CatalogError",
    "PgstacConfig",
    "PgstacServer",
    "PortInUseError",
    "RustacConfig",
    "RustacServer",
    "ServerConfig",
    "ServerStartError",
    "StacServer",
    "StacServerError",
    "create_server",
    "find_postgres",
    "find_rustac",
    "free_port",
    "load_static_catalog",
    "pgstac_availability",
    "port_is_free",
]


def create_server(
    catalog: str | os.PathLike[str] | CatalogContent,
    backend: Backend = "rustac",
    *,
    host: str = "127.0.0.1",
    port: int | None = None,
    dsn: str | None = None,
    start_timeout_s: float = 60.0,
) -> StacServer:
    """A (not yet started) server of ``backend`` for ``catalog``.

    ``dsn`` (pgstac only) serves from an existing database instead of a throwaway cluster.
    """
    common = {"host": host, "port": port, "start_timeout_s": start_timeout_s}
    if backend == "rustac":
        if dsn is not None:
            raise ValueError("a DSN only applies to the pgstac backend: drop it or use pgstac")
        return RustacServer(catalog, RustacConfig(**common))
    if backend == "pgstac":
        return PgstacServer(catalog, PgstacConfig(dsn=dsn, **common))
    raise ValueError(f"unknown backend {backend!r}: choose one of {', '.join(BACKENDS)}")
