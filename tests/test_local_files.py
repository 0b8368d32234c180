"""Issue 13, findings 1 and 4: the files beside the database on a machine shared with other users.

A `.secret` or `.lock` that is not the user's own private regular file is refused (another user who
can write the directory could plant one: a key of their choosing forges an admin cookie, a lock
pointing at their port receives the next password the CLI sends); a lock whose process start time
differs is stale; the CLI warns about a directory others can write. Everything critlab creates (the
database, its WAL, exports, backups, reports, Gradio's copies of downloads) is for the owner only.
"""

from __future__ import annotations

import base64
import json
import os
import select
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from app import lockfile, proctree
from app.auth import load_or_create_key
from app.private_files import UntrustedFileError
from app.services.agreement import report_file_name
from storage import annotators
from storage import sessions as login_sessions
from storage.db import Database
from tests.server_process import ENV, ROOT, free_port, start_serve, stop

NOBODY = 65534
CAROL_PASSWORD = "carol-secret-pw-1"


def critlab(*args: str, stdin: str = "", env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "app.cli", *args], input=stdin, text=True, capture_output=True,
                          env=env or ENV, cwd=ROOT, timeout=600)


@pytest.fixture
def trap() -> Iterator[socket.socket]:
    """A listening socket standing in for another user's server: the CLI must never connect to it."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(8)
        s.setblocking(False)
        yield s


def critlab_near(trap: socket.socket, *args: str, stdin: str = "") -> subprocess.CompletedProcess:
    """`critlab ARGS` while watching the trap: a connection to it fails the test at once, with what was sent
    (instead of waiting for the CLI to give up on a server that never answers)."""
    proc = subprocess.Popen([sys.executable, "-m", "app.cli", *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=ENV, cwd=ROOT)
    proc.stdin.write(stdin)
    proc.stdin.close()
    while proc.poll() is None:
        if select.select([trap], [], [], 0.2)[0]:
            conn, _ = trap.accept()
            conn.settimeout(60)
            sent = conn.recv(65536)
            conn.close()
            proc.kill()
            proc.wait()
            raise AssertionError(f"the CLI connected to the planted port and sent {sent[:400]!r}")
    out, err = proc.stdout.read(), proc.stderr.read()  # a few lines: they fit in the pipes while it runs
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def assert_untouched(trap: socket.socket) -> None:
    # A connection attempt would sit completed in the backlog (the kernel accepts it for us).
    with pytest.raises(BlockingIOError):
        trap.accept()


def live_lock(trap: socket.socket, **changes: object) -> bytes:
    """A lock as a live server writes it, naming this test process (alive) and pointing at `trap`."""
    lock = {"pid": os.getpid(), "start_time": proctree.start_time(os.getpid()), "kind": lockfile.KIND,
            "url": f"http://127.0.0.1:{trap.getsockname()[1]}", "token": "planted-token", **changes}
    return json.dumps(lock).encode()


def plant(path: Path, data: bytes, how: str) -> str:
    """Put `data` at `path` the way another user (or a careless one) could; returns what the refusal says."""
    if how == "mode 0644":
        path.write_bytes(data)
        path.chmod(0o644)
        return "has mode 0644"
    if how == "another owner":
        path.write_bytes(data)
        path.chmod(0o600)
        os.chown(path, NOBODY, NOBODY)
        return f"(uid {NOBODY}), not to you"
    if how == "symlink":  # to a file that would pass every other check
        real = path.parent / f"elsewhere-{path.name}"
        real.write_bytes(data)
        real.chmod(0o600)
        path.symlink_to(real)
        return "is a symbolic link"
    raise AssertionError(how)


PLANTS = ["mode 0644", "another owner", "symlink"]


@pytest.mark.parametrize("how", PLANTS)
def test_a_planted_lock_gets_no_password_and_blocks_serve_with_a_clear_error(tmp_path: Path, trap: socket.socket,
                                                                             how: str) -> None:
    db = tmp_path / "c.duckdb"
    lock = lockfile.lock_path(str(db))
    says = plant(lock, live_lock(trap), how)
    r = critlab_near(trap, "annotators", "add", "carol", "--password-stdin", "--db", str(db), stdin=CAROL_PASSWORD + "\n")
    assert r.returncode == 1, r.stderr
    assert str(lock) in r.stderr and says in r.stderr, r.stderr
    assert ("chmod 600" if how == "mode 0644" else "rm ") in r.stderr
    assert_untouched(trap)
    assert not db.exists()  # nothing was done locally either
    r = critlab_near(trap, "serve", "--db", str(db), "--port", str(free_port()))
    assert r.returncode == 1 and str(lock) in r.stderr and says in r.stderr, r.stderr
    assert_untouched(trap)


def test_a_lock_whose_process_started_at_another_time_is_stale(tmp_path: Path, trap: socket.socket) -> None:
    """The PID is alive but is not the server that wrote the lock (the PID was reused): the lock is removed
    and the command runs on the file."""
    db = tmp_path / "c.duckdb"
    lock = lockfile.lock_path(str(db))
    lock.write_bytes(live_lock(trap, start_time=proctree.start_time(os.getpid()) - 1))
    lock.chmod(0o600)
    r = critlab_near(trap, "annotators", "add", "carol", "--password-stdin", "--db", str(db),
                     stdin=CAROL_PASSWORD + "\n")
    assert r.returncode == 0 and "Added carol" in r.stdout, r.stderr
    assert "sent to the critlab server" not in r.stderr
    assert not lock.exists()
    assert_untouched(trap)
    # The same lock with the right start time is the live server's: the command goes there (and fails, as
    # the trap never answers HTTP), which shows the start time is what made the difference above.
    assert lockfile.read_lock(str(db)) is None
    lock.write_bytes(live_lock(trap))
    lock.chmod(0o600)
    assert lockfile.read_lock(str(db)).pid == os.getpid()


@pytest.mark.parametrize("how", PLANTS)
def test_a_planted_session_key_is_refused(tmp_path: Path, how: str) -> None:
    db = tmp_path / "c.duckdb"
    secret = Path(f"{db}.secret")
    says = plant(secret, (b"a" * 32).hex().encode(), how)  # a key the planter knows
    with pytest.raises(UntrustedFileError) as e:
        load_or_create_key(str(db))
    assert str(secret) in str(e.value) and says in str(e.value)
    if how == "mode 0644":  # the server refuses to start rather than accept cookies signed with that key
        r = critlab("serve", "--db", str(db), "--port", str(free_port()))
        assert r.returncode == 1 and str(secret) in r.stderr and says in r.stderr, r.stderr + r.stdout
        assert "chmod 600" in r.stderr


def test_key_and_lock_are_created_private(tmp_path: Path) -> None:
    db = str(tmp_path / "c.duckdb")
    key = load_or_create_key(db)
    assert load_or_create_key(db) == key
    lockfile.write_lock(db, "http://127.0.0.1:1", "tok")
    for f in (Path(f"{db}.secret"), lockfile.lock_path(db)):
        assert stat.S_IMODE(f.stat().st_mode) == 0o600 and f.stat().st_uid == os.geteuid()
    got = lockfile.read_lock(db)
    assert got.pid == os.getpid() and got.start_time == proctree.start_time(os.getpid())
    lockfile.remove_lock(db)
    assert not lockfile.lock_path(db).exists()


def test_cli_warns_about_a_directory_other_users_can_write_and_an_exposed_database(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)  # like /tmp
    db = shared / "c.duckdb"
    r = critlab("annotators", "list", "--db", str(db))
    assert r.returncode == 0
    assert f"the database's directory {shared} is writable by other users (mode 1777)" in r.stderr, r.stderr
    mine = tmp_path / "mine"
    mine.mkdir(mode=0o700)
    with Database(mine / "c.duckdb"):
        pass
    (mine / "c.duckdb").chmod(0o644)  # as a database made before critlab set its umask
    r = critlab("annotators", "list", "--db", str(mine / "c.duckdb"))
    assert "is writable by" not in r.stderr
    assert f"{mine / 'c.duckdb'} has mode 0644: other users can read it" in r.stderr and "chmod 600" in r.stderr


# -- finding 4: what critlab creates is for the owner only ------------------------------------------
def test_report_file_name_has_no_path_in_it() -> None:
    assert report_file_name("team/a") == "agreement-team_a.html"
    assert "/" not in report_file_name("../../etc/passwd") and ".." not in report_file_name("../../etc/passwd")


def queue_run(client: httpx.Client, fn_index: int, trigger: int | None, data: list) -> dict:
    """Run one event through Gradio's queue (as the page would, session "files"); its completion message."""
    r = client.post("/ui/gradio_api/queue/join", json={"data": data, "fn_index": fn_index, "session_hash": "files",
                                                       "event_data": None, "trigger_id": trigger})
    assert r.status_code == 200, r.text
    event_id = r.json()["event_id"]
    with client.stream("GET", "/ui/gradio_api/queue/data", params={"session_hash": "files"}) as s:
        for line in s.iter_lines():
            if line.startswith("data:"):
                msg = json.loads(line[5:])
                if msg.get("msg") == "process_completed" and msg.get("event_id") == event_id:
                    return msg
    raise AssertionError("the event never completed")


def agreement_compute(client: httpx.Client, study: str) -> dict:
    """The Agreement tab's Compute for `study`, after the page load and the tab's study picker refresh
    (which list the studies Gradio then accepts)."""
    config = client.get("/ui/config").json()
    deps = config["dependencies"]
    for name in ("on_load", "refresh_agreement_studies"):
        i = next(i for i, d in enumerate(deps) if d.get("api_name") == name)
        assert queue_run(client, i, deps[i]["targets"][0][0] if deps[i]["targets"] else None, [])["success"], name
    comp = next(c["id"] for c in config["components"] if c.get("props", {}).get("elem_id") == "agr-compute")
    i = next(i for i, d in enumerate(deps) if any(t[0] == comp for t in d["targets"]) and d.get("backend_fn"))
    return queue_run(client, i, comp, [study, "blind", 0, False, False, False, None, 0.5])  # no opt-ins; PRE defaults


def modes(root: Path) -> dict[str, str]:
    """Every file and folder under `root` (not `root` itself) with its permission bits."""
    return {str(p.relative_to(root)): f"{stat.S_IMODE(p.lstat().st_mode):04o}" for p in root.rglob("*")}


def test_everything_the_server_creates_is_private(tmp_path: Path) -> None:
    """A real `critlab serve` (umask 022 inherited, as from a login shell): the database and its WAL, an
    export, a backup, and the Agreement tab's report for a study named with `/` (the copy the download route
    serves) are 0600 in 0700 folders; Gradio works in a private folder that is gone after shutdown."""
    data, gradio_base, tmp = tmp_path / "data", tmp_path / "gradio-base", tmp_path / "tmp"
    for d in (data, gradio_base, tmp):
        d.mkdir(mode=0o755)
    db = data / "c.duckdb"
    env = {**ENV, "TMPDIR": str(tmp), "GRADIO_TEMP_DIR": str(gradio_base)}
    old = os.umask(0o022)  # what the server and CLI processes inherit
    try:
        assert critlab("annotators", "add", "root", "--role", "admin", "--password-stdin", "--db", str(db),
                       stdin="root-pass-123\n", env=env).returncode == 0
        prompts = tmp_path / "p.jsonl"
        prompts.write_text('{"id": "p1", "prompt": "Say hi."}\n')
        assert critlab("import", "prompts", str(prompts), "--study", "team/a", "--db", str(db), env=env).returncode == 0
        proc, url = start_serve(db, tmp_path / "server.log", env=env)
        try:
            with httpx.Client(base_url=url, timeout=120) as c:
                assert c.post("/api/login", json={"name": "root", "password": "root-pass-123"}).status_code == 200
                # Through the server, which now writes the database (and its WAL).
                r = critlab("annotators", "add", "ann", "--password-stdin", "--db", str(db), stdin="ann-pass-123\n",
                            env=env)
                assert r.returncode == 0 and "sent to the critlab server" in r.stderr, r.stderr
                wal_mode = stat.S_IMODE(Path(f"{db}.wal").stat().st_mode)  # before the backup's CHECKPOINT
                r = critlab("export", "judgments", "--study", "team/a", "--out", str(data / "out" / "j.jsonl"),
                            "--db", str(db), env=env)
                assert r.returncode == 0, r.stderr
                assert critlab("backup", "--out", str(data / "copy.duckdb"), "--db", str(db), env=env).returncode == 0
                msg = agreement_compute(c, "team/a")
                assert msg["success"], json.dumps(msg)[:3000]
                link = msg["output"]["data"][5]  # the report is served by the download route, not Gradio
                assert "Study **team\\/a**" in msg["output"]["data"][0]  # the name as literal Markdown text
                got = c.get(link)
                assert got.status_code == 200 and got.text.startswith("<!"), got.text[:300]
                assert 'filename="agreement-team_a.html"' in got.headers["content-disposition"]
                private = next(gradio_base.iterdir())  # the server's own folder for Gradio
                assert private.name.startswith("critlab-gradio-")
                files = {**{f"data/{k}": v for k, v in modes(data).items()},
                         **{f"gradio/{k}": v for k, v in modes(gradio_base).items()},
                         **{f"tmp/{k}": v for k, v in modes(tmp).items()}}
            assert wal_mode == 0o600
            assert {f"data/{n}" for n in ("c.duckdb", "c.duckdb.secret", "c.duckdb.lock",
                                          "out", "out/j.jsonl", "copy.duckdb")} <= set(files)
            assert any(k.startswith("tmp/critlab-downloads-") and k.endswith("/agreement-team_a.html") for k in files)
            loose = {k: v for k, v in files.items() if v not in ("0600", "0700")}
            assert loose == {}, loose
        finally:
            stop(proc)
    finally:
        os.umask(old)
    assert list(gradio_base.iterdir()) == []  # the private folder went with the server
    assert stat.S_IMODE(db.stat().st_mode) == 0o600


# -- scrypt cost ----------------------------------------------------------------------------------
def test_old_cost_hashes_still_verify_and_are_rehashed_at_the_next_login(db: Database,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(annotators.TEST_ONLY_N_ENV, str(2**14))  # an account made at the old cost
    annotators.add_annotator(db, "old", "annotator", "old-pass-123")
    monkeypatch.delenv(annotators.TEST_ONLY_N_ENV)
    before = db.fetchval("SELECT password_hash FROM annotator WHERE name = 'old'")
    login_sessions.create(db, "a-session-of-old", "old", time.time())  # a login on another device
    assert before.startswith("scrypt$16384$") and annotators.needs_rehash(before)
    assert annotators.authenticate(db, "old", "wrong-pass-123") is None
    assert db.fetchval("SELECT password_hash FROM annotator WHERE name = 'old'") == before  # not on a failure
    assert annotators.authenticate(db, "old", "old-pass-123").name == "old"
    after = db.fetchval("SELECT password_hash FROM annotator WHERE name = 'old'")
    assert after.startswith(f"scrypt${2**17}$8$1$") and not annotators.needs_rehash(after)
    assert annotators.authenticate(db, "old", "old-pass-123").name == "old"
    assert login_sessions.lookup(db, "a-session-of-old", "old") is not None  # not a reset: other sessions go on
    assert base64.b64decode(after.split("$")[4]) != base64.b64decode(before.split("$")[4])  # a new salt


def test_the_test_only_cost_setting_is_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    for bad in ("1000", "512", str(2**18)):
        monkeypatch.setenv(annotators.TEST_ONLY_N_ENV, bad)
        with pytest.raises(ValueError, match="power of two"):
            annotators.hash_password("some-pass-1")
