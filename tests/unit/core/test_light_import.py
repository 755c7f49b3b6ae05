"""`import llmloop` and the CLI's start-up never import torch, transformers or vllm."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("torch", "transformers", "vllm", "peft", "trl", "sentence_transformers", "sklearn")


def test_import_llmloop_is_light() -> None:
    code = (
        "import sys, llmloop, llmloop.client, llmloop.api.app, llmloop.services.container\n"
        f"heavy = [m for m in {HEAVY!r} if m in sys.modules]\n"
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_plugins_resolve_lazily() -> None:
    code = (
        "import sys\n"
        "from llmloop.plugins import build_registry\n"
        "r = build_registry()\n"
        "assert 'hf' in r.names('engines') and 'echo' in r.names('engines')\n"
        "r.resolve('engines', 'echo')\n"
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
