"""The security tests' server and helpers: `create_app` served by uvicorn on a free 127.0.0.1 port in a thread of the
test process, so a test can read the database directly while the server runs and move its session clock
forward instead of sleeping through an expiry; and the data they seed, every piece of it marked so that a
leak shows; every route of the app, and Gradio's queue protocol spoken by hand.
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI
from starlette.routing import Mount

from app.auth import Sessions
from app.server import create_app
from app.services.context import AppContext
from storage import annotators, judgments, members, prompts, responses, studies
from storage.db import Database
from storage.models import ChatMessage, JudgmentIn, PromptIn, ResponseIn
from tests.clock import Clock
from tests.scripted_engine import ScriptedEngine
from tests.server_process import free_port


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


@contextlib.contextmanager
def seeded_server(folder: Path) -> Iterator[Live]:
    """`seed`ed data in a new database in folder, served for the block (the app's lifespan closes the
    database when the server stops; jobs started through it are waited for first)."""
    db = Database(folder / "sec.duckdb")
    seed(db)
    srv = serve(db)
    try:
        yield srv
    finally:
        srv.ctx.wait_jobs(timeout=60)
        srv.stop()


def dump(db: Database) -> dict[str, list[str]]:
    """Every row of every table, for before/after comparisons."""
    tables = [r[0] for r in db.fetchall("SELECT table_name FROM duckdb_tables() WHERE schema_name = 'main' "
                                        "ORDER BY table_name")]
    return {t: sorted(map(repr, db.fetchall(f'SELECT * FROM "{t}"'))) for t in tables}


# -- routes, for tests that visit every one -------------------------------------------------------
def walk_routes(routes: list[Any], prefix: str = "") -> Iterator[tuple[str, set[str], Any]]:
    """(path, methods, route) of every route, through mounts and FastAPI's included routers."""
    for r in routes:
        if isinstance(r, Mount):
            yield from walk_routes(r.routes, prefix + r.path)
        elif hasattr(r, "original_router"):  # fastapi's _IncludedRouter (an include_router() of the sub-app)
            yield from walk_routes(r.original_router.routes, prefix + getattr(r.include_context, "prefix", ""))
        else:
            yield prefix + r.path, set(getattr(r, "methods", None) or {"WEBSOCKET"}), r


PATH_VALUES = {"study": STUDY, "job_id": "1", "name": "list_studies", "api_name": "predict", "event_id": "e1",
               "session_hash": "h1", "size": "192", "key": "k", "run": "1", "component_id": "1",
               "segment_id": "1", "ext": "ts", "id": "1", "environment": "prod", "type": "js",
               "file_name": "index.js"}


def concrete_path(path: str, db_path: str) -> str:
    def value(m: re.Match) -> str:
        name, conv = m.group(1), m.group(2)
        if conv == "path":  # a file route gets the database itself: the most valuable file to steal
            return db_path.lstrip("/") if name in ("path_or_url", "url_path") else "index.js"
        return PATH_VALUES.get(name, "x")
    return re.sub(r"\{(\w+)(?::(\w+))?\}", value, path)


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


def labelled_study(db: Database) -> None:
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
