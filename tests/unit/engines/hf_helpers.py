"""Helpers shared by the hf engine's tool tests: starting an engine on a local model, and the
trip schema the forced-call tests constrain arguments to."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from llmloop.core.chat import EngineSpec
from llmloop.engines.hf import HFEngine

#: Tool arguments a weak model can always finish: an enum and a bounded integer.
TRIP: dict[str, Any] = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "enum": ["Paris", "Rome"]},
        "days": {"type": "integer", "minimum": 1, "maximum": 9},
    },
    "required": ["city", "days"],
    "additionalProperties": False,
}


async def started(model_dir: Path, **options: Any) -> HFEngine:
    """A started hf engine on ``model_dir`` (one torch thread); the caller closes it."""
    spec = EngineSpec(kind="hf", model=str(model_dir), options={"num_threads": 1, **options})
    engine = HFEngine(spec)
    await engine.start()
    return engine
