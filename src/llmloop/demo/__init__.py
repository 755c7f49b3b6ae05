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
    settings = _fresh_for_lifecycle(settings)
    result = lifecycle.run(settings, settings.home / "demo")
    ok = result["reaches_raw"] and result["reaches_traces"]
    return 0 if ok else 1


def _fresh_for_lifecycle(settings: Settings) -> Settings:
    """The lifecycle names its datasets and models; when an earlier run left them in this
    registry, run again in a new home (its own SQLite file and artifacts) and say where."""
    import time

    from llmloop.errors import NotFoundError
    from llmloop.services.container import Container

    c = Container(settings)
    try:
        c.datasets.get("support-tickets")  # the first thing the lifecycle registers
    except NotFoundError:
        return settings
    finally:
        c.close()
    home = settings.home / "demo-runs" / time.strftime("%Y%m%d-%H%M%S")
    print(
        f"\nAn earlier demo's datasets and models are in {settings.home}; this run uses a new "
        f"home: LLMLOOP_HOME={home}",
        flush=True,
    )
    fresh = settings.model_dump(exclude={"home", "database_url", "artifacts_url"})
    return Settings.model_validate({**fresh, "home": home})
