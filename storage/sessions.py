"""Login sessions, one `login_session` row each, so a session can end on the server: logging out ends that
session, a password reset or a disable ends every session of the person, and the web server ends sessions
that sat idle or reached their lifetime (app/auth.py decides when).

The cookie carries a random session id; the row holds only its SHA-256, so a copy of the database (a
backup) holds nothing a browser could present.

Every request looks its session up, so the open sessions are also kept in memory: a request then asks
the database only for the person (their role, whether they are disabled), as it did before sessions were
rows. Every change of a session goes through this module, which keeps the memory in step (a session
ended here is forgotten there before the ending commits, and a read that raced an ending stores nothing).
"""

from __future__ import annotations

import hashlib
import os
import threading
import weakref
from collections.abc import Callable
from datetime import UTC, datetime

from pydantic import BaseModel

from storage.db import Database
from storage.models import Annotator

EndReason = str  # logout | idle | expired | disabled | password


class LiveSession(BaseModel):
    person: Annotator
    created_at: float  # epoch seconds
    last_seen_at: float


def id_hash(session_id: str) -> str:
    """What the row stores of a session id.

    >>> len(id_hash("abc")), id_hash("abc") == id_hash("abc")
    (64, True)
    """
    return hashlib.sha256(session_id.encode()).hexdigest()


def _ts(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


class _Open:
    """The open sessions of one database file: id hash -> (person, created_at, last_seen_at)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.generation = 0  # moves on with every ending: a read that began before one may not store
        self.rows: dict[str, tuple[str, float, float]] = {}


_by_path: dict[str, _Open] = {}  # a file opened twice in one process is one database: one memory
_by_db: weakref.WeakKeyDictionary[Database, _Open] = weakref.WeakKeyDictionary()
_open_lock = threading.Lock()


def _open(db: Database) -> _Open:
    mem = _by_db.get(db)
    if mem is None:
        with _open_lock:
            mem = _by_db.get(db)
            if mem is None:
                mem = _by_db[db] = (_Open() if db.path == ":memory:"
                                    else _by_path.setdefault(os.path.realpath(db.path), _Open()))
    return mem


def _ending(db: Database, forget: Callable[[_Open], None]) -> None:
    """In a write() that ends sessions: forget them now (a request meanwhile reads the row again and sees the
    ending once it commits) and again once it commits (a read that began before it stores nothing)."""
    def run() -> None:
        mem = _open(db)
        with mem.lock:
            mem.generation += 1
            forget(mem)
    run()
    db.after_commit(run)


def create(db: Database, session_id: str, person: str, now: float) -> None:
    with db.write() as cur:
        cur.execute("INSERT INTO login_session (id_hash, annotator, created_at, last_seen_at) VALUES (?, ?, ?, ?)",
                    [id_hash(session_id), person, _ts(now), _ts(now)])


def lookup(db: Database, session_id: str, person: str) -> LiveSession | None:
    """The session when it has not ended and belongs to `person`, who exists and is not disabled."""
    h, mem = id_hash(session_id), _open(db)
    with mem.lock:
        hit, generation = mem.rows.get(h), mem.generation
    if hit is None:
        rows = db.fetchall("SELECT annotator, epoch(created_at), epoch(last_seen_at) FROM login_session "
                           "WHERE id_hash = ? AND ended_at IS NULL", [h])
        if not rows:
            return None
        hit = rows[0]
        if not db.in_write():  # inside a write this thread may see its own uncommitted rows
            with mem.lock:
                if mem.generation == generation:
                    mem.rows[h] = hit
    if hit[0] != person:
        return None
    # The person is asked every time: a role or a disable may change outside this module.
    who = db.fetchall("SELECT id, role, disabled FROM annotator WHERE name = ?", [person])
    if not who or who[0][2]:
        return None
    return LiveSession(person=Annotator(id=who[0][0], name=person, role=who[0][1], disabled=False),
                       created_at=hit[1], last_seen_at=hit[2])


def touch(db: Database, session_id: str, now: float) -> None:
    """Record activity (the server does this at most once a minute per session)."""
    h = id_hash(session_id)
    with db.write() as cur:
        done = cur.execute("UPDATE login_session SET last_seen_at = greatest(last_seen_at, ?) WHERE id_hash = ? "
                           "AND ended_at IS NULL RETURNING annotator, epoch(created_at), epoch(last_seen_at)",
                           [_ts(now), h]).fetchall()

        def remember() -> None:
            mem = _open(db)
            with mem.lock:
                if done and h in mem.rows:
                    mem.rows[h] = done[0]
        db.after_commit(remember)


def end(db: Database, session_id: str, reason: EndReason) -> bool:
    """End one session; False when it had ended already (or never existed)."""
    h = id_hash(session_id)
    with db.write() as cur:
        _ending(db, lambda mem: mem.rows.pop(h, None))
        return bool(cur.execute("UPDATE login_session SET ended_at = now(), end_reason = ? WHERE id_hash = ? "
                                "AND ended_at IS NULL RETURNING 1", [reason, h]).fetchall())


def end_all(db: Database, person: str, reason: EndReason) -> int:
    """End every open session of `person` (joins the caller's transaction); how many there were."""
    def forget(mem: _Open) -> None:
        for h in [h for h, row in mem.rows.items() if row[0] == person]:
            del mem.rows[h]
    with db.write() as cur:
        _ending(db, forget)
        return len(cur.execute("UPDATE login_session SET ended_at = now(), end_reason = ? WHERE annotator = ? "
                               "AND ended_at IS NULL RETURNING 1", [reason, person]).fetchall())


def open_counts(db: Database, *, idle: float, lifetime: float, now: float) -> dict[str, int]:
    """Per person, the sessions that have not ended, sat idle longer than `idle` or lived past `lifetime`
    seconds (the Admin tab's "sessions" column)."""
    return dict(db.fetchall(
        """SELECT annotator, count(*) FROM login_session WHERE ended_at IS NULL
           AND epoch(last_seen_at) > ? AND epoch(created_at) > ? GROUP BY annotator""",
        [now - idle, now - lifetime]))


def housekeep(db: Database, *, idle: float, lifetime: float, now: float, keep_days: int = 30) -> None:
    """At start-up: mark sessions that timed out while the server was down, and forget sessions that ended
    more than `keep_days` ago (a row per login would otherwise pile up)."""
    with db.write() as cur:
        _ending(db, lambda mem: mem.rows.clear())
        cur.execute("""UPDATE login_session SET ended_at = now(),
                         end_reason = CASE WHEN epoch(created_at) <= $life THEN 'expired' ELSE 'idle' END
                       WHERE ended_at IS NULL AND (epoch(created_at) <= $life OR epoch(last_seen_at) <= $idle)""",
                    {"life": now - lifetime, "idle": now - idle})
        cur.execute("DELETE FROM login_session WHERE ended_at < now() - to_days(?)", [keep_days])
