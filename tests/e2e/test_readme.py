"""The README's tour works as written: its marked shell blocks run, command by command, against a
fresh home (the serving setup with the deployments file it shows), its Python block runs, and the
demo walkthrough (what `make demo` runs) finishes with exit 0."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def marked_blocks() -> list[str]:
    """The README's shell blocks marked ``<!-- readme-test: ... -->``, in order."""
    text = (ROOT / "README.md").read_text()
    return re.findall(r"<!-- readme-test:.*?-->\s*```bash\n(.*?)```", text, re.S)


def readme_tour() -> str:
    blocks = marked_blocks()
    assert blocks, "the README has no marked tour block"
    return blocks[0]


def readme_block(language: str, after: str) -> str:
    """The first ``language`` code block after the text ``after``."""
    text = (ROOT / "README.md").read_text()
    found = re.search(re.escape(after) + r".*?```" + language + r"\n(.*?)```", text, re.S)
    assert found, f"no {language} block after {after!r} in the README"
    return found.group(1)


def run_shell(script: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-c", "set -euo pipefail\n" + script],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=180,
    )  # fmt: skip


def test_readme_tour_runs(tmp_path: Path) -> None:
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"}
    env.pop("LLMLOOP_HOME", None)
    result = run_shell(readme_tour(), tmp_path, env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Answer kindly: Where is my order?" in result.stdout
    assert '"champion": 1' in result.stdout or "'champion': 1" in result.stdout


def test_readme_deployments_file_applies_after_the_tour(tmp_path: Path) -> None:
    """The Serving section's deployments.yaml names aliases the tour does not make; the marked
    block after it makes them, applies the file and creates a key."""
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"}
    env.pop("LLMLOOP_HOME", None)
    blocks = marked_blocks()
    assert len(blocks) >= 2, "the README's serving setup block is not marked"
    (tmp_path / "deployments.yaml").write_text(readme_block("yaml", "Deployments map a public"))
    result = run_shell(blocks[0] + blocks[1], tmp_path, env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "applied deployment support" in result.stdout and "llk_" in result.stdout


def test_readme_python_block_runs(tmp_path: Path) -> None:
    code = readme_block("python", "The same from Python")
    env = {**os.environ, "LLMLOOP_HOME": str(tmp_path / "home")}
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=180
    )
    assert result.returncode == 0, result.stdout + result.stderr
    graph = json.loads(result.stdout)
    assert {e["relation"] for e in graph["edges"]} == {"input", "produced"}


def test_readme_python_names_leave_the_cli_sections_theirs() -> None:
    """The Python block once registered `tickets` and `bot`, the names the Data and Training
    sections use next: `data diff tickets 1 2` then compared other rows, and `train dpo --base
    bot@1` got the Python block's weightless version."""
    code = readme_block("python", "The same from Python")
    made = set(re.findall(r'create_(?:dataset|model)_version\("([\w-]+)"', code))
    text = (ROOT / "README.md").read_text()
    shell = "\n".join(re.findall(r"```bash\n(.*?)```", text, re.S))
    used = set(re.findall(r"--(?:dataset|out|base|model|eval)\s+([\w-]+)", shell))
    used |= set(re.findall(r"llmloop data \w+ ([\w-]+)", shell))
    assert made and not made & used, made & used


def test_readme_names_the_two_commands() -> None:
    text = (ROOT / "README.md").read_text()
    assert "make demo" in text and "make test" in text
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^demo:", makefile, re.M) and re.search(r"^test:", makefile, re.M)


def test_demo_runs_the_whole_loop(tmp_path: Path) -> None:
    """`make demo` runs `llmloop demo`: afterwards the CLI lists what it made, and the final
    champion's lineage reaches the raw export and live traces."""
    env = {**os.environ, "LLMLOOP_HOME": str(tmp_path / "home")}

    def cli(*args: str) -> str:
        result = subprocess.run(
            [str(BIN / "llmloop"), *args], env=env, capture_output=True, text=True, timeout=900
        )
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        return result.stdout

    out = cli("demo")
    assert "champion -> v2" in out and "over HTTP" in out
    assert "reaches the raw export: True; reaches live traces: True" in out
    models = {m["name"]: m for m in json.loads(cli("models", "list", "--json"))}
    assert {"support-base", "support-bot"} <= set(models)
    datasets = {d["name"] for d in json.loads(cli("datasets", "list", "--json"))}
    assert {"support-tickets", "support-tickets-train", "support-feedback"} <= datasets
    kinds = {r["kind"] for r in json.loads(cli("runs", "list", "--json", "--limit", "500"))}
    assert {"pretrain", "finetune", "eval"} <= kinds
    champion = json.loads(cli("models", "show", "support-bot", "--ref", "champion", "--json"))
    graph = json.loads(cli("lineage", champion["id"], "--direction", "up", "--json"))
    types = {n["type"] for n in graph["nodes"]}
    assert {"trace", "dataset_version", "run", "model_version"} <= types


def test_a_second_demo_runs_in_a_new_home(tmp_path: Path) -> None:
    """`make demo` twice: the lifecycle's names are taken, so the second run moves to a new home."""
    from llmloop.config import load_settings
    from llmloop.core.datasets import DatasetCreate
    from llmloop.demo import _fresh_for_lifecycle
    from llmloop.services.actors import local_actor
    from llmloop.services.container import Container

    settings = load_settings({"home": str(tmp_path / "home"), "pii_key": "k"}, env={})
    assert _fresh_for_lifecycle(settings) is settings  # a first run stays where it is
    container = Container(settings)
    container.datasets.create(DatasetCreate(name="support-tickets"), local_actor())
    container.close()
    fresh = _fresh_for_lifecycle(settings)
    assert fresh.home.parent == settings.home / "demo-runs" and fresh.pii_key == "k"
    assert str(fresh.home) in fresh.database_url and fresh.database_url != settings.database_url
