"""Issue 13, finding 2: a web admin (a login session) names files only inside the uploads folder (reads)
and the exports folder (writes); the CLI's admin token still names any file.

A real `critlab serve` in a subprocess, so the lock file holding the admin token exists and Gradio's
upload folder is the server's own (pointed into tmp_path with GRADIO_TEMP_DIR).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from app import lockfile
from app.services.context import EngineConfig, ServiceError
from app.services.ops import Backup, Generate, ImportPrompts
from app.services.paths import WebPaths, confine
from storage import annotators
from storage.db import Database
from tests.server_process import ENV, start_serve, stop
from tests.security_server import labelled_study

ADMIN_PASSWORD = "web-admin-pass-1"
JUDGMENTS_LINE = ('{"item_id": "j1", "prompt": "2+2?", "responses": [{"id": "a", "text": "4"}, {"id": "b", "text": "5"}], '
                  '"judgments": [{"judge": "ext", "judge_kind": "human", "type": "best_of_n", "shown": ["a", "b"], '
                  '"winner": "a"}]}\n')


@dataclass
class Served:
    url: str
    db: Path
    uploads: Path
    exports: Path
    web: httpx.Client  # a web admin's login session
    cli: httpx.Client  # the admin token from the lock file, as the CLI sends it

    def op(self, client: httpx.Client, name: str, payload: dict[str, Any]) -> httpx.Response:
        return client.post(f"/api/admin/op/{name}", json=payload)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    d = tmp_path_factory.mktemp("paths")
    db_path = d / "data" / "paths.duckdb"
    db_path.parent.mkdir()
    db = Database(db_path)
    labelled_study(db)  # study "ex" with labels, so every export has rows
    annotators.add_annotator(db, "webadmin", "admin", ADMIN_PASSWORD)
    db.close()
    uploads = d / "gradio-uploads"
    proc, url = start_serve(db_path, d / "server.log", env={**ENV, "GRADIO_TEMP_DIR": str(uploads)})
    try:
        lock = lockfile.read_lock(str(db_path))
        assert lock is not None
        web = httpx.Client(base_url=url, timeout=60)
        assert web.post("/api/login", json={"name": "webadmin", "password": ADMIN_PASSWORD}).status_code == 200
        cli = httpx.Client(base_url=url, timeout=60, headers={"Authorization": f"Bearer {lock.token}"})
        yield Served(url, db_path, uploads, db_path.parent / "exports", web, cli)
        web.close()
        cli.close()
    finally:
        stop(proc)


def _guidelines(s: Served, study: str) -> str:
    r = s.op(s.cli, "study_settings", {"study": study})
    assert r.status_code == 200, r.text
    return r.json()["guidelines"]


def _writes(out: str, sft_out: str) -> list[tuple[str, dict[str, Any]]]:
    """Every operation that writes a file, aimed at `out` (the export to a datasets folder writes its .jsonl
    to `sft_out` and the folder to `out`)."""
    return [("export", {"kind": "dpo", "study": "ex", "out": out}),
            ("export", {"kind": "sft", "study": "ex", "out": sft_out, "hf_dir": out}),
            ("export_dpo", {"study": "ex", "out": out}),
            ("export_judgments", {"study": "ex", "out": out}),
            ("agreement", {"study": "ex", "format": "md", "out": out, "n_boot": 0}),
            ("backup", {"out": out})]


def test_a_web_admin_cannot_write_outside_the_exports_folder(served: Served) -> None:
    s = served
    lock = Path(f"{s.db}.lock")
    lock_before = lock.read_bytes()
    traversal = str(s.exports / "a" / ".." / ".." / "x.jsonl")  # beside the database, outside exports/
    # Absolute paths only: a relative one would land in the server's working directory on a server without
    # the fix (relative names are checked in test_relative_names_and_symlinks_stay_inside_the_folder).
    for out in (traversal, str(lock), str(s.db.parent / "z.jsonl")):
        for name, payload in _writes(out, str(s.exports / "ok-sft.jsonl")):
            r = s.op(s.web, name, payload)
            field = "hf_dir" if "hf_dir" in payload else "out"
            assert r.status_code == 400, (name, out, r.status_code, r.text)
            assert r.json()["error"].startswith(f"{field}: a web session may only write files inside the exports "
                                                "folder"), r.text
    assert not (s.db.parent / "x.jsonl").exists() and not (s.db.parent / "z.jsonl").exists()
    assert lock.read_bytes() == lock_before
    assert not (s.exports / "ok-sft.jsonl").exists()  # the refused export wrote nothing at all


def test_a_web_admin_writes_inside_the_exports_folder(served: Served) -> None:
    """Relative names land in the exports folder; absolute ones inside it are taken as they are."""
    s = served
    for i, (name, payload) in enumerate(_writes("web-{}.jsonl", str(s.exports / "web-sft.jsonl"))):
        r = s.op(s.web, name, {**payload, **({"hf_dir": "web-hf"} if "hf_dir" in payload else {"out": f"web-{i}.jsonl"})})
        assert r.status_code == 200, (name, r.text)
    r = s.op(s.web, "export_judgments", {"study": "ex", "out": str(s.exports / "sub" / ".." / "web-abs.jsonl")})
    assert r.status_code == 200, r.text
    written = {p.name for p in s.exports.iterdir()}
    assert {"web-0.jsonl", "web-2.jsonl", "web-3.jsonl", "web-4.jsonl", "web-5.jsonl", "web-sft.jsonl", "web-hf",
            "web-abs.jsonl"} <= written, written


def test_a_web_admin_cannot_read_outside_the_uploads_folder(served: Served) -> None:
    s = served
    token = lockfile.read_lock(str(s.db)).token  # type: ignore[union-attr]
    prompts_file = s.db.parent / "p.jsonl"
    prompts_file.write_text('{"id": "w1", "prompt": "hi"}\n')
    judgments_file = s.db.parent / "j.jsonl"
    judgments_file.write_text(JUDGMENTS_LINE)
    uploaded = s.web.post("/ui/gradio_api/upload", files={"files": ("p.jsonl", prompts_file.read_bytes())})
    assert uploaded.status_code == 200, uploaded.text
    upload = uploaded.json()[0]
    lock = f"{s.db}.lock"
    refused = [("import_prompts", {"study": "leak", "path": upload, "guidelines_path": lock}, "guidelines_path"),
               ("import_prompts", {"study": "leak", "path": upload,
                                   "guidelines_path": str(s.uploads / ".." / Path(lock).name)}, "guidelines_path"),
               ("import_prompts", {"study": "leak", "path": str(prompts_file)}, "path"),
               ("import_judgments", {"study": "leak", "path": str(judgments_file)}, "path"),
               ("import_judgments", {"study": "leak", "path": lock}, "path"),
               ("export_preview", {"study": "ex", "chat_template": lock}, "chat_template"),
               ("generate", {"study": "ex", "engine": {"engine": "sglang", "sglang_url": "http://127.0.0.1:9",
                                                       "sglang_tokenizer": str(s.db.parent)}}, "engine.sglang_tokenizer")]
    for name, payload, field in refused:
        r = s.op(s.web, name, payload)
        assert r.status_code == 400, (name, payload, r.text)
        assert r.json()["error"].startswith(f"{field}: a web session may only read files inside the uploads folder"), \
            r.text
        assert token not in r.text
    studies = s.op(s.cli, "list_studies", {}).json()["studies"]
    assert "leak" not in [x["name"] for x in studies]  # refused before anything was stored
    # What was uploaded is read: the Studies tab's import, through the admin API.
    r = s.op(s.web, "import_prompts", {"study": "uploaded", "path": upload})
    assert r.status_code == 200 and r.json()["imported"] == 1, r.text


def test_the_cli_token_still_names_any_file(served: Served) -> None:
    s = served
    elsewhere = s.db.parent.parent / "cli-out"
    elsewhere.mkdir()
    traversal = str(elsewhere / "a" / ".." / "cli-{}.jsonl")
    for i, (name, payload) in enumerate(_writes(traversal, str(elsewhere / "cli-sft.jsonl"))):
        key = "hf_dir" if "hf_dir" in payload else "out"
        r = s.op(s.cli, name, {**payload, key: payload[key].format(i)})
        assert r.status_code == 200, (name, r.text)
    assert {f"cli-{i}.jsonl" for i in range(6)} <= {p.name for p in elsewhere.iterdir()}
    judgments_file = s.db.parent / "cli-j.jsonl"
    judgments_file.write_text(JUDGMENTS_LINE)
    assert s.op(s.cli, "import_judgments", {"study": "cli-j", "path": str(judgments_file)}).status_code == 200
    # The owner may read even the lock file (their own token) into a study's guidelines.
    lock = Path(f"{s.db}.lock")
    prompts_file = s.db.parent / "cli-p.jsonl"
    prompts_file.write_text('{"id": "c1", "prompt": "hi"}\n')
    r = s.op(s.cli, "import_prompts", {"study": "cli-p", "path": str(prompts_file), "guidelines_path": str(lock)})
    assert r.status_code == 200, r.text
    assert _guidelines(s, "cli-p") == lock.read_text()


def test_relative_names_and_symlinks_stay_inside_the_folder(tmp_path: Path) -> None:
    """`confine` itself: `..` and symlinks are resolved before the check, relative names are taken inside the
    folder, the database's own files are refused even there, and a nested field is named with its parent."""
    uploads, exports = tmp_path / "up", tmp_path / "data" / "exports"
    uploads.mkdir()
    db = tmp_path / "data" / "x.duckdb"
    (uploads / "escape").symlink_to(tmp_path / "data")
    (uploads / "x.duckdb.lock").symlink_to(f"{db}.lock")
    rules = WebPaths(uploads, exports, frozenset({db, Path(f"{db}.lock")}), frozenset({"/models/tok"}))

    def refused(payload: object) -> str:
        with pytest.raises(ServiceError) as e:
            confine(payload, rules)  # type: ignore[arg-type]
        return str(e.value)

    assert refused(Backup(out="a/../../y.jsonl")).startswith("out: a web session may only write files inside the "
                                                            f"exports folder ({exports})")
    assert refused(Backup(out="")).startswith("out: give a file name")
    assert refused(Backup(out=".")).startswith("out: a web session")  # the folder itself is no file
    assert refused(ImportPrompts(study="s", path="escape/x.duckdb.lock")).startswith("path: a web session may only "
                                                                                     "read files inside the uploads")
    assert refused(ImportPrompts(study="s", path="x.duckdb.lock")).startswith("path:")  # a link to the lock file
    assert refused(ImportPrompts(study="s", path="p.jsonl", guidelines_path="~/.ssh/id_rsa")).startswith(
        "guidelines_path:")
    assert refused(Generate(study="s", engine=EngineConfig(sglang_tokenizer="/etc"))).startswith(
        "engine.sglang_tokenizer: a web session may only read")
    ok = confine(ImportPrompts(study="s", path="sub/../p.jsonl"), rules)
    assert ok.path == str(uploads.resolve() / "p.jsonl")  # type: ignore[attr-defined]
    assert confine(Backup(out="b/c.duckdb"), rules).out == str(exports.resolve() / "b" / "c.duckdb")  # type: ignore[attr-defined]
    preset = Generate(study="s", engine=EngineConfig(sglang_tokenizer="/models/tok"))  # the server's own setting
    assert confine(preset, rules) is preset
