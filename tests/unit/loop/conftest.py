"""A container on a fresh SQLite home (trace helpers live in ``loop_data.py``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from llmloop.config import load_settings
from llmloop.services.container import Container


@pytest.fixture
def container(tmp_path: Path) -> Iterator[Container]:
    c = Container(load_settings({"home": str(tmp_path)}, env={}))
    yield c
    c.close()
