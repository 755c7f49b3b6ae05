"""The dashboard's pages, one module per noun (the same nouns as services and routes)."""

from __future__ import annotations

from fastapi.routing import APIRouter


def routers() -> list[APIRouter]:
    """Every page router, in navigation order (imported here so ``llmloop.ui`` stays light)."""
    from llmloop.ui.pages import (
        alerts,
        annotation,
        datasets,
        deployments,
        governance,
        keys,
        model_cards,
        models,
        monitoring,
        overview,
        prompts,
        runs,
        traces,
    )

    modules = (overview, models, model_cards, datasets, prompts, runs, deployments, traces,
               monitoring, alerts, annotation, governance, keys)  # fmt: skip
    return [m.router for m in modules]
