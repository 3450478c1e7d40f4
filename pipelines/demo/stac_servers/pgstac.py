"""stac-fastapi-pgstac over a PostgreSQL/PostGIS database: the production-grade STAC API.

By default :class:`PgstacServer` creates a throwaway PostgreSQL cluster in a temporary
directory (``initdb``, listening on 127.0.0.1 only, its unix socket inside that directory),
installs pgstac into it with pypgstac, loads the catalog, and runs stac-fastapi-pgstac under
uvicorn in a subprocess. With ``PgstacConfig(dsn=...)`` it uses an existing database instead
(pgstac is installed or migrated there, and the catalog is upserted into it).
"""

from __future__ import annotations

import glob
import importlib.util
import os
import pwd
import re
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipelines.demo.stac_servers.common import (
    BackendUnavailableError,
    CatalogContent,
    ServerConfig,
    ServerStartError,
    StacServer,
    free_port,
    http_url,
    resolve_port,
    start_process,
    stop_process,
    wait_for_api,
    wait_until,
    with_log,
)

INSTALL_HINT = (
    "install PostgreSQL + PostGIS with `sudo bash infra/install-postgis.sh` (or `apt-get install "
    "postgresql postgresql-contrib postgresql-postgis`)"
)
_PYTHON_MODULES = ("pypgstac", "psycopg", "stac_fastapi.pgstac", "uvicorn")
# pypgstac.load.Methods, spelled out so that the config needs no pypgstac import.
LOAD_MODES = ("insert", "ignore", "upsert", "delsert", "insert_ignore")
_DATABASE = "pgstac"
_SUPERUSER = "postgres"


@dataclass(frozen=True)
class PgstacConfig(ServerConfig):
    """Settings of :class:`PgstacServer`.

    Attributes:
        dsn: an existing database (``postgresql://user:password@host:port/dbname``, TCP host
            required); None creates a throwaway cluster.
        pg_bindir: directory holding ``initdb`` and ``postgres``; None searches PATH,
            ``pg_config --bindir`` and /usr/lib/postgresql/*/bin.
        run_as: the unprivileged OS user that runs PostgreSQL when this process is root.
        load_mode: pypgstac insert mode (insert, upsert, ignore, ...); None means "insert"
            for a throwaway cluster and "upsert" for ``dsn`` (a second run must not fail on
            the items the first one loaded).
    """

    dsn: str | None = None
    pg_bindir: Path | None = None
    run_as: str = "postgres"
    load_mode: str | None = None

    def __post_init__(self) -> None:
        if self.load_mode is not None and self.load_mode not in LOAD_MODES:
            raise ValueError(
                f"load_mode {self.load_mode!r} is not a pypgstac insert mode: choose one of "
                f"{', '.join(LOAD_MODES)}"
            )


@dataclass(frozen=True)
class PostgresInstall:
    """Where PostgreSQL's programs and shared files (extensions) are."""

    bindir: Path
    sharedir: Path

    @property
    def postgis_control(self) -> Path:
        return self.sharedir / "extension" / "postgis.control"


@dataclass(frozen=True)
class Availability:
    """Whether a backend can run here; ``reason`` says why not and how to fix it."""

    ok: bool
    reason: str = ""

    def __bool__(self) -> bool:
        return self.ok


def _version_key(path: str) -> tuple[int, ...]:
    """Sort key for /usr/lib/postgresql/<version>/bin: newest version first."""
    return tuple(-int(n) for n in re.findall(r"\d+", path))


def _sharedir(bindir: Path) -> Path:
    """PostgreSQL's share directory for the programs in ``bindir``."""
    pg_config = bindir / "pg_config"
    if pg_config.is_file():
        out = subprocess.run(
            [str(pg_config), "--sharedir"], capture_output=True, text=True, check=False
        )
        if out.returncode == 0 and out.stdout.strip():
            return Path(out.stdout.strip())
    # Debian layout without pg_config: /usr/lib/postgresql/15/bin -> /usr/share/postgresql/15.
    return Path("/usr/share/postgresql") / bindir.parent.name


def _candidate_bindirs() -> list[Path]:
    found: list[Path] = []
    if initdb := shutil.which("initdb"):
        found.append(Path(initdb).resolve().parent)
    if pg_config := shutil.which("pg_config"):
        out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False)
        if out.returncode == 0 and out.stdout.strip():
            found.append(Path(out.stdout.strip()))
    # Debian/Ubuntu keep the server programs off PATH, one directory per major version.
    found += [Path(p) for p in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=_version_key)]
    return list(dict.fromkeys(found))


def find_postgres(bindir: str | os.PathLike[str] | None = None) -> PostgresInstall:
    """The PostgreSQL installation (with PostGIS) to use for a throwaway cluster.

    Raises :class:`BackendUnavailableError` naming what is missing and how to install it.
    """
    candidates = [Path(bindir)] if bindir is not None else _candidate_bindirs()
    with_binaries = [
        d for d in candidates if all(os.access(d / p, os.X_OK) for p in ("initdb", "postgres"))
    ]
    if not with_binaries:
        where = str(bindir) if bindir is not None else "PATH or /usr/lib/postgresql/*/bin"
        raise BackendUnavailableError(
            f"PostgreSQL server programs (initdb, postgres) not found in {where}: {INSTALL_HINT}"
        )
    installs = [PostgresInstall(d, _sharedir(d)) for d in with_binaries]
    for install in installs:
        if install.postgis_control.is_file():
            return install
    raise BackendUnavailableError(
        f"PostGIS is not installed for PostgreSQL in {installs[0].bindir} (no "
        f"{installs[0].postgis_control}): {INSTALL_HINT}"
    )


def _missing_python_modules() -> list[str]:
    return [m for m in _PYTHON_MODULES if importlib.util.find_spec(m) is None]


def _run_as_ids(user: str) -> tuple[int, int] | None:
    """(uid, gid) to run PostgreSQL as when we are root, else None (run as ourselves)."""
    if os.geteuid() != 0:
        return None
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        raise BackendUnavailableError(
            f"PostgreSQL refuses to run as root and there is no user {user!r} to run it as: "
            f"create one (`useradd --system {user}`) or pass another unprivileged user as run_as"
        ) from None
    return entry.pw_uid, entry.pw_gid


def pgstac_availability(
    pg_bindir: str | os.PathLike[str] | None = None, run_as: str = "postgres"
) -> Availability:
    """Whether :class:`PgstacServer` can create a throwaway cluster here, and if not, why."""
    if missing := _missing_python_modules():
        return Availability(
            False,
            f"Python packages missing: {', '.join(missing)}: pip install 'tamrf-xr[pgstac]'",
        )
    try:
        find_postgres(pg_bindir)
        _run_as_ids(run_as)
    except BackendUnavailableError as exc:
        return Availability(False, str(exc))
    return Availability(True)


def _redact(dsn: str) -> str:
    """``dsn`` without its password, for messages."""
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    try:
        parts = conninfo_to_dict(dsn)
    except Exception:
        return "<unparsable DSN>"
    if parts.get("password"):
        parts["password"] = "***"
    return make_conninfo(**parts)


def _api_env(dsn: str) -> dict[str, str]:
    """Environment for stac-fastapi-pgstac: its ``PostgresSettings`` read PG* variables."""
    from psycopg.conninfo import conninfo_to_dict

    try:
        parts: dict[str, Any] = conninfo_to_dict(dsn)
    except Exception as exc:
        raise ValueError(f"invalid PostgreSQL DSN {_redact(dsn)}: {exc}") from exc
    host = str(parts.get("host") or os.environ.get("PGHOST") or "127.0.0.1")
    if host.startswith("/") or "," in host:
        # stac-fastapi-pgstac builds postgresql://user:pw@host:port/db for asyncpg.
        raise ValueError(
            f"DSN {_redact(dsn)}: stac-fastapi-pgstac connects over TCP to a single host; "
            "give a host name or address, e.g. postgresql://user:password@127.0.0.1:5432/db"
        )
    user = str(parts.get("user") or os.environ.get("PGUSER") or pwd.getpwuid(os.getuid())[0])
    env = dict(os.environ)
    env.update(
        PGUSER=user,
        PGPASSWORD=str(parts.get("password") or os.environ.get("PGPASSWORD", "")),
        PGHOST=host,
        PGPORT=str(parts.get("port") or os.environ.get("PGPORT") or 5432),
        PGDATABASE=str(parts.get("dbname") or os.environ.get("PGDATABASE") or user),
    )
    return env


class PgstacServer(StacServer):
    """stac-fastapi-pgstac serving a static catalog from pgstac.

    Example::

        with PgstacServer("catalog/") as server:          # throwaway cluster
            Client.open(server.url).search(filter=...)
        PgstacServer("catalog/", PgstacConfig(dsn="postgresql://u:p@db:5432/stac"))
    """

    backend = "pgstac"

    def __init__(
        self,
        catalog: str | os.PathLike[str] | CatalogContent,
        config: PgstacConfig | None = None,
    ) -> None:
        super().__init__(catalog)
        self.config = config or PgstacConfig()
        if self.config.dsn is not None and not _missing_python_modules():
            _api_env(self.config.dsn)  # reject a DSN the API cannot use before starting
        self.workdir: Path | None = None
        self.postgres: subprocess.Popen[bytes] | None = None
        self.api: subprocess.Popen[bytes] | None = None
        self.dsn: str | None = None

    @property
    def postgres_log(self) -> Path | None:
        """The throwaway cluster's server log (only while running)."""
        return self.workdir / "postgres.log" if self.workdir else None

    @property
    def api_log(self) -> Path | None:
        """uvicorn's log (only while running)."""
        return self.workdir / "api.log" if self.workdir else None

    @property
    def log_paths(self) -> list[Path]:
        return [p for p in (self.api_log, self.postgres_log) if p is not None and p.is_file()]

    def _start(self) -> str:
        cfg = self.config
        # Cheap checks first, so that a bad port or a missing program fails before initdb.
        port = resolve_port(cfg.port, cfg.host)
        if missing := _missing_python_modules():
            raise BackendUnavailableError(
                f"Python packages missing: {', '.join(missing)}: pip install 'tamrf-xr[pgstac]'"
            )
        install = find_postgres(cfg.pg_bindir) if cfg.dsn is None else None
        ids = _run_as_ids(cfg.run_as) if cfg.dsn is None else None
        self.workdir = Path(tempfile.mkdtemp(prefix="tamrf-pgstac-"))
        if install is not None:
            self.dsn = self._start_cluster(install, ids)
        else:
            self.dsn = cfg.dsn
        self._load()
        return self._start_api(port)

    def _start_cluster(self, install: PostgresInstall, ids: tuple[int, int] | None) -> str:
        """initdb + postgres in ``self.workdir``; return the DSN of a new empty database."""
        assert self.workdir is not None
        uid, gid = ids if ids is not None else (None, None)
        data, sockets = self.workdir / "data", self.workdir / "sockets"
        sockets.mkdir()
        if ids is not None:
            for path in (self.workdir, sockets):
                os.chown(path, *ids)
            # The unprivileged user must be able to reach the temp dir (TMPDIR may be private).
            for parent in self.workdir.parents:
                if not parent.stat().st_mode & stat.S_IXOTH:
                    raise BackendUnavailableError(
                        f"user {self.config.run_as!r} cannot reach {self.workdir} ({parent} is "
                        "private): set TMPDIR to a directory everyone can traverse, e.g. /tmp"
                    )
        drop = {"user": uid, "group": gid, "extra_groups": []} if ids is not None else {}
        # trust auth is safe here: the cluster listens on 127.0.0.1 and a private socket
        # dir, and lives only as long as this server. --no-sync: nothing here must survive.
        initdb_args = f"-U {_SUPERUSER} --auth=trust -E UTF8 --no-locale --no-sync".split()
        initdb = subprocess.run(
            [str(install.bindir / "initdb"), "-D", str(data), *initdb_args],
            capture_output=True,
            text=True,
            check=False,
            cwd=self.workdir,
            **drop,
        )
        if initdb.returncode != 0:
            raise ServerStartError(f"initdb failed:\n{initdb.stdout}\n{initdb.stderr}")
        pg_port = free_port("127.0.0.1")
        settings = {
            "listen_addresses": "127.0.0.1",
            "unix_socket_directories": str(sockets),
            # Durability costs time and this database is deleted on stop().
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
        }
        cmd = [str(install.bindir / "postgres"), "-D", str(data), "-p", str(pg_port)]
        cmd += [arg for k, v in settings.items() for arg in ("-c", f"{k}={v}")]
        self.postgres = start_process(
            cmd, log_path=self.postgres_log, cwd=self.workdir, user=uid, group=gid
        )

        import psycopg

        admin = f"postgresql://{_SUPERUSER}@127.0.0.1:{pg_port}/postgres"

        def accepts_connections() -> bool:
            with psycopg.connect(admin, connect_timeout=2):
                return True

        wait_until(
            accepts_connections,
            what="PostgreSQL",
            timeout_s=self.config.start_timeout_s,
            procs=[self.postgres],
            log_path=self.postgres_log,
        )
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {_DATABASE}")
        return f"postgresql://{_SUPERUSER}@127.0.0.1:{pg_port}/{_DATABASE}"

    def _load(self) -> None:
        """Install/migrate pgstac and load the collections and items."""
        from pypgstac.db import PgstacDB
        from pypgstac.load import Loader, Methods
        from pypgstac.migrate import Migrate

        assert self.dsn is not None
        mode = self.config.load_mode or ("insert" if self.config.dsn is None else "upsert")
        db = PgstacDB(dsn=self.dsn)
        try:
            Migrate(db).run_migration()
            loader = Loader(db)
            loader.load_collections(list(self.content.collections), Methods(mode))
            loader.load_items(list(self.content.items), Methods(mode))
        except Exception as exc:
            raise ServerStartError(
                with_log(
                    f"loading {self.content.source} into pgstac at {_redact(self.dsn)} failed: "
                    f"{type(exc).__name__}: {exc}",
                    self.postgres_log,
                )
            ) from exc
        finally:
            db.close()

    def _start_api(self, port: int) -> str:
        """stac-fastapi-pgstac under uvicorn, in a subprocess; return its URL once it answers."""
        assert self.dsn is not None and self.workdir is not None
        cfg = self.config
        app = "stac_fastapi.pgstac.app:create_app"
        cmd = [sys.executable, "-m", "uvicorn", app, "--factory", "--host", cfg.host]
        cmd += ["--port", str(port)]
        # cwd=workdir: the settings classes also read a .env file from the working directory,
        # and one in the user's directory, meant for something else, must not configure this.
        self.api = start_process(
            cmd, log_path=self.api_log, env=_api_env(self.dsn), cwd=self.workdir
        )
        url = http_url(cfg.host, port)
        procs = [self.api] if self.postgres is None else [self.api, self.postgres]
        wait_for_api(url, timeout_s=cfg.start_timeout_s, procs=procs, log_path=self.api_log)
        return url

    def alive(self) -> bool:
        procs = [self.api] if self.config.dsn is not None else [self.api, self.postgres]
        return all(p is not None and p.poll() is None for p in procs)

    def _stop(self) -> None:
        timeout = self.config.stop_timeout_s
        try:
            # The API first: it holds connections to the database.
            stop_process(self.api, timeout_s=timeout)
        finally:
            try:
                # SIGINT is PostgreSQL's "fast" shutdown, what `pg_ctl stop -m fast` sends:
                # roll back open transactions, disconnect clients, checkpoint, exit.
                stop_process(self.postgres, sig=signal.SIGINT, timeout_s=timeout)
            finally:
                self.api = self.postgres = None
                self.dsn = None
                if self.workdir is not None:
                    shutil.rmtree(self.workdir, ignore_errors=True)
                    self.workdir = None
