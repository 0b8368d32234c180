"""One session mechanism for the Gradio UI and every JSON route: an HMAC-signed cookie.

The signing key is persisted beside the database (mode 0600), so a restart keeps people logged in; a key
file that is not the user's own private file is refused (app.private_files).
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
from pathlib import Path

from app.private_files import UntrustedFileError, create_private, read_private

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
        # compare_digest takes only ASCII text (a cookie can carry any byte): anything else is not our hex.
        if not sig.isascii() or not hmac.compare_digest(sig, self._sign(body)):
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
