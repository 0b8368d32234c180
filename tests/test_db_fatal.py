"""A DuckDB FatalException invalidates the database: DuckDB refuses every later query on it until it is
opened again. Provoked for real: a CHECKPOINT (what a backup and a shutdown run) with committed changes
in the WAL, on a size-limited tmpfs filled up, is one ("Failed to create checkpoint ... No space left on
device"). Needs a tmpfs mount (root in a container usually may; otherwise these tests skip and say why).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from storage import db as storage_db
from storage import studies
from storage.db import Database
from tests.security_server import PASSWORDS, seed, serve
from tests.test_disk_full import fill, tmpfs


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    with tmpfs(tmp_path / "small", "16m") as d:
        yield d


@contextlib.contextmanager
def full(d: Path) -> Iterator[None]:
    filler = fill(d)
    try:
        yield
    finally:
        filler.unlink()


def fatal_checkpoint(db: Database, name: str) -> Exception:
    """Commit a change (it waits in the WAL), fill the disk, CHECKPOINT: DuckDB's fatal error, as the
    caller sees it."""
    studies.create_study(db, name, guidelines="x" * 200_000)
    with full(Path(db.path).parent), pytest.raises(Exception) as caught:  # noqa: PT011 - checked by the callers
        db.checkpoint()
    return caught.value


def test_the_server_reopens_the_database_after_a_fatal_error_and_answers_the_next_request(small_fs: Path) -> None:
    """Before: after the fatal error every request answered 500 ("database has been invalidated") until a
    restart. Now the request that met it answers 503 and the next ones work, with every committed row."""
    db = Database(small_fs / "critlab.duckdb")
    seed(db)
    live = serve(db)
    try:
        admin = next(n for n in PASSWORDS if n.startswith("admin"))
        client = live.login(admin)
        assert client.post("/api/admin/op/list_studies", json={}).status_code == 200
        err = fatal_checkpoint(db, "written-before")
        r = client.post("/api/admin/op/list_studies", json={})  # the same session, the next request
        assert r.status_code == 200, r.text
        assert isinstance(err, storage_db.DatabaseReopened) and "No space left on device" in str(err)
        assert isinstance(err.__cause__, duckdb.FatalException)
        assert "written-before" in [s["name"] for s in r.json()["studies"]]
        assert client.post("/api/admin/op/create_study", json={"name": "written-after"}).status_code == 200
        assert live.login(admin).get("/api/health").json() == {"ok": True}  # a new login writes a session row
    finally:
        live.stop()
    reopened = Database(small_fs / "critlab.duckdb")
    try:
        assert {"written-before", "written-after"} <= {s.name for s in studies.list_studies(reopened)}
    finally:
        reopened.close()


def test_a_second_fatal_error_soon_after_stops_instead_of_failing_forever(small_fs: Path) -> None:
    """Reopening once helps; a database that fails fatally again within a minute would only go on failing,
    so the server is told to stop (the CLI's on_fatal sends itself SIGTERM) with the cause, and every later
    query says so instead of DuckDB's error."""
    db = Database(small_fs / "critlab.duckdb")
    stops: list[str] = []
    db.on_fatal = stops.append
    try:
        assert isinstance(fatal_checkpoint(db, "one"), storage_db.DatabaseReopened) and stops == []
        err = fatal_checkpoint(db, "two")
        assert isinstance(err, storage_db.DatabaseFatalError)
        assert len(stops) == 1 and stops[0] == str(err)
        assert re.match(rf"DuckDB failed fatally again \d+ s after the database {re.escape(db.path)} was reopened: "
                        r"FATAL Error: Failed to create checkpoint", stops[0]), stops[0]
        assert stops[0].endswith("Fix the cause (e.g. free disk space) and restart critlab.")
        with pytest.raises(storage_db.DatabaseFatalError, match="restart critlab"):
            db.fetchval("SELECT count(*) FROM study")
    finally:
        db.close()
    reopened = Database(small_fs / "critlab.duckdb")  # a restart finds what was committed
    try:
        assert {"one", "two"} <= {s.name for s in studies.list_studies(reopened)}
    finally:
        reopened.close()
