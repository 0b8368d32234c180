"""Issue 7, security: sessions on every route, roles checked in every handler (also for raw Gradio queue
calls to hidden events), no reading of other people's labels, password storage, login rate limiting,
session expiry and revocation, secrets kept out of logs and pages, no password hashes in exports, and
SQL built only with parameters.

Most tests run against a real server: `create_app` served by uvicorn on a free 127.0.0.1 port in a
thread of this process, so the test can read the database directly while the server runs, and its
session clock can be moved forward instead of sleeping through an expiry.
"""

from __future__ import annotations

import ast
import base64
import json
import os
import re
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from click.testing import CliRunner
from fastapi import FastAPI
from starlette.routing import Mount

from app.auth import COOKIE, LoginLimiter, Sessions, is_public
from app.server import create_app
from app.services.context import AppContext
from app.services.ops import run_op
from storage import annotators, judgments, members, prompts, responses, studies
from storage.db import Database
from storage.models import ChatMessage, JudgmentIn, PromptIn, ResponseIn
from tests.clock import Clock
from tests.scripted_engine import ScriptedEngine
from tests.server_process import free_port, start_serve, stop

# A marker that appears in every piece of stored data (study, prompts, responses, names, comments): a
# response that contains it leaked data.
MARK = "q7z3k"
STUDY = f"sec-{MARK}"
# The admin's and bob's names carry the marker too (tables of people, progress per annotator); the
# annotator under test does not, so a page echoing the caller's own name is not taken for a leak.
ADMIN, ANN, BOB = f"admin-{MARK}", "ann", f"bob-{MARK}"
PASSWORDS = {ADMIN: "admin-pass-1", ANN: "ann-pass-12", BOB: "bob-pass-12"}
BOB_COMMENT = f"bob-private-comment-{MARK}"
SQL_PAYLOAD = "'; DROP TABLE judgment; --"
ROOT = Path(__file__).resolve().parents[1]


# -- a real server in this process ------------------------------------------------------------------

@dataclass
class Live:
    url: str
    ctx: AppContext
    app: FastAPI
    clock: Clock
    server: uvicorn.Server
    thread: threading.Thread
    clients: list[httpx.Client] = field(default_factory=list)

    @property
    def db(self) -> Database:
        return self.ctx.db

    def client(self) -> httpx.Client:
        c = httpx.Client(base_url=self.url, timeout=30)
        self.clients.append(c)
        return c

    def login(self, name: str, password: str | None = None) -> httpx.Client:
        c = self.client()
        r = c.post("/api/login", json={"name": name, "password": password or PASSWORDS[name]})
        assert r.status_code == 200, r.text
        return c

    def stop(self) -> None:
        for c in self.clients:
            c.close()
        self.server.should_exit = True
        self.thread.join(timeout=30)


def serve(db: Database) -> Live:
    clock = Clock(time.time())
    # Jobs started through the UI (generate, score) run on a scripted engine: no model, nothing remote.
    ctx = AppContext(db=db, engine_factory=lambda cfg: ScriptedEngine())
    app = create_app(ctx, sessions=Sessions(b"s" * 32, clock=clock))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           timeout_graceful_shutdown=2))
    thread = threading.Thread(target=server.run, daemon=True, name=f"critlab-test-{port}")
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the critlab test server did not start")
        time.sleep(0.02)
    return Live(f"http://127.0.0.1:{port}", ctx, app, clock, server, thread)


def seed(db: Database) -> None:
    """Three people, one blind study with two prompts and imported responses; bob has labelled p1."""
    for name, password in PASSWORDS.items():
        annotators.add_annotator(db, name, "admin" if name == ADMIN else "annotator", password)
    s = studies.create_study(db, STUDY, guidelines=f"guidelines {MARK}")
    for name in (ANN, BOB):
        members.add(db, s.id, name, ADMIN)
    prompts.insert_prompts(db, s.id, [
        PromptIn(external_id=f"p{i}", messages=[ChatMessage(role="user", content=f"question {i} {MARK}")])
        for i in (1, 2)])
    for p in prompts.list_prompts(db, s.id):
        responses.insert_responses(db, [ResponseIn(prompt_id=p.id, origin="imported", text=f"answer {k} {MARK}")
                                        for k in (1, 2)])
    p1 = prompts.list_prompts(db, s.id)[0]
    r1, r2 = [r.id for r in responses.responses_for_prompt(db, p1.id)]
    common = {"study_id": s.id, "prompt_id": p1.id, "judge_kind": "human", "judge": BOB, "shown_order": [r1, r2]}
    judgments.record(db, [
        JudgmentIn(**common, method="best_of_n", response_id=r2, idempotency_key=uuid.uuid4().hex),
        JudgmentIn(**common, method="comment", rationale=BOB_COMMENT, idempotency_key=uuid.uuid4().hex)])


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    db = Database(tmp_path_factory.mktemp("sec") / "sec.duckdb")
    seed(db)
    srv = serve(db)
    yield srv
    srv.stop()  # the app's lifespan closes the database


def dump(db: Database) -> dict[str, list[str]]:
    """Every row of every table, for before/after comparisons."""
    tables = [r[0] for r in db.fetchall("SELECT table_name FROM duckdb_tables() WHERE schema_name = 'main' "
                                        "ORDER BY table_name")]
    return {t: sorted(map(repr, db.fetchall(f'SELECT * FROM "{t}"'))) for t in tables}


# -- every route needs a session --------------------------------------------------------------------
def _walk(routes: list[Any], prefix: str = "") -> Iterator[tuple[str, set[str], Any]]:
    """(path, methods, route) of every route, through mounts and FastAPI's included routers."""
    for r in routes:
        if isinstance(r, Mount):
            yield from _walk(r.routes, prefix + r.path)
        elif hasattr(r, "original_router"):  # fastapi's _IncludedRouter (an include_router() of the sub-app)
            yield from _walk(r.original_router.routes, prefix + getattr(r.include_context, "prefix", ""))
        else:
            yield prefix + r.path, set(getattr(r, "methods", None) or {"WEBSOCKET"}), r


PATH_VALUES = {"study": STUDY, "job_id": "1", "name": "list_studies", "api_name": "predict", "event_id": "e1",
               "session_hash": "h1", "size": "192", "key": "k", "run": "1", "component_id": "1",
               "segment_id": "1", "ext": "ts", "id": "1", "environment": "prod", "type": "js",
               "file_name": "index.js"}


def _concrete(path: str, db_path: str) -> str:
    def value(m: re.Match) -> str:
        name, conv = m.group(1), m.group(2)
        if conv == "path":  # a file route gets the database itself: the most valuable file to steal
            return db_path.lstrip("/") if name in ("path_or_url", "url_path") else "index.js"
        return PATH_VALUES.get(name, "x")
    return re.sub(r"\{(\w+)(?::(\w+))?\}", value, path)


def test_every_route_refuses_a_visitor_without_a_session(live: Live) -> None:
    """Enumerates the app's routes (JSON API, login page, and every Gradio route) and calls each with
    no cookie: only the login flow and Gradio's static frontend files answer, and no answer carries data."""
    routes = list(_walk(live.app.routes))
    assert not [p for p, m, _ in routes if "WEBSOCKET" in m], "a websocket route bypasses the HTTP session gate"
    paths = {p for p, _, _ in routes}
    assert {"/api/admin/op/{name}", "/ui/config", "/ui/gradio_api/queue/join", "/ui/gradio_api/info"} <= paths
    anon = live.client()
    leaks, open_routes = [], []
    for path, methods, _ in routes:
        url = _concrete(path, live.db.path)
        for method in sorted(methods - {"HEAD", "OPTIONS"}):
            # A stream (SSE) that starts answering is an open route even if it never ends.
            try:
                with anon.stream(method, url, json={} if method in ("POST", "PUT") else None,
                                 timeout=httpx.Timeout(10, read=3)) as r:
                    body = b""
                    for chunk in r.iter_bytes():
                        body += chunk
                        if len(body) > 200_000:
                            break
            except httpx.ReadTimeout:
                open_routes.append(f"{method} {url}: streams without a session")
                continue
            text = body.decode("utf-8", "replace")
            if MARK in text:
                leaks.append(f"{method} {url} -> {r.status_code}: {text[:200]}")
            refused = r.status_code in (401, 403) or (r.status_code in (302, 303, 307)
                                                      and r.headers.get("location", "").endswith("/login"))
            if not refused and not is_public(url):
                open_routes.append(f"{method} {url} -> {r.status_code}: {text[:120]}")
    assert not leaks, "\n".join(leaks)
    assert not open_routes, "routes that answer without a session:\n" + "\n".join(open_routes)


# -- the Gradio queue protocol, spoken by hand -------------------------------------------------------
@dataclass
class Event:
    name: str  # the handler's name, for messages
    fn_index: int
    trigger: int | None
    trigger_elem: str | None
    inputs: list[int]
    admin: bool  # triggered from a tab that is hidden until an admin's page loads


def ui_events(client: httpx.Client) -> tuple[list[Event], dict[int, dict]]:
    """Every server-side event of the UI, from /ui/config, and the components by id.

    An event is an admin event when its trigger sits in (or is) a tab that the UI builds hidden: those
    tabs are shown on page load to admins only, so a new admin tab's events are found without listing them.
    """
    config = client.get("/ui/config").json()
    comps = {c["id"]: c for c in config["components"]}
    hidden: set[int] = set()

    def walk(node: dict, inside: bool) -> None:
        comp = comps.get(node["id"], {})
        here = inside or (comp.get("type") == "tabitem" and comp.get("props", {}).get("visible") is False)
        if here:
            hidden.add(node["id"])
        for child in node.get("children", []):
            walk(child, here)

    walk(config["layout"], False)
    events = []
    for i, dep in enumerate(config["dependencies"]):
        if not dep.get("backend_fn"):
            continue
        trigger = dep["targets"][0][0] if dep["targets"] else None
        elem = comps.get(trigger, {}).get("props", {}).get("elem_id") if trigger is not None else None
        events.append(Event(dep.get("api_name") or str(i), i, trigger, elem, list(dep["inputs"]), trigger in hidden))
    return events, comps


def queue_call(client: httpx.Client, event: Event, data: list[Any], session_hash: str) -> dict[str, Any]:
    """POST queue/join, then read queue/data (SSE) until this event completes; the completion message."""
    r = client.post("/ui/gradio_api/queue/join", json={
        "data": data, "fn_index": event.fn_index, "session_hash": session_hash, "event_data": None,
        "trigger_id": event.trigger})
    if r.status_code != 200:
        return {"msg": "refused", "status": r.status_code, "success": False, "output": {"error": r.text}}
    event_id = r.json()["event_id"]
    with client.stream("GET", "/ui/gradio_api/queue/data", params={"session_hash": session_hash}) as s:
        for line in s.iter_lines():
            if not line.startswith("data:"):
                continue
            msg = json.loads(line[5:])
            if msg.get("msg") == "process_completed" and msg.get("event_id") == event_id:
                return msg
    raise AssertionError(f"{event.name}: the queue stream ended without completing the event")


# The admin actions the issue names, by the element that triggers them (import, generate, score, export,
# manage annotators, study settings ...), and the Live tab's Generate, which an annotator may use only
# for a study that grants it (none does here). Each must be refused by the handler's own role check, not
# only by Gradio refusing an input (a study the annotator's page never listed).
ADMIN_ACTIONS = {"create-study-btn", "import-btn", "gen-start", "score-start", "cfg-save", "cfg-confirm", "cfg-requeue",
                 "ann-add",
                 "ann-disable", "ann-enable", "ann-reset", "agr-compute", "agr-open", "export-preview",
                 "export-write", "live-generate"}
DENIALS = ("admins only", "is for admins")
# Inputs an admin would send (by elem_id; other inputs keep their defaults). With them every admin action
# succeeds for an admin (the control test below), so an annotator's refusal is the role check's doing.
PLAUSIBLE = {"new-study-name": "made-through-the-queue", "import-study": STUDY, "gen-study": STUDY,
             "gen-engine": "embedded", "gen-n": 2, "gen-max-tokens": 8, "gen-seed": "7", "gen-new-run": True,
             "score-methods": ["p_true"], "cfg-study": STUDY, "cfg-questions": ["best", "rating"],
             "cfg-blind": False, "cfg-answers": "none", "cfg-guidelines": "changed through the queue",
             "cfg-requeue-id": "p1", "agr-study": STUDY, "agr-boot": 0, "agr-open-id": "p1", "ann-name": "mallory",
             "ann-role": "admin", "ann-pick": "mallory", "export-study": STUDY, "export-source": "human", "live-study": STUDY,
             "live-prompt": "Say hi.", "live-n": 1, "live-max-tokens": 8, "live-methods": []}
PROMPTS_FILE = '{"id": "new1", "prompt": "imported through the queue"}\n'


def upload(client: httpx.Client, name: str, content: str) -> dict[str, Any]:
    r = client.post("/ui/gradio_api/upload", files={"files": (name, content.encode(), "application/octet-stream")})
    assert r.status_code == 200, r.text
    return {"path": r.json()[0], "orig_name": name, "meta": {"_type": "gradio.FileData"}}


def inputs_for(event: Event, comps: dict[int, dict], prompts_file: dict[str, Any]) -> list[Any]:
    values = []
    for cid in event.inputs:
        comp = comps[cid]
        if comp["type"] == "state":
            values.append(None)  # the server keeps state; clients send nothing
        elif comp["type"] == "file":
            values.append(prompts_file)
        else:
            props = comp.get("props", {})
            default = "" if comp["type"] == "textbox" and props.get("value") is None else props.get("value")
            values.append(PLAUSIBLE.get(props.get("elem_id"), default))  # a browser sends "" for an empty box
    return values


def answer(msg: dict[str, Any]) -> str:
    return json.dumps(msg.get("output", {}), ensure_ascii=False)


def denied(msg: dict[str, Any]) -> bool:
    return any(d in answer(msg) for d in DENIALS)


def failed(msg: dict[str, Any]) -> bool:
    """An error, or a warning (⚠️ ...) as the status output."""
    data = msg.get("output", {}).get("data") or []
    return not msg.get("success") or any(isinstance(o, str) and o.startswith("⚠️") for o in data)


def action(events: list[Event], elem_id: str) -> Event:
    """The event of a button that takes inputs (its other events only refresh pickers)."""
    found = [e for e in events if e.trigger_elem == elem_id and e.inputs]
    assert len(found) == 1, f"expected one event with inputs on #{elem_id}, found {[e.name for e in found]}"
    return found[0]


@pytest.fixture(scope="module")
def queue_live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    """A server of its own: the admin half of the queue test changes its database a lot."""
    db = Database(tmp_path_factory.mktemp("queue") / "queue.duckdb")
    seed(db)
    srv = serve(db)
    yield srv
    srv.ctx.wait_jobs(timeout=60)
    srv.stop()


def test_annotator_cannot_run_any_admin_event_through_the_gradio_queue(queue_live: Live) -> None:
    """Logged in as an annotator, call every event of the hidden tabs through the raw queue protocol with
    the inputs an admin would send: none shows study data or changes the database, and each admin action
    is refused on role."""
    ann = queue_live.login(ANN)
    events, comps = ui_events(ann)
    hidden = [e for e in events if e.admin]
    assert ADMIN_ACTIONS <= {e.trigger_elem for e in hidden}, "an admin action is no longer in a hidden tab"
    session = uuid.uuid4().hex
    on_load = next(e for e in events if e.name == "on_load")
    assert queue_call(ann, on_load, [], session)["success"]  # what the annotator's page does first
    prompts_file = upload(ann, "prompts.jsonl", PROMPTS_FILE)
    before = dump(queue_live.db)
    problems = []
    for event in hidden:
        data = inputs_for(event, comps, prompts_file)
        msg = queue_call(ann, event, data, session)
        if "not in the list of choices" in answer(msg):
            # Gradio refused a study the annotator's page never listed; again with none chosen, so that
            # the handler itself runs and must refuse.
            data = [None if comps[c]["type"] == "dropdown" else v for c, v in zip(event.inputs, data)]
            msg = queue_call(ann, event, data, session)
        if MARK in answer(msg):
            problems.append(f"{event.name} (#{event.trigger_elem}) showed data to an annotator: {answer(msg)[:300]}")
        if event.trigger_elem in ADMIN_ACTIONS and event.inputs and not denied(msg):
            problems.append(f"{event.name} (#{event.trigger_elem}) did not refuse on role: {answer(msg)[:300]}")
        after = dump(queue_live.db)
        if after != before:
            changed = [t for t in after if after[t] != before.get(t)]
            problems.append(f"{event.name} (#{event.trigger_elem}) changed {changed} for an annotator")
            before = after
    assert not problems, "\n".join(problems)


def test_the_same_queue_calls_do_work_for_an_admin(queue_live: Live) -> None:
    """The control for the test above: with the same inputs every admin action succeeds for an admin,
    so the annotator's refusals come from the role checks and not from implausible inputs."""
    admin = queue_live.login(ADMIN)
    events, comps = ui_events(admin)
    session = uuid.uuid4().hex
    for e in events:  # the admin's page load and the study pickers' refreshes fill the dropdowns
        if not e.inputs and (e.name == "on_load" or e.admin):
            assert queue_call(admin, e, [], session)["success"], e.name
    prompts_file = upload(admin, "prompts.jsonl", PROMPTS_FILE)
    failures = []
    # Settings first, then the actions that start jobs, so every action finds what it needs; the Live
    # tab is left out: it is not admin-only, and the Live tests cover it.
    # The study has labels, so turning blind off takes the confirming button (cfg-save, the same handler
    # without confirmation, would ask for it); the settings form is loaded first, as the page does.
    order = ["cfg-confirm", "cfg-requeue", "create-study-btn", "import-btn", "gen-start", "score-start", "ann-add",
             "ann-disable", "ann-enable", "ann-reset", "agr-compute", "agr-open", "export-preview", "export-write"]
    assert set(order) == ADMIN_ACTIONS - {"live-generate", "cfg-save"}
    load_settings = action(events, "cfg-study")
    assert queue_call(admin, load_settings, [STUDY], session)["success"]
    for elem_id in order:
        event = action(events, elem_id)
        before = dump(queue_live.db)
        msg = queue_call(admin, event, inputs_for(event, comps, prompts_file), session)
        if failed(msg) or denied(msg):
            failures.append(f"#{elem_id} failed for an admin: {answer(msg)[:400]}")
        elif elem_id not in ("agr-compute", "agr-open", "export-preview") and dump(queue_live.db) == before:
            failures.append(f"#{elem_id} changed nothing for an admin")
        if elem_id == "gen-start":
            queue_live.ctx.wait_jobs(timeout=60)  # scoring needs the samples
    assert not failures, "\n".join(failures)
    mallory = annotators.get_annotator(queue_live.db, "mallory")
    assert mallory.role == "admin" and not mallory.disabled  # disabled, enabled, reset: each changed the database


# -- nobody reads another person's labels ----------------------------------------------------------
def test_annotator_reads_only_own_judgments_through_the_json_api(live: Live) -> None:
    ann, admin = live.login(ANN), live.login(ADMIN)
    assert {j["judge"] for j in admin.get(f"/api/studies/{STUDY}/judgments").json()["judgments"]} == {BOB}
    for params in ({}, {"include_superseded": "true"}):
        r = ann.get(f"/api/studies/{STUDY}/judgments", params=params)
        assert r.status_code == 200 and r.json()["judgments"] == []
    for judge in (BOB, "", "%", f"{BOB}' OR '1'='1"):
        r = ann.get(f"/api/studies/{STUDY}/judgments", params={"judge": judge, "include_superseded": "true"})
        assert r.status_code == 403, (judge, r.text)
    # Whatever else the JSON API serves about a study (its label queue ...) carries none of bob's labels.
    for path, methods, _ in _walk(live.app.routes):
        if path.startswith("/api/studies/{study}") and "GET" in methods:
            r = ann.get(_concrete(path, live.db.path))
            assert BOB_COMMENT not in r.text and BOB not in r.text, (path, r.text[:300])


def test_annotator_sees_none_of_anothers_labels_in_the_label_tab(live: Live) -> None:
    """ann walks through every item of the blind study (bob labelled p1 with a comment) via the Label tab's
    own events; bob's answers never show. The control: bob going back to p1 sees his comment, so the
    prefill path does show a person's own labels."""
    ann = live.login(ANN)
    events, _ = ui_events(ann)
    by_name = {e.name: e for e in events}
    session = uuid.uuid4().hex
    assert queue_call(ann, by_name["on_load"], [], session)["success"]  # fills the study picker
    pick_study = next(e for e in events if e.trigger_elem == "study-select")
    shown = [answer(queue_call(ann, pick_study, [STUDY], session))]
    for _ in range(3):
        shown.append(answer(queue_call(ann, by_name["do_skip"], [None], session)))
    assert any("Prompt p1" in s for s in shown) and any("Prompt p2" in s for s in shown)
    assert not [s for s in shown if BOB_COMMENT in s or BOB in s]

    bob, bob_session = live.login(BOB), uuid.uuid4().hex
    assert queue_call(bob, by_name["on_load"], [], bob_session)["success"]
    back = queue_call(bob, by_name["do_back"], [None, STUDY], bob_session)
    assert BOB_COMMENT in answer(back)


# -- sessions -------------------------------------------------------------------------------------
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


# -- stored secrets --------------------------------------------------------------------------------
def test_passwords_are_stored_salted_and_hashed(db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(annotators.TEST_ONLY_N_ENV, raising=False)  # the real cost, not the suite's cheaper one
    passwords = {"p1": "same password 1", "p2": "same password 1", "p3": "another-pass"}
    for name, pw in passwords.items():
        annotators.add_annotator(db, name, "annotator", pw)
    rows = dict(db.fetchall("SELECT name, password_hash FROM annotator"))
    salts = set()
    for name, stored in rows.items():
        scheme, n, r, p, salt, digest = stored.split("$")
        assert (scheme, int(n), int(r), int(p)) == ("scrypt", 2**17, 8, 1)  # OWASP's minimum for scrypt
        assert len(base64.b64decode(salt)) == 16 and len(base64.b64decode(digest)) == 32
        assert passwords[name] not in stored
        salts.add(salt)
        assert annotators.verify_password(passwords[name], stored)
    assert len(salts) == 3 and rows["p1"] != rows["p2"]  # the same password twice: different hashes
    db.checkpoint()
    raw = b"".join(Path(f).read_bytes() for f in (db.path, f"{db.path}.wal") if Path(f).exists())
    assert not [pw for pw in passwords.values() if pw.encode() in raw]


def _labelled_study(db: Database) -> None:
    """Two annotators who rate two responses per prompt differently: every export kind has rows."""
    for name in ("alice", "carol"):
        annotators.add_annotator(db, name, "annotator", f"{name}-password")
    s = studies.create_study(db, "ex")
    prompts.insert_prompts(db, s.id, [PromptIn(external_id=f"e{i}", messages=[
        ChatMessage(role="user", content=f"q{i}")]) for i in range(3)])
    for p in prompts.list_prompts(db, s.id):
        r1, r2 = responses.insert_responses(db, [ResponseIn(prompt_id=p.id, origin="imported", text=f"a{k}")
                                                 for k in (1, 2)])
        for name, (best, ratings) in {"alice": (r1, {r1: 6, r2: 2}), "carol": (r1, {r1: 5, r2: 3})}.items():
            common = {"study_id": s.id, "prompt_id": p.id, "judge_kind": "human", "judge": name,
                      "shown_order": [r1, r2]}
            judgments.record(db, [JudgmentIn(**common, method="best_of_n", response_id=best,
                                             idempotency_key=uuid.uuid4().hex)] + [
                JudgmentIn(**common, method="likert", response_id=rid, value=v, idempotency_key=uuid.uuid4().hex)
                for rid, v in ratings.items()])


def test_exports_and_reports_never_include_password_hashes(db: Database, tmp_path: Path) -> None:
    _labelled_study(db)
    hashes = [h for (h,) in db.fetchall("SELECT password_hash FROM annotator")]
    needles = hashes + [h.split("$")[4] for h in hashes] + [h.split("$")[5] for h in hashes] + ["scrypt$"]
    ctx = AppContext(db=db)
    out = tmp_path / "out"
    run_op(ctx, "admin", "export_judgments", {"study": "ex", "out": str(out / "judgments.jsonl")})
    run_op(ctx, "admin", "export_dpo", {"study": "ex", "out": str(out / "dpo.jsonl")})
    for kind in ("dpo", "rm", "kto", "sft"):  # (judge exports need model critiques; none here)
        r = run_op(ctx, "admin", "export", {"study": "ex", "kind": kind, "annotator_names": True,
                                             "out": str(out / kind / f"{kind}.jsonl")})
        assert r["rows"] > 0, (kind, r)
        preview = run_op(ctx, "admin", "export_preview", {"study": "ex", "kind": kind, "annotator_names": True})
        (out / kind / "preview.json").write_text(json.dumps(preview))
    for fmt in ("json", "md", "html"):
        run_op(ctx, "admin", "agreement", {"study": "ex", "format": fmt, "n_boot": 0,
                                            "out": str(out / f"agreement.{fmt}")})
    run_op(ctx, "admin", "export", {"study": "ex", "kind": "dpo", "out": str(out / "pseudonymous" / "dpo.jsonl")})
    assert "alice" not in (out / "pseudonymous" / "dpo.jsonl").read_text()  # by default people are pseudonyms
    needles.append(db.fetchval("SELECT value FROM settings WHERE key = 'pseudonym_salt'"))  # their key stays home
    files = [f for f in out.rglob("*") if f.is_file()]
    assert len(files) >= 14
    assert "alice" in (out / "judgments.jsonl").read_text()  # the files do name people ...
    leaks = [(f.name, n[:12]) for f in files for n in needles if n in f.read_text(encoding="utf-8", errors="replace")]
    assert not leaks  # ... but never carry their password hashes


# -- SQL is built with parameters only --------------------------------------------------------------
SQL_WORDS = re.compile(r"\b(SELECT|INSERT INTO|UPDATE|DELETE FROM|WHERE|COPY|ATTACH|CREATE|DROP|ALTER|PRAGMA)\b")
# Every expression that storage/ interpolates into SQL text, reviewed: each is a column or table name,
# a fragment or a placeholder list built from constants in the code, never a value a person typed.
# A new interpolation fails the test below until someone checks it and adds it here.
REVIEWED_SQL_INTERPOLATIONS = {
    ("storage/analysis/report.py", "_COLUMNS"),  # a constant column list
    ("storage/backup.py", "t"),  # table names read from duckdb_tables()
    ("storage/checklists.py", "' AND '.join(where)"),  # "col = ?" for constant column names
    ("storage/import_judgments.py", "columns"), ("storage/import_judgments.py", "select"),  # constant lists
    ("storage/import_judgments.py", "name"), ("storage/import_judgments.py", "table"),  # constant names
    ("storage/import_judgments.py", "sequence"),  # constant sequence names
    ("storage/jobs.py", "', '.join(sets)"), ("storage/studies.py", "', '.join(sets)"),  # "col = ?" as above
    ("storage/judgments.py", "' AND '.join(where)"), ("storage/judgments.py", "extra"),
    ("storage/judgments.py", "', '.join('?' * 24)"), ("storage/judgments.py", "_INSERT_COLS"),
    ("storage/responses.py", "', '.join('?' * 20)"), ("storage/responses.py", "_COLS"),
    ("storage/label_queue.py", "_LABELLED"), ("storage/label_queue.py", "_NEEDED"),
    ("storage/label_queue.py", "_READY"),  # constant sub-queries with $named parameters
    ("storage/studies.py", "col"),  # "id" or "name"
}


def _constant(node: ast.AST) -> bool:
    """Text built only from literals and module constants (NAMES_IN_CAPS), e.g. `_CURRENT + _MODEL_OK + "..."`
    or `_CURRENT.replace("a", "")`: SQL assembled in the code, with no value from outside."""
    if isinstance(node, ast.Constant):
        return isinstance(node.value, str)
    if isinstance(node, ast.Name):
        return node.id.lstrip("_").isupper()
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return _constant(node.left) and _constant(node.right)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "replace":
        return _constant(node.func.value) and all(_constant(a) for a in node.args)
    return False


def sql_interpolations(root: Path) -> set[tuple[str, str]]:
    """(file, expression) of every value formatted into a string that holds SQL, in storage/."""
    found = set()
    for f in sorted((root / "storage").rglob("*.py")):
        rel = f.relative_to(root).as_posix()
        for node in ast.walk(ast.parse(f.read_text(encoding="utf-8"))):
            if isinstance(node, ast.JoinedStr):
                text = "".join(v.value for v in node.values if isinstance(v, ast.Constant))
                if SQL_WORDS.search(text):
                    found |= {(rel, ast.unparse(v.value)) for v in node.values if isinstance(v, ast.FormattedValue)}
            elif isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Mod, ast.Add)) and not _constant(node):
                if any(isinstance(x, ast.Constant) and isinstance(x.value, str) and SQL_WORDS.search(x.value)
                       for x in (node.left, node.right)):
                    found.add((rel, ast.unparse(node)))
            elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "format"
                  and isinstance(node.func.value, ast.Constant) and isinstance(node.func.value.value, str)
                  and SQL_WORDS.search(node.func.value.value)):
                found.add((rel, ast.unparse(node)))
    return found


def test_storage_formats_no_values_into_sql() -> None:
    found = sql_interpolations(ROOT)
    assert ("storage/studies.py", "col") in found  # the scan does see f-string SQL
    assert not found - REVIEWED_SQL_INTERPOLATIONS, sorted(found - REVIEWED_SQL_INTERPOLATIONS)


def _intact(db: Database, tables: list[str], judgments_before: int) -> None:
    now = [r[0] for r in db.fetchall("SELECT table_name FROM duckdb_tables() WHERE schema_name = 'main' "
                                     "ORDER BY table_name")]
    assert now == tables and db.fetchval("SELECT count(*) FROM judgment") == judgments_before


def test_sql_payloads_through_the_json_api_are_harmless(live: Live) -> None:
    tables = [r[0] for r in live.db.fetchall("SELECT table_name FROM duckdb_tables() WHERE schema_name = 'main' "
                                             "ORDER BY table_name")]
    n = live.db.fetchval("SELECT count(*) FROM judgment")
    admin = live.login(ADMIN)
    sneaky = "x';DROP/**/TABLE/**/judgment;--"  # an annotator name may not hold spaces; this one is valid
    # As a study name: refused as unknown, then created, imported into and exported under exactly that name;
    # as an annotator's name; as a prompt id.
    assert admin.get(f"/api/studies/{SQL_PAYLOAD}/judgments").status_code == 400
    # A web admin reads only uploads and writes only into the exports folder (tests/test_web_paths.py).
    uploaded = upload(admin, "sql.jsonl", json.dumps({"id": SQL_PAYLOAD, "prompt": SQL_PAYLOAD}) + "\n")["path"]
    for op, payload, status in [
            ("create_study", {"name": SQL_PAYLOAD}, 200),
            ("import_prompts", {"study": SQL_PAYLOAD, "path": uploaded}, 200),
            ("add_annotator", {"name": sneaky, "password": "pw-12345678"}, 200),
            ("add_member", {"study": STUDY, "name": sneaky}, 200),
            ("add_member", {"study": STUDY, "name": SQL_PAYLOAD}, 400),  # no such annotator
            ("requeue", {"study": SQL_PAYLOAD, "prompt": SQL_PAYLOAD}, 200),
            ("requeue", {"study": STUDY, "prompt": SQL_PAYLOAD}, 400),  # no such prompt in that study
            ("export_judgments", {"study": SQL_PAYLOAD, "out": "sql-out.jsonl"}, 200),
            ("agreement", {"study": SQL_PAYLOAD, "n_boot": 0}, 200)]:
        r = admin.post(f"/api/admin/op/{op}", json=payload)
        assert r.status_code == status, (op, r.text)
    assert live.db.fetchval("SELECT external_id FROM prompt JOIN study s ON s.id = study_id WHERE s.name = ?",
                            [SQL_PAYLOAD]) == SQL_PAYLOAD
    assert studies.get_study(live.db, SQL_PAYLOAD).name == SQL_PAYLOAD
    # As a judge filter, and as the name someone logs in with.
    for judge in (SQL_PAYLOAD, sneaky, f"{BOB}' OR '1'='1"):
        r = admin.get(f"/api/studies/{STUDY}/judgments", params={"judge": judge, "include_superseded": "true"})
        assert r.status_code == 200 and r.json()["judgments"] == [], judge
    assert live.client().post("/api/login", json={"name": SQL_PAYLOAD, "password": "x"}).status_code == 401
    assert live.client().post("/api/login", json={"name": f"{BOB}' --", "password": "x"}).status_code == 401
    mallory = live.login(sneaky, "pw-12345678")
    assert mallory.get(f"/api/studies/{STUDY}/judgments").json()["judgments"] == []
    _intact(live.db, tables, n)


def test_sql_payloads_through_the_cli_are_harmless(tmp_path: Path) -> None:
    from app.cli import main

    db_path = str(tmp_path / "cli.duckdb")
    prompts_file = tmp_path / "p.jsonl"
    prompts_file.write_text('{"id": "a", "prompt": "hi"}\n{"id": "b", "prompt": "ho"}\n')
    runner = CliRunner()

    def cli(*args: str, stdin: str | None = None) -> str:
        r = runner.invoke(main, [*args, "--db", db_path], input=stdin, catch_exceptions=False)
        assert r.exit_code == 0, r.output
        return r.output

    sneaky = "x';DROP/**/TABLE/**/judgment;--"
    cli("import", "prompts", str(prompts_file), "--study", SQL_PAYLOAD)
    cli("annotators", "add", sneaky, "--password-stdin", stdin="pw-12345678\n")
    cli("export", "judgments", "--study", SQL_PAYLOAD, "--out", str(tmp_path / "j.jsonl"))
    cli("agreement", "--study", SQL_PAYLOAD, "--format", "json", "--bootstrap", "0")
    assert SQL_PAYLOAD in cli("studies") and sneaky in cli("annotators", "list")
    with Database(tmp_path / "fresh.duckdb") as fresh:
        tables = [r[0] for r in fresh.fetchall("SELECT table_name FROM duckdb_tables() WHERE schema_name = 'main' "
                                               "ORDER BY table_name")]
    with Database(db_path) as db:
        assert db.fetchval("SELECT count(*) FROM prompt") == 2
        _intact(db, tables, 0)  # every table of a fresh database is still there


# -- the SGLang API key stays secret ----------------------------------------------------------------
def _wait_job(client: httpx.Client, job_id: int) -> dict[str, Any]:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        job = client.get(f"/api/jobs/{job_id}").json()
        if job["status"] in ("done", "failed", "cancelled"):
            return job
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} did not finish")


def test_sglang_api_key_is_never_logged_stored_or_shown(tmp_path: Path) -> None:
    from tests.standin_sglang import start_standin

    key = f"sk-secret-{uuid.uuid4().hex}"
    good, stop_good = start_standin(api_key=key)  # accepts only this key: a done job proves it was sent
    bad, stop_bad = start_standin(api_key="another-key")  # answers 401: the failure path logs and stores errors
    db_path = tmp_path / "key.duckdb"
    with Database(db_path) as db:
        seed(db)
    env = {**os.environ, "CRITLAB_SGLANG_API_KEY": key, "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False"}
    log = tmp_path / "server.log"
    proc, url = start_serve(db_path, log, "--engine", "sglang", "--sglang-url", good, env=env)
    seen: list[str] = []
    try:
        admin = httpx.Client(base_url=url, timeout=60)
        assert admin.post("/api/login", json={"name": ADMIN, "password": PASSWORDS[ADMIN]}).status_code == 200
        for engine_url, new_run, status in ((good, False, "done"), (bad, True, "failed")):
            r = admin.post("/api/admin/op/generate", json={
                "study": STUDY, "new_run": new_run, "engine": {"engine": "sglang", "sglang_url": engine_url},
                "settings": {"n": 1, "max_tokens": 4, "seed": 1}})
            assert r.status_code == 200, r.text
            job = _wait_job(admin, r.json()["id"])
            assert job["status"] == status, job
            seen.append(json.dumps(job))
        assert "401" in job["error"]
        ann = httpx.Client(base_url=url, timeout=60)
        assert ann.post("/api/login", json={"name": ANN, "password": PASSWORDS[ANN]}).status_code == 200
        for client in (admin, ann):
            seen.append(client.get("/ui/config").text)  # the Studies/Admin tabs' settings are in here
            seen.append(client.get("/ui/gradio_api/info").text)
        events, _ = ui_events(admin)
        on_load = next(e for e in events if e.name == "on_load")
        session = uuid.uuid4().hex
        seen.append(json.dumps(queue_call(admin, on_load, [], session)))
        tick = next(e for e in events if e.name == "tick")  # the page's refresh: the jobs with their errors
        seen.append(json.dumps(queue_call(admin, tick, [None, "", None, None, None, None], uuid.uuid4().hex)))
        assert "401" in seen[-1]  # the refresh did show the failed job's error
        admin.close()
        ann.close()
    finally:
        stop(proc)
        stop_good()
        stop_bad()
    with Database(db_path) as db:
        seen.append(json.dumps(dump(db)))
    seen.append(log.read_text())
    assert "Unauthorized" in seen[1] or "401" in seen[1]
    assert not [s[:200] for s in seen if key in s]


def test_gradio_file_routes_do_not_serve_the_database_or_its_secrets(live: Live) -> None:
    """Gradio serves uploaded and generated files to any logged-in person; the database, its session key
    and the server's lock file (the CLI's admin token) are not among them."""
    ann = live.login(ANN)
    db = Path(live.db.path)
    for f in (db, Path(f"{db}.secret"), Path(f"{db}.lock"), ROOT / "pyproject.toml"):
        for route in (f"/ui/gradio_api/file={f}", f"/ui/gradio_api/file/{f}", f"/ui/gradio_api/file={f.name}",
                      f"/ui/static/../../{f.name}", f"/ui/assets/..%2F..%2F{f.name}"):
            r = ann.get(route)
            assert r.status_code in (400, 401, 403, 404), (route, r.status_code, r.text[:100])
