"""Content-addressed artifact store over any fsspec filesystem (file:// default, memory://, s3://).

Blobs live at ``<root>/sha256/<ab>/<cd>/<digest>``; writing the same content twice is free and
never overwrites. Keys come only from digests, and :func:`safe_key` refuses any caller-supplied
key that could escape the root. It does not track which record uses a blob: the store does.

Writes are atomic: a local file is written under a unique temporary name and renamed; an object
store's upload is committed only when complete (an interrupted multipart upload is aborted), so a
half-written blob never sits at a digest's key. Content streams in bounded chunks both ways and a
download is checked against its digest. Failures of the filesystem itself (no bucket, no
credentials, endpoint down) become :class:`~llmloop.errors.UpstreamError` naming the store.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tarfile
import tempfile
import urllib.parse
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

import fsspec

from llmloop.artifacts.base import ArtifactStore
from llmloop.core.base import ArtifactRef
from llmloop.errors import (
    ConflictError,
    InvalidInputError,
    LlmloopError,
    NotFoundError,
    UpstreamError,
)

_DIGEST = re.compile(r"^[0-9a-f]{64}$")
_CHUNK = 1 << 20
#: Filesystems whose writes become visible only when the file is closed: written in place.
_COMMIT_ON_CLOSE = frozenset({"s3", "s3a", "gs", "gcs", "abfs", "abfss", "az", "adl"})
#: Exception class names of the object-store clients, with what they mean to an operator.
_HINTS = {
    "NoCredentialsError": "no credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
    "(or FSSPEC_S3_KEY / FSSPEC_S3_SECRET)",
    "PartialCredentialsError": "incomplete credentials",
    "EndpointConnectionError": "the endpoint cannot be reached (AWS_ENDPOINT_URL or "
    "FSSPEC_S3_ENDPOINT_URL sets it)",
    "ConnectTimeoutError": "the endpoint did not answer in time",
    "ClientConnectorError": "the endpoint cannot be reached",
    "PermissionError": "access denied",
}


def safe_key(key: str) -> str:
    """Normalise a relative key, refusing absolute paths, '..', and encoded variants of them."""
    decoded = key
    for _ in range(3):  # %252e%252e -> %2e%2e -> ..
        decoded = urllib.parse.unquote(decoded)
    if "\x00" in decoded or "\\" in decoded:
        raise InvalidInputError(f"artifact key {key!r} has forbidden characters")
    if decoded.startswith("/") or re.match(r"^[A-Za-z]:", decoded) or "://" in decoded:
        raise InvalidInputError(f"artifact key {key!r} must be relative to the store root")
    parts = [p for p in decoded.split("/") if p not in ("", ".")]
    if not parts or any(p == ".." for p in parts):
        raise InvalidInputError(f"artifact key {key!r} escapes the store root")
    return "/".join(parts)


class FsspecArtifactStore(ArtifactStore):
    def __init__(
        self,
        root_url: str,
        cache_dir: Path | None = None,
        storage_options: dict[str, Any] | None = None,
    ) -> None:
        # A filesystem of its own: fsspec's shared instances would keep the credentials and
        # endpoint of whichever store was built first in this process.
        options = {"skip_instance_cache": True, **(storage_options or {})}
        self.fs, root = fsspec.core.url_to_fs(root_url, **options)
        self.url = root_url
        self.root = root.rstrip("/")
        self.protocol = (
            self.fs.protocol if isinstance(self.fs.protocol, str) else self.fs.protocol[0]
        )
        self.in_place = self.protocol in _COMMIT_ON_CLOSE
        self.cache_dir = cache_dir or Path(tempfile.gettempdir()) / "llmloop-artifact-cache"

    def _path(self, digest: str) -> str:
        key = safe_key(f"sha256/{digest[:2]}/{digest[2:4]}/{digest}")
        return f"{self.root}/{key}"

    def _uri(self, path: str) -> str:
        return path if self.protocol == "file" else f"{self.protocol}://{path.lstrip('/')}"

    def _ref_path(self, ref: ArtifactRef) -> str:
        if not _DIGEST.match(ref.sha256):
            raise InvalidInputError(f"not a sha256 digest: {ref.sha256!r}")
        return self._path(ref.sha256)

    @contextmanager
    def _errors(self, action: str) -> Iterator[None]:
        """The filesystem's own failures as one clear error naming the store and the cause."""
        try:
            yield
        except (LlmloopError, KeyboardInterrupt, SystemExit):
            raise
        except Exception as exc:
            if self.protocol in ("file", "local") and isinstance(exc, OSError):
                raise  # a local disk's errors name their file; the CLI reports them as they are
            raise UpstreamError(_describe(self.url, action, exc)) from exc

    def put(self, data: bytes | Path, name: str = "") -> ArtifactRef:
        if isinstance(data, Path):
            digest, size = _hash_file(data)
        else:
            digest, size = hashlib.sha256(data).hexdigest(), len(data)
        path = self._path(digest)
        with self._errors("store an artifact"):
            if not self.fs.exists(path):
                self._write(data, path, digest)
        return ArtifactRef(uri=self._uri(path), sha256=digest, size=size)

    def _write(self, data: bytes | Path, path: str, digest: str) -> None:
        """Write so that ``path`` holds either nothing or all of the content."""
        if self.in_place:  # never makedirs here: s3fs would create a missing bucket
            _copy_into(self.fs, data, path, digest, in_place=True)
            return
        self.fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
        tmp = f"{path}.tmp-{uuid.uuid4().hex}"  # unique: two writers never share a temp file
        try:
            _copy_into(self.fs, data, tmp, digest, in_place=False)
            self.fs.mv(tmp, path)
        except BaseException:
            if self.fs.exists(tmp):
                self.fs.rm(tmp)
            raise

    def put_dir(self, path: Path) -> ArtifactRef:
        if not path.is_dir():
            raise InvalidInputError(f"{path} is not a directory")
        with tempfile.NamedTemporaryFile(suffix=".tar", delete=False) as tmp:
            tmp_path = Path(tmp.name)
        try:
            with tarfile.open(tmp_path, "w") as tar:
                for item in sorted(path.rglob("*")):
                    if item.is_file():
                        info = tar.gettarinfo(str(item), arcname=str(item.relative_to(path)))
                        info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
                        with item.open("rb") as fh:
                            tar.addfile(info, fh)
            return self.put(tmp_path)
        finally:
            tmp_path.unlink(missing_ok=True)

    def open(self, ref: ArtifactRef) -> BinaryIO:
        path = self._ref_path(ref)
        with self._errors("read an artifact"):
            if not self.fs.exists(path):
                raise NotFoundError(f"artifact {ref.sha256} is missing from {self.url}")
            return self.fs.open(path, "rb")  # type: ignore[no-any-return]

    def read_bytes(self, ref: ArtifactRef) -> bytes:
        with self.open(ref) as fh, self._errors("read an artifact"):
            return fh.read()

    def exists(self, ref: ArtifactRef) -> bool:
        path = self._ref_path(ref)
        with self._errors("look up an artifact"):
            return bool(self.fs.exists(path))

    def download(self, ref: ArtifactRef, dest: Path) -> Path:
        """Stream the content to the local file ``dest``, checking it against its digest."""
        digest = hashlib.sha256()
        with self.open(ref) as src, dest.open("wb") as out, self._errors("read an artifact"):
            while chunk := src.read(_CHUNK):
                digest.update(chunk)
                out.write(chunk)
        if digest.hexdigest() != ref.sha256:
            raise ConflictError(
                f"artifact {ref.sha256} in {self.url} does not match its digest (corrupted)"
            )
        return dest

    def materialize_dir(self, ref: ArtifactRef, dest: Path | None = None) -> Path:
        target = (dest or self.cache_dir) / ref.sha256
        if (target / ".complete").exists():
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        # Unpacked beside the target and renamed into place: a reader (or a second process
        # unpacking the same weights) sees the folder complete or not at all.
        staging = Path(tempfile.mkdtemp(prefix=f".{ref.sha256[:16]}-", dir=target.parent))
        try:
            archive = self.download(ref, staging / "archive.tar")
            unpacked = staging / "files"
            _extract(archive, unpacked, ref.sha256)
            (unpacked / ".complete").touch()
            if target.exists() and not (target / ".complete").exists():
                shutil.rmtree(target)  # left by an interrupted unpack
            try:
                os.rename(unpacked, target)
            except OSError:
                if not (target / ".complete").exists():  # not a concurrent unpack that won
                    raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return target


def _copy_into(fs: Any, data: bytes | Path, path: str, digest: str, in_place: bool) -> None:
    """Stream ``data`` to ``path``; content that no longer hashes to ``digest`` (a file changed
    meanwhile) is refused. On any failure an in-place upload is discarded, never committed; a
    temporary file is closed for the caller to remove."""
    out = fs.open(path, "wb")
    try:
        if isinstance(data, Path):
            check = hashlib.sha256()
            with data.open("rb") as src:
                while chunk := src.read(_CHUNK):
                    check.update(chunk)
                    out.write(chunk)
            if check.hexdigest() != digest:
                raise ConflictError(f"{data} changed while it was being stored")
        else:
            out.write(data)
    except BaseException:
        if in_place:
            _abandon(out)
        else:
            out.close()
        raise
    out.close()


def _abandon(out: Any) -> None:
    """Drop a file open for writing without committing it (closing would upload the part
    written so far as if it were the whole)."""
    try:
        discard = getattr(out, "discard", None)
        if discard is not None:
            discard()  # s3fs: aborts the multipart upload
        out.closed = True  # fsspec's buffered files: close() would now be a no-op
    except Exception:  # best effort: the error that stopped the upload is the one to report
        pass


def _extract(archive: Path, dest: Path, digest: str) -> None:
    """Unpack a directory artifact, refusing anything but regular files inside ``dest``."""
    try:
        with tarfile.open(archive) as tar:
            for member in tar.getmembers():
                safe_key(member.name)
                if not member.isfile():
                    raise InvalidInputError(f"artifact {digest} holds a non-file entry")
            tar.extractall(dest, filter="data")
    except tarfile.TarError as exc:
        raise InvalidInputError(f"artifact {digest} is not a directory archive: {exc}")


def _describe(url: str, action: str, exc: BaseException) -> str:
    """``artifact store s3://b/p: cannot store an artifact: bucket 'b' does not exist``."""
    kind = type(exc).__name__
    detail = str(exc) or kind
    hint = _HINTS.get(kind)
    if "NoSuchBucket" in detail or (isinstance(exc, FileNotFoundError) and "store" in action):
        bucket = url.split("://", 1)[-1].split("/", 1)[0]
        hint = f"bucket or container '{bucket}' does not exist (create it first)"
    return f"artifact store {url}: cannot {action}: {hint or kind} ({detail})"


def _hash_file(path: Path) -> tuple[str, int]:
    digest, size = hashlib.sha256(), 0
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size
