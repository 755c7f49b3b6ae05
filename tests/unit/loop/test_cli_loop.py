"""The loop's commands end to end in process: feedback add/list, annotate, monitor, drift,
alerts, curate; bad input exits with a message and the error's code."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from tests.unit.loop.loop_data import add_traces
from typer.testing import CliRunner, Result

from llmloop.cli.main import app
from llmloop.config import load_settings
from llmloop.services.container import Container

Invoke = Callable[..., Result]


@pytest.fixture
def run(tmp_path: Path) -> Invoke:
    runner = CliRunner()

    def invoke(*args: str) -> Result:
        return runner.invoke(app, ["--home", str(tmp_path), *args], env={"LLMLOOP_PII_KEY": ""})

    return invoke


@pytest.fixture
def traces(tmp_path: Path) -> list[str]:
    """12 traces one minute apart, the newest two minutes ago; the 3 newest are errors."""
    c = Container(load_settings({"home": str(tmp_path)}, env={}))
    now = datetime.now(UTC) - timedelta(minutes=2)
    ids = add_traces(
        c,
        [
            {
                "at": now - timedelta(minutes=i),
                "latency_ms": 10.0 * (i + 1),
                "request_text": f"user: call me on +44 20 7946 0{i:03d}",
                "response_text": "no",
                "status": "error" if i < 3 else "ok",
            }
            for i in range(12)
        ],
    )
    c.close()
    return ids


def test_feedback_and_curate(run: Invoke, traces: list[str]) -> None:
    invoke = run
    r = invoke("feedback", "add", traces[0], "--thumbs", "down")
    assert r.exit_code == 0 and r.output.startswith("fb_")
    assert (
        invoke(
            "feedback", "add", traces[0], "--score", "4", "--scale", "1-5", "--name", "helpfulness"
        ).exit_code
        == 0
    )
    assert invoke("feedback", "add", traces[0], "--correction", "yes").exit_code == 0
    listed = json.loads(invoke("feedback", "list", traces[0], "--json").output)
    assert [f["kind"] for f in listed] == ["thumbs", "score", "correction"]
    bad = invoke("feedback", "add", traces[0], "--thumbs", "up", "--score", "3")
    assert bad.exit_code == 2 and "exactly one" in bad.output
    missing = invoke("feedback", "add", "tr_01ABCDEFGHJKMNPQRSTVWXYZ00", "--thumbs", "up")
    assert missing.exit_code == 3
    out = invoke(
        "curate", "--from-traces", "corrected", "--to", "fixes", "--format", "dpo", "--json"
    )
    result = json.loads(out.output)
    assert result["rows"] == 1 and result["pii_found"] == 1


def test_thumbs_down_with_correction_makes_a_dpo_pair(run: Invoke, traces: list[str]) -> None:
    """The README's `feedback add TRACE_ID --thumbs down --correction TEXT`: two records."""
    made = run("feedback", "add", traces[0], "--thumbs", "down", "--correction", "Yes.", "--json")
    assert made.exit_code == 0, made.output
    assert [f["kind"] for f in json.loads(made.output)] == ["thumbs", "correction"]
    both = run("feedback", "add", traces[1], "--score", "1", "--correction", "Yes.")
    assert both.exit_code == 0 and both.output.count("fb_") == 2
    assert run("feedback", "add", traces[2], "--prefer", "a", "--correction", "x").exit_code == 2
    out = run("curate", "--to", "pairs", "--format", "dpo", "--json")
    assert out.exit_code == 0, out.output
    assert json.loads(out.output)["rows"] == 1


def test_annotate_monitor_drift_alerts(run: Invoke, traces: list[str]) -> None:
    invoke = run
    assert invoke("annotate", "create", "q", "--choices", "good,bad").exit_code == 0
    item = json.loads(invoke("annotate", "next", "q", "--json").output)
    assert invoke("annotate", "label", "q", str(item["id"]), "good").exit_code == 0
    counts = json.loads(invoke("annotate", "counts", "q", "--json").output)
    assert counts == {"pending": 11, "assigned": 0, "labelled": 1, "skipped": 0}
    rows = json.loads(invoke("monitor", "--since", "1h", "--json").output)
    assert rows[0]["requests"] == 12 and rows[0]["error_rate"] == 0.25
    table = invoke("monitor", "--bucket", "5m", "--by", "deployment")
    assert table.exit_code == 0 and "dep" in table.output
    assert invoke("monitor", "--by", "colour").exit_code == 2
    assert invoke("monitor", "--since", "soon").exit_code == 2
    drift = invoke(
        "drift",
        "run",
        "--deployment",
        "dep",
        "--reference-since",
        "1h",
        "--reference-until",
        "450s",
        "--current-since",
        "450s",
        "--json",
    )
    assert drift.exit_code == 0, drift.output
    found = {x["metric"] for x in json.loads(drift.output)["results"]}
    assert {"input_embedding", "prompt_length", "error_rate"} <= found  # MiniLM embeddings
    assert "prompt_length" in invoke("drift", "history", "--deployment", "dep").output
    assert (
        invoke(
            "alerts",
            "create",
            "errs",
            "--metric",
            "error_rate",
            "--threshold",
            "0.1",
            "--window",
            "1h",
        ).exit_code
        == 0
    )
    fired = json.loads(invoke("alerts", "evaluate", "--json").output)
    assert [e["state"] for e in fired] == ["firing"]
    assert "no state changes" in invoke("alerts", "evaluate").output
    assert "firing" in invoke("alerts", "list").output
    assert invoke("alerts", "create", "x", "--metric", "bogus", "--threshold", "1").exit_code == 2
    assert invoke("alerts", "delete", "errs").exit_code == 0
