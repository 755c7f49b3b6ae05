"""The server tunes the garbage collector while it runs and gives Python's settings back."""

from __future__ import annotations

import gc
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from llmloop.api.app import create_app
from llmloop.config import load_settings
from llmloop.errors import ConfigError


def test_collector_is_tuned_while_serving_and_restored_after(tmp_path: Path) -> None:
    before = gc.get_threshold()
    settings = load_settings({"home": str(tmp_path), "server_gc_threshold": 12_345}, env={})
    with TestClient(create_app(settings)) as client:
        assert client.get("/health").status_code == 200
        assert gc.get_threshold() == (12_345, before[1], before[2])
        assert gc.get_freeze_count() > 0  # start-up objects are out of every collection
    assert gc.get_threshold() == before and gc.get_freeze_count() == 0


def test_zero_leaves_the_collector_alone(tmp_path: Path) -> None:
    before = gc.get_threshold()
    settings = load_settings({"home": str(tmp_path), "server_gc_threshold": 0}, env={})
    with TestClient(create_app(settings)) as client:
        assert client.get("/health").status_code == 200
        assert gc.get_threshold() == before and gc.get_freeze_count() == 0


def test_a_negative_threshold_is_refused_with_the_setting_named() -> None:
    with pytest.raises(ConfigError, match="server_gc_threshold"):
        load_settings({"server_gc_threshold": -1}, env={})
