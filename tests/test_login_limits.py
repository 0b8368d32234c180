"""Issue 13, finding 3: the login rate limit holds against guesses sent all at once, cannot be steered with
X-Forwarded-For, and only a few passwords are checked at the same time.

The first two tests use a real server in this process (tests/test_security.py's `serve`), so the limiter's
clock can be moved past the window instead of waiting; the X-Forwarded-For tests run `critlab serve`, whose
uvicorn settings are what is under test.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from app.auth import COOKIE, LoginLimiter
from storage import annotators
from storage.db import Database
from tests.clock import Clock
from tests.security_server import ANN, PASSWORDS, Live
from tests.server_process import start_serve, stop




def _login(url: str, name: str, password: str, headers: dict[str, str] | None = None) -> httpx.Response:
    with httpx.Client(base_url=url, timeout=120) as c:
        return c.post("/api/login", json={"name": name, "password": password}, headers=headers)


def test_concurrent_guesses_cannot_pass_the_limit(live: Live) -> None:
    clock = Clock(1000.0)
    state = live.app.state.critlab
    state.limiter = LoginLimiter(attempts=10, window=300, concurrent=64, clock=clock)  # no slot refusals here
    try:
        n = 30
        start = threading.Barrier(n)

        def guess(i: int) -> httpx.Response:
            start.wait()  # all 30 at once, as an attacker would send them
            return _login(live.url, ANN, f"wrong-{i}")

        with ThreadPoolExecutor(n) as pool:
            answers = list(pool.map(guess, range(n)))
        statuses = sorted(r.status_code for r in answers)
        # Exactly the 10 allowed attempts had their password checked; the other 20 were refused unchecked.
        assert statuses == [401] * 10 + [429] * 20, statuses
        blocked = next(r for r in answers if r.status_code == 429)
        assert blocked.json()["error"] == "too many failed logins; try again in 5 min"
        assert 0 < int(blocked.headers["retry-after"]) <= 300
        # The right password is refused too until the window has passed.
        r = _login(live.url, ANN, PASSWORDS[ANN])
        assert r.status_code == 429 and COOKIE not in r.cookies
        clock.now += 299
        assert _login(live.url, ANN, PASSWORDS[ANN]).status_code == 429
        clock.now += 1
        r = _login(live.url, ANN, PASSWORDS[ANN])
        assert r.status_code == 200 and COOKIE in r.cookies
        # A right password gives its reserved attempt back: ten good logins in a row block nothing.
        for _ in range(10):
            assert _login(live.url, ANN, PASSWORDS[ANN]).status_code == 200
    finally:
        state.limiter = LoginLimiter()


def test_only_a_few_passwords_are_checked_at_once(live: Live, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two slots: while two checks are running a third login is refused at once with 503 (and is not
    counted as a failed attempt); when they end, logins are checked again."""
    state = live.app.state.critlab
    state.limiter = LoginLimiter(attempts=10, window=300, concurrent=2)
    inside, release = threading.Semaphore(0), threading.Event()
    real = annotators.authenticate

    def held(*args: object) -> object:
        inside.release()
        release.wait(timeout=120)
        return real(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(annotators, "authenticate", held)
    try:
        with ThreadPoolExecutor(2) as pool:
            running = [pool.submit(_login, live.url, ANN, "wrong-a"), pool.submit(_login, live.url, ANN, PASSWORDS[ANN])]
            for _ in range(2):
                assert inside.acquire(timeout=120)  # both checks have started and are held
            extra = [_login(live.url, ANN, PASSWORDS[ANN]) for _ in range(3)]
            assert [r.status_code for r in extra] == [503] * 3
            assert extra[0].json()["error"] == "too many logins at once; try again in a few seconds"
            assert extra[0].headers["retry-after"] == "2"
            release.set()
            assert sorted(f.result().status_code for f in running) == [200, 401]
        monkeypatch.setattr(annotators, "authenticate", real)
        assert _login(live.url, ANN, PASSWORDS[ANN]).status_code == 200
        # One failure counted (the wrong password); the three refused logins were not attempts: 9 are left.
        left = [state.limiter.reserve(f"name:{ANN}") is not None for _ in range(10)]
        assert left == [True] * 9 + [False]
    finally:
        release.set()
        state.limiter = LoginLimiter()


# -- X-Forwarded-For: `critlab serve` itself ----------------------------------------------------------
@pytest.fixture
def served_db(tmp_path: Path) -> Path:
    db = Database(tmp_path / "xff.duckdb")
    for i in range(12):
        annotators.add_annotator(db, f"p{i}", "annotator", f"p{i}-password")
    db.close()
    return tmp_path / "xff.duckdb"


def _fail_from(url: str, name: str, forwarded: str) -> int:
    return _login(url, name, "wrong-password", {"X-Forwarded-For": forwarded}).status_code


def test_x_forwarded_for_from_this_machine_does_not_pick_the_counted_address(served_db: Path) -> None:
    """Without --forwarded-allow-ips nobody's X-Forwarded-For is believed, localhost's included: ten guesses
    under ten made-up addresses are ten guesses from 127.0.0.1, and the eleventh is refused."""
    proc, url = start_serve(served_db, served_db.with_suffix(".log"))
    try:
        # Different names too, so only the per-address count can block.
        assert [_fail_from(url, f"p{i}", f"198.51.100.{i}") for i in range(10)] == [401] * 10
        assert _fail_from(url, "p10", "198.51.100.99") == 429
        r = _login(url, "p11", "p11-password", {"X-Forwarded-For": "198.51.100.98"})
        assert r.status_code == 429  # the address that connected is blocked, whatever it claims
    finally:
        stop(proc)


def test_forwarded_allow_ips_believes_the_named_proxy(served_db: Path) -> None:
    """Behind a proxy (`--forwarded-allow-ips 127.0.0.1`) the client address comes from X-Forwarded-For:
    one client's failures block that client, not everyone behind the proxy."""
    proc, url = start_serve(served_db, served_db.with_suffix(".log"), "--forwarded-allow-ips", "127.0.0.1")
    try:
        assert [_fail_from(url, f"p{i}", "203.0.113.7") for i in range(10)] == [401] * 10
        assert _fail_from(url, "p10", "203.0.113.7") == 429
        assert _login(url, "p11", "p11-password", {"X-Forwarded-For": "203.0.113.8"}).status_code == 200
    finally:
        stop(proc)
