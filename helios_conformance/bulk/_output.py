"""Where export files go: the output-store interface and its filesystem implementation."""

from __future__ import annotations

import shutil
from pathlib import Path, PurePosixPath
from typing import Protocol, runtime_checkable
from urllib.parse import unquote, urlparse

from .._errors import InvalidRequest, NotFound


@runtime_checkable
class OutputStore(Protocol):
    """Append-only files addressed by keys such as ``acme/export/<job>/Patient.1.ndjson``.

    The export engine appends whole NDJSON lines and checkpoints the size it reached;
    after a crash it truncates a part back to the checkpointed size before resuming, so
    an object store implementation needs append (multipart upload parts) and the ability
    to drop what came after a committed size. Keys are built by the engine and always
    start with the tenant id, so stores need not check tenancy themselves.
    """

    async def append(self, key: str, data: bytes) -> int:
        """Append ``data`` (creating the file) and return the file's new size."""
        ...

    async def truncate(self, key: str, size: int) -> None:
        """Cut the file back to ``size`` bytes (creating it empty when ``size`` is 0)."""
        ...

    async def read(self, key: str) -> bytes:
        """The whole file. Raises NotFound when there is no such file."""
        ...

    async def delete_prefix(self, prefix: str) -> None:
        """Delete every file whose key starts with ``prefix`` (a ``/``-ended folder)."""
        ...

    def url(self, key: str) -> str:
        """The URL the manifest gives for ``key``."""
        ...

    def key_of(self, url: str) -> str:
        """The key of a URL this store issued. Raises InvalidRequest for a foreign URL."""
        ...


class FilesystemOutputStore:
    """Files under one directory; URLs are ``file://`` URLs."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root).resolve()

    def _path(self, key: str) -> Path:
        relative = PurePosixPath(key)
        if relative.is_absolute() or ".." in relative.parts or not relative.parts:
            raise InvalidRequest(f"output key {key!r} escapes the output directory")
        return self.root.joinpath(*relative.parts)

    async def append(self, key: str, data: bytes) -> int:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("ab") as handle:
            handle.write(data)
            return handle.tell()

    async def truncate(self, key: str, size: int) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("ab") as handle:
            handle.truncate(size)

    async def read(self, key: str) -> bytes:
        path = self._path(key)
        try:
            return path.read_bytes()
        except FileNotFoundError as exc:
            raise NotFound(f"output file {key!r} does not exist") from exc

    async def delete_prefix(self, prefix: str) -> None:
        path = self._path(prefix.rstrip("/"))
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()

    def url(self, key: str) -> str:
        return self._path(key).as_uri()

    def key_of(self, url: str) -> str:
        parsed = urlparse(url)
        if parsed.scheme != "file":
            raise InvalidRequest(f"{url!r} is not a file URL of this output store")
        path = Path(unquote(parsed.path)).resolve()
        try:
            return path.relative_to(self.root).as_posix()
        except ValueError as exc:
            raise InvalidRequest(f"{url!r} is not a file of this output store") from exc


@runtime_checkable
class SourceReader(Protocol):
    """Fetches the NDJSON files a submission manifest points at."""

    async def read(self, url: str) -> bytes:
        """The whole file. Raises NotFound when it cannot be fetched."""
        ...


class FileSourceReader:
    """Reads ``file://`` URLs (and plain paths) from the local filesystem."""

    async def read(self, url: str) -> bytes:
        parsed = urlparse(url)
        if parsed.scheme not in ("file", ""):
            raise InvalidRequest(f"{url!r}: only file URLs can be read by FileSourceReader")
        path = Path(unquote(parsed.path) if parsed.scheme else url)
        try:
            return path.read_bytes()
        except FileNotFoundError as exc:
            raise NotFound(f"NDJSON source {url!r} does not exist") from exc
