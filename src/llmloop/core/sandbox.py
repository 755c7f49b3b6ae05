"""The Jinja2 sandbox templates render in (prompts, LLM-judge templates, data augmentation),
with bounds on what one template may build.

Jinja's ``ImmutableSandboxedEnvironment`` stops attribute escapes (``__class__``, ``__globals__``)
and ranges over 100,000 items, but a one-line template can still ask for gigabytes or hours:
``{{ "x" * 10**10 }}``, ``{{ "x"|center(10**10) }}``, ``{{ "%999999999d" % 1 }}`` or
``{{ 99999 ** 99999 ** 9 }}`` (which Jinja would even fold into a constant while merely reading
the template). Templates render in the gateway too, so this environment intercepts ``*``, ``**``
and ``%`` (which also stops that folding), bounds the width arguments of padding filters and
string methods, and caps the rendered text; every breach is a ``SecurityError`` that the prompt
service reports as a refused template. It does not bound loop time: nested loops over large
ranges stay slow (templates are written by editors, not by callers).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from typing import Any

from jinja2 import StrictUndefined, Template
from jinja2.exceptions import SecurityError
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment

MAX_OUTPUT_CHARS = 2_000_000  # longest rendered prompt
MAX_BUILT = 1_000_000  # most characters or items one operation may build
MAX_INT_BITS = 14_000  # about the 4,300 digits Python will print
_WIDE_FORMAT = re.compile(r"%[-+ #0]*\d{7,}|%[-+ #0]*\d*\.\d{7,}|\{[^{}]*:[^{}]*\d{7,}[^{}]*\}")
_PADDING_METHODS = {"center", "ljust", "rjust", "zfill", "expandtabs"}
_WIDTH_FILTERS = ("center", "indent")  # a width argument pads the text out to it


def _refuse_large(
    args: tuple[Any, ...], kwargs: dict[str, Any], what: str, widths: bool = True
) -> None:
    """Refuse width arguments over ``MAX_BUILT`` (``widths``) and format strings asking for
    one; plain values being formatted are never judged by size."""
    for value in (*args, *kwargs.values()):
        is_int = isinstance(value, int) and not isinstance(value, bool)
        if widths and is_int and abs(value) > MAX_BUILT:
            raise SecurityError(f"{what}: {value} is larger than the {MAX_BUILT} allowed")
        if isinstance(value, str) and _WIDE_FORMAT.search(value):
            raise SecurityError(f"{what}: a format width over {MAX_BUILT} is not allowed")


def _bounded_filter(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(function)
    def bounded(*args: Any, **kwargs: Any) -> Any:
        if name == "format":  # the value (args[0]) is the format string
            _refuse_large(args[:1], {}, "filter format", widths=False)
        else:
            _refuse_large(args[1:], kwargs, f"filter {name}")
        return function(*args, **kwargs)

    return bounded


def _check_multiply(left: Any, right: Any) -> None:
    for seq, times in ((left, right), (right, left)):
        repeat = isinstance(seq, str | list | tuple) and isinstance(times, int)
        if repeat and len(seq) * times > MAX_BUILT:
            raise SecurityError(f"repeating a sequence past {MAX_BUILT} items is not allowed")
    numbers = isinstance(left, int) and isinstance(right, int)
    if numbers and left.bit_length() + right.bit_length() > MAX_INT_BITS:
        raise SecurityError("the product is too large a number")


def _check_power(base: Any, exponent: Any) -> None:
    numbers = isinstance(base, int) and isinstance(exponent, int)
    if numbers and abs(base) > 1 and exponent > 0 and base.bit_length() * exponent > MAX_INT_BITS:
        raise SecurityError("the power is too large a number")


def _check_format_source(obj: Any, attribute: Any) -> None:
    if isinstance(obj, str) and attribute in ("format", "format_map"):
        _refuse_large((obj,), {}, f"str.{attribute}", widths=False)


class BoundedSandbox(ImmutableSandboxedEnvironment):
    """The immutable sandbox, strict about undefined variables, with the bounds above."""

    intercepted_binops = frozenset({"*", "**", "%"})

    def __init__(self, keep_trailing_newline: bool = False) -> None:
        super().__init__(
            undefined=StrictUndefined, autoescape=False, keep_trailing_newline=keep_trailing_newline
        )
        for name in (*_WIDTH_FILTERS, "format"):
            self.filters[name] = _bounded_filter(name, self.filters[name])

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        if operator == "*":
            _check_multiply(left, right)
        elif operator == "**":
            _check_power(left, right)
        elif operator == "%" and isinstance(left, str):
            _refuse_large((left,), {}, "'%' formatting", widths=False)
        return super().call_binop(context, operator, left, right)

    def getattr(self, obj: Any, attribute: str) -> Any:
        _check_format_source(obj, attribute)
        return super().getattr(obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:  # x["format"] reaches the method too
        _check_format_source(obj, argument)
        return super().getitem(obj, argument)

    def call(
        __self,  # Jinja's own signature: keyword arguments may be called 'self'
        __context: Context,
        __obj: Any,
        *args: Any,
        **kwargs: Any,
    ) -> Any:
        owner = getattr(__obj, "__self__", None)
        if isinstance(owner, str) and getattr(__obj, "__name__", "") in _PADDING_METHODS:
            _refuse_large(args, kwargs, f"str.{__obj.__name__}")
        return super().call(__context, __obj, *args, **kwargs)


def render_bounded(environment: BoundedSandbox, template: str, variables: dict[str, Any]) -> str:
    """Render ``template``, refusing output over ``MAX_OUTPUT_CHARS`` as it is produced."""
    return render_compiled(environment.from_string(template), variables)


def render_compiled(template: Template, variables: dict[str, Any]) -> str:
    """Render a template compiled by a :class:`BoundedSandbox`, refusing output over
    ``MAX_OUTPUT_CHARS`` as it is produced."""
    parts: list[str] = []
    size = 0
    for part in template.generate(**variables):
        size += len(part)
        if size > MAX_OUTPUT_CHARS:
            raise SecurityError(f"the rendered prompt is over {MAX_OUTPUT_CHARS} characters")
        parts.append(part)
    return "".join(parts)
