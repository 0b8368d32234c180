"""Annotators and admins, with salted scrypt password hashes.

Cost: n=2^17, r=8, p=1 (OWASP's recommended minimum for scrypt): about 0.3-0.5 s and 128 MiB per
hash. Each stored hash carries its own parameters, so hashes made at an older cost keep verifying
and are rehashed at the current cost on the next successful login. At most two hashes run at once
(each needs 128 MiB), so a burst of logins queues instead of taking gigabytes.

`CRITLAB_TEST_ONLY_SCRYPT_N` lowers n for new hashes (a power of two from 2^10): for test suites that
create hundreds of accounts, never for real use (`critlab serve` warns when it is set).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import threading
from collections.abc import Sequence

from storage import members, sessions
from storage.db import Database
from storage.models import Annotator, Role

SCRYPT_N, _R, _P = 2**17, 8, 1
TEST_ONLY_N_ENV = "CRITLAB_TEST_ONLY_SCRYPT_N"
_MAX_STORED_N = 2**20  # a stored hash asking for more memory than this (1 GiB) is not one of ours
MAX_NAME = 64
MAX_PASSWORD = 1024  # a login checks no more than this, so no account may have a longer one
_KDF_SLOTS = threading.BoundedSemaphore(2)


def scrypt_n() -> int:
    """The cost n for new hashes: SCRYPT_N, unless the test-only variable lowers it."""
    raw = os.environ.get(TEST_ONLY_N_ENV)
    if not raw:
        return SCRYPT_N
    n = int(raw)
    if n < 2**10 or n > SCRYPT_N or n & (n - 1):
        raise ValueError(f"{TEST_ONLY_N_ENV} must be a power of two from 1024 to {SCRYPT_N}, not {raw}")
    return n


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int, dklen: int) -> bytes:
    # maxmem: OpenSSL's default (32 MiB) is below what n=2^17, r=8 needs (128 MiB).
    with _KDF_SLOTS:
        # surrogatepass: any str has bytes to hash (a lone surrogate cannot crash a login)
        return hashlib.scrypt(password.encode("utf-8", "surrogatepass"), salt=salt, n=n, r=r, p=p, dklen=dklen,
                              maxmem=129 * r * (n + p + 2) + 2**20)


def hash_password(password: str) -> str:
    """Salted scrypt hash in the form `scrypt$n$r$p$salt$hash`.

    >>> h = hash_password("pw"); verify_password("pw", h), verify_password("px", h)
    (True, False)
    """
    salt, n = secrets.token_bytes(16), scrypt_n()
    digest = _scrypt(password, salt, n, _R, _P, 32)
    b64 = lambda b: base64.b64encode(b).decode()  # noqa: E731
    return f"scrypt${n}${_R}${_P}${b64(salt)}${b64(digest)}"


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt" or not 1 < int(n) <= _MAX_STORED_N or not 0 < int(r) * int(p) <= 64:
            return False
        got = _scrypt(password, base64.b64decode(salt), int(n), int(r), int(p), len(base64.b64decode(digest)))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, base64.b64decode(digest))


def needs_rehash(stored: str) -> bool:
    """Whether a stored hash is below the current cost (made before n was raised).

    >>> needs_rehash("scrypt$512$8$1$c2FsdA==$ZA=="), needs_rehash(f"scrypt${scrypt_n()}$8$1$c2FsdA==$ZA==")
    (True, False)
    """
    try:
        scheme, n, *_ = stored.split("$")
        return scheme != "scrypt" or int(n) < scrypt_n()
    except ValueError:
        return True


def _check_password(password: str) -> None:
    if len(password) < 8:
        raise ValueError("password must have at least 8 characters")
    if len(password) > MAX_PASSWORD:
        raise ValueError(f"password must have at most {MAX_PASSWORD} characters")


def generate_password() -> str:
    return secrets.token_urlsafe(12)


def add_annotator(db: Database, name: str, role: Role, password: str, *, study_ids: Sequence[int] = (),
                  added_by: str | None = None) -> Annotator:
    """A new person; an annotator is made a member of `study_ids` in the same transaction (all or nothing)."""
    name = name.strip()
    if not name or len(name) > MAX_NAME or any(c.isspace() for c in name):
        raise ValueError(f"annotator name must be 1-{MAX_NAME} characters with no spaces")
    if role not in ("admin", "annotator"):
        raise ValueError(f"role must be admin or annotator, not {role!r}")
    _check_password(password)
    hashed = hash_password(password)  # before taking the writer lock: it takes a while
    with db.write() as cur:
        if cur.execute("SELECT 1 FROM annotator WHERE name = ?", [name]).fetchall():
            raise ValueError(f"annotator {name!r} already exists")
        cur.execute("INSERT INTO annotator (name, role, password_hash) VALUES (?, ?, ?)", [name, role, hashed])
        for study_id in study_ids:
            members.add(db, study_id, name, added_by)
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
    stored = row.pop("password_hash")
    if row["disabled"] or not verify_password(password, stored):
        return None
    if needs_rehash(stored) and not db.read_only:
        # The password is at hand only now: store it at the current cost (not a reset: the person's other
        # sessions go on), unless it was changed in the meantime.
        hashed = hash_password(password)
        with db.write() as cur:
            cur.execute("UPDATE annotator SET password_hash = ? WHERE name = ? AND password_hash = ?",
                        [hashed, name, stored])
    return Annotator(**row)


def list_annotators(db: Database) -> list[Annotator]:
    return [Annotator(**r) for r in db.fetchdicts(_SELECT + " FROM annotator ORDER BY id")]


def set_password(db: Database, name: str, password: str) -> Annotator:
    """A new password; every session the person has ends (a reset is often because one leaked)."""
    _check_password(password)
    hashed = hash_password(password)
    with db.write() as cur:
        if not cur.execute("UPDATE annotator SET password_hash = ? WHERE name = ? RETURNING id",
                           [hashed, name]).fetchall():
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
