"""Passwords, the session key file and login rate limiting (sessions: tests/test_sessions.py)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from app.auth import LoginLimiter, Sessions, load_or_create_key
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
        assert lim.reserve("name:a", "ip:1") is not None
    assert lim.reserve("name:a", "ip:2") is None
    assert lim.reserve("name:b", "ip:2") is not None
    assert lim.reserve("name:b", "ip:1") is None  # ip:1 is used up too, so nothing was counted for name:b
    assert lim.reserve("name:b", "ip:3") is not None


def test_login_limiter_memory_is_bounded() -> None:
    """A refused attempt records nothing, a key whose attempts are all older than the window goes, and the
    table never holds more than `max_keys` keys (the oldest last attempt goes first)."""
    now = [0.0]
    lim = LoginLimiter(attempts=3, window=60, max_keys=100, clock=lambda: now[0])
    for i in range(1000):
        assert lim.reserve(f"name:user-{i}") is not None
    assert len(lim) == 100
    for _ in range(2):
        lim.reserve("name:user-999")
    assert lim.reserve("name:user-999") is None and len(lim) == 100  # recent keys are still counted
    assert lim.reserve("name:user-0") is not None  # evicted: counted afresh
    now[0] = 61.0
    assert lim.reserve("name:user-999") is not None and len(lim) == 1  # all aged out: dropped


def test_a_cookie_signature_of_non_ascii_text_is_no_session() -> None:
    s = Sessions(b"k" * 32)
    body = s.sign("sid", "ann").rsplit(".", 1)[0]
    assert s.parse(f"{body}.{'é' * 64}") is None and s.parse(f"{body}.\udcff") is None
