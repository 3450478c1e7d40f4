"""Where a run's outputs live: a local directory or an object store (any fsspec URL).

:class:`Location` is one place (a directory or a file) given as a local path or a URL such as
``s3://bucket/prefix`` (``gs://``, ``az://``... with their fsspec package installed). It
offers the few operations the Level-3 stores, their STAC collection, the run summary and the
quicklooks need, with the same guarantees on both kinds of storage:

- **Whole or nothing:** :meth:`Location.write_bytes` / :meth:`Location.write_json` write
  through a flushed temporary file and a rename on a local file system, and as one PUT on an
  object store (an object appears whole or not at all).
- **Credentials** come from the usual environment of the storage's library (for S3:
  ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``, ``AWS_PROFILE``,
  ``AWS_ENDPOINT_URL`` for an S3-compatible server, instance roles...). A location never
  holds them: its URL is all that is recorded anywhere (summaries, store attributes, STAC
  links), and a URL that carries a user or password is refused.
- Local paths keep POSIX semantics (``fsync`` before a commit, atomic ``rename``); object
  stores have no directories: a "directory" exists when an object lies under its prefix.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import fsspec
from fsspec.implementations.local import LocalFileSystem

from pipelines.redaction import redact_text

__all__ = ["Location", "StorageError", "is_url"]


class StorageError(ValueError):
    """An output location that cannot be used (no such bucket, no permission...)."""


def is_url(target: str | os.PathLike[str]) -> bool:
    """Whether ``target`` names an fsspec URL (``scheme://...``) rather than a local path."""
    text = os.fspath(target)
    return "://" in text and not text.startswith("file://")


@dataclass(frozen=True)
class Location:
    """A local path or an fsspec URL (normalised: no trailing slash; local paths absolute)."""

    url: str

    @classmethod
    def of(cls, target: str | os.PathLike[str] | Location) -> Location:
        """``target`` as a location: a local path (relative ones made absolute) or a URL."""
        if isinstance(target, Location):
            return target
        text = os.fspath(target)
        if text.startswith("file://"):
            text = text[len("file://") :]
        if not is_url(text):
            return cls(str(Path(text).absolute()))
        parts = urlsplit(text)
        if parts.username or parts.password:
            raise StorageError(
                f"{parts.scheme}://...@{parts.hostname}: the URL carries credentials, which "
                "would end up in logs and summaries; give them through the environment "
                "(for S3: AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, or AWS_PROFILE)"
            )
        if not parts.netloc:
            raise StorageError(f"{text!r}: a URL needs a bucket or host (s3://bucket/prefix)")
        return cls(text.rstrip("/"))

    # ----------------------------------------------------------------------- identity

    @property
    def is_local(self) -> bool:
        return not is_url(self.url)

    @property
    def local_path(self) -> Path:
        """The local path (only for a local location)."""
        if not self.is_local:
            raise ValueError(f"{self.url} is not on the local file system")
        return Path(self.url)

    @cached_property
    def fs(self) -> fsspec.AbstractFileSystem:
        """The fsspec file system (credentials from the environment)."""
        if self.is_local:
            return LocalFileSystem()
        return fsspec.core.url_to_fs(self.url)[0]

    @property
    def path(self) -> str:
        """The path inside :attr:`fs` (for S3: ``bucket/prefix``)."""
        if self.is_local:
            return self.url
        return fsspec.core.url_to_fs(self.url)[1]

    @property
    def name(self) -> str:
        return self.url.rstrip("/").rsplit("/", 1)[-1]

    @property
    def parent(self) -> Location:
        return Location(self.url.rstrip("/").rsplit("/", 1)[0])

    def native(self) -> Path | str:
        """A ``Path`` for a local location, else the URL (what callers of functions that
        accept both get back)."""
        return self.local_path if self.is_local else self.url

    def __truediv__(self, name: str) -> Location:
        return Location(f"{self.url}/{name.strip('/')}")

    def __str__(self) -> str:
        return self.url

    def __fspath__(self) -> str:
        """Local locations stand in for paths (``open``, ``Path(...)``)."""
        return str(self.local_path)

    def zarr_store(self) -> Any:
        """What zarr and xarray open: the path itself when local, else an fsspec-backed
        zarr store (the same file system object, hence the same credentials)."""
        if self.is_local:
            return self.url
        from zarr.storage import FsspecStore

        return FsspecStore.from_url(self.url)

    # ------------------------------------------------------------------------ queries

    def exists(self) -> bool:
        return self.fs.exists(self.path)

    def is_file(self) -> bool:
        return self.fs.isfile(self.path)

    def is_dir(self) -> bool:
        """A local directory; on an object store, a prefix with objects under it."""
        return self.fs.isdir(self.path)

    def is_nonempty(self) -> bool:
        """A file, or a directory (prefix) with something in it."""
        if self.is_local:
            path = self.local_path
            return path.exists() and (not path.is_dir() or any(path.iterdir()))
        return bool(self.fs.ls(self.path, detail=False)) if self.fs.exists(self.path) else False

    def children(self) -> list[Location]:
        """The entries directly under this directory (prefix), sorted; [] when absent."""
        if not self.is_dir():
            return []
        names = sorted(
            p.rstrip("/").rsplit("/", 1)[-1] for p in self.fs.ls(self.path, detail=False)
        )
        return [self / n for n in names if n]

    def read_bytes(self) -> bytes:
        return self.fs.cat_file(self.path)

    def read_text(self) -> str:
        return self.read_bytes().decode()

    def read_json(self) -> Any:
        return json.loads(self.read_bytes())

    # ------------------------------------------------------------------------- writes

    def write_bytes(self, data: bytes) -> None:
        """Write this file whole or not at all (see the module docstring)."""
        if not self.is_local:
            self.fs.pipe_file(self.path, data)  # one PUT
            return
        target = self.local_path
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary = target.with_name(f".{target.name.lstrip('.')}.{uuid.uuid4().hex}.tmp")
        try:
            with open(temporary, "wb") as stream:
                stream.write(data)
                stream.flush()
                os.fsync(stream.fileno())
            os.replace(temporary, target)
        finally:
            temporary.unlink(missing_ok=True)

    def create_exclusively(self, data: bytes) -> bool:
        """Write this file only if it does not exist yet: True when written, False when it
        was there (local: ``O_EXCL``; object stores: a conditional PUT, ``If-None-Match``,
        which S3, MinIO and moto honour)."""
        try:
            if self.is_local:
                self.local_path.parent.mkdir(parents=True, exist_ok=True)
                with open(self.local_path, "xb") as stream:
                    stream.write(data)
            else:
                self.fs.pipe_file(self.path, data, mode="create")
        except FileExistsError:
            return False
        return True

    def write_json(self, document: Mapping[str, Any] | list[Any]) -> None:
        """Write ``document`` as indented JSON, whole or not at all."""
        self.write_bytes(json.dumps(document, indent=2).encode())

    def make_dirs(self) -> None:
        """Create the directory (a no-op on object stores, which have none)."""
        if self.is_local:
            self.local_path.mkdir(parents=True, exist_ok=True)

    def remove(self) -> None:
        """Remove this file or directory tree, if present."""
        if self.is_local:
            path = self.local_path
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)
            return
        if self.fs.exists(self.path):
            self.fs.rm(self.path, recursive=True)

    def upload_tree(self, source: Path, *, last: tuple[str, ...] = ()) -> None:
        """Copy the local directory ``source`` here, file by file; the files named in
        ``last`` (relative paths) go after all the others, in that order (the commit)."""
        files = sorted(p for p in source.rglob("*") if p.is_file())
        relative = [p.relative_to(source).as_posix() for p in files]
        ordered = [r for r in relative if r not in last] + [r for r in last if r in relative]
        for name in ordered:
            (self / name).write_bytes((source / name).read_bytes())

    def check_writable(self) -> None:
        """Fail now, with the fix, when nothing can be written here: a missing bucket,
        missing credentials or permissions. Writes and removes one small probe object."""
        if self.is_local:
            raise ValueError("check_writable is for object stores; local paths are checked "
                             "by pipelines.production")  # fmt: skip
        bucket = self.path.split("/", 1)[0]
        probe = self / f".tamrf-write-probe-{uuid.uuid4().hex}"
        try:
            probe.write_bytes(b"")
            probe.remove()
        except FileNotFoundError:
            raise StorageError(
                f"{self.url}: bucket {bucket!r} does not exist (or this endpoint does not "
                "serve it): create it, or fix the bucket name / AWS_ENDPOINT_URL"
            ) from None
        except PermissionError as error:
            raise StorageError(
                f"{self.url} is not writable with the credentials of this environment "
                f"({_short(error)}): grant s3:PutObject and s3:DeleteObject on the prefix, "
                "or set AWS_PROFILE / AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
            ) from None
        except OSError as error:
            raise StorageError(
                f"{self.url} cannot be written ({_short(error)}): check the endpoint "
                "(AWS_ENDPOINT_URL), the credentials and the network"
            ) from None


def _short(error: BaseException) -> str:
    """The first line of an error, URLs and credentials redacted (:func:`redact_text`)."""
    text = str(error).splitlines()[0] if str(error) else type(error).__name__
    return redact_text(text)[:200]
