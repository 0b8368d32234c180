"""Annotators and admins, with salted scrypt password hashes."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

from storage import sessions
from storage.db import Database
from storage.models import Annotator, Role

_N, _R, _P = 2**14, 8, 1  # scrypt cost: ~50 ms per check, 16 MiB


def hash_password(password: str) -> str:
    """Salted scrypt hash in the form `scrypt$n$r$p$salt$hash`.

    >>> h = hash_password("pw"); verify_password("pw", h), verify_password("px", h)
    (True, False)
    """
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=_N, r=_R, p=_P, dklen=32)
    b64 = lambda b: base64.b64encode(b).decode()  # noqa: E731
    return f"scrypt${_N}${_R}${_P}${b64(salt)}${b64(digest)}"


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        got = hashlib.scrypt(password.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p),
                             dklen=len(base64.b64decode(digest)))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, base64.b64decode(digest))


def generate_password() -> str:
    return secrets.token_urlsafe(12)


def add_annotator(db: Database, name: str, role: Role, password: str) -> Annotator:
    name = name.strip()
    if not name or len(name) > 64 or any(c.isspace() for c in name):
        raise ValueError("annotator name must be 1-64 characters with no spaces")
    if role not in ("admin", "annotator"):
        raise ValueError(f"role must be admin or annotator, not {role!r}")
    if len(password) < 8:
        raise ValueError("password must have at least 8 characters")
    with db.write() as cur:
        if cur.execute("SELECT 1 FROM annotator WHERE name = ?", [name]).fetchall():
            raise ValueError(f"annotator {name!r} already exists")
        cur.execute("INSERT INTO annotator (name, role, password_hash) VALUES (?, ?, ?)",
                    [name, role, hash_password(password)])
    return get_annotator(db, name)


_SELECT = "SELECT id, name, role, disabled"


def get_annotator(db: Database, name: str) -> Annotator | None:
    row = db.fetchrow(_SELECT + " FROM annotator WHERE name = ?", [name])
    return Annotator(**row) if row else None


def authenticate(db: Database, name: str, password: str) -> Annotator | None:
    row = db.fetchrow(_SELECT + ", password_hash FROM annotator WHERE name = ?", [name])
    if row is None:
        hash_password(password)  # same cost whether or not the name exists
        return None
    if row["disabled"] or not verify_password(password, row.pop("password_hash")):
        return None
    return Annotator(**row)


def list_annotators(db: Database) -> list[Annotator]:
    return [Annotator(**r) for r in db.fetchdicts(_SELECT + " FROM annotator ORDER BY id")]


def set_password(db: Database, name: str, password: str) -> Annotator:
    """A new password; every session the person has ends (a reset is often because one leaked)."""
    if len(password) < 8:
        raise ValueError("password must have at least 8 characters")
    with db.write() as cur:
        if not cur.execute("UPDATE annotator SET password_hash = ? WHERE name = ? RETURNING id",
                           [hash_password(password), name]).fetchall():
            raise ValueError(f"no annotator {name!r}")
        sessions.end_all(db, name, "password")
    return get_annotator(db, name)


def set_disabled(db: Database, name: str, disabled: bool) -> Annotator:
    """Disable (ending every session of theirs at once) or enable a person. The last enabled admin
    cannot be disabled: nobody could enable anyone again from the UI."""
    with db.write() as cur:
        row = cur.execute("SELECT role, disabled FROM annotator WHERE name = ?", [name]).fetchall()
        if not row:
            raise ValueError(f"no annotator {name!r}")
        role, was = row[0]
        if disabled and not was and role == "admin":
            others = cur.execute("SELECT count(*) FROM annotator WHERE role = 'admin' AND NOT disabled AND name <> ?",
                                 [name]).fetchall()[0][0]
            if others == 0:
                raise ValueError(f"{name!r} is the last enabled admin; add or enable another admin first")
        cur.execute("UPDATE annotator SET disabled = ? WHERE name = ?", [disabled, name])
        if disabled:  # ended, not suspended: enabling the person later does not revive these sessions
            sessions.end_all(db, name, "disabled")
    return get_annotator(db, name)
