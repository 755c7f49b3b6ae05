"""The echo engine through the shared Engine contract suite."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from llmloop.core.chat import EngineSpec
from llmloop.engines.base import Engine
from llmloop.engines.echo import EchoEngine
from llmloop.errors import ConfigError
from llmloop.testing.engine_contract import EngineContract


class TestEchoContract(EngineContract):
    @pytest.fixture
    async def engine(self) -> AsyncIterator[Engine]:
        engine = EchoEngine(EngineSpec(kind="echo", model="echo"))
        await engine.start()
        yield engine
        await engine.aclose()


@pytest.mark.parametrize(
    ("options", "field"),
    [({"delay_s": "abc"}, "delay_s"), ({"fail_rate": 2}, "fail_rate"),
     ({"replies": ["a"]}, "replies"), ({"embed_dim": 0}, "embed_dim")],
)  # fmt: skip
def test_bad_echo_options_are_a_config_error_naming_the_field(
    options: dict[str, object], field: str
) -> None:
    """Refused when the deployment is built, not a 502 on every request."""
    with pytest.raises(ConfigError, match=f"bad echo engine options: {field}"):
        EchoEngine(EngineSpec(kind="echo", model="m", options=options))
