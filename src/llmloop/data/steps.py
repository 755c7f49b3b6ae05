"""Cleaning steps: small classes, each with a pydantic config, that map or drop rows batch by batch.

A step's ``apply(batch)`` returns one entry per input row: the (possibly changed) row, or
``None`` to drop it, with a reason. Steps may keep state across batches (deduplication), so a
step instance serves one pass over one dataset. ``STEPS`` maps names to classes; built-ins and
plugins add to it through ``register_step`` (the ``register_data_steps`` hook).

It does not parse recipes or write reports (``recipes``).
"""

from __future__ import annotations

import abc
import re
import unicodedata
from html.parser import HTMLParser
from importlib import resources
from typing import ClassVar, Literal

import ftfy
from pydantic import BaseModel, ConfigDict, Field, model_validator

from llmloop.data.dedup import NearDupIndex, exact_key, words_of
from llmloop.data.shapes import Batch, Row, map_text, row_text, text_values
from llmloop.data.text import TextTokenizer, detect_language, toxicity_scores
from llmloop.errors import ConfigError
from llmloop.guards.pii import PiiConfig, PiiDetector, PiiKind, PseudonymVault, apply_pii_policy

Outcome = tuple[Row | None, str]


class StepConfig(BaseModel):
    """Base of step configs: unknown fields are refused."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Step(abc.ABC):
    """One cleaning step; ``apply`` returns (row or None, reason) for each input row."""

    name: ClassVar[str] = ""
    config_cls: ClassVar[type[StepConfig]] = StepConfig

    def __init__(self, config: StepConfig | None = None) -> None:
        self.config = config if config is not None else self.config_cls()

    @abc.abstractmethod
    def apply(self, batch: Batch) -> list[Outcome]:
        """The outcome of each row of ``batch``, in order."""


class _TextMapStep(Step):
    """A step that rewrites every text field with ``fix``."""

    def fix(self, text: str) -> str:
        raise NotImplementedError

    def apply(self, batch: Batch) -> list[Outcome]:
        return [(map_text(row, self.fix), "") for row in batch]


class FixUnicodeConfig(StepConfig):
    form: Literal["NFC", "NFKC", "NFD", "NFKD"] = Field(default="NFC", description="Unicode form.")
    repair: bool = Field(default=True, description="Repair mojibake with ftfy first.")


class FixUnicodeStep(_TextMapStep):
    """Repairs mojibake (ftfy) and normalises to a Unicode form."""

    name = "fix_unicode"
    config_cls = FixUnicodeConfig
    config: FixUnicodeConfig

    def fix(self, text: str) -> str:
        if self.config.repair:
            text = ftfy.fix_text(text, normalization=self.config.form)
        return unicodedata.normalize(self.config.form, text)


class _TextOnly(HTMLParser):
    _SKIP = {"script", "style", "head", "noscript"}
    _BREAK = {"p", "br", "div", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skipping = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._SKIP:
            self._skipping += 1
        elif tag in self._BREAK:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in self._SKIP and self._skipping:
            self._skipping -= 1

    def handle_data(self, data: str) -> None:
        if not self._skipping:
            self.parts.append(data)


_TAG = re.compile(r"</?[a-zA-Z][^>]*>|&[a-zA-Z]+;|&#\d+;")


class StripHtmlConfig(StepConfig):
    pass


class StripHtmlStep(_TextMapStep):
    """Removes HTML tags (and script/style content) and unescapes entities."""

    name = "strip_html"
    config_cls = StripHtmlConfig

    def fix(self, text: str) -> str:
        if not _TAG.search(text):
            return text
        parser = _TextOnly()
        parser.feed(text)
        parser.close()
        return "".join(parser.parts).strip()


class WhitespaceConfig(StepConfig):
    max_newlines: int = Field(default=2, ge=1, description="Longest run of newlines kept.")


class WhitespaceStep(_TextMapStep):
    """Collapses runs of spaces and tabs, trims lines and ends, limits blank lines."""

    name = "whitespace"
    config_cls = WhitespaceConfig
    config: WhitespaceConfig

    def fix(self, text: str) -> str:
        text = re.sub(r"[ \t\u00a0\u2000-\u200b]+", " ", text)
        text = re.sub(r" *\n *", "\n", text)
        text = re.sub(
            f"\n{{{self.config.max_newlines + 1},}}", "\n" * self.config.max_newlines, text
        )
        return text.strip()


class DropEmptyConfig(StepConfig):
    pass


class DropEmptyStep(Step):
    """Drops rows with any empty or whitespace-only text field."""

    name = "drop_empty"
    config_cls = DropEmptyConfig

    def apply(self, batch: Batch) -> list[Outcome]:
        return [
            (None, "empty text")
            if any(not v.strip() for v in text_values(row)) or not text_values(row)
            else (row, "")
            for row in batch
        ]


class LengthFilterConfig(StepConfig):
    unit: Literal["chars", "tokens"] = Field(default="chars", description="What is counted.")
    min: int = Field(default=1, ge=0, description="Fewest units a row may have.")
    max: int | None = Field(default=None, ge=1, description="Most units a row may have.")
    tokenizer: str | None = Field(default=None, description="Local tokenizer.json for 'tokens'.")

    @model_validator(mode="after")
    def _ordered(self) -> LengthFilterConfig:
        if self.max is not None and self.max < self.min:
            raise ValueError("max must be at least min")
        return self


class LengthFilterStep(Step):
    """Drops rows whose whole text is shorter than ``min`` or longer than ``max``."""

    name = "length_filter"
    config_cls = LengthFilterConfig
    config: LengthFilterConfig

    def __init__(self, config: LengthFilterConfig | None = None) -> None:
        super().__init__(config)
        self.tokenizer = TextTokenizer(self.config.tokenizer)

    def apply(self, batch: Batch) -> list[Outcome]:
        texts = [row_text(row) for row in batch]
        sizes = (
            [len(t) for t in texts] if self.config.unit == "chars" else self.tokenizer.count(texts)
        )
        high = self.config.max
        return [
            (None, f"{size} {self.config.unit} < {self.config.min}")
            if size < self.config.min
            else (None, f"{size} {self.config.unit} > {high}")
            if high is not None and size > high
            else (row, "")
            for row, size in zip(batch, sizes, strict=True)
        ]


class LanguageFilterConfig(StepConfig):
    languages: list[str] = Field(min_length=1, description="ISO 639-1 codes to keep, e.g. ['en'].")
    min_chars: int = Field(default=20, ge=0, description="Shorter rows are kept undecided.")


class LanguageFilterStep(Step):
    """Keeps rows detected (py3langid) as one of ``languages``."""

    name = "language_filter"
    config_cls = LanguageFilterConfig
    config: LanguageFilterConfig

    def apply(self, batch: Batch) -> list[Outcome]:
        outcomes: list[Outcome] = []
        for row in batch:
            text = row_text(row)
            code = detect_language(text) if len(text) >= self.config.min_chars else None
            keep = code is None or code in self.config.languages
            outcomes.append((row, "") if keep else (None, f"language {code}"))
        return outcomes


class RegexFilterConfig(StepConfig):
    patterns: list[str] = Field(min_length=1, description="Python regular expressions.")
    mode: Literal["drop_matching", "keep_matching"] = Field(
        default="drop_matching", description="Drop rows that match, or keep only those."
    )
    ignore_case: bool = Field(default=False, description="Match case-insensitively.")


class RegexFilterStep(Step):
    """Drops (or keeps only) rows whose text matches any pattern."""

    name = "regex_filter"
    config_cls = RegexFilterConfig
    config: RegexFilterConfig

    def __init__(self, config: RegexFilterConfig | None = None) -> None:
        super().__init__(config)
        flags = re.IGNORECASE if self.config.ignore_case else 0
        try:
            self.pattern = re.compile("|".join(f"(?:{p})" for p in self.config.patterns), flags)
        except re.error as exc:
            raise ConfigError(f"regex_filter: bad pattern: {exc}")

    def apply(self, batch: Batch) -> list[Outcome]:
        drop_matching = self.config.mode == "drop_matching"
        outcomes: list[Outcome] = []
        for row in batch:
            found = self.pattern.search(row_text(row))
            if bool(found) == drop_matching:
                why = f"matches {found.group()!r}" if found else "matches no pattern"
                outcomes.append((None, why))
            else:
                outcomes.append((row, ""))
        return outcomes


def builtin_deny_list(name: str) -> list[str]:
    """Terms of a deny-list shipped in ``llmloop/resources/data/deny_lists/NAME.txt``."""
    folder = resources.files("llmloop").joinpath("resources/data/deny_lists")
    file = folder.joinpath(f"{name}.txt")
    if not file.is_file():
        known = sorted(
            p.name.removesuffix(".txt") for p in folder.iterdir() if p.name.endswith(".txt")
        )
        raise ConfigError(f"no built-in deny-list {name!r}; known: {known}")
    lines = file.read_text(encoding="utf-8").splitlines()
    return [t.strip() for t in lines if t.strip() and not t.startswith("#")]


class DenyListConfig(StepConfig):
    terms: list[str] = Field(default_factory=list, description="Terms (whole words, any case).")
    builtin: list[str] = Field(
        default_factory=list, description="Shipped lists to add, e.g. ['boilerplate']."
    )


class DenyListStep(Step):
    """Drops rows that contain a denied term as a whole word or phrase."""

    name = "deny_list"
    config_cls = DenyListConfig
    config: DenyListConfig

    def __init__(self, config: DenyListConfig | None = None) -> None:
        super().__init__(config)
        terms = list(self.config.terms) + [
            t for n in self.config.builtin for t in builtin_deny_list(n)
        ]
        if not terms:
            raise ConfigError("deny_list needs 'terms' or 'builtin' lists")
        alternatives = "|".join(re.escape(t) for t in sorted(set(terms), key=len, reverse=True))
        self.pattern = re.compile(rf"(?<!\w)(?:{alternatives})(?!\w)", re.IGNORECASE)

    def apply(self, batch: Batch) -> list[Outcome]:
        outcomes: list[Outcome] = []
        for row in batch:
            found = self.pattern.search(row_text(row))
            outcomes.append((None, f"denied term {found.group()!r}") if found else (row, ""))
        return outcomes


class ExactDedupConfig(StepConfig):
    normalise: bool = Field(default=True, description="Compare lower-cased words, not raw text.")


class ExactDedupStep(Step):
    """Keeps the first of rows with the same (normalised) text."""

    name = "exact_dedup"
    config_cls = ExactDedupConfig
    config: ExactDedupConfig

    def __init__(self, config: ExactDedupConfig | None = None) -> None:
        super().__init__(config)
        self.seen: set[bytes] = set()

    def apply(self, batch: Batch) -> list[Outcome]:
        outcomes: list[Outcome] = []
        for row in batch:
            text = row_text(row)
            key = exact_key(text) if self.config.normalise else text.encode()
            if key in self.seen:
                outcomes.append((None, "exact duplicate"))
            else:
                self.seen.add(key)
                outcomes.append((row, ""))
        return outcomes


class NearDedupConfig(StepConfig):
    threshold: float = Field(default=0.8, gt=0, lt=1, description="Estimated Jaccard to drop at.")
    num_perm: int = Field(default=128, ge=8, le=512, description="MinHash permutations.")
    seed: int = Field(default=1, description="MinHash seed.")


class NearDedupStep(Step):
    """Keeps the first of rows whose word 3-gram sets are similar (MinHash LSH)."""

    name = "near_dedup"
    config_cls = NearDedupConfig
    config: NearDedupConfig

    def __init__(self, config: NearDedupConfig | None = None) -> None:
        super().__init__(config)
        c = self.config
        self.index = NearDupIndex(threshold=c.threshold, num_perm=c.num_perm, seed=c.seed)
        self.seen = 0

    def apply(self, batch: Batch) -> list[Outcome]:
        matches = self.index.check_and_add([row_text(row) for row in batch])
        outcomes: list[Outcome] = [
            (row, "") if match is None else (None, f"near duplicate of kept row #{match}")
            for row, match in zip(batch, matches, strict=True)
        ]
        self.seen += len(batch)
        return outcomes


class PiiStepConfig(StepConfig):
    action: Literal["redact", "mask", "pseudonymise", "drop"] = Field(
        default="redact", description="Replace PII, or drop rows that carry any."
    )
    kinds: list[PiiKind] | None = Field(default=None, description="Kinds handled; all if unset.")
    key: str | None = Field(default=None, description="Secret key for 'pseudonymise' (HMAC).")
    name_model: str | None = Field(
        default=None,
        description="A token-classification (NER) model directory for personal names.",
    )

    @model_validator(mode="after")
    def _key_for_pseudonyms(self) -> PiiStepConfig:
        if self.action == "pseudonymise" and not self.key:
            raise ValueError("action 'pseudonymise' needs a 'key'")
        return self


class PiiStep(Step):
    """Redacts, masks or pseudonymises PII (``guards.pii``), or drops rows that carry it."""

    name = "pii"
    config_cls = PiiStepConfig
    config: PiiStepConfig

    def __init__(self, config: PiiStepConfig | None = None) -> None:
        super().__init__(config)
        kinds = self.config.kinds
        names = {"name_model": self.config.name_model}
        self.detector = PiiDetector(
            PiiConfig(kinds=kinds, **names) if kinds is not None else PiiConfig(**names)
        )
        self.vault = PseudonymVault()

    def _fix(self, text: str) -> str:
        spans = self.detector.find(text)
        if not spans:
            return text
        action = self.config.action
        assert action != "drop"
        return apply_pii_policy(text, spans, action, key=self.config.key, vault=self.vault)

    def apply(self, batch: Batch) -> list[Outcome]:
        if self.config.action != "drop":
            return [(map_text(row, self._fix), "") for row in batch]
        outcomes: list[Outcome] = []
        for row in batch:
            kinds = self.detector.kinds_in(row_text(row))
            outcomes.append((None, f"PII: {', '.join(sorted(kinds))}") if kinds else (row, ""))
        return outcomes


class ToxicityFilterConfig(StepConfig):
    threshold: float = Field(
        default=0.8, gt=0, le=1, description="Drop rows scoring at least this."
    )


class ToxicityFilterStep(Step):
    """Drops rows alt-profanity-check scores as offensive."""

    name = "toxicity_filter"
    config_cls = ToxicityFilterConfig
    config: ToxicityFilterConfig

    def apply(self, batch: Batch) -> list[Outcome]:
        texts = [row_text(row) for row in batch]
        scores = toxicity_scores(texts, [words_of(t) for t in texts])
        return [
            (None, f"toxicity {score:.2f}") if score >= self.config.threshold else (row, "")
            for row, score in zip(batch, scores, strict=True)
        ]


STEPS: dict[str, type[Step]] = {
    cls.name: cls
    for cls in (
        FixUnicodeStep,
        StripHtmlStep,
        WhitespaceStep,
        DropEmptyStep,
        LengthFilterStep,
        LanguageFilterStep,
        RegexFilterStep,
        DenyListStep,
        ExactDedupStep,
        NearDedupStep,
        PiiStep,
        ToxicityFilterStep,
    )
}


def register_step(name: str, cls: type[Step]) -> None:
    """Make ``cls`` available to recipes as ``name``."""
    if not (isinstance(cls, type) and issubclass(cls, Step)):
        raise ConfigError(f"data step {name!r} must be a Step subclass, got {cls!r}")
    STEPS[name] = cls
