"""A per-person rate limit on labels (submits), kept in memory by the server process."""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable

# Generous for people: labelling with the keyboard is a few submits a minute, a reveal step doubles that.
# A script hammering the API is what it stops (with the length limits, it bounds how fast one account can
# grow the database). `critlab serve --submits-per-minute` changes it; 0 turns it off.
SUBMITS_PER_MINUTE = 120
# Tokens one Live generation may ask for (samples x max tokens): the embedded engine works one token at a
# time for everyone, so one big request holds up every other person's Live tab. 8 samples x 512 tokens,
# or one 4,096-token answer, fit. `critlab serve --live-token-cap` changes it; 0 turns it off.
LIVE_TOKEN_CAP = 4096


class RateLimit:
    """At most `limit` events per key in any `window` seconds (a sliding window).

    >>> t = [0.0]; r = RateLimit(2, 60, clock=lambda: t[0])
    >>> r.take("ann"), r.take("ann"), r.take("ann"), r.take("bob")
    (None, None, 60, None)
    >>> t[0] = 59.5; r.take("ann")
    1
    >>> t[0] = 60.0; r.take("ann")
    """

    def __init__(self, limit: int, window: float = 60.0, clock: Callable[[], float] = time.monotonic):
        self.limit, self.window, self._clock = limit, window, clock
        self._events: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def take(self, key: str) -> int | None:
        """Count one event for `key`; None when allowed, else the whole seconds until one is (nothing counted)."""
        now = self._clock()
        with self._lock:
            q = self._events.setdefault(key, deque())
            while q and now - q[0] >= self.window:
                q.popleft()
            if len(q) >= self.limit:
                return max(1, math.ceil(self.window - (now - q[0])))
            q.append(now)
            return None
