"""One session mechanism for the Gradio UI and every JSON route: an HMAC-signed cookie.

The signing key is persisted beside the database (mode 0600), so a restart keeps people logged in.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import math
import os
import secrets
import threading
import time
from collections.abc import Callable
from pathlib import Path

COOKIE = "critlab_session"
SESSION_SECONDS = 12 * 3600

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
    """Signed, expiring session tokens: `base64(json{u, g, exp}).hmac`.

    `g` is the person's session generation when the token was issued: the server compares it with the
    stored one, so disabling a person or resetting their password ends the tokens issued before.

    >>> s = Sessions(b"k" * 32); t = s.issue("ann", 3)
    >>> s.verify(t), s.claims(t), s.verify(t[:-1] + ("0" if t[-1] != "0" else "1"))
    ('ann', ('ann', 3), None)
    """

    def __init__(self, key: bytes, max_age: int = SESSION_SECONDS, clock: Callable[[], float] = time.time):
        # `clock` lets a test move time forward instead of sleeping through an expiry.
        self._key = key
        self.max_age = max_age
        self._clock = clock

    def _sign(self, body: str) -> str:
        return hmac.new(self._key, body.encode(), hashlib.sha256).hexdigest()

    def issue(self, user: str, gen: int = 0) -> str:
        claims = {"u": user, "g": gen, "exp": int(self._clock()) + self.max_age}
        body = base64.urlsafe_b64encode(json.dumps(claims).encode())
        return f"{body.decode()}.{self._sign(body.decode())}"

    def claims(self, token: str | None) -> tuple[str, int] | None:
        """(user, session generation) of a genuine, unexpired token, else None."""
        if not token or "." not in token:
            return None
        body, sig = token.rsplit(".", 1)
        if not hmac.compare_digest(sig, self._sign(body)):
            return None
        try:
            data = json.loads(base64.urlsafe_b64decode(body.encode()))
        except ValueError:
            return None
        if not isinstance(data, dict) or not isinstance(data.get("exp"), int) or data["exp"] < self._clock():
            return None
        user, gen = data.get("u"), data.get("g", 0)  # tokens from before generations existed count as 0
        if not isinstance(user, str) or not isinstance(gen, int) or isinstance(gen, bool):
            return None
        return user, gen

    def verify(self, token: str | None) -> str | None:
        """The user the token was issued to, or None when it is forged, malformed or expired."""
        c = self.claims(token)
        return c[0] if c else None


class LoginLimiter:
    """At most `attempts` failed logins per name and per client address in `window` seconds, and at most
    `concurrent` password checks at once.

    An attempt is reserved before its password is checked, under one lock for every key, and given back
    only when the password was right: guesses sent all at once cannot all pass the check before the
    first failure is counted. `clock` lets a test move time forward instead of waiting out the window.

    >>> t = [0.0]; lim = LoginLimiter(attempts=2, window=60, clock=lambda: t[0])
    >>> a, b = lim.reserve("name:x"), lim.reserve("name:x")
    >>> lim.reserve("name:x"), lim.retry_after("name:x")
    (None, 60)
    >>> lim.release(b); lim.reserve("name:x") is not None
    True
    >>> t[0] = 60.0; lim.reserve("name:x") is not None
    True
    """

    def __init__(self, attempts: int = 10, window: float = 300.0, concurrent: int = 4,
                 clock: Callable[[], float] = time.monotonic):
        self.attempts, self.window, self._clock = attempts, window, clock
        self._fails: dict[str, list[float]] = {}
        self._lock = threading.Lock()
        self._checks = threading.BoundedSemaphore(concurrent)

    def _recent(self, key: str, now: float) -> list[float]:
        recent = [t for t in self._fails.get(key, []) if now - t < self.window]
        if recent:
            self._fails[key] = recent
        else:
            self._fails.pop(key, None)
        return recent

    def reserve(self, *keys: str) -> tuple[float, tuple[str, ...]] | None:
        """Count one attempt against every key, or None (nothing counted) when any key is used up."""
        now = self._clock()
        with self._lock:
            if len(self._fails) > 10_000:  # one-off names would otherwise pile up until a restart
                for k in list(self._fails):
                    self._recent(k, now)
            if any(len(self._recent(k, now)) >= self.attempts for k in keys):
                return None
            for k in keys:
                self._fails.setdefault(k, []).append(now)
        return now, keys

    def release(self, ticket: tuple[float, tuple[str, ...]]) -> None:
        """Give a reserved attempt back (the password was right)."""
        when, keys = ticket
        with self._lock:
            for k in keys:
                if when in self._fails.get(k, []):
                    self._fails[k].remove(when)

    def retry_after(self, *keys: str) -> int:
        """Whole seconds until the first used-up key has an attempt again."""
        now = self._clock()
        with self._lock:
            waits = [self.window - (now - r[-self.attempts]) for k in keys
                     if len(r := self._recent(k, now)) >= self.attempts]
        return max(1, math.ceil(max(waits, default=0)))

    def check_slot(self) -> bool:
        """Take one of the `concurrent` password-check slots without waiting; False when all are busy.
        (scrypt is slow and memory-hungry by design, so a flood of logins is refused, not queued.)"""
        return self._checks.acquire(blocking=False)

    def end_check(self) -> None:
        self._checks.release()
