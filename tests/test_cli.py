"""The CLI against a database file: commands, help texts, and a database held by someone else."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from app import lockfile
from app.cli import main
from storage.db import Database


def run(*args: str, input: str | None = None):  # noqa: ANN201, A002
    return CliRunner().invoke(main, list(args), input=input, catch_exceptions=False)


def test_help_teaches_every_command() -> None:
    r = run("--help")
    assert r.exit_code == 0
    for cmd in ("demo", "import", "generate", "serve", "annotators", "export", "backup"):
        assert cmd in r.output
    for sub in (["import", "prompts"], ["generate"], ["export", "dpo"], ["annotators", "add"], ["backup"],
                ["serve"], ["demo"], ["annotators", "disable"], ["annotators", "enable"],
                ["annotators", "reset-password"]):
        r = run(*sub, "--help")
        assert r.exit_code == 0 and "--db" in r.output, sub


def test_import_annotators_and_empty_export(tmp_path: Path) -> None:
    db = str(tmp_path / "c.duckdb")
    f = tmp_path / "p.jsonl"
    f.write_text('{"id": "a", "prompt": "=HYPERLINK(\\"http://x\\",\\"y\\")"}\n{"id": "b", "prompt": "Hi"}\n')
    r = run("import", "prompts", str(f), "--study", "s1", "--db", db)
    assert r.exit_code == 0 and "Imported 2 prompts" in r.output
    r = run("annotators", "add", "alice", "--role", "admin", "--db", db)
    assert r.exit_code == 0 and "Password: " in r.output
    r = run("annotators", "add", "bob", "--password-stdin", "--db", db, input="secret-pass\n")
    assert r.exit_code == 0 and "Password" not in r.output
    r = run("annotators", "add", "bob", "--db", db)
    assert r.exit_code == 1 and "already exists" in r.output
    r = run("export", "dpo", "--study", "s1", "--out", str(tmp_path / "o.jsonl"), "--db", db)
    assert r.exit_code == 0 and "0 pairs" in r.output
    r = run("studies", "--db", db)
    assert "s1" in r.output and "2 prompts" in r.output
    with Database(db) as d:
        assert d.fetchval("SELECT messages FROM prompt WHERE external_id = 'a'").count("=HYPERLINK") == 1


def test_bad_file_imports_nothing_and_names_the_line(tmp_path: Path) -> None:
    db = str(tmp_path / "c.duckdb")
    f = tmp_path / "bad.jsonl"
    f.write_text('{"id": "a", "prompt": "ok"}\n{"id": "b", "prompt": \n')
    r = run("import", "prompts", str(f), "--study", "s1", "--db", db)
    assert r.exit_code == 1 and "bad.jsonl:2" in r.output
    with Database(db) as d:
        assert d.fetchval("SELECT count(*) FROM study") == 0
        assert d.fetchval("SELECT count(*) FROM prompt") == 0


def test_backup_copies_a_consistent_database(tmp_path: Path) -> None:
    db = str(tmp_path / "c.duckdb")
    run("annotators", "add", "alice", "--db", db)
    r = run("backup", "--out", str(tmp_path / "copy.duckdb"), "--db", db)
    assert r.exit_code == 0, r.output
    with Database(str(tmp_path / "copy.duckdb"), read_only=True) as d:
        assert d.fetchval("SELECT name FROM annotator") == "alice"


@pytest.mark.timeout(30)  # fails rather than waits: a hang ends here, well before the holder's 60 s
def test_database_held_by_a_foreign_process_fails_fast_naming_it(tmp_path: Path) -> None:
    db = tmp_path / "held.duckdb"
    holder = subprocess.Popen([sys.executable, "-c", "import duckdb, time, sys; c = duckdb.connect(sys.argv[1]); "
                               "print('ready', flush=True); time.sleep(60)", str(db)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ready"
        r = run("studies", "--db", str(db))
        assert r.exit_code == 1
        assert f"PID {holder.pid}" in r.output or f"process {holder.pid}" in r.output
        assert "not a critlab server" in r.output
    finally:
        holder.kill()


def test_stale_lock_of_a_dead_process_is_ignored(tmp_path: Path) -> None:
    db = str(tmp_path / "c.duckdb")
    lockfile.lock_path(db).write_text(json.dumps({"pid": 999_999_999, "url": "http://127.0.0.1:1", "token": "t",
                                                  "kind": "critlab-server"}))
    lockfile.lock_path(db).chmod(0o600)  # the server's own lock (a lock open to others is refused)
    r = run("studies", "--db", db)
    assert r.exit_code == 0
    assert not lockfile.lock_path(db).exists()


def test_annotators_disable_enable_and_reset_password(tmp_path: Path) -> None:
    from storage import annotators

    db = str(tmp_path / "c.duckdb")
    r = run("annotators", "--help")
    for sub in ("add", "list", "disable", "enable", "reset-password"):
        assert sub in r.output
    run("annotators", "add", "root", "--role", "admin", "--db", db)
    run("annotators", "add", "bob", "--password-stdin", "--db", db, input="bob-pass-12\n")
    r = run("annotators", "disable", "bob", "--db", db)
    assert r.exit_code == 0 and "Disabled bob" in r.output
    assert "bob                      annotator  no study  (disabled)" in run("annotators", "list", "--db", db).output
    r = run("annotators", "enable", "bob", "--db", db)
    assert r.exit_code == 0 and "Enabled bob" in r.output
    assert "(disabled)" not in run("annotators", "list", "--db", db).output
    r = run("annotators", "reset-password", "bob", "--db", db)
    assert r.exit_code == 0 and "Reset the password of bob" in r.output
    new = r.output.split("Password: ")[1].strip()
    r = run("annotators", "reset-password", "bob", "--password-stdin", "--db", db, input="chosen-pass-1\n")
    assert r.exit_code == 0 and "Password" not in r.output
    for args, msg in [(["disable", "zz"], "no annotator 'zz'"), (["reset-password", "zz"], "no annotator 'zz'"),
                      (["disable", "root"], "last enabled admin"),
                      (["reset-password", "bob", "--password-stdin"], "at least 8 characters")]:
        r = run("annotators", *args, "--db", db, input="short\n")
        assert r.exit_code == 1 and msg in r.output, (args, r.output)
    with Database(db) as d:
        assert annotators.authenticate(d, "bob", new) is None
        assert annotators.authenticate(d, "bob", "chosen-pass-1").name == "bob"
        assert annotators.get_annotator(d, "root").disabled is False


def test_annotator_commands_through_a_running_server_end_sessions_at_once(tmp_path: Path) -> None:
    """While a server holds the database the commands go through its admin API; a person disabled or
    given a new password there is logged out of their open session at once."""
    import httpx

    from tests.server_process import start_serve, stop

    db = tmp_path / "c.duckdb"
    run("annotators", "add", "root", "--role", "admin", "--db", str(db))
    run("annotators", "add", "bob", "--password-stdin", "--db", str(db), input="bob-pass-12\n")
    proc, url = start_serve(db, tmp_path / "server.log")
    try:
        with httpx.Client(base_url=url, timeout=30) as bob:
            assert bob.post("/api/login", json={"name": "bob", "password": "bob-pass-12"}).status_code == 200
            assert bob.get("/api/me").status_code == 200
            r = run("annotators", "disable", "bob", "--db", str(db))
            assert r.exit_code == 0 and "sent to the critlab server" in r.output and "Disabled bob" in r.output
            assert bob.get("/api/me").status_code == 401
            assert bob.post("/api/login", json={"name": "bob", "password": "bob-pass-12"}).status_code == 401
            assert run("annotators", "enable", "bob", "--db", str(db)).exit_code == 0
            assert bob.post("/api/login", json={"name": "bob", "password": "bob-pass-12"}).status_code == 200
            assert bob.get("/api/me").status_code == 200
            r = run("annotators", "reset-password", "bob", "--db", str(db))
            assert r.exit_code == 0 and "Password: " in r.output
            assert bob.get("/api/me").status_code == 401
            new = r.output.split("Password: ")[1].strip()
            assert bob.post("/api/login", json={"name": "bob", "password": new}).status_code == 200
            r = run("annotators", "disable", "root", "--db", str(db))
            assert r.exit_code == 1 and "last enabled admin" in r.output
    finally:
        stop(proc)


def test_serve_keeps_idle_connections_longer_than_clients_and_proxies(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """An idle connection the server closes while a client reuses it fails that request with no answer:
    the server must keep it longer than httpx's idle expiry and a proxy's usual 60 s idle timeout, so the
    client side always closes first."""
    import httpx
    import uvicorn

    from app import cli

    seen: dict = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: seen.update(kw))
    monkeypatch.setattr(cli, "_exit_on_termination", lambda: None)  # no signal handlers in the test process
    r = run("serve", "--db", str(tmp_path / "c.duckdb"), "--port", "1")
    assert r.exit_code == 0, r.output
    client_expiry = httpx.Limits().keepalive_expiry
    assert client_expiry is not None
    assert seen["timeout_keep_alive"] > max(client_expiry, 60)
