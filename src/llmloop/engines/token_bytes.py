"""The raw bytes of one token, for logprobs of tokens that hold part of a character.

Decoding such a token alone gives "\\ufffd", whose UTF-8 is not the token's bytes, so a client
cannot join a logprobs list back into the text (OpenAI's ``bytes`` field exists for this). The
bytes come from the vocabulary itself: a byte-level BPE token (GPT-2, Llama 3, Qwen: the
printable stand-ins of ``bytes_to_unicode``) maps back character by character, and a
sentencepiece byte-fallback token is ``<0xNN>``. Any other tokenizer answers None, and the
decoded text stands.
"""

from __future__ import annotations

import functools
import re
from typing import Any

_BYTE_FALLBACK = re.compile(r"^<0x([0-9A-Fa-f]{2})>$")


@functools.cache
def _unicode_to_byte() -> dict[str, int]:
    """The inverse of GPT-2's byte -> printable character table (``bytes_to_unicode``, which
    transformers has moved between modules across versions): printable Latin-1 bytes stand for
    themselves, the other 68 bytes for the characters from U+0100 up, in byte order."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1),
                 *range(ord("®"), ord("ÿ") + 1)]  # fmt: skip
    table = {chr(b): b for b in printable}
    shifted = 0
    for b in range(256):
        if b not in printable:
            table[chr(256 + shifted)] = b
            shifted += 1
    return table


class TokenBytes:
    """Token id -> its bytes, for one tokenizer (memoised: a vocabulary is fixed)."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self._known: dict[int, list[int] | None] = {}

    def of(self, token_id: int) -> list[int] | None:
        if token_id not in self._known:
            self._known[token_id] = self._lookup(token_id)
        return self._known[token_id]

    def _lookup(self, token_id: int) -> list[int] | None:
        try:
            piece = self.tokenizer.convert_ids_to_tokens(token_id)
        except (AttributeError, IndexError, KeyError, TypeError, ValueError):
            return None
        if not isinstance(piece, str) or not piece:
            return None
        fallback = _BYTE_FALLBACK.match(piece)
        if fallback is not None:
            return [int(fallback.group(1), 16)]
        table = _unicode_to_byte()
        if all(char in table for char in piece):
            return [table[char] for char in piece]
        return None
