"""One DuckDB file per process: per-thread cursors for reads, one serialised writer.

DuckDB connections are not thread-safe (a shared connection silently returns other threads'
results) and MVCC write conflicts raise instead of waiting, so every write goes through
`Database.write()`, which holds one process-wide lock around a transaction.

After a DuckDB FatalException (a CHECKPOINT on a full disk, say) DuckDB refuses every later query on
that database ("database has been invalidated") until it is opened again. Every query runs through a
`_Guarded` cursor, so the first fatal error closes and reopens the file, once, logged; the request that
met it fails with `DatabaseReopened`, the next one works. A second fatal error within REOPEN_WINDOW of a
reopen (or a reopen that fails) calls `on_fatal` with the cause (the server stops there), and every
later query raises DatabaseFatalError: never an error for each request forever.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Self

import duckdb

from storage.fileio import database_write_error

DEFAULT_DB = "critlab.duckdb"
REOPEN_WINDOW = 60.0  # seconds: a fatal error this soon after a reopen would only repeat
log = logging.getLogger(__name__)


class DatabaseFatalError(RuntimeError):
    """DuckDB invalidated the database and reopening it did not help: a restart (after fixing the
    cause, e.g. freeing disk space) is needed."""


class DatabaseReopened(RuntimeError):
    """This request met a DuckDB fatal error; the database was reopened, so the next request works."""


class _Guarded:
    """A DuckDB cursor whose fatal errors reach the Database (which reopens the file) before they are
    raised; everything else is the cursor's own."""

    __slots__ = ("_cur", "_db", "_gen")

    def __init__(self, cur: duckdb.DuckDBPyConnection, db: Database, gen: int) -> None:
        self._cur, self._db, self._gen = cur, db, gen

    def _run(self, method: str, *args: Any, **kwargs: Any) -> Any:
        try:
            return getattr(self._cur, method)(*args, **kwargs)
        except duckdb.FatalException as e:
            raise self._db._fatal(self._gen, e) from e

    def execute(self, *args: Any, **kwargs: Any) -> _Guarded:
        self._run("execute", *args, **kwargs)
        return self

    def executemany(self, *args: Any, **kwargs: Any) -> _Guarded:
        self._run("executemany", *args, **kwargs)
        return self

    def fetchall(self) -> list[tuple]:
        return self._run("fetchall")

    def sql(self, *args: Any, **kwargs: Any) -> Any:
        return self._run("sql", *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._cur, name)


class DatabaseLockedError(RuntimeError):
    """Another process holds the database file."""

    def __init__(self, path: str, holder_pid: int | None, detail: str):
        self.path = path
        self.holder_pid = holder_pid
        super().__init__(detail)


def default_db_path() -> str:
    return os.environ.get("CRITLAB_DB") or DEFAULT_DB


class Database:
    """A DuckDB file with migrations applied.

    >>> db = Database(":memory:")
    >>> db.fetchval("SELECT count(*) FROM study")
    0
    >>> db.close()
    """

    def __init__(self, path: str | os.PathLike[str], *, read_only: bool = False, migrate: bool = True):
        self.path = str(path)
        self.read_only = read_only
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        try:
            self._con = duckdb.connect(self.path, read_only=read_only)
        except duckdb.IOException as e:
            raise _lock_error(self.path, e) from None
        self._local = threading.local()
        self._write_lock = threading.RLock()
        self._closed = False
        self._gen = 0  # bumped by each reopen: cursors of an older generation are dropped
        self._reopened_at: float | None = None
        self._fatal_lock = threading.Lock()
        self._dead: str | None = None  # why the database is unusable until a restart
        self.on_fatal: Callable[[str], None] | None = None  # the server stops itself here
        if migrate and not read_only:
            from storage.migrations import migrate as run_migrations

            run_migrations(self)

    # -- connections -------------------------------------------------------------------------
    def cursor(self) -> duckdb.DuckDBPyConnection:
        """This thread's cursor (inside `write()`, the writer's transaction cursor)."""
        if self._dead is not None:
            raise DatabaseFatalError(self._dead)
        cur = getattr(self._local, "cursor", None)
        if cur is None or cur._gen != self._gen:
            cur = self._local.cursor = _Guarded(self._con.cursor(), self, self._gen)
        return cur  # type: ignore[return-value]  # a guarded DuckDBPyConnection

    def _fatal(self, gen: int, e: duckdb.FatalException) -> Exception:
        """Reopen the database after DuckDB invalidated it (once per fatal error: other threads' failures
        on the same generation find it done), or give up; the error for the caller to raise."""
        cause = str(e).splitlines()[0]
        with self._fatal_lock:
            if self._dead is not None:
                return DatabaseFatalError(self._dead)
            if gen != self._gen:
                return DatabaseReopened(f"the database was reopened after a DuckDB fatal error: try again ({cause})")
            now = time.monotonic()
            if self._reopened_at is not None and now - self._reopened_at < REOPEN_WINDOW:
                return self._give_up(f"DuckDB failed fatally again {now - self._reopened_at:.0f} s after the "
                                     f"database {self.path} was reopened: {cause}")
            log.error("DuckDB fatal error on %s: %s; closing and reopening the database", self.path, cause)
            with contextlib.suppress(duckdb.Error):
                self._con.close()
            try:
                self._con = duckdb.connect(self.path, read_only=self.read_only)
            except duckdb.Error as again:
                return self._give_up(f"DuckDB failed fatally on the database {self.path} ({cause}) and it could "
                                     f"not be reopened: {again}")
            self._gen += 1
            self._reopened_at = now
            log.warning("reopened %s after a DuckDB fatal error; the request that met it failed", self.path)
            return DatabaseReopened(f"DuckDB failed fatally ({cause}); critlab reopened the database: try again")

    def _give_up(self, why: str) -> DatabaseFatalError:
        self._dead = f"{why}. Fix the cause (e.g. free disk space) and restart critlab."
        log.critical("%s", self._dead)
        with contextlib.suppress(duckdb.Error):
            self._con.close()
        if self.on_fatal is not None:
            self.on_fatal(self._dead)
        return DatabaseFatalError(self._dead)

    @contextlib.contextmanager
    def write(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """Serialised read-write transaction: commits on success, rolls back on any error."""
        if self.read_only:
            raise RuntimeError(f"database {self.path} is open read-only")
        with self._write_lock:
            cur = self.cursor()
            depth = getattr(self._local, "depth", 0)
            if depth:  # nested write(): join the outer transaction
                self._local.depth = depth + 1
                try:
                    yield cur
                finally:
                    self._local.depth = depth
                return
            self._local.depth = 1
            self._local.after = []
            cur.execute("BEGIN TRANSACTION")
            gen = self._gen
            try:
                yield cur
            except BaseException as e:
                if gen == self._gen and self._dead is None:  # else the connection, and its transaction, are gone
                    cur.execute("ROLLBACK")
                # Disk full / read-only: one clear message instead of DuckDB's, once, at the outermost write().
                problem = database_write_error(self.path, e) if isinstance(e, duckdb.Error) else None
                if problem is not None:
                    raise problem from e
                raise
            else:
                try:
                    cur.execute("COMMIT")  # a failed commit (e.g. the WAL write) is already rolled back
                except duckdb.Error as e:
                    problem = database_write_error(self.path, e)
                    if problem is not None:
                        raise problem from e
                    raise
                for fn in self._local.after:
                    fn()
            finally:
                self._local.depth = 0
                self._local.after = None

    def in_write(self) -> bool:
        """Whether this thread is inside a write() transaction (its reads may see uncommitted rows, so
        they must not fill a cache that other threads read)."""
        return bool(getattr(self._local, "depth", 0))

    def after_commit(self, fn: Callable[[], None]) -> None:
        """Run `fn` once the current write() transaction has committed (at once outside one); dropped if
        it rolls back. For in-memory views of the data: dropped before the commit, a reader on another
        thread could refill them from the snapshot that does not have the change yet. Keep `fn` quick:
        it runs while the write lock is held."""
        pending = getattr(self._local, "after", None)
        if getattr(self._local, "depth", 0) and pending is not None:
            pending.append(fn)
        else:
            fn()

    # -- small helpers (all use fetchall: fetchone leaves the result unfinished) ---------------
    def fetchall(self, sql: str, params: list[Any] | tuple[Any, ...] | None = None) -> list[tuple]:
        return self.cursor().execute(sql, params or []).fetchall()

    def fetchdicts(self, sql: str, params: list[Any] | tuple[Any, ...] | None = None) -> list[dict[str, Any]]:
        cur = self.cursor().execute(sql, params or [])
        cols = [d[0] for d in cur.description]
        return [dict(zip(cols, row)) for row in cur.fetchall()]

    def fetchrow(self, sql: str, params: list[Any] | tuple[Any, ...] | None = None) -> dict[str, Any] | None:
        rows = self.fetchdicts(sql, params)
        return rows[0] if rows else None

    def fetchval(self, sql: str, params: list[Any] | tuple[Any, ...] | None = None) -> Any:
        rows = self.fetchall(sql, params)
        return rows[0][0] if rows else None

    # -- lifecycle ---------------------------------------------------------------------------
    def checkpoint(self) -> None:
        if not self.read_only and not self._closed:
            with self._write_lock:
                self.cursor().execute("CHECKPOINT")

    def close(self) -> None:
        if self._closed:
            return
        with self._write_lock:
            if not self.read_only and self._dead is None:
                with contextlib.suppress(duckdb.Error, DatabaseReopened, DatabaseFatalError):
                    self.cursor().execute("CHECKPOINT")
            with contextlib.suppress(duckdb.Error):
                self._con.close()
            self._closed = True

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_PID_RE = re.compile(r"\(PID (\d+)\)")


def _lock_error(path: str, err: duckdb.IOException) -> DatabaseLockedError:
    msg = str(err)
    m = _PID_RE.search(msg)
    pid = int(m.group(1)) if m else None
    if "lock" not in msg.lower():
        return DatabaseLockedError(path, None, f"cannot open database {path}: {msg}")
    holder = f"process {pid}" if pid else "another process"
    cmdline = _cmdline(pid) if pid else ""
    return DatabaseLockedError(
        path,
        pid,
        f"database {path} is held by {holder}{f' ({cmdline})' if cmdline else ''}, which is not a critlab "
        f"server that accepts commands (no lock file {path}.lock). Stop that process, or point --db at "
        "another file.",
    )


def _cmdline(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return ""
    return raw.replace(b"\0", b" ").decode(errors="replace").strip()[:200]
