"""One session mechanism for the Gradio UI and every JSON route: a server-side session behind an
HMAC-signed cookie.

The signing key is persisted beside the database (mode 0600) and sessions are rows of the database, so a
restart keeps people logged in.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from storage import sessions
from storage.db import Database
from storage.models import Annotator

COOKIE = "critlab_session"
# Defaults of `critlab serve --session-idle / --session-lifetime`.
IDLE_SECONDS = 2 * 3600
LIFETIME_SECONDS = 12 * 3600
TOUCH_SECONDS = 60.0  # a session's last activity is written at most this often
SEEN_LIMIT = 10_000  # activity entries kept in memory before the stale ones are dropped

# What answers without a session. Everything else is refused by the server's session gate before any
# route runs, so a route added later (a new tab's events, a Gradio upgrade's endpoints) is closed until
# someone lists it here. The /ui entries are Gradio's static frontend build: the same files for every
# install, with no data in them.
PUBLIC_PATHS = frozenset({"/", "/login", "/logout", "/api/health", "/api/login", "/api/logout",
                          "/ui/favicon.ico", "/ui/theme.css", "/ui/gradio_api/theme.css"})
PUBLIC_PREFIXES = ("/ui/assets/", "/ui/static/", "/ui/svelte/")


def is_public(path: str) -> bool:
    """Whether `path` may be fetched without a session.

    >>> is_public("/login"), is_public("/ui/assets/index.js"), is_public("/ui/config"), is_public("/ui/")
    (True, True, False, False)
    """
    return path in PUBLIC_PATHS or (path.startswith(PUBLIC_PREFIXES) and ".." not in path)


def load_or_create_key(db_path: str) -> bytes:
    """The signing key stored at `<db>.secret`, created with mode 0600 on first use."""
    if db_path == ":memory:":
        return secrets.token_bytes(32)
    path = Path(f"{db_path}.secret")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        key = bytes.fromhex(path.read_text().strip())
        if len(key) < 32:
            raise RuntimeError(f"{path} is not a valid critlab session key; delete it to make a new one")
        return key
    key = secrets.token_bytes(32)
    with os.fdopen(fd, "w") as f:
        f.write(key.hex())
    return key


class Sessions:
    """Server-side sessions (storage.sessions: one row per login) behind a signed cookie
    `base64(json{s, u}).hmac`: `s` a random session id, `u` the person. Every request looks the row up, so a
    session that was logged out, ended by a password reset or a disable, sat idle for `idle` seconds or
    lived `lifetime` seconds is refused at once, even by a copy of the cookie.

    Activity is kept in memory and written to the row at most every TOUCH_SECONDS per session, on a
    background thread: the check itself is one read (the session row and the person's row, in one
    statement) and never waits for the database's writer.

    >>> s = Sessions(b"k" * 32); t = s.sign("sid", "ann")
    >>> s.parse(t), s.parse(t[:-1] + ("0" if t[-1] != "0" else "1")), s.parse("junk")
    (('sid', 'ann'), None, None)
    """

    def __init__(self, key: bytes, *, idle: float = IDLE_SECONDS, lifetime: float = LIFETIME_SECONDS,
                 clock: Callable[[], float] = time.time):
        # `clock` lets a test move time forward instead of sleeping through a timeout.
        if idle <= 0 or lifetime <= 0:
            raise ValueError("session timeouts must be positive")
        self._key = key
        self.idle, self.lifetime = float(idle), float(lifetime)
        self._clock = clock
        self._seen: dict[str, float] = {}  # session id -> its latest activity seen by this process
        self._pending: set[str] = set()  # sessions with a write queued
        self._lock = threading.Lock()
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="session-writer")

    def now(self) -> float:
        return self._clock()

    @property
    def max_age(self) -> int:
        """The cookie's Max-Age: the browser forgets it when the server would refuse it anyway."""
        return int(self.lifetime)

    def _mac(self, body: str) -> str:
        return hmac.new(self._key, body.encode(), hashlib.sha256).hexdigest()

    def sign(self, session_id: str, person: str) -> str:
        body = base64.urlsafe_b64encode(json.dumps({"s": session_id, "u": person}).encode()).decode()
        return f"{body}.{self._mac(body)}"

    def parse(self, token: str | None) -> tuple[str, str] | None:
        """(session id, person) of a cookie this server signed, else None (no database access)."""
        if not token or "." not in token:
            return None
        body, sig = token.rsplit(".", 1)
        if not hmac.compare_digest(sig, self._mac(body)):
            return None
        try:
            data = json.loads(base64.urlsafe_b64decode(body.encode()))
        except ValueError:
            return None
        if not isinstance(data, dict) or not isinstance(data.get("s"), str) or not isinstance(data.get("u"), str):
            return None  # includes the signed tokens of earlier versions ({u, g, exp}): log in again
        return data["s"], data["u"]

    def issue(self, db: Database, person: str) -> str:
        """A new session for `person` (a row, then the cookie value)."""
        session_id = secrets.token_urlsafe(32)
        now = self._clock()
        sessions.create(db, session_id, person, now)
        with self._lock:
            self._seen[session_id] = now
        return self.sign(session_id, person)

    def check(self, db: Database, token: str | None) -> Annotator | None:
        """The person of a live session, else None (and a timed-out session is ended)."""
        parsed = self.parse(token)
        if parsed is None:
            return None
        session_id, person = parsed
        row = sessions.lookup(db, session_id, person)
        if row is None:
            with self._lock:
                self._seen.pop(session_id, None)
            return None
        now = self._clock()
        with self._lock:
            last = max(row.last_seen_at, self._seen.get(session_id, 0.0))
        reason = "expired" if now - row.created_at >= self.lifetime else "idle" if now - last >= self.idle else None
        if reason is not None:
            self._later(db, session_id, reason)
            return None
        with self._lock:
            self._seen[session_id] = now
            due = now - row.last_seen_at >= TOUCH_SECONDS and session_id not in self._pending
            if due:
                self._pending.add(session_id)
            if len(self._seen) > SEEN_LIMIT:  # sessions nobody came back to
                self._seen = {k: t for k, t in self._seen.items() if now - t < self.idle}
        if due:
            self._later(db, session_id, None, now)
        return row.person

    def end(self, db: Database, token: str | None, reason: str = "logout") -> bool:
        """End the cookie's session (logging out); False when it was not a live session of this server."""
        parsed = self.parse(token)
        if parsed is None:
            return False
        with self._lock:
            self._seen.pop(parsed[0], None)
        return sessions.end(db, parsed[0], reason)

    def _later(self, db: Database, session_id: str, reason: str | None, now: float = 0.0) -> None:
        """Write on the background thread: the activity (`reason` None) or the end of a timed-out session."""
        def write() -> None:
            try:
                if reason is None:
                    sessions.touch(db, session_id, now)
                else:
                    sessions.end(db, session_id, reason)
            except Exception:  # noqa: BLE001 - e.g. the database closing at shutdown; the check is what counts
                pass
            finally:
                with self._lock:
                    self._pending.discard(session_id)
                    if reason is not None:
                        self._seen.pop(session_id, None)
        try:
            self._writer.submit(write)
        except RuntimeError:  # shut down: nothing more to record
            pass

    def flush(self) -> None:
        """Wait for the writes queued so far (tests, and shutdown before the database closes)."""
        self._writer.submit(lambda: None).result()

    def close(self) -> None:
        self._writer.shutdown(wait=True)


class LoginLimiter:
    """At most `attempts` failed logins per name and per client address in `window` seconds."""

    def __init__(self, attempts: int = 10, window: float = 300.0):
        self.attempts, self.window = attempts, window
        self._fails: dict[str, list[float]] = {}
        self._lock = threading.Lock()

    def blocked(self, *keys: str) -> bool:
        now = time.monotonic()
        with self._lock:
            for k in keys:
                recent = [t for t in self._fails.get(k, []) if now - t < self.window]
                self._fails[k] = recent
                if len(recent) >= self.attempts:
                    return True
        return False

    def failed(self, *keys: str) -> None:
        with self._lock:
            for k in keys:
                self._fails.setdefault(k, []).append(time.monotonic())
