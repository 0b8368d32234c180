"""Passwords, the session key file and login rate limiting (sessions: tests/test_sessions.py)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from app.auth import LoginLimiter, load_or_create_key
from storage import annotators
from storage.db import Database


def test_passwords_are_salted_scrypt(db: Database) -> None:
    annotators.add_annotator(db, "a", "admin", "correct horse")
    annotators.add_annotator(db, "b", "annotator", "correct horse")
    h1, h2 = [r[0] for r in db.fetchall("SELECT password_hash FROM annotator ORDER BY id")]
    assert h1.startswith("scrypt$") and h1 != h2 and "correct" not in h1
    assert annotators.authenticate(db, "a", "correct horse").role == "admin"
    assert annotators.authenticate(db, "a", "wrong") is None
    assert annotators.authenticate(db, "nobody", "correct horse") is None


def test_session_key_persists_with_mode_0600(tmp_path: Path) -> None:
    db = str(tmp_path / "x.duckdb")
    k1 = load_or_create_key(db)
    assert load_or_create_key(db) == k1  # a restart keeps people logged in
    mode = stat.S_IMODE(os.stat(f"{db}.secret").st_mode)
    assert mode == 0o600


def test_login_limiter_blocks_after_repeated_failures() -> None:
    lim = LoginLimiter(attempts=3, window=60)
    for _ in range(3):
        assert not lim.blocked("name:a", "ip:1")
        lim.failed("name:a", "ip:1")
    assert lim.blocked("name:a", "ip:2")
    assert not lim.blocked("name:b", "ip:2")
