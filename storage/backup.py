"""A consistent copy of the open database file, taken while the server keeps running.

DuckDB keeps committed changes in a `.wal` beside the file until a checkpoint, so copying the file
alone can miss them. `backup()` holds the writer lock (no write can start), checkpoints (folding the
WAL into the file), copies the file beside the target, checks that the copy opens with the same
tables and row counts, then renames it into place.

A CHECKPOINT that runs out of space is fatal in DuckDB: it invalidates the whole database instance
(every later query fails until the process restarts; committed data stays safe in the WAL). So before
checkpointing, `backup()` refuses when the room is visibly not there: free space on the database's
file system, or the process's file size limit (RLIMIT_FSIZE). This is a guard for the common case
(a nearly full disk), not a guarantee: another process can fill the disk in between.
"""

from __future__ import annotations

import errno
import os
import resource
import shutil
from pathlib import Path

import duckdb

from storage.db import Database, DatabaseReopened
from storage.fileio import (
    StorageWriteError,
    database_write_error,
    fsync_dir,
    temp_beside,
    write_error,
)

# Room a CHECKPOINT may need besides twice the WAL's size (it rewrites whole 256 KiB blocks, plus metadata).
CHECKPOINT_HEADROOM = 4 * 1024 * 1024


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

    fd, tmp = temp_beside(out)
    os.close(fd)  # 0600 on purpose: the copy holds password hashes
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
                _room_for_checkpoint(src, wal)
                try:
                    db.cursor().execute("CHECKPOINT")  # outside any transaction (depth is 0)
                except (duckdb.Error, DatabaseReopened) as e:
                    outcome = "no backup was written (committed changes are safe in the WAL)"
                    if isinstance(e, DatabaseReopened):  # the guard above was not enough: a fatal error
                        outcome += "; critlab reopened the database"
                    problem = database_write_error(db.path, e.__cause__ or e, outcome=outcome)
                    if problem is None:
                        raise
                    raise problem from e
                if wal.exists() and wal.stat().st_size:
                    raise BackupError(f"CHECKPOINT left {wal} non-empty; is another process writing?")
            expected = _table_counts(db.cursor())
            shutil.copyfile(src, tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        _verify(tmp, expected)
        os.replace(tmp, out)
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        problem = write_error(e, out) if isinstance(e, OSError) else None
        if problem is not None:
            raise problem from e
        raise
    fsync_dir(out.parent)
    return out.stat().st_size


def _room_for_checkpoint(src: Path, wal: Path) -> None:
    pending = wal.stat().st_size if wal.exists() else 0
    if not pending:
        return  # nothing to fold in: CHECKPOINT writes nothing
    need = 2 * pending + CHECKPOINT_HEADROOM
    mib = need / 2**20
    st = os.statvfs(src.parent)
    free = st.f_bavail * st.f_frsize
    if free < need:
        raise StorageWriteError(errno.ENOSPC, f"disk almost full: a backup first folds the WAL into the database "
                                f"{src} (CHECKPOINT), which needs about {mib:.0f} MiB free there and "
                                f"{free / 2**20:.1f} MiB are; nothing was written", str(src))
    soft, _ = resource.getrlimit(resource.RLIMIT_FSIZE)
    if soft != resource.RLIM_INFINITY and src.stat().st_size + need > soft:
        raise StorageWriteError(errno.EFBIG, f"file size limit reached (the process's, `ulimit -f`: {soft:,} bytes) "
                                f"before writing the database {src}: a backup first folds the WAL into it "
                                f"(CHECKPOINT), which may grow it by about {mib:.0f} MiB; nothing was written",
                                str(src))


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
