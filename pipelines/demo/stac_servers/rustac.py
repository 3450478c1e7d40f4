"""``rustac serve``: an in-memory STAC API from the ``rustac`` wheel (no database, pip only).

The in-memory backend answers ``bbox``, ``datetime``, ``collections``, ``ids`` and paging;
it ignores ``query`` and ``filter`` (use :class:`~pipelines.demo.stac_servers.pgstac.PgstacServer`
for those). Known limitation of rustac 0.9: a GET ``/search`` with ``collections`` fails
(HTTP 500 "unsupported value") whenever the answer needs a ``next`` link; POST searches (what
pystac-client sends by default) page fine.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from pipelines.demo.stac_servers.common import (
    BackendUnavailableError,
    CatalogContent,
    ServerConfig,
    StacServer,
    find_executable,
    http_url,
    resolve_port,
    start_process,
    stop_process,
    wait_for_api,
    write_json,
)


@dataclass(frozen=True)
class RustacConfig(ServerConfig):
    """Settings of :class:`RustacServer`.

    Attributes:
        binary: the ``rustac`` executable; None looks next to the running Python (the venv's
            bin), then on PATH.
    """

    binary: Path | None = None


def find_rustac(binary: str | os.PathLike[str] | None = None) -> Path:
    """The ``rustac`` executable, or :class:`BackendUnavailableError` saying how to get it."""
    found = find_executable("rustac", binary)
    if found is None:
        where = f"at {binary}" if binary is not None else "next to Python or on PATH"
        raise BackendUnavailableError(
            f"rustac executable not found {where}: `pip install rustac` (into the environment "
            "that runs this code) or pass the path of the rustac binary"
        )
    return found


class RustacServer(StacServer):
    """``rustac serve`` on ``host:port``, loaded with the collections and items of a catalog.

    Example::

        with RustacServer("catalog/") as server:
            Client.open(server.url).search(bbox=...)
    """

    backend = "rustac"

    def __init__(
        self,
        catalog: str | os.PathLike[str] | CatalogContent,
        config: RustacConfig | None = None,
    ) -> None:
        super().__init__(catalog)
        self.config = config or RustacConfig()
        self.process: subprocess.Popen[bytes] | None = None
        self.workdir: Path | None = None

    @property
    def log_path(self) -> Path | None:
        """The server's stdout+stderr (only while running)."""
        return self.workdir / "rustac.log" if self.workdir else None

    @property
    def log_paths(self) -> list[Path]:
        return [self.log_path] if self.log_path else []

    def _write_inputs(self, workdir: Path) -> list[str]:
        """Write the collections and items as files for ``rustac serve``; return their paths."""
        hrefs = [
            str(write_json(workdir / f"collection-{n}.json", c))
            for n, c in enumerate(self.content.collections)
        ]
        # Collections first: rustac loads hrefs in order, and an item needs its collection.
        items = {"type": "FeatureCollection", "features": list(self.content.items)}
        hrefs.append(str(write_json(workdir / "items.json", items)))
        return hrefs

    def _start(self) -> str:
        cfg = self.config
        binary = find_rustac(cfg.binary)
        port = resolve_port(cfg.port, cfg.host)
        self.workdir = Path(tempfile.mkdtemp(prefix="tamrf-rustac-"))
        url = http_url(cfg.host, port)
        addr = url.removeprefix("http://")
        cmd = [str(binary), "serve", "--addr", addr, *self._write_inputs(self.workdir)]
        self.process = start_process(cmd, log_path=self.log_path, cwd=self.workdir)
        wait_for_api(
            url, timeout_s=cfg.start_timeout_s, procs=[self.process], log_path=self.log_path
        )
        return url

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def _stop(self) -> None:
        stop_process(self.process, timeout_s=self.config.stop_timeout_s)
        self.process = None
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None
