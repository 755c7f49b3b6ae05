"""``make demo`` / ``llmloop demo``: the registry tour (SDK and HTTP), then the whole lifecycle
of a support model on embedded defaults. ``--registry`` runs only the quick registry tour."""

from __future__ import annotations

from llmloop.config import Settings, load_settings


def main(settings: Settings | None = None, registry_only: bool = False) -> int:
    from llmloop.demo import lifecycle, registry_tour

    settings = settings or load_settings()
    code = registry_tour.main(settings)
    if code or registry_only:
        return code
    print(
        "\n" + "=" * 78 + "\nThe lifecycle: data -> model -> evaluation -> serving -> feedback "
        "-> retraining -> canary\n" + "=" * 78,
        flush=True,
    )
    result = lifecycle.run(settings, settings.home / "demo")
    ok = result["reaches_raw"] and result["reaches_traces"]
    return 0 if ok else 1
