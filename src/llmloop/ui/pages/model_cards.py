"""Dashboard page of a model version's model card, and the card as a Markdown download.

The card is the one ``services/model_cards.py`` builds, so the page, the REST ``/card`` route
and ``llmloop models card`` never disagree: the version's fields, intended use and limitations,
its training run and data, its metrics, the evaluation runs that scored it and the deployments
serving it now. Every value is user-written, so the page renders them only through the
autoescaping templates; the download is the service's Markdown, which makes user text inert
itself.

What this module does not do: build or store cards (the service does), or change a version (the
models page does).
"""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import Path, Request
from fastapi.responses import Response

from llmloop.services.model_cards import (
    NOT_RECORDED,
    NOT_SERVED,
    ModelCard,
    build_card,
    render_markdown,
)
from llmloop.ui.pages.governance import segment
from llmloop.ui.pages.models import base_link, version_number, version_url
from llmloop.ui.web import (
    SECURITY_HEADERS,
    ActorPage,
    Base,
    ContainerPage,
    page_router,
    redirect,
    render,
)

router = page_router()
RefPath = Annotated[str, Path(max_length=64)]
MARKDOWN = "text/markdown; charset=utf-8"


def card_url(base: str, name: str, version: int) -> str:
    return f"{version_url(base, name, version)}/card"


def paragraphs(text: str | None) -> list[str]:
    """Blank-line separated paragraphs; none for text that was not recorded."""
    return [p.strip() for p in re.split(r"\n\s*\n", text or "") if p.strip()]


def card_sections(card: ModelCard) -> list[tuple[str, list[str]]]:
    """The card's prose, titled as in its Markdown."""
    return [
        ("Description", paragraphs(card.description)),
        ("Intended use", paragraphs(card.intended_use)),
        ("Limitations", paragraphs(card.limitations)),
    ]


@router.get("/models/{name}/versions/{ref}/card")
def show_card(
    request: Request, c: ContainerPage, actor: ActorPage, base: Base, name: str, ref: RefPath
) -> Response:
    number = version_number(ref)
    if number is None:  # an alias or "latest": the card of the version it names today
        return redirect(request, card_url(base, name, c.models.get_version(name, ref).version))
    card = build_card(c, name, number)
    base_text, base_href = base_link(c, base, card.base_model)
    training = card.training
    return render(
        request,
        "models/card.html",
        section="models",
        card=card,
        model_href=f"{base}/models/{segment(card.model)}",
        version_href=version_url(base, card.model, card.version),
        markdown_href=f"{card_url(base, card.model, card.version)}.md",
        base_text=base_text,
        base_href=base_href,
        run_href=f"{base}/runs/{segment(training.run_id)}" if training else None,
        sections=card_sections(card),
        not_recorded=NOT_RECORDED,
        not_served=NOT_SERVED,
    )


@router.get("/models/{name}/versions/{ref}/card.md")
def download_card(c: ContainerPage, actor: ActorPage, name: str, ref: RefPath) -> Response:
    """The card's Markdown, as the REST ``?format=markdown`` gives it, saved under a file name
    (the browser cannot send the API's bearer key, so the REST address is no link here)."""
    number = version_number(ref)
    card = build_card(c, name, ref if number is None else number)
    # A registry name is letters, digits, '.', '_' and '-': safe inside the quoted filename.
    filename = f"{card.model}-v{card.version}-card.md"
    headers = {**SECURITY_HEADERS, "Content-Disposition": f'attachment; filename="{filename}"'}
    return Response(render_markdown(card), media_type=MARKDOWN, headers=headers)
