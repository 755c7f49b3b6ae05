"""Commands started together on a new store: each finds the schema whole, none fails because
another one is creating it (a CLI in a loop of `&`, parallel CI jobs, several workers), on SQLite
and on PostgreSQL."""

from __future__ import annotations

import subprocess
import sys

from llmloop.store.db import create_db_engine, current_revision, head_revision

OPEN = (
    "import sys\n"
    "from llmloop.store.db import check_schema, create_db_engine\n"
    "check_schema(create_db_engine(sys.argv[1]))\n"
)


def test_processes_opening_a_new_store_together_all_succeed(database_url: str) -> None:
    procs = [
        subprocess.Popen([sys.executable, "-c", OPEN, database_url], stderr=subprocess.PIPE)
        for _ in range(6)
    ]
    errors = [p.communicate(timeout=120)[1].decode() for p in procs]
    assert [p.returncode for p in procs] == [0] * 6, "\n".join(e for e in errors if e)[-3000:]
    engine = create_db_engine(database_url)
    try:
        assert current_revision(engine) == head_revision(engine)
    finally:
        engine.dispose()
