"""Added latency of the default guard set: p99 per request and added time to first token.

Question: what does the whole default guard set (size, canary, links/ANSI, injection, PII,
toxicity) add to a request on realistic prompts and answers, and how much does it delay the
first streamed token? Per request = input checks + the final output check of a complete answer.
Stream = the answer fed as ~4-character chunks through ``GuardedStream``; "TTFT added" is the
guard time spent before the first text is released (the hold-back means a few chunks are
buffered; their generation time is the model's, not ours, so it is not counted), and the
per-chunk cost is reported too. Medians over rounds; target p99 < 20 ms on 2 cores.

    .venv/bin/python benchmarks/guards.py [--quick]
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

from llmloop.core.chat import ChatMessage
from llmloop.guards.canary import CanaryConfig
from llmloop.guards.defaults import DefaultGuardsConfig, default_guards, warm_up
from llmloop.guards.stream import GuardedStream, check_messages, check_text

CANARY = "llmloop-canary-0f1e2d3c4b5a6978"
SYSTEM = f"You are HelpBot for Northwind Bank. Reference {CANARY}. Never reveal it."
QUESTIONS = [
    "How do I reset my card PIN in the mobile app?",
    "Can you explain the difference between a savings and a current account?",
    "Write a short Python function that parses an ISO date and returns the weekday.",
    "Summarise the attached policy document in five bullet points.",
    "What are the fees for international transfers to Germany and how long do they take?",
    "My transfer to jane.doe@example.com failed twice, what should I check?",
]
PARAGRAPHS = [
    "Open the app, tap **Cards**, choose the card and select *Reset PIN*. You will receive a "
    "one-time code by SMS; enter it and choose a new four-digit PIN that is not your birth year.",
    "A savings account pays interest and limits withdrawals, while a current account is built "
    "for daily payments. See [our comparison](https://northwind.example/accounts) for details.",
    "```python\nfrom datetime import date\n\ndef weekday(iso: str) -> str:\n    return "
    "date.fromisoformat(iso).strftime('%A')\n```\nThis raises ValueError for malformed input.",
    "- Transfers inside the EU arrive within one business day.\n- Fees are 0.5% with a 2 EUR "
    "minimum.\n- Transfers after 16:00 are processed the next day.\n- Limits apply to new "
    "accounts.\n- You can track status in the app.",
    "If a transfer fails, check that the IBAN is complete, that your daily limit is not "
    "reached and that the recipient's bank accepts SEPA instant payments. Contact support at "
    "https://help.northwind.example if the problem continues.",
]


def make_requests(n: int, seed: int = 0) -> list[tuple[list[ChatMessage], str]]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        history = [ChatMessage(role="system", content=SYSTEM)]
        for _ in range(rng.randint(0, 2)):
            history.append(ChatMessage(role="user", content=rng.choice(QUESTIONS)))
            history.append(ChatMessage(role="assistant", content=rng.choice(PARAGRAPHS)))
        history.append(ChatMessage(role="user", content=rng.choice(QUESTIONS)))
        answer = "\n\n".join(rng.sample(PARAGRAPHS, rng.randint(1, 4)))
        out.append((history, answer))
    return out


def one_round(requests: list[tuple[list[ChatMessage], str]], guards: list) -> dict[str, float]:
    per_request, ttft, per_chunk = [], [], []
    for messages, answer in requests:
        t0 = time.perf_counter()
        check_messages(guards, messages)
        check_text(guards, answer)
        per_request.append((time.perf_counter() - t0) * 1000)

        stream = GuardedStream(guards)
        spent, first, calls = 0.0, None, 0
        for i in range(0, len(answer), 4):
            t0 = time.perf_counter()
            released = stream.feed(answer[i : i + 4])
            spent += time.perf_counter() - t0
            calls += 1
            if first is None and released:
                first = spent
        t0 = time.perf_counter()
        stream.finish()
        spent += time.perf_counter() - t0
        ttft.append((first if first is not None else spent) * 1000)
        per_chunk.append(spent * 1000 / max(1, calls))
    q = statistics.quantiles(per_request, n=100)
    return {
        "p50_ms": statistics.median(per_request),
        "p99_ms": q[98],
        "ttft_ms": statistics.median(ttft),
        "chunk_ms": statistics.median(per_chunk),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer requests and rounds")
    args = parser.parse_args()
    n, rounds = (60, 3) if args.quick else (300, 5)
    guards = default_guards(DefaultGuardsConfig(canary=CanaryConfig(tokens=[CANARY])))
    t0 = time.perf_counter()
    warm_up(guards)
    print(f"guards: {[g.name for g in guards]}; warm-up {time.perf_counter() - t0:.1f}s")
    requests = make_requests(n)
    results = [one_round(requests, guards) for _ in range(rounds)]
    med = {k: statistics.median(r[k] for r in results) for k in results[0]}
    for key, value in med.items():
        print(f"{key:10s} {value:8.2f}")
    print(
        f"RESULT p99_ms={med['p99_ms']:.2f} p50_ms={med['p50_ms']:.2f} "
        f"stream_ttft_added_ms={med['ttft_ms']:.2f} per_chunk_ms={med['chunk_ms']:.3f} "
        f"target_p99_ms=20 requests={n} rounds={rounds}"
    )


if __name__ == "__main__":
    main()
