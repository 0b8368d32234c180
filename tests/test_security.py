"""Issue 7, security: sessions on every route, password storage, secrets kept out of logs and pages, no
password hashes in exports, SQL built only with parameters, Gradio's file routes. The Gradio queue and
label reading: tests/test_security_queue.py; sessions: tests/test_security_sessions.py. Most tests run
against a real server in this process (tests/security_server.py).
"""

from __future__ import annotations

import ast
import base64
import json
import os
import re
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from app.auth import is_public
from app.services.context import AppContext
from app.services.ops import run_op
from storage import annotators, studies
from storage.db import Database
from tests.security_server import (
    ADMIN, ANN, BOB, MARK, PASSWORDS, ROOT, SQL_PAYLOAD, STUDY, Live, concrete_path, dump, labelled_study,
    queue_call, seed, ui_events, upload, walk_routes,
)
from tests.server_process import start_serve, stop


# -- every route needs a session --------------------------------------------------------------------
def test_every_route_refuses_a_visitor_without_a_session(live: Live) -> None:
    """Enumerates the app's routes (JSON API, login page, and every Gradio route) and calls each with
    no cookie: only the login flow and Gradio's static frontend files answer, and no answer carries data."""
    routes = list(walk_routes(live.app.routes))
    assert not [p for p, m, _ in routes if "WEBSOCKET" in m], "a websocket route bypasses the HTTP session gate"
    paths = {p for p, _, _ in routes}
    assert {"/api/admin/op/{name}", "/ui/config", "/ui/gradio_api/queue/join", "/ui/gradio_api/info"} <= paths
    anon = live.client()
    leaks, open_routes = [], []
    for path, methods, _ in routes:
        url = concrete_path(path, live.db.path)
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


def test_exports_and_reports_never_include_password_hashes(db: Database, tmp_path: Path) -> None:
    labelled_study(db)
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
    ("storage/analysis/report/loading.py", "_COLUMNS"),  # a constant column list
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
    ("storage/label_queue.py", "_NOT_GOLD"),  # the same
    ("storage/label_queue.py", "join"), ("storage/label_queue.py", "order_key"),  # serving.order_sql: constants
    ("storage/gold.py", "ready_sql"), ("storage/gold.py", "labelled_sql"),  # label_queue's _READY and _LABELLED
    ("storage/serving.py", "ready_sql"), ("storage/serving.py", "labelled_sql"),  # the same
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


def _enum_member(node: ast.AST) -> bool:
    """`HumanMethod.BEST`: a member of an enum written in the code (a CapWords class, an UPPER member)."""
    return (isinstance(node, ast.Attribute) and node.attr.isupper() and isinstance(node.value, ast.Name)
            and node.value.id[:1].isupper() and not node.value.id.isupper())


def sql_interpolations(root: Path) -> set[tuple[str, str]]:
    """(file, expression) of every value formatted into a string that holds SQL, in storage/."""
    found = set()
    for f in sorted((root / "storage").rglob("*.py")):
        rel = f.relative_to(root).as_posix()
        for node in ast.walk(ast.parse(f.read_text(encoding="utf-8"))):
            if isinstance(node, ast.JoinedStr):
                text = "".join(v.value for v in node.values if isinstance(v, ast.Constant))
                if SQL_WORDS.search(text):
                    found |= {(rel, ast.unparse(v.value)) for v in node.values
                              if isinstance(v, ast.FormattedValue) and not _enum_member(v.value)}
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
