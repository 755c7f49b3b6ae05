"""Personal data and secrets in text: one detector for the data stage, the gateway and the traces.

``PiiDetector.find`` returns spans of e-mail addresses, phone numbers (``phonenumbers``), payment
cards (Luhn), IBANs, US SSNs and a few national ids (``python-stdnum`` checksums), IPv4/IPv6
addresses, URLs carrying credentials and secrets (AWS, GitHub, OpenAI-style, Slack, Google keys,
private-key blocks, and high-entropy values after key-like words). ``apply_pii_policy`` redacts,
masks or pseudonymises them (keyed HMAC tokens, reversible through a ``PseudonymVault``), and
``PiiGuard`` wraps both as a :class:`~llmloop.guards.base.Guard`.

Personal names (kind ``person``) are found only when ``PiiConfig.name_model`` names a
token-classification model (see :mod:`llmloop.guards.pii_names`): no name model ships with
llmloop, and a name list would flag ordinary words. It never sends text anywhere.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import math
import re
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any, Literal

import phonenumbers
from pydantic import BaseModel, ConfigDict, Field
from stdnum import iban as std_iban
from stdnum import luhn
from stdnum.es import dni as es_dni
from stdnum.es import nie as es_nie
from stdnum.fr import nir as fr_nir
from stdnum.in_ import aadhaar as in_aadhaar
from stdnum.it import codicefiscale as it_cf
from stdnum.us import ssn as us_ssn

from llmloop.core.chat import ChatMessage
from llmloop.core.guards import GuardStage, GuardVerdict
from llmloop.errors import InvalidInputError
from llmloop.guards.base import Guard, GuardConfig
from llmloop.guards.pii_names import NameFinder

PiiKind = Literal[
    "email",
    "phone",
    "credit_card",
    "iban",
    "ssn",
    "national_id",
    "ip_address",
    "url_credentials",
    "secret",
    "person",
]
PII_KINDS: tuple[PiiKind, ...] = (
    "secret",
    "url_credentials",
    "email",
    "iban",
    "credit_card",
    "ssn",
    "national_id",
    "ip_address",
    "phone",
    "person",  # only with a name model; the least specific kind (a name inside an e-mail...)
)
PiiAction = Literal["redact", "mask", "pseudonymise"]


class PiiSpan(BaseModel):
    """One finding: its kind, character offsets in the text, the matched text and a confidence."""

    model_config = ConfigDict(frozen=True)

    kind: PiiKind = Field(description="What was found.")
    start: int = Field(ge=0, description="Offset of the first character.")
    end: int = Field(ge=0, description="Offset after the last character.")
    text: str = Field(description="The matched text.")
    score: float = Field(ge=0.0, le=1.0, description="1.0 when a checksum or format confirms it.")


class PiiConfig(BaseModel):
    """What the detector looks for."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kinds: list[PiiKind] = Field(
        default_factory=lambda: list(PII_KINDS), description="Kinds to detect; all by default."
    )
    phone_regions: list[str] = Field(
        default_factory=lambda: ["US", "GB", "DE", "FR", "IN"],
        description="Regions tried, in order, for phone numbers written without a '+' prefix.",
    )
    min_secret_entropy: float = Field(
        default=3.0, ge=0.0, description="Bits per character a generic key value must reach."
    )
    min_score: float = Field(default=0.5, ge=0.0, le=1.0, description="Drop weaker findings.")
    name_model: str | None = Field(
        default=None,
        description="A token-classification (NER) model, local directory or hub id, whose "
        "PER/PERSON entities are reported as 'person'; names are not detected without one.",
    )


_EMAIL = re.compile(
    r"(?<![\w.+-])[A-Za-z0-9][A-Za-z0-9._%+-]*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,24}\b"
)
_CARD = re.compile(r"(?<![\w-])(?:\d[ -]?){12,18}\d(?![\w-])")
_IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}\b")
_SSN = re.compile(r"(?<![\w-])\d{3}-\d{2}-\d{4}(?![\w-])")
_ES_ID = re.compile(r"\b[XYZ0-9]\d{7}[A-Z]\b")
_IT_CF = re.compile(r"\b[A-Z]{6}\d{2}[A-EHLMPR-T]\d{2}[A-Z]\d{3}[A-Z]\b")
_AADHAAR = re.compile(r"(?<![\w-])[2-9]\d{3} \d{4} \d{4}(?![\w-])")
_FR_NIR = re.compile(r"(?<![\w-])[12] ?\d{2} ?\d{2} ?\d{2} ?\d{3} ?\d{3} ?\d{2}(?![\w-])")
_IPV4 = re.compile(r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?![\w.]|\.\d)")
_IPV6 = re.compile(r"(?<![\w:])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![\w:])")
_VERSION_BEFORE = re.compile(r"(?:\bv|version|release|build|ver\.?)\s*$", re.IGNORECASE)
_URL_CREDS = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s/:@]+:[^\s/@]+@[^\s/?#]+")
_PHONE = re.compile(r"(?<![\w+-])\+?\(?\d[\d ().-]{5,18}\d(?![\w-])")
_DATE_LIKE = re.compile(r"^(?:19|20)\d{2}[-/.]|^\d{1,2}[-/.]\d{1,2}[-/.]\d{2,4}$")
# A number right after an identifier label is that identifier, not a phone number.
_ID_BEFORE = re.compile(
    r"\b(?:id|order|invoice|ref|reference|tracking|serial|batch|ticket|case|isbn|sku)\b"
    r"[\s#:.-]*(?:is|number|no\.?)?[\s#:.-]*$",
    re.IGNORECASE,
)
_SECRETS: list[tuple[re.Pattern[str], float]] = [
    (re.compile(r"\b(?:AKIA|ASIA)[A-Z0-9]{16}\b"), 1.0),
    (re.compile(r"\bgh[pousr]_[A-Za-z0-9]{36,255}\b"), 1.0),
    (re.compile(r"\bgithub_pat_[A-Za-z0-9_]{60,255}\b"), 1.0),
    (re.compile(r"\bsk-(?:proj-|ant-)?[A-Za-z0-9_-]{20,}"), 0.95),
    (re.compile(r"\bxox[abprs]-[A-Za-z0-9-]{10,}\b"), 1.0),
    (re.compile(r"\bAIza[0-9A-Za-z_-]{35}\b"), 1.0),
    (
        re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?-----END [A-Z ]*PRIVATE KEY-----"),
        1.0,
    ),
]
_KEYED_SECRET = re.compile(
    r"(?i)\b(?:api[_-]?key|apikey|secret(?:[_-]?key)?|access[_-]?token|auth[_-]?token|token|"
    r"password|passwd|pwd|private[_-]?key|client[_-]?secret)\b[\"']?\s*[:=]\s*[\"']?"
    r"(?P<value>[A-Za-z0-9_\-/+=.!@#$%^&*]{12,})"
)


def shannon_entropy(value: str) -> float:
    """Bits per character of ``value`` (0 for an empty string)."""
    if not value:
        return 0.0
    counts = Counter(value)
    total = len(value)
    return -sum(c / total * math.log2(c / total) for c in counts.values())


def _digits(text: str) -> str:
    return "".join(ch for ch in text if ch.isdigit())


def _card_ok(text: str) -> bool:
    digits = _digits(text)
    return 13 <= len(digits) <= 19 and digits[0] in "23456" and luhn.is_valid(digits)


def _national_id_ok(text: str) -> bool:
    compact = text.replace(" ", "")
    if len(compact) == 9 and compact[-1].isalpha():
        return bool(es_dni.is_valid(compact) or es_nie.is_valid(compact))
    if len(compact) == 16:
        return bool(it_cf.is_valid(compact))
    if len(compact) == 12:
        return bool(in_aadhaar.is_valid(compact))
    return len(compact) == 15 and bool(fr_nir.is_valid(compact))


def _ip_ok(text: str, full: str, start: int) -> bool:
    if _VERSION_BEFORE.search(full[max(0, start - 12) : start]):
        return False
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return False
    # "::" alone or "1::" style tokens are too often code; demand a real-looking address.
    return address.version == 4 or sum(ch.isalnum() for ch in text) >= 4


class PiiDetector:
    """Finds PII spans in text; overlapping findings keep the more specific kind."""

    def __init__(self, config: PiiConfig | None = None) -> None:
        self.config = config if config is not None else PiiConfig()
        self._kinds = set(self.config.kinds)
        self._names: NameFinder | None = None
        # Phone validation (phonenumbers' metadata, ~0.2 ms a candidate) depends only on the
        # candidate string: each distinct one is validated once (bounded, cleared when full).
        self._phones: dict[str, bool] = {}
        if self.config.name_model and "person" in self._kinds:
            self._names = NameFinder(self.config.name_model)
            self._names.load()  # a bad model path is a configuration error, raised now

    def _person(self, texts: list[str]) -> list[list[PiiSpan]]:
        assert self._names is not None
        return [
            [_span("person", start, end, text, score) for start, end, score in spans]
            for text, spans in zip(texts, self._names.find_batch(texts), strict=True)
        ]

    def find(self, text: str) -> list[PiiSpan]:
        """All findings in ``text``, sorted by offset, without overlaps."""
        if not isinstance(text, str):
            raise InvalidInputError(f"PII detection needs a string, got {type(text).__name__}")
        found = self._patterns(text)
        if self._names is not None:
            found.extend(self._person([text])[0])
        return _without_overlaps(s for s in found if s.score >= self.config.min_score)

    def _patterns(self, text: str) -> list[PiiSpan]:
        found: list[PiiSpan] = []
        for kind in _possible_kinds(text):
            if kind in self._kinds:
                found.extend(_FINDERS[kind](self, text))
        return found

    def kinds_in(self, text: str) -> Counter[str]:
        """How many findings of each kind ``text`` holds."""
        return Counter(span.kind for span in self.find(text))

    def _secret(self, text: str) -> list[PiiSpan]:
        spans = [
            _span("secret", m.start(), m.end(), text, score)
            for pattern, score in _SECRETS
            for m in pattern.finditer(text)
        ]
        for m in _KEYED_SECRET.finditer(text):
            value = m.group("value")
            entropy = shannon_entropy(value)
            if entropy >= self.config.min_secret_entropy and not value.isalpha():
                score = min(1.0, 0.5 + entropy / 10)
                spans.append(_span("secret", m.start("value"), m.end("value"), text, score))
        return spans

    def _url_credentials(self, text: str) -> list[PiiSpan]:
        return [
            _span("url_credentials", m.start(), m.end(), text, 1.0)
            for m in _URL_CREDS.finditer(text)
        ]

    def _email(self, text: str) -> list[PiiSpan]:
        if "@" not in text:
            return []
        return [_span("email", m.start(), m.end(), text, 1.0) for m in _EMAIL.finditer(text)]

    def _credit_card(self, text: str) -> list[PiiSpan]:
        return [
            _span("credit_card", m.start(), m.end(), text, 1.0)
            for m in _CARD.finditer(text)
            if _card_ok(m.group())
        ]

    def _iban(self, text: str) -> list[PiiSpan]:
        return [
            _span("iban", m.start(), m.end(), text, 1.0)
            for m in _IBAN.finditer(text)
            if std_iban.is_valid(m.group())
        ]

    def _ssn(self, text: str) -> list[PiiSpan]:
        return [
            _span("ssn", m.start(), m.end(), text, 0.95)
            for m in _SSN.finditer(text)
            if us_ssn.is_valid(m.group())
        ]

    def _national_id(self, text: str) -> list[PiiSpan]:
        return [
            _span("national_id", m.start(), m.end(), text, 1.0)
            for pattern in (_ES_ID, _IT_CF, _AADHAAR, _FR_NIR)
            for m in pattern.finditer(text)
            if _national_id_ok(m.group())
        ]

    def _ip_address(self, text: str) -> list[PiiSpan]:
        spans = []
        for pattern in (_IPV4, _IPV6) if ":" in text else (_IPV4,):
            for m in pattern.finditer(text):
                if _ip_ok(m.group(), text, m.start()):
                    spans.append(_span("ip_address", m.start(), m.end(), text, 1.0))
        return spans

    def _phone(self, text: str) -> list[PiiSpan]:
        spans = []
        for m in _PHONE.finditer(text):
            candidate = m.group()
            if len(_digits(candidate)) < 7 or _DATE_LIKE.match(candidate):
                continue
            if _ID_BEFORE.search(text[max(0, m.start() - 24) : m.start()]):
                continue
            valid = self._phones.get(candidate)
            if valid is None:
                if len(self._phones) >= _PHONE_MEMO:
                    self._phones.clear()
                valid = self._phones[candidate] = self._valid_phone(candidate)
            if valid:
                spans.append(_span("phone", m.start(), m.end(), text, 0.9))
        return spans

    def _valid_phone(self, candidate: str) -> bool:
        """A number valid as written: phonenumbers' VALID leniency also wants the national
        prefix where a region's numbers are written with one (``0171 …`` in Germany, not
        ``171 …``). Ten bare digits from 1 are Unix times in seconds (2001 to 2033), as are
        thirteen in milliseconds, not phone numbers."""
        if _EPOCH_LIKE.match(candidate):
            return False
        regions = ["ZZ"] if candidate.startswith("+") else self.config.phone_regions
        for region in regions:
            for match in phonenumbers.PhoneNumberMatcher(
                candidate, region, leniency=phonenumbers.Leniency.VALID
            ):
                if match.start == 0 and match.end == len(candidate):
                    return True
        return False


_PHONE_MEMO = 100_000
_EPOCH_LIKE = re.compile(r"^1\d{9}(?:\d{3})?$")
_NO_DIGITS = str.maketrans("", "", "0123456789")
_SECRET_HINTS = (
    "AKIA",
    "ASIA",
    "ghp_",
    "gho_",
    "ghu_",
    "ghs_",
    "ghr_",
    "github_pat_",
    "sk-",
    "xox",
    "AIza",
    "-----BEGIN",
)


_KEYED_HINT = re.compile(r"(?i:key|secret|token|passw|pwd)\w*[\"']?\s*[:=]")
_DIGIT = re.compile(r"\d")


def _possible_kinds(text: str) -> list[str]:
    """Kinds worth a regex scan: cheap C-level tests rule most out (most text has no PII)."""
    has_digit = _DIGIT.search(text) is not None
    digits = len(text) - len(text.translate(_NO_DIGITS)) if has_digit else 0
    kinds = []
    keyed = ("=" in text or ":" in text) and _KEYED_HINT.search(text)
    if keyed or any(h in text for h in _SECRET_HINTS):
        kinds.append("secret")
    if "@" in text:
        kinds.extend(("url_credentials", "email") if "://" in text else ("email",))
    if digits >= 7:
        kinds.extend(("iban", "credit_card", "ssn", "national_id"))
    if (digits >= 4 and "." in text) or text.count(":") >= 2:
        kinds.append("ip_address")
    if digits >= 7:
        kinds.append("phone")
    return kinds


#: An RE2 (pyarrow) and Python pattern that every text with a possible finding matches: an ASCII
#: digit, '@', ':', '=' or a secret prefix (``_possible_kinds`` needs one of them). Batch callers
#: test a whole column with it in C and call ``find`` on the matching rows only.
PII_PREFILTER = "[0-9@:=]|" + "|".join(re.escape(h) for h in _SECRET_HINTS)


def find_in_batch(
    detector: PiiDetector, texts: list[str], column: Any = None
) -> dict[int, list[PiiSpan]]:
    """``detector.find`` over ``texts``, skipping rows ``PII_PREFILTER`` rules out; index -> spans.

    The filter runs once over the whole batch in pyarrow (C++): most rows hold no digit, '@',
    ':' or '=' at all, and those never reach the Python regexes. ``column``: the texts as a
    pyarrow string array when the caller has one (else it is built here).
    """
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    if not texts:
        return {}
    if column is None:
        try:
            # Built from buffers: pa.array(list) and to_numpy() import pandas (about 0.4 s).
            encoded = [t.encode() for t in texts]
        except UnicodeEncodeError:  # lone surrogates cannot become UTF-8: scan every row
            pass
        else:
            offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
            lengths = np.fromiter(map(len, encoded), dtype=np.int64, count=len(texts))
            np.cumsum(lengths, out=offsets[1:])
            column = pa.LargeStringArray.from_buffers(
                len(texts), pa.py_buffer(offsets), pa.py_buffer(b"".join(encoded))
            )
    if column is None:
        maybe = np.ones(len(texts), dtype=bool)
    else:
        matches = pc.match_substring_regex(column, PII_PREFILTER)
        bits = np.unpackbits(np.frombuffer(matches.buffers()[1], dtype=np.uint8), bitorder="little")
        maybe = bits[matches.offset : matches.offset + len(texts)].astype(bool)
    raw: dict[int, list[PiiSpan]] = {}
    for index in np.flatnonzero(maybe).tolist():
        spans = detector._patterns(texts[index])
        if spans:
            raw[index] = spans
    if detector._names is not None:  # a name needs none of the prefilter's characters
        for index, spans in enumerate(detector._person(texts)):
            if spans:
                raw.setdefault(index, []).extend(spans)
    found = {}
    for index, spans in raw.items():
        kept = _without_overlaps(s for s in spans if s.score >= detector.config.min_score)
        if kept:
            found[index] = kept
    return found


_FINDERS: dict[str, Callable[[PiiDetector, str], list[PiiSpan]]] = {
    "secret": PiiDetector._secret,
    "url_credentials": PiiDetector._url_credentials,
    "email": PiiDetector._email,
    "credit_card": PiiDetector._credit_card,
    "iban": PiiDetector._iban,
    "ssn": PiiDetector._ssn,
    "national_id": PiiDetector._national_id,
    "ip_address": PiiDetector._ip_address,
    "phone": PiiDetector._phone,
}


def _span(kind: PiiKind, start: int, end: int, text: str, score: float) -> PiiSpan:
    return PiiSpan(kind=kind, start=start, end=end, text=text[start:end], score=score)


def _without_overlaps(spans: Iterable[PiiSpan]) -> list[PiiSpan]:
    # Earlier kinds in PII_KINDS are more specific (a key inside a URL, a card before a phone).
    rank = {kind: i for i, kind in enumerate(PII_KINDS)}
    chosen: list[PiiSpan] = []
    for span in sorted(spans, key=lambda s: (rank[s.kind], s.start, -(s.end - s.start))):
        if all(span.end <= c.start or span.start >= c.end for c in chosen):
            chosen.append(span)
    return sorted(chosen, key=lambda s: s.start)


class PseudonymVault:
    """Token -> original value, kept by an authorised holder to reverse pseudonymisation."""

    def __init__(self) -> None:
        self._originals: dict[str, str] = {}

    def record(self, token: str, original: str) -> None:
        """Remember what ``token`` stands for."""
        self._originals[token] = original

    def lookup(self, token: str) -> str:
        """The original value of ``token``; ``InvalidInputError`` when it is unknown."""
        try:
            return self._originals[token]
        except KeyError:
            raise InvalidInputError(f"unknown pseudonym token {token!r}")

    def reveal(self, text: str) -> str:
        """``text`` with every known token replaced by its original value."""
        return _TOKEN.sub(lambda m: self._originals.get(m.group(), m.group()), text)

    def as_dict(self) -> dict[str, str]:
        """A copy of the mapping (to store encrypted or hand to the authorised holder)."""
        return dict(self._originals)

    def __len__(self) -> int:
        return len(self._originals)


_TOKEN = re.compile(r"<[A-Z_]+_[0-9a-f]{8,}>")


def pseudonym(kind: str, value: str, key: bytes) -> str:
    """The keyed token for ``value``: the same value and key always give the same token."""
    digest = hmac.new(key, f"{kind}\x00{value}".encode(), hashlib.sha256).hexdigest()
    return f"<{kind.upper()}_{digest[:8]}>"


def mask_value(value: str, keep: int = 4) -> str:
    """Letters and digits replaced by ``*`` except the last ``keep`` of them; separators stay."""
    total = sum(ch.isalnum() for ch in value)
    seen = 0
    out = []
    for ch in value:
        if ch.isalnum():
            seen += 1
            out.append(ch if seen > total - keep else "*")
        else:
            out.append(ch)
    return "".join(out)


def apply_pii_policy(
    text: str,
    spans: list[PiiSpan],
    action: PiiAction,
    key: bytes | str | None = None,
    vault: PseudonymVault | None = None,
) -> str:
    """``text`` with each span redacted (``[EMAIL]``), masked or replaced by a keyed pseudonym."""
    if action == "pseudonymise" and not key:
        raise InvalidInputError("pseudonymise needs a secret key from the caller")
    if action not in ("redact", "mask", "pseudonymise"):
        raise InvalidInputError(f"unknown PII action {action!r}; use redact, mask or pseudonymise")
    raw_key = key.encode() if isinstance(key, str) else key
    pieces: list[str] = []
    cursor = 0
    for span in sorted(spans, key=lambda s: s.start):
        if span.start < cursor or span.end > len(text) or text[span.start : span.end] != span.text:
            raise InvalidInputError(f"span {span.kind}@{span.start} does not match the text")
        pieces.append(text[cursor : span.start])
        if action == "redact":
            pieces.append(f"[{span.kind.upper()}]")
        elif action == "mask":  # an address's last digits are most of it: none are kept
            pieces.append(mask_value(span.text, 0 if span.kind == "ip_address" else 4))
        else:
            assert raw_key is not None
            token = pseudonym(span.kind, span.text, raw_key)
            if vault is not None:
                vault.record(token, span.text)
            pieces.append(token)
        cursor = span.end
    pieces.append(text[cursor:])
    return "".join(pieces)


class PiiGuardConfig(GuardConfig):
    kinds: list[PiiKind] = Field(
        default_factory=lambda: list(PII_KINDS), description="Kinds of PII the guard looks for."
    )
    action: Literal["block", "redact", "flag"] = Field(
        default="redact", description="What to do when PII is found."
    )
    check_input: bool = Field(default=True, description="Check the request messages.")
    check_output: bool = Field(default=True, description="Check the generated text.")
    phone_regions: list[str] = Field(
        default_factory=lambda: ["US", "GB", "DE", "FR", "IN"],
        description="Regions tried for phone numbers written without a '+' prefix.",
    )
    name_model: str | None = Field(
        default=None, description="A token-classification model for personal names (optional)."
    )


class PiiGuard(Guard):
    """Blocks, redacts or flags requests and responses carrying PII; one verdict per kind."""

    name = "pii"
    config_cls = PiiGuardConfig
    config: PiiGuardConfig
    window_chars = 1024

    def __init__(self, config: PiiGuardConfig | None = None) -> None:
        super().__init__(config)
        self.detector = PiiDetector(
            PiiConfig(
                kinds=self.config.kinds,
                phone_regions=self.config.phone_regions,
                name_model=self.config.name_model,
            )
        )

    def _verdicts(self, text: str, stage: GuardStage) -> list[GuardVerdict]:
        spans = self.detector.find(text)
        if not spans:
            return []
        redacted = (
            apply_pii_policy(text, spans, "redact") if self.config.action == "redact" else None
        )
        counts = Counter(s.kind for s in spans)
        return [
            GuardVerdict(
                guard=self.name,
                rule_id=f"pii.{kind}",
                action=self.config.action,
                stage=stage,
                reason=f"{count} {kind} finding(s)",
                score=max(s.score for s in spans if s.kind == kind),
                redacted=redacted,
            )
            for kind, count in sorted(counts.items())
        ]

    def check_input(self, messages: list[ChatMessage]) -> list[GuardVerdict]:
        if not self.config.check_input:
            return []
        return self._verdicts("\n".join(m.content for m in messages), "input")

    def check_output(self, text: str, final: bool) -> list[GuardVerdict]:
        if not self.config.check_output:
            return []
        return self._verdicts(text, "output")
