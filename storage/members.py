"""Who may label a study: admins reach every study; an annotator only the studies they are a member of
(`study_member`). A new study has no members; an admin adds them (`critlab studies members add`, the
Admin tab, or `critlab annotators add NAME --study S`).

Removing a member ends their access at once: their open reservations in the study are released (someone
else may take those items) and a submit they make afterwards is refused; the labels they stored stay.

The label loop checks membership without a round trip of its own (storage.label_queue and the submit fold
it into queries they make anyway). A removal moves `version(db)` on while it holds the write lock, so a
check made before a write transaction is re-made inside it only when a removal happened in between.
"""

from __future__ import annotations

import threading
import weakref
from datetime import datetime

from pydantic import BaseModel

from storage.db import Database

# Rows ('access', NULL, NULL) when `$who` may label study `$study` (an admin, or a member): the label loop
# adds them to a UNION ALL it runs anyway (three columns), so the check costs no round trip of its own.
ACCESS_ROWS = """SELECT 'access', NULL, NULL FROM study_member WHERE study_id = $study AND annotator = $who
  UNION ALL SELECT 'access', NULL, NULL FROM annotator WHERE name = $who AND role = 'admin'"""

_versions: weakref.WeakKeyDictionary[Database, int] = weakref.WeakKeyDictionary()
_versions_lock = threading.Lock()


class NotMember(PermissionError):
    """The person may not label this study: an annotator who is not (or no longer) one of its members."""

    def __init__(self, who: str, study: str) -> None:
        self.who, self.study = who, study
        super().__init__(f"{who} is not a member of study {study!r}: an admin adds members in the Admin tab or "
                         f"with `critlab studies members add {study} {who}` (labels stored before stay)")


class Member(BaseModel):
    name: str
    disabled: bool
    added_at: datetime
    added_by: str | None


def version(db: Database) -> int:
    """Moves on with every removal (see the module's docstring)."""
    return _versions.get(db, 0)


def _bump(db: Database) -> None:
    with _versions_lock:
        _versions[db] = _versions.get(db, 0) + 1


def not_member(db: Database, study_id: int, who: str) -> NotMember:
    """The error for `who` and this study, named as people know it."""
    name = db.fetchval("SELECT name FROM study WHERE id = ?", [study_id])
    return NotMember(who, name if name is not None else str(study_id))


def can_label(db: Database, study_id: int, who: str) -> bool:
    return bool(db.fetchall(ACCESS_ROWS, {"study": study_id, "who": who}))


def check(db: Database, study_id: int, who: str) -> None:
    """NotMember unless `who` is an admin or a member of the study."""
    if not can_label(db, study_id, who):
        raise not_member(db, study_id, who)


def recheck(db: Database, study_id: int, who: str, seen: int) -> None:
    """Inside a write transaction, after a check made before it (`seen`: version(db) read before that check's
    query): asks again only when a removal has committed since (no query in the usual case)."""
    if version(db) != seen:
        check(db, study_id, who)


def add(db: Database, study_id: int, who: str, added_by: str | None) -> bool:
    """Make `who` (an annotator) a member; False when they were one already. Admins need no membership."""
    with db.write() as cur:
        row = cur.execute("SELECT role FROM annotator WHERE name = ?", [who]).fetchall()
        if not row:
            raise ValueError(f"no annotator {who!r} (see `critlab annotators list`)")
        if row[0][0] == "admin":
            raise ValueError(f"{who!r} is an admin: admins open every study without being members")
        if not cur.execute("SELECT 1 FROM study WHERE id = ?", [study_id]).fetchall():
            raise ValueError(f"no study with id {study_id}")
        added = cur.execute("""INSERT INTO study_member (study_id, annotator, added_by) VALUES (?, ?, ?)
                               ON CONFLICT DO NOTHING RETURNING 1""", [study_id, who, added_by]).fetchall()
    return bool(added)


def remove(db: Database, study_id: int, who: str) -> bool:
    """End `who`'s membership: their reservations in the study are released, their labels stay. False
    when they were not a member."""
    from storage import label_queue

    with db.write() as cur:
        gone = cur.execute("DELETE FROM study_member WHERE study_id = ? AND annotator = ? RETURNING 1",
                           [study_id, who]).fetchall()
        if gone:
            cur.execute("DELETE FROM assignment WHERE study_id = ? AND annotator = ?", [study_id, who])
            # Once committed, still under the write lock: a check that read the version before this commit
            # is re-made by its transaction (see recheck), one that read it after sees the removal.
            db.after_commit(lambda: _bump(db))
            db.after_commit(lambda: label_queue.invalidate(db, study_id))  # released reservations are free slots
    return bool(gone)


def members(db: Database, study_id: int) -> list[Member]:
    """The study's members, in the order they were added."""
    return [Member(**r) for r in db.fetchdicts(
        """SELECT m.annotator AS name, coalesce(a.disabled, false) AS disabled, m.added_at, m.added_by
           FROM study_member m LEFT JOIN annotator a ON a.name = m.annotator
           WHERE m.study_id = ? ORDER BY m.added_at, m.annotator""", [study_id])]


def studies_of(db: Database, who: str) -> set[int] | None:
    """The ids of the studies `who` may label; None for an admin (every study)."""
    rows = db.fetchall("""SELECT 'admin', NULL FROM annotator WHERE name = $who AND role = 'admin'
                          UNION ALL SELECT 'member', study_id FROM study_member WHERE annotator = $who""",
                       {"who": who})
    if any(kind == "admin" for kind, _ in rows):
        return None
    return {sid for _, sid in rows}


def memberships(db: Database) -> dict[str, set[int]]:
    """Every annotator's member studies, by name, in one query (people with none are left out); `studies_of`
    for everyone at once, admins aside."""
    out: dict[str, set[int]] = {}
    for who, study_id in db.fetchall("SELECT annotator, study_id FROM study_member"):
        out.setdefault(who, set()).add(study_id)
    return out
