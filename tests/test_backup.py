"""Database backup: a consistent, verified copy that never overwrites by accident."""

from __future__ import annotations

import threading
from pathlib import Path

import duckdb
import pytest

from storage.backup import BackupError, backup
from storage.db import Database
from tests.builders import label, make_prompt, make_responses, make_study


def tables(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    names = [r[0] for r in con.execute(
        "SELECT table_name FROM duckdb_tables() WHERE database_name = current_database() ORDER BY 1").fetchall()]
    return {t: con.execute(f'SELECT count(*) FROM "{t}"').fetchall()[0][0] for t in names}


def populate(db: Database) -> None:
    sid = make_study(db).id
    pid = make_prompt(db, sid)
    a, b = make_responses(db, pid, ["one", "two"])
    label(db, sid, pid, "alice", a, {a: 5, b: 2})


def test_backup_is_a_complete_copy(db: Database, tmp_path: Path) -> None:
    populate(db)
    # Committed but not yet checkpointed: these rows live in the WAL, which a plain file copy would miss.
    assert Path(f"{db.path}.wal").exists()
    out = tmp_path / "backups" / "copy.duckdb"
    size = backup(db, out)
    assert size == out.stat().st_size > 0
    con = duckdb.connect(str(out), read_only=True)
    try:
        assert tables(con) == tables(db.cursor())
        assert con.execute("SELECT text FROM response ORDER BY id").fetchall() == [("one",), ("two",)]
    finally:
        con.close()
    assert sorted(p.name for p in out.parent.iterdir()) == ["copy.duckdb"]  # no temp file left
    assert db.fetchval("SELECT count(*) FROM study") == 1  # the source is still usable
    make_study(db, "after")


def test_refuses_to_overwrite_unless_asked(db: Database, tmp_path: Path) -> None:
    out = tmp_path / "copy.duckdb"
    out.write_bytes(b"precious")
    with pytest.raises(FileExistsError, match="overwrite"):
        backup(db, out)
    assert out.read_bytes() == b"precious"
    populate(db)
    backup(db, out, overwrite=True)
    con = duckdb.connect(str(out), read_only=True)
    try:
        assert con.execute("SELECT name FROM study").fetchall() == [("demo",)]
    finally:
        con.close()


def test_refuses_memory_self_and_open_transaction(db: Database, tmp_path: Path) -> None:
    mem = Database(":memory:")
    try:
        with pytest.raises(ValueError, match="in-memory"):
            backup(mem, tmp_path / "m.duckdb")
    finally:
        mem.close()
    with pytest.raises(ValueError, match="the database itself"):
        backup(db, db.path, overwrite=True)
    with db.write():
        with pytest.raises(BackupError, match="inside db.write"):
            backup(db, tmp_path / "x.duckdb")
    assert not (tmp_path / "x.duckdb").exists()


def test_backup_while_another_thread_writes(db: Database, tmp_path: Path) -> None:
    populate(db)
    stop = threading.Event()
    errors: list[BaseException] = []

    def writer() -> None:
        i = 0
        try:
            while not stop.is_set():
                make_study(db, f"s{i}")
                i += 1
        except BaseException as e:  # surfaced below
            errors.append(e)

    t = threading.Thread(target=writer)
    t.start()
    try:
        outs = [tmp_path / f"b{i}.duckdb" for i in range(3)]
        for out in outs:
            backup(db, out)
    finally:
        stop.set()
        t.join()
    assert errors == []
    for out in outs:
        con = duckdb.connect(str(out), read_only=True)
        try:
            assert con.execute("SELECT count(*) FROM prompt").fetchall() == [(1,)]
            assert con.execute("SELECT count(*) FROM study").fetchall()[0][0] >= 1
        finally:
            con.close()
