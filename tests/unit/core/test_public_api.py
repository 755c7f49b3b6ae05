"""The public API of the package is pinned: adding or removing a name is a deliberate change."""

from __future__ import annotations

import llmloop


def test_exported_names() -> None:
    assert sorted(llmloop.__all__) == sorted(
        ["Client", "Settings", "load_settings", "LlmloopError", "__version__"]
    )
    for name in llmloop.__all__:
        assert getattr(llmloop, name) is not None
