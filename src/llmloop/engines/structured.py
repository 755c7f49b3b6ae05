"""Structured output: OpenAI ``response_format`` as an xgrammar grammar that masks decoding.

``grammar_spec`` reads a ``response_format`` (``text``, ``json_object``, ``json_schema``) into
the JSON schema to follow, or None for free text. ``Grammars`` compiles that schema for one
engine's tokenizer (off the event loop, cached by a digest of the schema) and hands out a fresh
``RowGrammar`` (an xgrammar matcher) per request. ``TokenMask`` is the decode batch's one token
bitmask: each step it is filled for the constrained rows only and applied to their logits, so
everything disallowed gets -inf before sampling. Everything is compiled with fixed separators
and no free whitespace (``any_whitespace=False``): a weak model cannot loop on blanks.

``json_object`` is compiled as the schema ``{"type": "object"}`` (any properties), not as
xgrammar's built-in JSON grammar: OpenAI promises an object, and the built-in grammar allows
arrays and unbounded whitespace. ``json_schema`` is compiled in xgrammar's strict mode (no
properties the schema does not name unless it says ``additionalProperties``), which every
schema accepts and weak models need. ``Grammars`` compiles any ``GrammarSource`` (a digest and
a ``compile``): forced tool calls (``tool_grammar.py``) share its cache and masking. This module
does not run models or sample: the decode loop (``hf_worker.py``) asks it for masks and feeds it
the sampled tokens.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import importlib.util
import json
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from llmloop.errors import BadRequestError, MissingExtraError, require_extra

if TYPE_CHECKING:
    import torch

_CACHE_SIZE = 64  # compiled grammars kept per engine (a big vocabulary makes each a few MB)
ANY_OBJECT = '{"type": "object"}'  # what json_object and tools without parameters take
_LOG_PREFIX = re.compile(r"^\[[\d:]+\] \S+:\d+: (Check failed: .*? is false: )?")


@functools.cache
def structured_available() -> bool:
    """Whether xgrammar is installed (the ``structured`` extra)."""
    return importlib.util.find_spec("xgrammar") is not None


def xgrammar_reason(exc: Exception) -> str:
    """An xgrammar error message without its C++ log prefix."""
    return _LOG_PREFIX.sub("", str(exc).strip())


class GrammarSource(Protocol):
    """Something ``Grammars`` can compile: a cache key, the request field it came from, a build."""

    param: ClassVar[str]  # the request field a bad grammar is blamed on (400s)

    @property
    def digest(self) -> str: ...

    def compile(self, compiler: Any) -> Any:
        """Build the xgrammar ``CompiledGrammar`` (in a worker thread); bad input: 400."""
        ...


@dataclass(frozen=True)
class GrammarSpec:
    """What to constrain a row to: a JSON schema (text) and whether it is strict."""

    param: ClassVar[str] = "response_format"
    schema: str
    strict: bool

    @property
    def digest(self) -> str:
        return hashlib.sha256(f"{self.strict}\n{self.schema}".encode()).hexdigest()

    def compile(self, compiler: Any) -> Any:
        try:
            return compiler.compile_json_schema(
                self.schema, any_whitespace=False, strict_mode=self.strict
            )
        except (RuntimeError, ValueError) as exc:
            reason = xgrammar_reason(exc)
            raise _bad(f"response_format has a schema xgrammar cannot use: {reason}") from None


def grammar_spec(response_format: dict[str, Any] | None) -> GrammarSpec | None:
    """The grammar ``response_format`` asks for; None for free text. Bad shapes: 400."""
    if response_format is None:
        return None
    kind = response_format.get("type")
    if kind == "text":
        return None
    if kind == "json_object":
        return GrammarSpec(ANY_OBJECT, strict=False)
    if kind != "json_schema":
        raise _bad(f"response_format.type must be text, json_object or json_schema, not {kind!r}")
    body = response_format.get("json_schema")
    if not isinstance(body, dict):
        raise _bad("response_format json_schema needs a 'json_schema' object with a 'schema'")
    schema = body.get("schema", {"type": "object"})
    if not isinstance(schema, dict):
        raise _bad("response_format.json_schema.schema must be a JSON Schema object")
    return GrammarSpec(json.dumps(schema, sort_keys=True, separators=(",", ":")), strict=True)


def _bad(detail: str) -> BadRequestError:
    return BadRequestError(detail, param="response_format")


class RowGrammar:
    """One row's place in its grammar (an xgrammar ``GrammarMatcher``); the worker thread's."""

    __slots__ = ("matcher",)

    def __init__(self, matcher: Any) -> None:
        self.matcher = matcher

    def fill(self, bitmask: torch.Tensor, index: int) -> bool:
        """Write the allowed next tokens into ``bitmask[index]``; False: all are allowed."""
        return bool(self.matcher.fill_next_token_bitmask(bitmask, index))

    def accept(self, token: int) -> bool:
        """Advance past ``token``; False when the grammar does not allow it."""
        return bool(self.matcher.accept_token(token))

    @property
    def finished(self) -> bool:
        """The grammar is complete and a stop token was accepted: nothing may follow."""
        return bool(self.matcher.is_terminated())


class Grammars:
    """Compiles response formats for one tokenizer; the compiler is built on first use."""

    def __init__(self, tokenizer: Any, vocab_size: int, stop_ids: set[int]) -> None:
        self.tokenizer = tokenizer
        self.vocab_size = vocab_size
        self.stop_ids = sorted(stop_ids)
        self._compiler: Any = None
        self._lock = threading.Lock()
        self._cache: OrderedDict[str, Any] = OrderedDict()  # digest -> CompiledGrammar

    async def row_grammar(self, spec: GrammarSource | None) -> RowGrammar | None:
        """A fresh matcher for ``spec`` (None: free text); bad grammars or no xgrammar: 400."""
        if spec is None:
            return None
        try:
            require_extra("xgrammar", "structured", "response_format json_object / json_schema")
        except MissingExtraError as exc:
            raise BadRequestError(exc.detail, param=spec.param) from None
        compiled: Any = self._cache.get(spec.digest)
        if compiled is None:
            compiled = await asyncio.to_thread(self._compile, spec)
            self._cache[spec.digest] = compiled
            while len(self._cache) > _CACHE_SIZE:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(spec.digest)
        import xgrammar as xgr

        return RowGrammar(xgr.GrammarMatcher(compiled))

    def _compile(self, spec: GrammarSource) -> Any:
        """Runs in a worker thread: the compiler is built on first use, then ``spec`` compiled."""
        return spec.compile(self._get_compiler())

    def _get_compiler(self) -> Any:
        with self._lock:
            if self._compiler is None:
                import xgrammar as xgr

                info = xgr.TokenizerInfo.from_huggingface(
                    self.tokenizer, vocab_size=self.vocab_size, stop_token_ids=self.stop_ids or None
                )
                # Our own cache (by digest) sits in front; xgrammar's would hold a second copy.
                self._compiler = xgr.GrammarCompiler(info, cache_enabled=False)
            return self._compiler


class TokenMask:
    """The decode batch's token bitmask, filled and applied for constrained rows only."""

    def __init__(self, vocab_size: int) -> None:
        self.vocab_size = vocab_size
        self.bitmask: torch.Tensor | None = None

    def apply(self, logits: torch.Tensor, grammars: list[tuple[int, RowGrammar]]) -> None:
        """Set the logits of tokens the grammars forbid to -inf, in place (rows by index)."""
        import xgrammar as xgr

        rows = logits.shape[0]
        if self.bitmask is None or self.bitmask.shape[0] < rows:
            self.bitmask = xgr.allocate_token_bitmask(max(rows, 8), self.vocab_size)
        bitmask = self.bitmask
        indices = [i for i, grammar in grammars if grammar.fill(bitmask, i)]
        if not indices:
            return
        if logits.device.type != "cpu":
            bitmask = bitmask.to(logits.device, non_blocking=True)
        xgr.apply_token_bitmask_inplace(
            logits, bitmask, vocab_size=self.vocab_size, indices=indices
        )
