"""Content-addressed artifact store over any fsspec filesystem (file:// default, memory://, s3://).

Blobs live at ``<root>/sha256/<ab>/<cd>/<digest>``; writing the same content twice is free and
never overwrites. Keys come only from digests, and :func:`safe_key` refuses any caller-supplied
key that could escape the root. It does not track which record uses a blob: the store does.
"""

from __future__ import annotations

import hashlib
import io
import re
import tarfile
import tempfile
import urllib.parse
from pathlib import Path
from typing import BinaryIO

import fsspec

from llmloop.artifacts.base import ArtifactStore
from llmloop.core.base import ArtifactRef
from llmloop.errors import InvalidInputError, NotFoundError

_DIGEST = re.compile(r"^[0-9a-f]{64}$")
_CHUNK = 1 << 20


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
    def __init__(self, root_url: str, cache_dir: Path | None = None) -> None:
        self.fs, root = fsspec.core.url_to_fs(root_url)
        self.root = root.rstrip("/")
        self.protocol = (
            self.fs.protocol if isinstance(self.fs.protocol, str) else self.fs.protocol[0]
        )
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

    def put(self, data: bytes | Path, name: str = "") -> ArtifactRef:
        if isinstance(data, Path):
            digest, size = _hash_file(data)
        else:
            digest, size = hashlib.sha256(data).hexdigest(), len(data)
        path = self._path(digest)
        if not self.fs.exists(path):
            self.fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
            tmp = f"{path}.tmp-{id(data)}"
            if isinstance(data, Path):
                self.fs.put_file(str(data), tmp)
            else:
                with self.fs.open(tmp, "wb") as fh:
                    fh.write(data)
            self.fs.mv(tmp, path)
        return ArtifactRef(uri=self._uri(path), sha256=digest, size=size)

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
        if not self.fs.exists(path):
            raise NotFoundError(f"artifact {ref.sha256} is missing from {self.root}")
        return self.fs.open(path, "rb")  # type: ignore[no-any-return]

    def read_bytes(self, ref: ArtifactRef) -> bytes:
        with self.open(ref) as fh:
            return fh.read()

    def exists(self, ref: ArtifactRef) -> bool:
        return bool(self.fs.exists(self._ref_path(ref)))

    def materialize_dir(self, ref: ArtifactRef, dest: Path | None = None) -> Path:
        target = (dest or self.cache_dir) / ref.sha256
        if (target / ".complete").exists():
            return target
        target.mkdir(parents=True, exist_ok=True)
        with self.open(ref) as fh, tarfile.open(fileobj=io.BytesIO(fh.read())) as tar:
            for member in tar.getmembers():
                safe_key(member.name)
                if not member.isfile():
                    raise InvalidInputError(f"artifact {ref.sha256} holds a non-file entry")
            tar.extractall(target, filter="data")
        (target / ".complete").touch()
        return target


def _hash_file(path: Path) -> tuple[str, int]:
    digest, size = hashlib.sha256(), 0
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size
