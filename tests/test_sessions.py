"""Server-side sessions (issue 13): one `login_session` row per login; logging out ends that session even
for a copy of its cookie; a password reset or a disable ends every session of the person; idle and
absolute timeouts, measured with an injected clock; activity written at most once a minute."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from app.auth import COOKIE, IDLE_SECONDS, LIFETIME_SECONDS, TOUCH_SECONDS, Sessions
from app.cli import main
from storage import annotators, sessions
from storage.db import Database
from tests.clock import Clock
from tests.server_process import start_serve, stop

KEY = b"k" * 32
PASSWORD = "ann-pass-12"


@pytest.fixture
def people(db: Database) -> Database:
    annotators.add_annotator(db, "ann", "annotator", PASSWORD)
    annotators.add_annotator(db, "bob", "annotator", "bob-pass-12")
    return db


def _row(db: Database, token: str, s: Sessions) -> tuple:
    sid, _ = s.parse(token)
    return db.fetchall("SELECT annotator, epoch(last_seen_at), ended_at IS NOT NULL, end_reason FROM login_session "
                       "WHERE id_hash = ?", [sessions.id_hash(sid)])[0]


# -- a real server, real HTTP --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    d = tmp_path_factory.mktemp("sessions")
    with Database(d / "s.duckdb") as db:
        annotators.add_annotator(db, "ann", "annotator", PASSWORD)
    proc, url = start_serve(d / "s.duckdb", d / "server.log")
    yield url
    stop(proc)


def _login(url: str) -> httpx.Client:
    c = httpx.Client(base_url=url, timeout=30)
    r = c.post("/api/login", json={"name": "ann", "password": PASSWORD})
    assert r.status_code == 200, r.text
    return c


def _copy(url: str, client: httpx.Client) -> httpx.Client:
    """Another client holding a copy of `client`'s session cookie (a second tab, a script, a stolen header)."""
    c = httpx.Client(base_url=url, timeout=30)
    c.cookies.set(COOKIE, client.cookies[COOKIE])
    return c


@pytest.mark.parametrize("how", ["POST /api/logout", "GET /logout"])
def test_a_copied_cookie_stops_working_when_its_session_logs_out(served: str, how: str) -> None:
    browser, other_login = _login(served), _login(served)
    copy = _copy(served, browser)
    try:
        assert copy.get("/api/me").json()["name"] == "ann"
        if how == "POST /api/logout":
            r = browser.post("/api/logout", json={})
            assert r.status_code == 200
        else:
            r = browser.get("/logout")
            assert r.status_code == 303 and r.headers["location"] == "/login"
        assert COOKIE not in browser.cookies  # the browser forgets it ...
        for path in ("/api/me", "/ui/config", "/api/studies/x/judgments"):
            assert copy.get(path).status_code == 401, path  # ... and the server no longer takes the copy
        # Only that session ended: the person's other login goes on.
        assert other_login.get("/api/me").status_code == 200
    finally:
        for c in (browser, other_login, copy):
            c.close()


def test_logging_out_with_no_or_a_forged_cookie_is_harmless(served: str) -> None:
    with httpx.Client(base_url=served, timeout=30) as c:
        assert c.post("/api/logout", json={}).status_code == 200
        c.cookies.set(COOKIE, Sessions(b"x" * 32).sign("made-up", "ann"))
        assert c.post("/api/logout", json={}).status_code == 200


# -- the session rules, with an injected clock ----------------------------------------------------------
def test_a_session_ends_after_two_idle_hours_by_default(people: Database) -> None:
    clock = Clock()
    s = Sessions(KEY, clock=clock)
    assert (s.idle, s.lifetime) == (IDLE_SECONDS, LIFETIME_SECONDS) == (2 * 3600, 12 * 3600)
    token = s.issue(people, "ann")
    clock.now += IDLE_SECONDS - 1
    assert s.check(people, token).name == "ann"  # activity moves the idle deadline on
    clock.now += IDLE_SECONDS - 1
    assert s.check(people, token).name == "ann"
    clock.now += IDLE_SECONDS
    assert s.check(people, token) is None
    s.flush()
    assert _row(people, token, s)[2:] == (True, "idle")
    clock.now += 1
    assert s.check(people, token) is None  # ended for good, not only while idle


def test_a_session_ends_twelve_hours_after_login_however_active(people: Database) -> None:
    clock = Clock()
    s = Sessions(KEY, clock=clock)
    token = s.issue(people, "ann")
    for _ in range(11):
        clock.now += 3600
        assert s.check(people, token) is not None
    clock.now += 3600 - 1
    assert s.check(people, token) is not None
    clock.now += 1
    assert s.check(people, token) is None
    s.flush()
    assert _row(people, token, s)[2:] == (True, "expired")


def test_timeouts_are_settings(people: Database) -> None:
    clock = Clock()
    s = Sessions(KEY, idle=600, lifetime=1800, clock=clock)
    assert s.max_age == 1800  # the cookie's Max-Age follows the lifetime
    token = s.issue(people, "ann")
    clock.now += 599
    assert s.check(people, token) is not None
    clock.now += 600
    assert s.check(people, token) is None
    token = s.issue(people, "ann")
    for _ in range(3):
        clock.now += 599
        assert s.check(people, token) is not None
    clock.now += 3
    assert s.check(people, token) is None  # 1800 s after login
    with pytest.raises(ValueError, match="positive"):
        Sessions(KEY, idle=0)


def test_activity_is_written_at_most_once_a_minute_and_survives_a_restart(people: Database) -> None:
    clock = Clock()
    start = clock.now
    s = Sessions(KEY, clock=clock)
    token = s.issue(people, "ann")
    for _ in range(5):  # requests within the minute: no write
        clock.now += 10
        assert s.check(people, token) is not None
    s.flush()
    assert _row(people, token, s)[1] == pytest.approx(start)
    clock.now = start + TOUCH_SECONDS
    assert s.check(people, token) is not None  # a minute after the last write: one write
    s.flush()
    assert _row(people, token, s)[1] == pytest.approx(start + TOUCH_SECONDS)
    # A restarted server (nothing in memory) measures idleness from the stored activity.
    restarted = Sessions(KEY, clock=clock)
    clock.now = start + TOUCH_SECONDS + IDLE_SECONDS - 1
    assert restarted.check(people, token) is not None
    restarted.flush()
    clock.now += IDLE_SECONDS
    assert Sessions(KEY, clock=clock).check(people, token) is None


@pytest.mark.parametrize("action", ["reset password", "disable"])
def test_a_password_reset_or_a_disable_ends_every_session_of_that_person(people: Database, action: str) -> None:
    s = Sessions(KEY)
    ann = [s.issue(people, "ann") for _ in range(3)]
    bob = s.issue(people, "bob")
    if action == "reset password":
        annotators.set_password(people, "ann", "new-pass-123")
    else:
        annotators.set_disabled(people, "ann", True)
        annotators.set_disabled(people, "ann", False)  # enabling does not bring them back
    assert [s.check(people, t) for t in ann] == [None, None, None]
    assert s.check(people, bob).name == "bob"  # nobody else's
    reason = "password" if action == "reset password" else "disabled"
    assert {_row(people, t, s)[3] for t in ann} == {reason}


def test_the_servers_memory_of_open_sessions_follows_the_rows(people: Database) -> None:
    """Open sessions are kept in memory (a request then reads only the person); an ending that rolls back
    ends nothing, one that commits ends the session at once."""
    s = Sessions(KEY)
    token = s.issue(people, "ann")
    assert s.check(people, token).name == "ann"
    with pytest.raises(RuntimeError), people.write():
        sessions.end_all(people, "ann", "disabled")
        raise RuntimeError("rolled back")
    assert s.check(people, token).name == "ann"
    sessions.end_all(people, "ann", "disabled")
    assert s.check(people, token) is None
    token = s.issue(people, "ann")
    assert s.check(people, token).name == "ann"
    sessions.housekeep(people, idle=1, lifetime=1, now=time.time() + 10)  # start-up: all timed out
    assert s.check(people, token) is None


def test_a_disabled_person_is_refused_even_with_a_session_row(people: Database) -> None:
    s = Sessions(KEY)
    token = s.issue(people, "ann")
    with people.write() as cur:  # disabled behind the server's back: the person's row is checked too
        cur.execute("UPDATE annotator SET disabled = true WHERE name = 'ann'")
    assert s.check(people, token) is None


def test_forged_tampered_and_old_style_cookies_are_refused(people: Database) -> None:
    s = Sessions(KEY)
    token = s.issue(people, "ann")
    body, sig = token.rsplit(".", 1)
    claims = json.loads(base64.urlsafe_b64decode(body))
    as_bob = base64.urlsafe_b64encode(json.dumps({**claims, "u": "bob"}).encode()).decode()

    def signed(data: dict) -> str:
        b = base64.urlsafe_b64encode(json.dumps(data).encode()).decode()
        return f"{b}.{hmac.new(KEY, b.encode(), hashlib.sha256).hexdigest()}"

    # The signature is right but the session is someone else's, or unknown, or of the old kind ({u, g, exp}).
    for bad in (f"{as_bob}.{sig}", signed({**claims, "u": "bob"}), signed({"s": "no-such-session", "u": "ann"}),
                signed({"u": "ann", "g": 0, "exp": int(time.time()) + 3600}), Sessions(b"x" * 32).sign(claims["s"], "ann"),
                f"{body}.", body, "", None):
        assert s.check(people, bad) is None, bad
    assert s.check(people, token).name == "ann"
    # The database holds only a hash of the session id.
    assert people.fetchval("SELECT count(*) FROM login_session WHERE id_hash = ?", [claims["s"]]) == 0


def test_start_up_ends_sessions_that_timed_out_while_the_server_was_down(people: Database) -> None:
    clock = Clock()
    s = Sessions(KEY, clock=clock)
    old, fresh = s.issue(people, "ann"), None
    clock.now += 3 * 3600
    fresh = s.issue(people, "bob")
    sessions.housekeep(people, idle=IDLE_SECONDS, lifetime=LIFETIME_SECONDS, now=clock.now + 60)
    assert _row(people, old, s)[2:] == (True, "idle") and _row(people, fresh, s)[2] is False


def test_serve_takes_the_timeouts_as_options(tmp_path: Path) -> None:
    from app.server import create_app
    from app.services.context import AppContext

    r = CliRunner().invoke(main, ["serve", "--help"])
    assert "--session-idle" in r.output and "--session-lifetime" in r.output and "[default: 2h]" in r.output
    for bad in ("5x", "30s", "h"):
        r = CliRunner().invoke(main, ["serve", "--session-idle", bad, "--db", str(tmp_path / "x.duckdb")])
        assert r.exit_code == 2 and "--session-idle" in r.output, r.output
    ctx = AppContext(db=Database(tmp_path / "t.duckdb"))
    app = create_app(ctx, session_idle=90 * 60, session_lifetime=8 * 3600)
    state = app.state.critlab
    assert (state.sessions.idle, state.sessions.lifetime) == (5400, 28800)
    state.sessions.close()
    ctx.close()
