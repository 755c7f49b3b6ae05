"""The demo's domain: customer-support tickets with templated answers, generated deterministically.

``raw_tickets`` plants the problems a real export has (duplicates, near duplicates, personal
data, HTML, mojibake, empty rows, a toxic line) so the data stage has something to find.
``live_tickets`` is production traffic: the same intents plus one the first model never saw
(warranty), which the feedback loop must teach it.
"""

from __future__ import annotations

import random
from typing import Any

INTENTS: dict[str, tuple[list[str], str]] = {
    "order_status": (
        [
            "Where is my order #{n}?",
            "My order {n} has not arrived yet.",
            "Can you check the status of order #{n}?",
            "Order {n} is late, where is it?",
        ],
        "Order #{n} is on its way and arrives within 3 days.",
    ),
    "refund": (
        [
            "I want a refund for order #{n}.",
            "Please refund order {n}.",
            "How do I get my money back for order #{n}?",
        ],
        "I have started a refund for order #{n}; it takes 5 days.",
    ),
    "password": (
        ["How do I reset my password?", "I forgot my password.", "I cannot log in to my account."],
        "Go to Settings, choose Security, then Reset password.",
    ),
    "address": (
        ["Can I change the delivery address of order #{n}?", "I moved, update order {n} please."],
        "Yes, open order #{n} and choose Change address before it ships.",
    ),
    "cancel": (
        ["Please cancel my subscription.", "How do I stop my plan?", "Cancel my membership."],
        "Your subscription is cancelled; you keep access until the month ends.",
    ),
}
NEW_INTENT = {
    "warranty": (
        [
            "Is order #{n} still under warranty?",
            "My item from order {n} broke, warranty?",
            "Does order #{n} have a warranty?",
        ],
        "Order #{n} has a 2 year warranty; reply with a photo to claim it.",
    ),
}


# What a user needs to see to be satisfied: the answer must address the question's intent.
INTENT_KEYS = {
    "order_status": "on its way",
    "refund": "refund",
    "password": "reset password",
    "address": "change address",
    "cancel": "cancelled",
    "warranty": "warranty",
}


def satisfied(ticket: dict[str, Any], answer: str) -> bool:
    """The simulated user's verdict: did the answer address what they asked?"""
    return INTENT_KEYS[ticket["intent"]] in answer.lower()


def _ticket(rng: random.Random, intents: dict[str, tuple[list[str], str]]) -> dict[str, Any]:
    intent = rng.choice(sorted(intents))
    questions, answer = intents[intent]
    n = rng.randint(1000, 9999)
    return {
        "prompt": rng.choice(questions).format(n=n),
        "response": answer.format(n=n),
        "intent": intent,
    }


def raw_tickets(count: int = 400, seed: int = 7) -> list[dict[str, Any]]:
    """A support-ticket export with planted problems."""
    rng = random.Random(seed)
    rows = [_ticket(rng, INTENTS) for _ in range(count)]
    rows += [dict(rows[i]) for i in range(0, 40, 4)]  # exact duplicates
    rows += [{**rows[i], "prompt": rows[i]["prompt"] + " Thanks!"} for i in range(1, 30, 5)]
    rows += [
        {
            "prompt": "My email is jane.doe@example.com, where is order #4821?",
            "response": "Order #4821 is on its way and arrives within 3 days.",
            "intent": "order_status",
        },
        {
            "prompt": "Call me at +1 415 555 0134 about order 7310.",
            "response": "Order #7310 is on its way and arrives within 3 days.",
            "intent": "order_status",
        },
        {
            "prompt": "<p>Please <b>refund</b> order #5120.</p>",
            "response": "I have started a refund for order #5120; it takes 5 days.",
            "intent": "refund",
        },
        {
            "prompt": "I canâ€™t log in to my account.",
            "response": "Go to Settings, choose Security, then Reset password.",
            "intent": "password",
        },
        {"prompt": "", "response": "", "intent": "empty"},
        {
            "prompt": "You idiots, this stupid shop is garbage!",
            "response": "I am sorry to hear that.",
            "intent": "abuse",
        },
    ]
    rng.shuffle(rows)
    return rows


def live_tickets(count: int, seed: int, new_share: float = 0.3) -> list[dict[str, Any]]:
    """Production questions; ``new_share`` of them ask about the unseen warranty intent."""
    rng = random.Random(seed)
    return [_ticket(rng, NEW_INTENT if rng.random() < new_share else INTENTS) for _ in range(count)]


RECIPE = """
name: support-cleanup
description: Repair text, drop junk and duplicates, redact personal data.
steps:
  - fix_unicode: {}
  - strip_html: {}
  - whitespace: {}
  - drop_empty: {}
  - exact_dedup: {}
  - near_dedup: {threshold: 0.8}
  - pii: {action: redact}
  - toxicity_filter: {threshold: 0.8}
"""

SUITE = """
name: support-quality
description: Answers to held-out tickets, scored against the templated answer.
fields: {id: id, input: prompt, reference: response}
sampling: {max_tokens: 40, temperature: 0.0}
concurrency: 16
evaluators:
  - name: rouge
  - name: token_f1
  - name: exact_match
"""
