"""Fixtures for the trainer tests: a small templated support-ticket domain and a tiny base."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest

PRODUCTS = ["router", "laptop", "phone", "printer", "camera", "monitor"]
ISSUES = {
    "late": "Sorry your {p} is late. It ships within two days and we will email the tracking.",
    "broken": "Sorry your {p} arrived broken. Reply with a photo and we will send a new one.",
    "refund": "Your {p} refund is approved. The money is back on your card in five days.",
}


def ticket_rows(n: int, seed: int = 0) -> list[dict[str, Any]]:
    """Instruction rows: a support ticket and its templated answer."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        product, issue = rng.choice(PRODUCTS), rng.choice(sorted(ISSUES))
        rows.append(
            {
                "prompt": f"Ticket: my {product} is {issue}. What now?",
                "response": ISSUES[issue].format(p=product),
            }
        )
    return rows


@pytest.fixture(scope="session")
def tickets() -> list[dict[str, Any]]:
    return ticket_rows(48, seed=1)


@pytest.fixture(scope="session")
def ticket_eval() -> list[dict[str, Any]]:
    return ticket_rows(12, seed=2)


@pytest.fixture(scope="session")
def base_dir(tiny_model_dir: Path) -> Path:
    return tiny_model_dir
