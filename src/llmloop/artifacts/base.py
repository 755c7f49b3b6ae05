"""The ArtifactStore contract: put bytes or a file, get an ArtifactRef; open, exists, get_dir."""

from __future__ import annotations

import abc
from pathlib import Path
from typing import BinaryIO

from llmloop.core.base import ArtifactRef


class ArtifactStore(abc.ABC):
    @abc.abstractmethod
    def put(self, data: bytes | Path, name: str = "") -> ArtifactRef:
        """Store content once (keyed by sha256) and return its reference."""

    @abc.abstractmethod
    def put_dir(self, path: Path) -> ArtifactRef:
        """Store a directory (model weights) as one immutable tar archive."""

    @abc.abstractmethod
    def open(self, ref: ArtifactRef) -> BinaryIO:
        """Open the content for reading, verifying it exists."""

    @abc.abstractmethod
    def exists(self, ref: ArtifactRef) -> bool:
        """Whether the referenced content is present."""

    @abc.abstractmethod
    def materialize_dir(self, ref: ArtifactRef, dest: Path) -> Path:
        """Unpack a directory artifact under ``dest`` (cached by sha256) and return its path."""
