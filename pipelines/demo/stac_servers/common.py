"""What both local STAC API servers share: errors, catalog loading, ports, processes, polling.

Every helper here exists once so that :mod:`.rustac` and :mod:`.pgstac` behave the same way
(same error types and messages, same start-up polling, same shutdown discipline).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import pystac
from pystac.utils import make_absolute_href

DEFAULT_HOST = "127.0.0.1"

# Link relations that describe where a JSON file sits in the static catalog's tree. An API
# server writes its own self/root/parent/collection links, and the static ones would point
# at files on this disk, so they are dropped; all other links (license, via, ...) are kept.
_STRUCTURAL_RELS = frozenset({"self", "root", "parent", "collection", "child", "item"})


# --------------------------------------------------------------------------------------------
# Errors: ValueError for bad input, RuntimeError for the environment or the server process.
# --------------------------------------------------------------------------------------------


class StacServerError(Exception):
    """Base class of every error raised by :mod:`pipelines.demo.stac_servers`."""


class CatalogError(StacServerError, ValueError):
    """The static catalog path is missing, unreadable, inconsistent or has no items."""


class PortInUseError(StacServerError, ValueError):
    """The requested TCP port is already taken on the requested host."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        super().__init__(
            f"port {port} on {host} is already in use: choose another port, or omit the port "
            "to let the server pick a free one"
        )


class BackendUnavailableError(StacServerError, RuntimeError):
    """A program or package that the backend needs is not installed."""


class ServerStartError(StacServerError, RuntimeError):
    """A server process died, timed out or served the wrong items while starting."""


# --------------------------------------------------------------------------------------------
# Static catalog -> collections + items as dicts
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CatalogContent:
    """The collections and items of a static catalog, ready to load into an API server.

    Attributes:
        source: the ``catalog.json`` (or ``collection.json``) that was read.
        collections: collection dicts, without structural links.
        items: item dicts, each with ``collection`` set and absolute asset hrefs.
    """

    source: Path
    collections: tuple[dict[str, Any], ...]
    items: tuple[dict[str, Any], ...]

    @property
    def collection_ids(self) -> list[str]:
        """Collection ids, in catalog order."""
        return [c["id"] for c in self.collections]

    @property
    def item_keys(self) -> set[tuple[str, str]]:
        """``(collection id, item id)`` of every item: what a server must serve."""
        return {(i["collection"], i["id"]) for i in self.items}


def _portable_dict(obj: pystac.Item | pystac.Collection) -> dict[str, Any]:
    """``obj`` as written on disk, in a form that means the same wherever it is served from.

    The document is taken from its JSON file, not from pystac's object: pystac migrates what
    it reads to the newest STAC version (``proj:epsg`` becomes ``proj:code``, 1.0.0 becomes
    1.1.0), and a server must serve what the catalog publishes. Relative asset and link hrefs
    are resolved against that file: once the item lives in a database, "./B04.tif" would
    otherwise point nowhere. Structural links (root, parent, child, item, self) are dropped.
    """
    source = obj.get_self_href()
    if source is not None and Path(source).is_file():
        d = json.loads(Path(source).read_text())
    else:  # built in memory (the collection of orphan items)
        d = obj.to_dict(include_self_link=False, transform_hrefs=False)
    start = source or ""
    d["links"] = [
        {**link, "href": make_absolute_href(link["href"], start)} if start else dict(link)
        for link in d.get("links", [])
        if link.get("rel") not in _STRUCTURAL_RELS
    ]
    for asset in d.get("assets", {}).values():
        if start:
            asset["href"] = make_absolute_href(asset["href"], start)
    return d


def find_catalog_file(path: str | os.PathLike[str]) -> Path:
    """The ``catalog.json`` / ``collection.json`` that ``path`` is or contains."""
    p = Path(path).expanduser()
    if not p.exists():
        raise CatalogError(
            f"catalog path {p} does not exist: pass a static STAC catalog.json or the "
            "directory that contains it"
        )
    if p.is_dir():
        for name in ("catalog.json", "collection.json"):
            if (p / name).is_file():
                return (p / name).resolve()
        raise CatalogError(
            f"no catalog.json or collection.json in directory {p}: pass the catalog file "
            "itself or the directory that contains it"
        )
    return p.resolve()


def load_static_catalog(path: str | os.PathLike[str]) -> CatalogContent:
    """Read a static STAC catalog (``catalog.json`` or a directory holding one) with pystac.

    Items are assigned to their nearest ancestor collection. Items that are in no collection
    go into one extra collection named after the root catalog (an API needs a collection for
    every item). Raises :class:`CatalogError` when the catalog is missing, is not a
    catalog, has duplicate ids, or has no items.
    """
    file = find_catalog_file(path)
    try:
        root = pystac.read_file(str(file))
    except Exception as exc:  # pystac raises many types for a malformed file
        raise CatalogError(f"cannot read STAC catalog {file}: {exc}") from exc
    if not isinstance(root, pystac.Catalog):  # pystac.Collection is a Catalog subclass
        raise CatalogError(f"{file} is a STAC {type(root).__name__}, not a catalog or collection")

    collections: dict[str, pystac.Collection] = {}
    owned: list[tuple[pystac.Item, pystac.Collection | None]] = []

    def gather(cat: pystac.Catalog, owner: pystac.Collection | None) -> None:
        if isinstance(cat, pystac.Collection):
            if cat.id in collections:
                raise CatalogError(f"collection id {cat.id!r} appears twice in {file}")
            collections[cat.id] = owner = cat
        owned.extend((item, owner) for item in cat.get_items())
        for child in cat.get_children():
            gather(child, owner)

    try:
        gather(root, None)
    except CatalogError:
        raise
    except Exception as exc:  # a broken child/item link
        raise CatalogError(f"cannot read STAC catalog {file}: {exc}") from exc
    if not owned:
        raise CatalogError(
            f"STAC catalog {file} has no items: an API server needs at least one item (check "
            "that the catalog links its children and items)"
        )

    orphans = [item for item, owner in owned if owner is None]
    collection_dicts = [_portable_dict(c) for c in collections.values()]
    orphan_id = root.id if root.id not in collections else f"{root.id}-items"
    if orphans:
        extra = pystac.Collection(
            id=orphan_id,
            description=f"Items of catalog {root.id!r} that are in no collection.",
            extent=pystac.Extent.from_items(orphans),
        )
        collection_dicts.append(_portable_dict(extra))

    items: list[dict[str, Any]] = []
    seen: set[tuple[str, str]] = set()
    for item, owner in owned:
        d = _portable_dict(item)
        d["collection"] = owner.id if owner is not None else orphan_id
        key = (d["collection"], d["id"])
        if key in seen:
            raise CatalogError(f"item {key[1]!r} appears twice in collection {key[0]!r} ({file})")
        seen.add(key)
        items.append(d)
    return CatalogContent(source=file, collections=tuple(collection_dicts), items=tuple(items))


def as_catalog_content(catalog: str | os.PathLike[str] | CatalogContent) -> CatalogContent:
    """Accept either a path (loaded with :func:`load_static_catalog`) or loaded content."""
    return catalog if isinstance(catalog, CatalogContent) else load_static_catalog(catalog)


def write_json(path: Path, obj: Any) -> Path:
    """Write ``obj`` as compact JSON and return ``path``."""
    path.write_text(json.dumps(obj, separators=(",", ":")), encoding="utf-8")
    return path


# --------------------------------------------------------------------------------------------
# Ports
# --------------------------------------------------------------------------------------------


def _bind_probe(host: str, port: int) -> socket.socket:
    """A socket bound to ``(host, port)``; raises OSError when that is impossible."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    # SO_REUSEADDR like the servers themselves: connections of a stopped server that linger
    # in TIME_WAIT do not make the port "taken", while a socket that another program bound
    # or listens on still does (Linux only shares a port when both sides ask for it).
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


def port_is_free(port: int, host: str = DEFAULT_HOST) -> bool:
    """Whether a server could bind ``host:port`` right now."""
    try:
        _bind_probe(host, port).close()
    except OSError as exc:
        if exc.errno in (errno.EADDRINUSE, errno.EACCES):
            return False
        raise
    return True


def free_port(host: str = DEFAULT_HOST) -> int:
    """A TCP port on ``host`` that nothing uses now (the kernel's choice)."""
    with contextlib.closing(_bind_probe(host, 0)) as sock:
        return int(sock.getsockname()[1])


def resolve_port(port: int | None, host: str = DEFAULT_HOST) -> int:
    """``port`` if it is free (else :class:`PortInUseError`), or a free port when None."""
    if port is not None and not 0 < port < 65536:
        raise ValueError(f"port {port} is not a TCP port (1-65535)")
    try:
        if port is None:
            return free_port(host)
        free = port_is_free(port, host)
    except OSError as exc:  # e.g. the host is not an address of this machine
        raise ValueError(f"cannot listen on {host}:{port or 0}: {exc}") from exc
    if not free:
        raise PortInUseError(host, port)
    return port


def http_url(host: str, port: int) -> str:
    """``http://host:port`` with IPv6 literals bracketed."""
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


# --------------------------------------------------------------------------------------------
# Processes
# --------------------------------------------------------------------------------------------


def log_tail(path: Path | None, lines: int = 40) -> str:
    """The last ``lines`` lines of a log file (empty string when there is none)."""
    if path is None or not path.is_file():
        return ""
    text = path.read_text(encoding="utf-8", errors="replace")
    return "\n".join(text.rstrip().splitlines()[-lines:])


def with_log(message: str, log_path: Path | None) -> str:
    """``message`` followed by the tail of the process log, for error messages."""
    tail = log_tail(log_path)
    return f"{message}\n--- last lines of {log_path} ---\n{tail}" if tail else message


def start_process(
    cmd: Sequence[str],
    *,
    log_path: Path,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    user: int | None = None,
    group: int | None = None,
) -> subprocess.Popen[bytes]:
    """Start ``cmd`` with stdout and stderr appended to ``log_path``.

    The log goes to a file, not a pipe: nobody reads a pipe while the server runs, and a full
    pipe would block the server. The child gets its own session so that a Ctrl-C in the
    terminal reaches only our process, which then stops the children in the right order
    (the API before its database). ``user``/``group`` drop root privileges (PostgreSQL
    refuses to run as root).
    """
    with open(log_path, "ab") as log:
        kwargs: dict[str, Any] = {}
        if user is not None:
            kwargs.update(user=user, group=group, extra_groups=[])
        return subprocess.Popen(
            list(cmd),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            start_new_session=True,
            **kwargs,
        )


def stop_process(
    proc: subprocess.Popen[bytes] | None,
    *,
    sig: signal.Signals = signal.SIGTERM,
    timeout_s: float = 10.0,
) -> int | None:
    """Stop ``proc`` with ``sig``, then SIGKILL its process group after ``timeout_s``; reap it.

    Returns the exit status (None when there was no process).
    """
    if proc is None:
        return None
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(sig)
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            # The whole group: a postmaster killed alone would leave its backends behind.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.kill()
            proc.wait()
    return proc.returncode


def find_executable(name: str, explicit: str | os.PathLike[str] | None = None) -> Path | None:
    """``explicit`` if it is an executable file, else None; without it, search for ``name``.

    The search looks next to the running Python first (a venv's bin is often not on PATH when
    Python is called by its full path), then on PATH.
    """
    if explicit is not None:
        p = Path(explicit)
        return p if p.is_file() and os.access(p, os.X_OK) else None
    beside = Path(sys.executable).parent / name
    if beside.is_file() and os.access(beside, os.X_OK):
        return beside
    found = shutil.which(name)
    return Path(found) if found else None


# --------------------------------------------------------------------------------------------
# Waiting for a server
# --------------------------------------------------------------------------------------------

# Ignore http_proxy & co: every server here is local, and a proxy would answer for it.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def get_json(url: str, timeout_s: float = 5.0, body: Any = None) -> Any:
    """GET ``url`` (POST ``body`` as JSON when given) and decode the JSON answer.

    Raises urllib.error.URLError, OSError or ValueError on failure.
    """
    headers = {"Accept": "application/json"}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    req = urllib.request.Request(url, data=data, headers=headers)
    with _OPENER.open(req, timeout=timeout_s) as resp:
        return json.loads(resp.read())


def wait_until(
    ready: Callable[[], bool],
    *,
    what: str,
    timeout_s: float,
    procs: Sequence[subprocess.Popen[bytes]] = (),
    log_path: Path | None = None,
    interval_s: float = 0.1,
) -> None:
    """Poll ``ready()`` until it returns True.

    Raises :class:`ServerStartError` with the tail of ``log_path`` when one of ``procs``
    exits first or ``timeout_s`` passes. Exceptions from ``ready`` count as "not yet".
    """
    deadline = time.monotonic() + timeout_s
    last_error = ""
    while True:
        for proc in procs:
            if proc.poll() is not None:
                raise ServerStartError(
                    with_log(f"{what}: process exited with status {proc.returncode}", log_path)
                )
        try:
            if ready():
                return
        except Exception as exc:  # connection refused, 503 while starting, ...
            last_error = f" (last error: {exc})"
        if time.monotonic() > deadline:
            raise ServerStartError(
                with_log(f"{what}: not ready after {timeout_s:g} s{last_error}", log_path)
            )
        time.sleep(interval_s)


def wait_for_api(
    url: str,
    *,
    timeout_s: float,
    procs: Sequence[subprocess.Popen[bytes]] = (),
    log_path: Path | None = None,
) -> None:
    """Wait until the STAC API at ``url`` answers its landing page and ``/collections``."""
    for path in ("/", "/collections"):
        wait_until(
            lambda p=path: isinstance(get_json(url + p, timeout_s=2.0), dict),
            what=f"STAC API {url}{path}",
            timeout_s=timeout_s,
            procs=procs,
            log_path=log_path,
        )


def iter_search(
    url: str, body: Mapping[str, Any], timeout_s: float = 30.0
) -> Iterator[dict[str, Any]]:
    """Every feature of ``POST {url}/search`` with ``body``, following ``next`` links.

    POST rather than GET: ``rustac serve`` (0.9) answers a GET search that has
    ``collections`` with HTTP 500 whenever it has to write a ``next`` link.
    """
    href: str | None = f"{url}/search"
    payload: dict[str, Any] | None = dict(body)
    while href:
        page = get_json(href, timeout_s=timeout_s, body=payload)
        yield from page.get("features", [])
        link = next((lk for lk in page.get("links", []) if lk.get("rel") == "next"), None)
        if link is None:
            return
        href = link["href"]
        if link.get("method", "GET").upper() == "POST":
            # STAC API paging: "merge" means the link's body only overrides some fields.
            extra = link.get("body") or {}
            payload = {**(payload or {}), **extra} if link.get("merge") else dict(extra)
        else:
            payload = None


def check_served(url: str, content: CatalogContent, what: str) -> None:
    """Raise :class:`ServerStartError` unless every item of ``content`` is searchable."""
    body = {"collections": content.collection_ids, "limit": 100}
    try:
        served = {(f.get("collection"), f.get("id")) for f in iter_search(url, body)}
    except (OSError, ValueError) as exc:  # HTTP errors, refused connections, bad JSON
        raise ServerStartError(f"{what}: searching for the loaded items failed: {exc}") from exc
    missing = content.item_keys - served
    if missing:
        sample = ", ".join(f"{c}/{i}" for c, i in sorted(missing)[:5])
        raise ServerStartError(
            f"{what} serves {len(content.item_keys) - len(missing)} of {len(content.items)} "
            f"items of {content.source}; missing e.g. {sample}"
        )


# --------------------------------------------------------------------------------------------
# Base class
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ServerConfig:
    """Settings every backend has.

    Attributes:
        host: address to listen on (keep 127.0.0.1 unless others must reach the API).
        port: TCP port; None picks a free one.
        start_timeout_s: how long start() may take before it gives up.
        stop_timeout_s: how long a process gets to exit before it is killed.
    """

    host: str = DEFAULT_HOST
    port: int | None = None
    start_timeout_s: float = 60.0
    stop_timeout_s: float = 10.0


class StacServer(ABC):
    """A local STAC API serving one static catalog; start()/stop() or a ``with`` block."""

    backend: str = ""

    def __init__(self, catalog: str | os.PathLike[str] | CatalogContent) -> None:
        # Read the catalog now, so that a bad path fails before any process starts.
        self.content = as_catalog_content(catalog)
        self._url: str | None = None

    @property
    def url(self) -> str:
        """Base URL of the running API, e.g. ``http://127.0.0.1:8123``."""
        if self._url is None:
            raise RuntimeError(f"{type(self).__name__} is not running: call start() first")
        return self._url

    @property
    def running(self) -> bool:
        """Whether start() succeeded and stop() has not been called."""
        return self._url is not None

    @abstractmethod
    def _start(self) -> str:
        """Start the processes, load the items; return the URL once the API answers."""

    @abstractmethod
    def _stop(self) -> None:
        """Stop every process and remove temporary files; must be safe to call twice."""

    @abstractmethod
    def alive(self) -> bool:
        """Whether every process of the running server is still up."""

    @property
    def log_paths(self) -> list[Path]:
        """The log files of the server's processes (they are deleted by stop())."""
        return []

    def recent_logs(self, lines: int = 20) -> str:
        """The last ``lines`` lines of every log, to explain a server that died."""
        return "\n".join(
            f"--- {path} ---\n{tail}" for path in self.log_paths if (tail := log_tail(path, lines))
        )

    def start(self) -> Self:
        """Start the server; on any failure, clean up what was started and re-raise."""
        if self._url is not None:
            return self
        try:
            url = self._start()
            check_served(url, self.content, f"{self.backend} server at {url}")
        except BaseException:  # KeyboardInterrupt too: never leave processes behind
            self._stop()
            raise
        self._url = url
        return self

    def stop(self) -> None:
        """Stop the server and remove its temporary files (idempotent)."""
        self._url = None
        self._stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
