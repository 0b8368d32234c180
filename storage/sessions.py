"""Login sessions, one `login_session` row each, so a session can end on the server: logging out ends that
session, a password reset or a disable ends every session of the person, and the web server ends sessions
that sat idle or reached their lifetime (app/auth.py decides when).

The cookie carries a random session id; the row holds only its SHA-256, so a copy of the database (a
backup) holds nothing a browser could present.
"""

from __future__ import annotations

import hashlib
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


def create(db: Database, session_id: str, person: str, now: float) -> None:
    with db.write() as cur:
        cur.execute("INSERT INTO login_session (id_hash, annotator, created_at, last_seen_at) VALUES (?, ?, ?, ?)",
                    [id_hash(session_id), person, _ts(now), _ts(now)])


# Two point lookups in one statement (the person's name comes from the signed cookie): a join costs DuckDB
# about twice a point query, and this runs on every request.
_LOOKUP = """
  SELECT 'session', annotator, epoch(created_at), epoch(last_seen_at), NULL::BIGINT, NULL, NULL::BOOLEAN
  FROM login_session WHERE id_hash = $h AND ended_at IS NULL
  UNION ALL
  SELECT 'person', name, NULL, NULL, id, role, disabled FROM annotator WHERE name = $who
"""


def lookup(db: Database, session_id: str, person: str) -> LiveSession | None:
    """The session when it has not ended and belongs to `person`, who exists and is not disabled."""
    rows = db.fetchall(_LOOKUP, {"h": id_hash(session_id), "who": person})
    sess = next((r for r in rows if r[0] == "session"), None)
    who = next((r for r in rows if r[0] == "person"), None)
    if sess is None or who is None or sess[1] != person or who[6]:
        return None
    return LiveSession(person=Annotator(id=who[4], name=who[1], role=who[5], disabled=who[6]),
                       created_at=sess[2], last_seen_at=sess[3])


def touch(db: Database, session_id: str, now: float) -> None:
    """Record activity (the server does this at most once a minute per session)."""
    with db.write() as cur:
        cur.execute("UPDATE login_session SET last_seen_at = greatest(last_seen_at, ?) WHERE id_hash = ? "
                    "AND ended_at IS NULL", [_ts(now), id_hash(session_id)])


def end(db: Database, session_id: str, reason: EndReason) -> bool:
    """End one session; False when it had ended already (or never existed)."""
    with db.write() as cur:
        return bool(cur.execute("UPDATE login_session SET ended_at = now(), end_reason = ? WHERE id_hash = ? "
                                "AND ended_at IS NULL RETURNING 1", [reason, id_hash(session_id)]).fetchall())


def end_all(db: Database, person: str, reason: EndReason) -> int:
    """End every open session of `person` (joins the caller's transaction); how many there were."""
    with db.write() as cur:
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
        cur.execute("""UPDATE login_session SET ended_at = now(),
                         end_reason = CASE WHEN epoch(created_at) <= $life THEN 'expired' ELSE 'idle' END
                       WHERE ended_at IS NULL AND (epoch(created_at) <= $life OR epoch(last_seen_at) <= $idle)""",
                    {"life": now - lifetime, "idle": now - idle})
        cur.execute("DELETE FROM login_session WHERE ended_at < now() - to_days(?)", [keep_days])
