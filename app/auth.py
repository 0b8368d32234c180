"""One session mechanism for the Gradio UI and every JSON route: a server-side session behind an
HMAC-signed cookie.

The signing key is persisted beside the database (mode 0600) and sessions are rows of the database, so a
restart keeps people logged in; a key file that is not the user's own private file is refused
(app.private_files).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import math
import secrets
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from app.private_files import UntrustedFileError, create_private, read_private
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


SECRET_PURPOSE = "it is the key that signs login cookies: whoever chose it can forge an admin's login"


def load_or_create_key(db_path: str) -> bytes:
    """The signing key stored at `<db>.secret`, created with mode 0600 on first use. A `.secret` that is
    not this user's private regular file is refused (UntrustedFileError): another user who can write the
    directory could otherwise plant a key of their choosing and forge any session."""
    if db_path == ":memory:":
        return secrets.token_bytes(32)
    path = Path(f"{db_path}.secret")
    for _ in range(2):  # a second try when another process created it between our read and create
        data = read_private(path, SECRET_PURPOSE)
        if data is not None:
            try:
                key = bytes.fromhex(data.decode("ascii").strip())
            except ValueError:
                key = b""
            if len(key) < 32:
                raise RuntimeError(f"{path} is not a valid critlab session key; delete it to make a new one "
                                   "(everyone will have to log in again)")
            return key
        key = secrets.token_bytes(32)
        try:
            create_private(path, key.hex().encode())
        except FileExistsError:
            continue
        return key
    raise UntrustedFileError(f"{path} keeps appearing and disappearing; is another process changing it?")


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
        # compare_digest takes only ASCII text (a cookie can carry any byte): anything else is not our hex.
        if not sig.isascii() or not hmac.compare_digest(sig, self._mac(body)):
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
    """At most `attempts` logins per name and per client address in `window` seconds (a right password
    gives its attempt back), and at most `concurrent` password checks at once.

    An attempt is reserved before its password is checked, under one lock for every key, and given back
    only when the password was right: guesses sent all at once cannot all pass the check before the
    first failure is counted. Memory stays bounded whatever names are tried: a refused attempt records
    nothing, each key keeps its last `attempts` times, keys whose last attempt is older than the window
    are dropped, and beyond `max_keys` the keys with the oldest last attempt go first. `clock` lets a test
    move time forward instead of waiting out the window.

    >>> t = [0.0]; lim = LoginLimiter(attempts=2, window=60, clock=lambda: t[0])
    >>> a, b = lim.reserve("name:x"), lim.reserve("name:x")
    >>> lim.reserve("name:x"), lim.retry_after("name:x")
    (None, 60)
    >>> lim.release(b); lim.reserve("name:x") is not None
    True
    >>> t[0] = 60.0; lim.reserve("name:x") is not None, len(lim)
    (True, 1)
    """

    def __init__(self, attempts: int = 10, window: float = 300.0, concurrent: int = 4, max_keys: int = 10_000,
                 clock: Callable[[], float] = time.monotonic):
        self.attempts, self.window, self.max_keys, self._clock = attempts, window, max_keys, clock
        self._fails: OrderedDict[str, deque[float]] = OrderedDict()  # oldest last attempt first
        self._lock = threading.Lock()
        self._checks = threading.BoundedSemaphore(concurrent)

    def __len__(self) -> int:
        return len(self._fails)

    def _expire(self, now: float) -> None:
        while self._fails:
            key, times = next(iter(self._fails.items()))
            if times and now - times[-1] < self.window:
                return
            del self._fails[key]

    def _recent(self, key: str, now: float) -> int:
        return sum(now - t < self.window for t in self._fails.get(key, ()))

    def reserve(self, *keys: str) -> tuple[float, tuple[str, ...]] | None:
        """Count one attempt against every key, or None (nothing counted) when any key is used up."""
        now = self._clock()
        with self._lock:
            self._expire(now)
            if any(self._recent(k, now) >= self.attempts for k in keys):
                return None
            for k in keys:
                times = self._fails.pop(k, None) or deque(maxlen=self.attempts)
                times.append(now)
                self._fails[k] = times  # to the end: the newest last attempt
            while len(self._fails) > self.max_keys:
                self._fails.popitem(last=False)
        return now, keys

    def release(self, ticket: tuple[float, tuple[str, ...]]) -> None:
        """Give a reserved attempt back (the password was right)."""
        when, keys = ticket
        with self._lock:
            for k in keys:
                times = self._fails.get(k)
                if times is not None and when in times:
                    times.remove(when)
                    if not times:
                        del self._fails[k]

    def retry_after(self, *keys: str) -> int:
        """Whole seconds until the first used-up key has an attempt again."""
        now = self._clock()
        with self._lock:
            waits = [self.window - (now - times[0]) for k in keys
                     if (times := self._fails.get(k)) and self._recent(k, now) >= self.attempts]
        return max(1, math.ceil(max(waits, default=0)))

    def check_slot(self) -> bool:
        """Take one of the `concurrent` password-check slots without waiting; False when all are busy.
        (scrypt is slow and memory-hungry by design, so a flood of logins is refused, not queued.)"""
        return self._checks.acquire(blocking=False)

    def end_check(self) -> None:
        self._checks.release()
