"""The README's tour works as written: its marked shell block runs, command by command, against a
fresh home; and the demo walkthrough (what `make demo` runs) finishes with exit 0."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def readme_tour() -> str:
    text = (ROOT / "README.md").read_text()
    marked = re.search(r"<!-- readme-test:.*?-->\s*```bash\n(.*?)```", text, re.S)
    assert marked, "the README has no marked tour block"
    return marked.group(1)


def test_readme_tour_runs(tmp_path: Path) -> None:
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"}
    env.pop("LLMLOOP_HOME", None)
    script = "set -euo pipefail\n" + readme_tour()
    result = subprocess.run(
        ["bash", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Answer kindly: Where is my order?" in result.stdout
    assert '"champion": 1' in result.stdout or "'champion': 1" in result.stdout


def test_readme_names_the_two_commands() -> None:
    text = (ROOT / "README.md").read_text()
    assert "make demo" in text and "make test" in text
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^demo:", makefile, re.M) and re.search(r"^test:", makefile, re.M)


def test_demo_walkthrough_runs(tmp_path: Path) -> None:
    env = {**os.environ, "LLMLOOP_HOME": str(tmp_path / "home")}
    result = subprocess.run(
        [str(BIN / "llmloop"), "demo"], env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "champion -> v2" in result.stdout and "over HTTP" in result.stdout
