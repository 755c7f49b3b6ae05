"""The small option languages: key=value pairs, refs, inputs and comma lists."""

from __future__ import annotations

import pytest

from llmloop.cli.options import (
    parse_input,
    parse_number_pairs,
    parse_pairs,
    parse_ref,
    parse_value,
    split_list,
)
from llmloop.errors import InvalidInputError


def test_values_are_json_when_they_can_be() -> None:
    assert parse_value("0.2") == 0.2
    assert parse_value("true") is True
    assert parse_value("[1, 2]") == [1, 2]
    assert parse_value('"42"') == "42"
    assert parse_value("hello world") == "hello world"
    assert parse_pairs(["a=1", "b=x=y", "c="], "--param") == {"a": 1, "b": "x=y", "c": ""}


@pytest.mark.parametrize("raw", ["novalue", "=1", " =1"])
def test_bad_pairs_name_the_option(raw: str) -> None:
    with pytest.raises(InvalidInputError, match="--param expects key=value"):
        parse_pairs([raw], "--param")


def test_duplicate_keys_and_numbers() -> None:
    with pytest.raises(InvalidInputError, match="twice"):
        parse_pairs(["a=1", "a=2"], "--param")
    assert parse_number_pairs(["rpm=60", "budget_usd=1.5"], "--limit") == {
        "rpm": 60.0,
        "budget_usd": 1.5,
    }
    with pytest.raises(InvalidInputError, match="not a number"):
        parse_number_pairs(["rpm=fast"], "--limit")
    with pytest.raises(InvalidInputError, match="finite"):
        parse_number_pairs(["loss=inf"], "metric")


def test_refs_inputs_lists() -> None:
    assert parse_ref("3") == 3 and parse_ref("production") == "production"
    with pytest.raises(InvalidInputError):
        parse_ref(" ")
    assert parse_input("dsv_1") == ("dsv_1", "input")
    assert parse_input("dsv_1:train") == ("dsv_1", "train")
    with pytest.raises(InvalidInputError):
        parse_input(":train")
    assert split_list(" a, b ,,c") == ["a", "b", "c"] and split_list(None) is None
