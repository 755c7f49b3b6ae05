"""PII detection, policies and the PII guard, including precision/recall on a labelled corpus."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llmloop.core.chat import ChatMessage
from llmloop.errors import InvalidInputError
from llmloop.guards.pii import (
    PiiConfig,
    PiiDetector,
    PiiGuard,
    PiiGuardConfig,
    PiiSpan,
    PseudonymVault,
    apply_pii_policy,
    mask_value,
    pseudonym,
    shannon_entropy,
)

CORPUS = Path(__file__).parents[2] / "fixtures" / "data" / "pii_labelled.jsonl"


@pytest.fixture(scope="module")
def detector() -> PiiDetector:
    return PiiDetector()


@pytest.mark.parametrize(
    ("text", "kind", "value"),
    [
        ("mail john.doe@example.com now", "email", "john.doe@example.com"),
        ("call +1 415-555-0132 today", "phone", "+1 415-555-0132"),
        ("card 4111 1111 1111 1111 ok", "credit_card", "4111 1111 1111 1111"),
        ("iban DE89 3704 0044 0532 0130 00.", "iban", "DE89 3704 0044 0532 0130 00"),
        ("ssn 123-45-6789", "ssn", "123-45-6789"),
        ("dni 12345678Z", "national_id", "12345678Z"),
        ("cf RSSMRA85T10A562S", "national_id", "RSSMRA85T10A562S"),
        ("aadhaar 2345 6789 0124", "national_id", "2345 6789 0124"),
        ("from 192.168.1.20 today", "ip_address", "192.168.1.20"),
        ("from 2001:db8::8a2e:370:7334 today", "ip_address", "2001:db8::8a2e:370:7334"),
        (
            "dsn https://bob:hunter2@db.example.com/x",
            "url_credentials",
            "https://bob:hunter2@db.example.com",
        ),
        ("key AKIAIOSFODNN7EXAMPLE leaked", "secret", "AKIAIOSFODNN7EXAMPLE"),
        ("use sk-proj-abcdefghij1234567890XYZ", "secret", "sk-proj-abcdefghij1234567890XYZ"),
        ("tok ghp_" + "a1B2" * 9, "secret", "ghp_" + "a1B2" * 9),
        ("api_key=Zx9Qw8Er7Ty6Ui5Op4As", "secret", "Zx9Qw8Er7Ty6Ui5Op4As"),
    ],
)
def test_finds_each_kind(detector: PiiDetector, text: str, kind: str, value: str) -> None:
    spans = detector.find(text)
    assert [(s.kind, s.text) for s in spans] == [(kind, value)]
    assert text[spans[0].start : spans[0].end] == value


@pytest.mark.parametrize(
    "text",
    [
        "version 1.2.3.4 is out",
        "order 12345678 on 2024-05-01 at 10:30:00",
        "card 4111 1111 1111 1112 fails Luhn",
        "ssn 000-12-3456 is not issued",
        "iban DE00 3704 0044 0532 0130 00 has a bad check",
        "password: hunter",
        "std::vector<int>",
        "created_at 1715939400 in the log",  # Unix seconds, not a German or Indian number
        "ts=1715939400123 ms",  # and milliseconds
    ],
)
def test_ignores_lookalikes(detector: PiiDetector, text: str) -> None:
    assert detector.find(text) == []


def test_overlaps_keep_the_more_specific_kind(detector: PiiDetector) -> None:
    spans = detector.find("postgresql://svc:pa55word@db1.example.net and a@b.co")
    assert [s.kind for s in spans] == ["url_credentials", "email"]


def test_kinds_can_be_limited() -> None:
    only_email = PiiDetector(PiiConfig(kinds=["email"]))
    assert [s.kind for s in only_email.find("a@b.co 123-45-6789")] == ["email"]


def test_non_string_is_refused(detector: PiiDetector) -> None:
    with pytest.raises(InvalidInputError):
        detector.find(123)  # type: ignore[arg-type]


def test_labelled_corpus_precision_and_recall(detector: PiiDetector) -> None:
    tp = fp = fn = 0
    kinds_seen = set()

    def same(a: tuple[str, str], b: tuple[str, str]) -> bool:
        return a[0] == b[0] and (a[1] in b[1] or b[1] in a[1])

    for line in CORPUS.read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        gold = [(p["kind"], p["text"]) for p in record["pii"]]
        got = [(s.kind, s.text) for s in detector.find(record["text"])]
        kinds_seen.update(k for k, _ in gold)
        tp += sum(any(same(g, f) for f in got) for g in gold)
        fn += sum(not any(same(g, f) for f in got) for g in gold)
        fp += sum(not any(same(f, g) for g in gold) for f in got)
    assert len(kinds_seen) == 9
    assert tp / (tp + fn) >= 0.98
    assert tp / (tp + fp) >= 0.99


def test_redact_mask_and_pseudonymise(detector: PiiDetector) -> None:
    text = "mail a.b@example.com, card 4111 1111 1111 1111"
    spans = detector.find(text)
    assert apply_pii_policy(text, spans, "redact") == "mail [EMAIL], card [CREDIT_CARD]"
    assert apply_pii_policy(text, spans, "mask").endswith("card **** **** **** 1111")
    vault = PseudonymVault()
    once = apply_pii_policy(text, spans, "pseudonymise", key="k1", vault=vault)
    again = apply_pii_policy(text, spans, "pseudonymise", key=b"k1")
    other = apply_pii_policy(text, spans, "pseudonymise", key="k2")
    assert once == again != other
    assert "<EMAIL_" in once and "example.com" not in once
    assert vault.reveal(once) == text
    assert len(vault) == 2
    token = pseudonym("email", "a.b@example.com", b"k1")
    assert vault.lookup(token) == "a.b@example.com"
    with pytest.raises(InvalidInputError):
        vault.lookup("<EMAIL_00000000>")


def test_policy_errors(detector: PiiDetector) -> None:
    text = "mail a.b@example.com"
    spans = detector.find(text)
    with pytest.raises(InvalidInputError, match="key"):
        apply_pii_policy(text, spans, "pseudonymise")
    with pytest.raises(InvalidInputError, match="unknown PII action"):
        apply_pii_policy(text, spans, "shred")  # type: ignore[arg-type]
    wrong = PiiSpan(kind="email", start=0, end=4, text="nope", score=1.0)
    with pytest.raises(InvalidInputError, match="does not match"):
        apply_pii_policy(text, [wrong], "redact")


def test_mask_and_entropy_helpers() -> None:
    assert mask_value("555-0132") == "***-0132"
    assert shannon_entropy("") == 0.0
    assert shannon_entropy("aaaa") == 0.0
    assert shannon_entropy("abcd") == pytest.approx(2.0)


def test_guard_redacts_blocks_and_flags() -> None:
    messages = [ChatMessage(role="user", content="I am at 10.0.0.7, mail me: x@y.org")]
    verdicts = PiiGuard().check_input(messages)
    assert [v.rule_id for v in verdicts] == ["pii.email", "pii.ip_address"]
    assert verdicts[0].redacted == "I am at [IP_ADDRESS], mail me: [EMAIL]"
    blocked = PiiGuard(PiiGuardConfig(action="block", kinds=["email"])).check_output(
        "x@y.org", final=True
    )
    assert [(v.action, v.stage, v.redacted) for v in blocked] == [("block", "output", None)]
    assert PiiGuard(PiiGuardConfig(check_input=False)).check_input(messages) == []
    assert PiiGuard(PiiGuardConfig(check_output=False)).check_output("x@y.org", final=True) == []
    assert PiiGuard().check_output("nothing personal here", final=True) == []


@settings(max_examples=60, deadline=None)
@given(
    st.text(alphabet="abc XYZ.,", max_size=20),
    st.sampled_from(["a.b@example.com", "4111 1111 1111 1111", "10.1.2.3"]),
    st.text(alphabet="abc XYZ.,", max_size=20),
)
def test_policies_keep_the_rest_of_the_text(before: str, value: str, after: str) -> None:
    text = f"{before} {value} {after}"
    spans = PiiDetector().find(text)
    assert [s.text for s in spans] == [value]
    masked = apply_pii_policy(text, spans, "mask")
    assert len(masked) == len(text) and masked.startswith(f"{before} ") and masked.endswith(after)
    vault = PseudonymVault()
    assert vault.reveal(apply_pii_policy(text, spans, "pseudonymise", key="k", vault=vault)) == text


@settings(max_examples=200, deadline=None)
@given(
    st.text(alphabet=st.sampled_from(list("ab @:=-_.0123456789AKIghpskxoSEzBGN\n")), max_size=60)
)
def test_batch_prefilter_never_hides_a_finding(text: str) -> None:
    import re

    from llmloop.guards.pii import PII_PREFILTER, find_in_batch

    detector = PiiDetector()
    spans = detector.find(text)
    if spans:
        assert re.search(PII_PREFILTER, text)
    assert find_in_batch(detector, ["plain words", text]).get(1, []) == spans


def test_batch_finds_the_same_as_rows_on_the_labelled_corpus(detector: PiiDetector) -> None:
    from llmloop.guards.pii import find_in_batch

    texts = [json.loads(line)["text"] for line in CORPUS.read_text().splitlines() if line.strip()]
    batch = find_in_batch(detector, texts)
    assert batch == {i: s for i, t in enumerate(texts) if (s := detector.find(t))}


@pytest.mark.parametrize(
    "number",
    ["(415) 555-2671", "4155552671", "1-415-555-2671", "020 7946 0958", "0171 5939400",
     "01 42 68 53 00", "98765 43210", "+49 171 5939400", "+44 20 7946 0958"],
)  # fmt: skip
def test_phone_numbers_as_people_write_them(detector: PiiDetector, number: str) -> None:
    spans = detector.find(f"call me on {number} please")
    assert [(s.kind, s.text) for s in spans] == [("phone", number)]


def test_masking_an_address_keeps_none_of_it(detector: PiiDetector) -> None:
    text = "from 10.0.0.1 and 2001:db8::1"
    masked = apply_pii_policy(text, detector.find(text), "mask")
    assert masked == "from **.*.*.* and ****:***::*"
