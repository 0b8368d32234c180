"""Storage that refuses writes: a full disk, a file size limit, a read-only file system.

Simulated so it also holds as root (root ignores permission bits, so chmod proves nothing):
- RLIMIT_FSIZE in a child process (the CLI, and the server) with SIGXFSZ ignored, so a write past the
  limit fails with EFBIG instead of killing the process;
- a size-limited tmpfs filled up (ENOSPC) and a read-only bind mount (EROFS), when this process may
  mount (root in a container usually may; otherwise those tests skip and say why).

Every case expects one clear message, no output file (not even a temp file), the database's tables
unchanged (a failed DuckDB commit is rolled back, WAL included), and a server that keeps answering.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import resource
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from app import lockfile
from app.services.context import AppContext
from app.services.ops import run_op
from storage import annotators
from storage.db import Database
from storage.export import ExportOptions, export_dataset
from storage.export.files import pseudonym_salt
from storage.fileio import DatabaseWriteError, StorageWriteError
from storage.studies import get_study
from tests.builders import label, make_prompt, make_responses, make_run
from tests.server_process import ENV, start_serve, stop
from tests.test_bad_files import dump_all

LIMIT = 256 * 1024  # RLIMIT_FSIZE for the child: above every small write, below every big one
ADMIN = ("admin", "admin-pass-1")


def noise(seed: str, chars: int) -> str:
    """Text that neither DuckDB nor a WAL record compresses, so sizes on disk are predictable."""
    out, i = [], 0
    while sum(map(len, out)) < chars:
        out.append(hashlib.sha256(f"{seed}:{i}".encode()).hexdigest())
        i += 1
    return "".join(out)[:chars]


def items_file(path: Path, n: int, text_chars: int, prefix: str = "q") -> Path:
    path.write_text("".join(json.dumps({
        "item_id": f"{prefix}{i}", "prompt": f"Question {i}?",
        "responses": [{"id": "r1", "text": noise(f"{prefix}{i}a", text_chars)},
                      {"id": "r2", "text": noise(f"{prefix}{i}b", text_chars)}],
        "judgments": [{"judge": "ann", "judge_kind": "human", "type": "pairwise", "shown": ["r1", "r2"],
                       "winner": "r1"}]}) + "\n" for i in range(n)), encoding="utf-8")
    return path


def populate(db: Database, work: Path) -> None:
    """Study "big" (imported: ~1.2 MB as a judgments export) and study "pairs" (sampled and labelled:
    ~600 KB as DPO pairs), an admin, and the pseudonym salt an export would otherwise create."""
    ctx = AppContext(db=db)
    run_op(ctx, "cli", "import_judgments", {"study": "big", "path": str(items_file(work / "big.jsonl", 60, 10_000))})
    run_op(ctx, "cli", "create_study", {"name": "pairs"})
    sid = get_study(db, "pairs").id
    run = make_run(db, sid)
    for i in range(30):
        pid = make_prompt(db, sid, f"p{i}", f"Prompt {i}?")
        rids = make_responses(db, pid, [noise(f"p{i}a", 10_000), noise(f"p{i}b", 10_000)], run_id=run)
        label(db, sid, pid, "ann", rids[0], {rids[0]: 5, rids[1]: 1})
    annotators.add_annotator(db, ADMIN[0], "admin", ADMIN[1])
    pseudonym_salt(db)


def dump_file(path: Path) -> dict[str, list[tuple]]:
    db = Database(path, read_only=True, migrate=False)  # read-only replays a leftover WAL in memory
    try:
        return dump_all(db)
    finally:
        db.close()


def files_in(d: Path) -> list[str]:
    return sorted(str(p.relative_to(d)) for p in d.rglob("*")) if d.exists() else []


def file_size_limit(limit: int) -> Callable[[], None]:
    def apply() -> None:  # runs in the child between fork and exec
        # Ignored, SIGXFSZ makes an over-limit write fail with EFBIG; by default it kills the process.
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


@pytest.fixture(scope="module")
def big_db_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("big")
    db = Database(work / "critlab.duckdb")
    try:
        populate(db, work)
    finally:
        db.close()  # checkpointed: one self-contained file to copy per test
    return work / "critlab.duckdb"


@pytest.fixture
def big_db(big_db_file: Path, tmp_path: Path) -> Path:
    path = tmp_path / "db" / "critlab.duckdb"
    path.parent.mkdir()
    shutil.copyfile(big_db_file, path)
    assert path.stat().st_size > LIMIT  # reads past the limit are fine; only writes are limited
    return path


# -- the CLI under RLIMIT_FSIZE ------------------------------------------------------------------------
def critlab(*args: str, db: Path, limit: int | None = LIMIT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "app.cli", *args, "--db", str(db)], capture_output=True, text=True,
                          env=ENV, timeout=300, check=False,  # the exit code is what is tested
                          preexec_fn=file_size_limit(limit) if limit else None)


@pytest.mark.parametrize(("args", "name"), [
    (("export", "judgments", "--study", "big"), "items.jsonl"),
    (("export", "dpo", "--study", "pairs"), "pairs.jsonl"),
    (("export", "dpo", "--study", "pairs"), "pairs.parquet"),
    (("backup",), "copy.duckdb"),
], ids=["export-judgments", "export-dpo-jsonl", "export-dpo-parquet", "backup"])
def test_cli_output_over_the_size_limit(big_db: Path, tmp_path: Path, args: tuple[str, ...], name: str) -> None:
    out = tmp_path / "out" / name
    out.parent.mkdir()
    out.write_bytes(b"an earlier export")  # must survive a failed one
    before = dump_file(big_db)
    overwrite = [] if args[:2] == ("export", "judgments") else ["--overwrite"]  # out holds an earlier file
    r = critlab(*args, "--out", str(out), *overwrite, db=big_db)
    assert r.returncode == 1, r.stdout + r.stderr
    assert f"Error: file size limit reached (the file system's or the process's, `ulimit -f`) while writing {out}" \
        in r.stderr, r.stderr
    assert "Traceback" not in r.stderr
    assert files_in(out.parent) == [name] and out.read_bytes() == b"an earlier export"  # no temp file left
    assert dump_file(big_db) == before  # no export_run row either
    # The same command without the limit works, so the limit (not the data) caused the failure.
    ok = critlab(*args, "--out", str(out), *overwrite, db=big_db, limit=None)
    assert ok.returncode == 0, ok.stderr
    assert out.stat().st_size > LIMIT


@pytest.mark.parametrize("kind", ["judgments", "prompts"])
def test_cli_import_over_the_size_limit_rolls_back(big_db: Path, tmp_path: Path, kind: str) -> None:
    if kind == "judgments":
        src = items_file(tmp_path / "more.jsonl", 40, 8_000, prefix="m")
    else:
        src = tmp_path / "more.jsonl"
        src.write_text("".join(json.dumps({"id": f"m{i}", "prompt": noise(f"m{i}", 20_000)}) + "\n"
                               for i in range(40)), encoding="utf-8")
    before = dump_file(big_db)
    # A new study, so the rollback must also undo the study the import creates.
    r = critlab("import", kind, str(src), "--study", "more", db=big_db)
    assert r.returncode == 1, r.stdout + r.stderr
    assert (f"Error: file size limit reached (the file system's or the process's, `ulimit -f`) while writing the "
            f"database {big_db}; the change was rolled back and nothing was saved") in r.stderr, r.stderr
    assert "Traceback" not in r.stderr
    assert dump_file(big_db) == before
    # The database is intact and writable: a small change under the same limit commits.
    small = tmp_path / "small.jsonl"
    small.write_text(json.dumps({"id": "s1", "prompt": "small"}) + "\n", encoding="utf-8")
    r = critlab("import", "prompts", str(small), "--study", "more", db=big_db)
    assert r.returncode == 0, r.stderr
    after = dump_file(big_db)
    assert [row[2] for row in after["prompt"] if row not in before["prompt"]] == ["s1"]


# One bulk write through Database.write(), then a small one; prints what the first raised.
_BULK = """
import json, sys
from storage.db import Database
from storage.fileio import DatabaseWriteError
db = Database(sys.argv[1])
if sys.argv[2]:
    db.cursor().execute(sys.argv[2])
out = {}
try:
    with db.write() as cur:
        cur.execute("INSERT INTO settings SELECT 'bulk-' || i, md5(i::varchar) || md5((-i)::varchar) "
                    "FROM range(300000) r(i)")
except DatabaseWriteError as e:
    out = {"error": str(e), "cause": type(e.__cause__).__name__}
with db.write() as cur:
    cur.execute("INSERT INTO settings VALUES ('small', 'write')")
db.close()
print(json.dumps(out))
"""


@pytest.mark.parametrize(("setting", "cause"), [
    ("", "TransactionException"),  # the rows reach the disk at COMMIT, which fails as a whole
    # Little memory makes DuckDB write row groups to the file during the INSERT: the failure comes
    # mid-transaction, and Database.write() must roll back before reporting it.
    ("SET memory_limit = '16MB'", "IOException"),
], ids=["at-commit", "mid-transaction"])
def test_failed_database_write_rolls_back(big_db: Path, setting: str, cause: str) -> None:
    before = dump_file(big_db)
    r = subprocess.run([sys.executable, "-c", _BULK, str(big_db), setting], capture_output=True, text=True, env=ENV,
                       cwd=Path(__file__).resolve().parents[1], timeout=300, check=False,
                       preexec_fn=file_size_limit(LIMIT))
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == {
        "error": f"file size limit reached (the file system's or the process's, `ulimit -f`) while writing the "
                 f"database {big_db}; the change was rolled back and nothing was saved",
        "cause": cause}
    after = dump_file(big_db)
    assert [row for row in after["settings"] if row not in before["settings"]] == [("small", "write")]
    assert {t: rows for t, rows in after.items() if t != "settings"} == \
        {t: rows for t, rows in before.items() if t != "settings"}


# -- the server under RLIMIT_FSIZE ---------------------------------------------------------------------
@contextlib.contextmanager
def server(db: Path, log: Path, limit: int) -> Iterator[str]:
    proc, url = start_serve(db, log, env=ENV, preexec_fn=file_size_limit(limit))
    try:
        yield url
        assert proc.poll() is None, f"server died:\n{log.read_text()}"
    finally:
        stop(proc)


def test_server_survives_failed_writes_under_the_size_limit(big_db: Path, tmp_path: Path) -> None:
    before = dump_file(big_db)
    outdir = tmp_path / "exports"
    outdir.mkdir()
    big_import = items_file(tmp_path / "more.jsonl", 40, 8_000, prefix="m")
    log = tmp_path / "server.log"
    with server(big_db, log, LIMIT) as url, httpx.Client(base_url=url, timeout=120) as admin:
        # As the CLI (the admin token): these files lie outside the server's uploads and exports folders,
        # which a web admin may not leave (tests/test_web_paths.py).
        admin.headers["Authorization"] = f"Bearer {lockfile.read_lock(str(big_db)).token}"  # type: ignore[union-attr]

        def op(name: str, payload: dict[str, Any]) -> httpx.Response:
            return admin.post(f"/api/admin/op/{name}", json=payload)

        for name, payload, target in [
            ("export_judgments", {"study": "big", "out": str(outdir / "items.jsonl")}, outdir / "items.jsonl"),
            ("export", {"kind": "dpo", "study": "pairs", "out": str(outdir / "pairs.parquet")},
             outdir / "pairs.parquet"),
        ]:
            r = op(name, payload)
            assert r.status_code == 507, (name, r.status_code, r.text)
            assert r.json() == {"error": f"file size limit reached (the file system's or the process's, `ulimit -f`) "
                                         f"while writing {target}; nothing was written (an earlier file there is "
                                         "unchanged)"}
            assert files_in(outdir) == []
            assert admin.get("/api/health").json() == {"ok": True}

        # A committed change waits in the WAL, so a backup must CHECKPOINT first; a CHECKPOINT that hits
        # the limit would invalidate the database for good (DuckDB FatalException), so backup refuses first.
        assert op("create_study", {"name": "pending"}).status_code == 200
        r = op("backup", {"out": str(outdir / "copy.duckdb")})
        assert r.status_code == 507, r.text
        assert r.json()["error"].startswith(f"file size limit reached (the process's, `ulimit -f`: {LIMIT:,} bytes) "
                                            f"before writing the database {big_db}: a backup first folds the WAL")
        assert files_in(outdir) == []

        r = op("import_judgments", {"study": "more", "path": str(big_import)})
        assert r.status_code == 507, r.text
        assert r.json()["error"].endswith(f"while writing the database {big_db}; the change was rolled back and "
                                          "nothing was saved")
        assert admin.get("/api/health").json() == {"ok": True}
        assert "more" not in [s["name"] for s in op("list_studies", {}).json()["studies"]]

        # Still a working server on a writable database: a small write commits, a small export is written.
        assert op("create_study", {"name": "after"}).status_code == 200
        r = op("export_judgments", {"study": "after", "out": str(outdir / "empty.jsonl")})
        assert r.status_code == 200, r.text
        assert files_in(outdir) == ["empty.jsonl"]
    assert "Traceback" not in log.read_text(), log.read_text()

    after = dump_file(big_db)
    new_studies = [row for row in after["study"] if row not in before["study"]]
    assert [row[1] for row in new_studies] == ["pending", "after"]
    assert [json.loads(row[4]) for row in after["export_run"] if row not in before["export_run"]] == [
        {"items": 0, "responses": 0, "judgments": 0, "skipped": {}, "prompts_without_responses": 0}]
    # Nothing else changed (the admin token is no login, so no session row either).
    for table in set(before) - {"study", "export_run"}:
        assert after[table] == before[table], table


# -- a full tmpfs and a read-only bind mount -------------------------------------------------------------
def mount(*args: str) -> None:
    r = subprocess.run(["mount", *args], capture_output=True, text=True, check=False)
    if r.returncode != 0:
        pytest.skip(f"cannot mount here ({' '.join(args)}): {r.stderr.strip() or r.returncode}")


def umount(path: Path) -> None:
    if subprocess.run(["umount", str(path)], capture_output=True, check=False).returncode != 0:
        subprocess.run(["umount", "-l", str(path)], capture_output=True, check=False)  # busy: detach lazily


@contextlib.contextmanager
def tmpfs(d: Path, size: str) -> Iterator[Path]:
    """A size-limited tmpfs mounted at the new folder d for the block."""
    d.mkdir()
    mount("-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(d))
    try:
        yield d
    finally:
        umount(d)


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    with tmpfs(tmp_path / "small", "32m") as d:
        yield d


def fill(d: Path) -> Path:
    filler = d / "filler"
    with open(filler, "wb") as f, contextlib.suppress(OSError):
        while True:
            f.write(b"\0" * 65536)
            f.flush()
    return filler


def test_full_disk(small_fs: Path, tmp_path: Path) -> None:
    db = Database(small_fs / "critlab.duckdb")
    ctx = AppContext(db=db)
    try:
        small = items_file(tmp_path / "small.jsonl", 3, 200)
        run_op(ctx, "cli", "import_judgments", {"study": "s", "path": str(small)})
        sid = get_study(db, "s").id
        pid = make_prompt(db, sid, "native")
        rids = make_responses(db, pid, ["a", "b"], run_id=make_run(db, sid))
        label(db, sid, pid, "ann", rids[0], {rids[0]: 5, rids[1]: 1})
        db.checkpoint()
        pseudonym_salt(db)  # a committed change left in the WAL: a backup would have to CHECKPOINT
        filler = fill(small_fs)
        before = dump_all(db)
        existing = set(files_in(small_fs))

        # CHECKPOINT on a full disk is a DuckDB FatalException that invalidates the database until restart;
        # backup refuses before that, and the database keeps working.
        with pytest.raises(StorageWriteError, match=r"^disk almost full: a backup first folds the WAL into the "
                                                     r"database .* \(CHECKPOINT\), which needs about 4 MiB free"):
            run_op(ctx, "cli", "backup", {"out": str(tmp_path / "elsewhere.duckdb")})
        assert not (tmp_path / "elsewhere.duckdb").exists()
        assert dump_all(db) == before

        # Bigger than the whole database file: DuckDB may place a smaller insert in free blocks the file
        # already holds, and then a "full" disk rightly takes it.
        more = items_file(tmp_path / "more.jsonl", 60, 100_000, prefix="m")
        assert more.stat().st_size > 2 * (small_fs / "critlab.duckdb").stat().st_size
        for op, payload in [("import_judgments", {"study": "s", "path": str(more)}),
                            ("import_judgments", {"study": "new", "path": str(more)})]:
            with pytest.raises(DatabaseWriteError, match=rf"^disk full while writing the database "
                                                         rf"{small_fs}/critlab.duckdb; the change was rolled back"):
                run_op(ctx, "cli", op, payload)
            assert dump_all(db) == before, op

        for what, call in [
            ("judgments.jsonl", lambda out: run_op(ctx, "cli", "export_judgments", {"study": "s", "out": str(out)})),
            ("dpo.parquet", lambda out: export_dataset(db, "s", out, ExportOptions())),
            ("dpo.jsonl", lambda out: export_dataset(db, "s", out, ExportOptions())),
            ("report.md", lambda out: run_op(ctx, "cli", "agreement", {"study": "s", "format": "md", "out": str(out),
                                                                       "n_boot": 0})),
        ]:
            out = small_fs / "exports" / what
            with pytest.raises(StorageWriteError, match=rf"^disk full while writing {out}; nothing was written"):
                call(out)
            assert set(files_in(small_fs)) - existing <= {"exports"}, what  # at most the empty directory
            assert dump_all(db) == before, what

        filler.unlink()  # space again: the same database takes writes, and backs up
        again = items_file(tmp_path / "again.jsonl", 3, 200, prefix="n")
        assert run_op(ctx, "cli", "import_judgments", {"study": "s", "path": str(again)})["items"] == 3
        assert run_op(ctx, "cli", "export_judgments", {"study": "s", "out": str(small_fs / "ok.jsonl")})["items"] == 7
        assert run_op(ctx, "cli", "backup", {"out": str(tmp_path / "copy.duckdb")})["bytes"] > 0
    finally:
        db.close()
    reopened = Database(small_fs / "critlab.duckdb")
    try:
        assert reopened.fetchval("SELECT count(*) FROM prompt") == 7
    finally:
        reopened.close()


def test_read_only_file_system(tmp_path: Path) -> None:
    src, ro = tmp_path / "src", tmp_path / "ro"
    src.mkdir()
    ro.mkdir()
    db = Database(src / "critlab.duckdb")
    try:
        run_op(AppContext(db=db), "cli", "import_judgments",
               {"study": "s", "path": str(items_file(tmp_path / "j.jsonl", 2, 100))})
    finally:
        db.close()
    mount("--bind", str(src), str(ro))
    try:
        mount("-o", "remount,ro,bind", str(ro))
        before = dump_file(ro / "critlab.duckdb")

        # Exporting into the read-only directory, from a database elsewhere.
        other = Database(tmp_path / "rw.duckdb")
        try:
            run_op(AppContext(db=other), "cli", "import_judgments",
                   {"study": "s", "path": str(items_file(tmp_path / "k.jsonl", 2, 100))})
            out = ro / "exports" / "items.jsonl"
            with pytest.raises(StorageWriteError, match=r"^read-only file system in .* while writing .*items\.jsonl"):
                run_op(AppContext(db=other), "cli", "export_judgments", {"study": "s", "out": str(out)})
            with pytest.raises(StorageWriteError, match=r"^read-only file system"):
                run_op(AppContext(db=other), "cli", "export_judgments",
                       {"study": "s", "out": str(ro / "items.jsonl")})
        finally:
            other.close()

        # A database on the read-only file system: the CLI says so and changes nothing.
        r = critlab("import", "judgments", str(items_file(tmp_path / "m.jsonl", 2, 100, prefix="m")),
                    "--study", "s", db=ro / "critlab.duckdb", limit=None)
        assert r.returncode == 1
        assert f"cannot open database {ro / 'critlab.duckdb'}" in r.stderr and "Read-only file system" in r.stderr, \
            r.stderr
        assert "Traceback" not in r.stderr
        assert dump_file(ro / "critlab.duckdb") == before
        assert sorted(p.name for p in ro.iterdir()) == ["critlab.duckdb"]
    finally:
        umount(ro)
