"""A clock a test moves by hand (`clock.now += 3600`) instead of waiting: the session, login and submit
limits, and the download links all take one."""

from __future__ import annotations


class Clock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now
