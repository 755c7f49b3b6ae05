"""What a training run needs around the trainers: the tracker that streams their params and
metrics to a registry run (and tells them when the run was killed), values made storable, the
place Optuna keeps a search's trials, and plain text from any record shape.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

from llmloop.core.base import JsonDict
from llmloop.core.runs import MetricPoint
from llmloop.errors import ConflictError
from llmloop.services.actors import Actor


class RunTracker:
    """The trainers' Tracker, streaming to a registry run; stops when the run is killed."""

    def __init__(self, container: Any, run_id: str, actor: Actor, check_every_s: float = 5.0):
        self.c, self.run_id, self.actor = container, run_id, actor
        self.check_every_s = check_every_s
        self._checked = 0.0
        self._stop = False

    def log_params(self, params: dict[str, Any]) -> None:
        try:
            self.c.runs.log_params(self.run_id, jsonable(params), self.actor)
        except ConflictError:  # a resumed run logs the same params again with new values
            pass

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        points = [
            MetricPoint(key=k, value=float(v), step=max(0, step))
            for k, v in metrics.items()
            if finite(v)
        ]
        if points:
            self.c.runs.log_metrics(self.run_id, points, self.actor)

    def should_stop(self) -> bool:
        now = time.monotonic()
        if now - self._checked >= self.check_every_s:
            self._checked = now
            self._stop = self.c.runs.get(self.run_id).status == "killed"
        return self._stop


def finite(value: Any) -> bool:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return False
    return number == number and abs(number) != float("inf")


def jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)


def optuna_storage_url(database_url: str) -> str | None:
    """Where Optuna keeps a search's trials: beside the llmloop database, never inside it.

    Both Optuna and llmloop stamp their schema in an Alembic ``alembic_version`` table, so they
    cannot share one; Optuna gets ``NAME-optuna.db`` next to a SQLite file (memory for an
    in-memory database) and its own ``<schema>_optuna`` schema on a server database.
    """
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        if not url.database or url.database == ":memory:":
            return None
        path = Path(url.database)
        return str(url.set(database=str(path.with_name(f"{path.stem}-optuna{path.suffix}"))))
    options = str(url.query.get("options", ""))
    found = re.search(r"-csearch_path(?:=|%3D)([A-Za-z_][\w]*)", options)
    schema = f"{found.group(1) if found else 'llmloop'}_optuna"
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
    finally:
        engine.dispose()
    rest = re.sub(r"-csearch_path(?:=|%3D)\S*", "", options).strip()
    query = {**url.query, "options": f"{rest} -csearch_path={schema}".strip()}
    return url.set(query=query).render_as_string(hide_password=False)


def rows_to_texts(rows: list[JsonDict]) -> list[str]:
    """Plain text of any record shape, for tokenizer training and pre-training."""
    texts = []
    for row in rows:
        if isinstance(row.get("text"), str):
            texts.append(row["text"])
        elif isinstance(row.get("messages"), list):
            texts.append("\n".join(str(m.get("content", "")) for m in row["messages"]))
        else:
            texts.append("\n".join(str(v) for v in row.values() if isinstance(v, str)))
    return [t for t in texts if t.strip()]
