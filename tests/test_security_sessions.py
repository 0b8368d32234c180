"""Sessions over HTTP: cookie attributes, expiry on a moved clock, forged and tampered cookies, disabled
people, revocation on disable or password reset, and the login rate limit. A real server in the test
process (tests/security_server.py).
"""

from __future__ import annotations

import base64
import json

from app.auth import COOKIE, LoginLimiter, Sessions
from tests.security_server import ADMIN, ANN, BOB, PASSWORDS, STUDY, Live


def _refused_everywhere(live: Live, cookie: str | None) -> list[str]:
    """The routes that still accept this cookie (empty: refused everywhere): the JSON API, the Gradio
    config and the queue."""
    c = live.client()
    if cookie is not None:
        c.cookies.set(COOKIE, cookie)
    answers = {"/api/me": c.get("/api/me").status_code,
               f"/api/studies/{STUDY}/judgments": c.get(f"/api/studies/{STUDY}/judgments").status_code,
               "/ui/config": c.get("/ui/config").status_code,
               "/ui/gradio_api/queue/join": c.post("/ui/gradio_api/queue/join", json={
                   "data": [], "fn_index": 0, "session_hash": "x", "event_data": None}).status_code}
    return [f"{path} -> {status}" for path, status in answers.items() if status not in (401, 403)]


def test_session_cookie_attributes(live: Live) -> None:
    r = live.client().post("/api/login", json={"name": ANN, "password": PASSWORDS[ANN]})
    cookie = r.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "max-age=43200" in cookie


def test_sessions_expire(live: Live) -> None:
    """After 12 hours however active (a request every hour), and after 2 hours without a request."""
    start = live.clock.now
    try:
        ann = live.login(ANN)
        token = ann.cookies[COOKIE]
        for hour in range(1, 12):
            live.clock.now = start + hour * 3600
            assert ann.get("/api/me").status_code == 200, hour
        live.clock.now = start + 12 * 3600 - 5
        assert {"/api/me -> 200", f"/api/studies/{STUDY}/judgments -> 200",
                "/ui/config -> 200"} <= set(_refused_everywhere(live, token))  # still valid 5 s before
        live.clock.now = start + 12 * 3600 + 5
        assert _refused_everywhere(live, token) == []
        token = live.login(ANN).cookies[COOKIE]
        live.clock.now += 2 * 3600 - 5
        assert "/api/me -> 200" in _refused_everywhere(live, token)
        live.clock.now += 2 * 3600 + 5  # two idle hours after that request
        assert _refused_everywhere(live, token) == []
    finally:
        live.clock.now = start


def test_forged_and_tampered_cookies_are_refused(live: Live) -> None:
    token = live.login(ANN).cookies[COOKIE]
    body, sig = token.rsplit(".", 1)
    claims = json.loads(base64.urlsafe_b64decode(body))
    as_admin = base64.urlsafe_b64encode(json.dumps({**claims, "u": ADMIN}).encode()).decode()
    other = base64.urlsafe_b64encode(json.dumps({**claims, "s": "another-session"}).encode()).decode()
    for forged in (f"{as_admin}.{sig}", f"{other}.{sig}", Sessions(b"x" * 32).sign(claims["s"], ADMIN), f"{body}.",
                   f"{body}.{'0' * len(sig)}", body, "", "null"):
        assert _refused_everywhere(live, forged) == [], forged
    assert _refused_everywhere(live, None) == []


def test_a_disabled_annotators_session_is_refused(live: Live) -> None:
    bob = live.login(BOB)
    token = bob.cookies[COOKIE]
    assert bob.get("/api/me").status_code == 200
    with live.db.write() as cur:
        cur.execute("UPDATE annotator SET disabled = true WHERE name = ?", [BOB])
    try:
        assert _refused_everywhere(live, token) == []
        r = live.client().post("/api/login", json={"name": BOB, "password": PASSWORDS[BOB]})
        assert r.status_code == 401
    finally:
        with live.db.write() as cur:
            cur.execute("UPDATE annotator SET disabled = false WHERE name = ?", [BOB])
    assert bob.get("/api/me").status_code == 200


def test_disabling_or_resetting_a_password_ends_every_open_session(live: Live) -> None:
    """Through the admin API (what the CLI and the Admin tab run): bob's open session is refused
    everywhere at once, re-enabling does not revive it, and an annotator cannot call these operations."""
    admin, ann = live.login(ADMIN), live.login(ANN)
    for op in ("disable_annotator", "enable_annotator", "reset_password"):
        r = ann.post(f"/api/admin/op/{op}", json={"name": BOB})
        assert r.status_code == 403, (op, r.text)
    bob_token = live.login(BOB).cookies[COOKIE]
    try:
        assert admin.post("/api/admin/op/disable_annotator", json={"name": BOB}).status_code == 200
        assert _refused_everywhere(live, bob_token) == []
        assert admin.post("/api/admin/op/enable_annotator", json={"name": BOB}).status_code == 200
        assert _refused_everywhere(live, bob_token) == []  # stays ended after the enable
        bob_token = live.login(BOB).cookies[COOKIE]
        r = admin.post("/api/admin/op/reset_password", json={"name": BOB, "password": "interim-pass-1"})
        assert r.status_code == 200 and r.json()["password"] is None
        assert _refused_everywhere(live, bob_token) == []
        assert live.client().post("/api/login", json={"name": BOB, "password": PASSWORDS[BOB]}).status_code == 401
    finally:
        assert admin.post("/api/admin/op/enable_annotator", json={"name": BOB}).status_code == 200
        assert admin.post("/api/admin/op/reset_password", json={"name": BOB, "password": PASSWORDS[BOB]}).status_code == 200
    assert live.login(BOB).get("/api/me").status_code == 200


def test_logins_are_rate_limited(live: Live) -> None:
    state = live.app.state.critlab
    state.limiter = LoginLimiter()  # a fresh count for this test (10 failures per 5 minutes)
    try:
        c = live.client()
        statuses = [c.post("/api/login", json={"name": ANN, "password": f"wrong-{i}"}).status_code for i in range(10)]
        assert statuses == [401] * 10
        r = c.post("/api/login", json={"name": ANN, "password": PASSWORDS[ANN]})
        assert r.status_code == 429 and COOKIE not in r.cookies  # blocked even with the right password
        # The count is kept per client address too, so guessing across names is blocked as well.
        assert c.post("/api/login", json={"name": BOB, "password": PASSWORDS[BOB]}).status_code == 429
    finally:
        state.limiter = LoginLimiter()
    assert live.client().post("/api/login", json={"name": ANN, "password": PASSWORDS[ANN]}).status_code == 200


