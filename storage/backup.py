"""A consistent copy of the open database file, taken while the server keeps running.

DuckDB keeps committed changes in a `.wal` beside the file until a checkpoint, so copying the file
alone can miss them. `backup()` holds the writer lock (no write can start), checkpoints (folding the
WAL into the file), copies the file beside the target, checks that the copy opens with the same
tables and row counts, then renames it into place.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import duckdb

from storage.db import Database


class BackupError(RuntimeError):
    pass


def backup(db: Database, out_path: str | os.PathLike[str], *, overwrite: bool = False) -> int:
    """Copy the database to `out_path`; returns the copy's size in bytes.

    Refuses an in-memory database, the database's own path, and (unless `overwrite`) an existing file.
    """
    if db.path == ":memory:":
        raise ValueError("an in-memory database has no file to back up")
    if getattr(db, "_closed", False):
        raise ValueError(f"database {db.path} is closed")
    src = Path(db.path).resolve()
    out = Path(out_path)
    if out.resolve() == src:
        raise ValueError(f"{out} is the database itself; choose another backup path")
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} already exists; pass overwrite=True (--overwrite) to replace it")
    if out.is_dir():
        raise IsADirectoryError(f"{out} is a directory; give a file name such as {out / 'critlab-backup.duckdb'}")
    out.parent.mkdir(parents=True, exist_ok=True)

    fd, tmp_name = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp")
    os.close(fd)  # 0600 on purpose: the copy holds password hashes
    tmp = Path(tmp_name)
    try:
        with db._write_lock:
            # An RLock: this thread inside db.write() would checkpoint and copy its own open transaction.
            if getattr(db._local, "depth", 0):
                raise BackupError("backup() cannot run inside db.write()")
            wal = Path(f"{src}.wal")
            if db.read_only:
                if wal.exists() and wal.stat().st_size:
                    raise BackupError(f"{src} has an unapplied WAL ({wal}) and is open read-only; "
                                      "open it read-write once, then back up")
            else:
                db.cursor().execute("CHECKPOINT")  # outside any transaction (depth is 0)
                if wal.exists() and wal.stat().st_size:
                    raise BackupError(f"CHECKPOINT left {wal} non-empty; is another process writing?")
            expected = _table_counts(db.cursor())
            shutil.copyfile(src, tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        _verify(tmp, expected)
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(out.parent)
    return out.stat().st_size


def _table_counts(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    tables = [r[0] for r in con.execute(
        "SELECT table_name FROM duckdb_tables() WHERE database_name = current_database() "
        "AND schema_name = 'main' ORDER BY table_name").fetchall()]
    return {t: con.execute(f'SELECT count(*) FROM "{t}"').fetchall()[0][0] for t in tables}


def _verify(copy: Path, expected: dict[str, int]) -> None:
    try:
        con = duckdb.connect(str(copy), read_only=True)
    except duckdb.Error as e:
        raise BackupError(f"the copy does not open as a DuckDB database: {e}") from None
    try:
        got = _table_counts(con)
    finally:
        con.close()
    if got != expected:
        missing = sorted(set(expected) - set(got))
        differ = sorted(t for t in set(expected) & set(got) if expected[t] != got[t])
        raise BackupError(f"the copy differs from the database (missing tables: {missing or 'none'}; "
                          f"different row counts: {differ or 'none'})")


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
