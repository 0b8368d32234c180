"""Issue 15: storage/export gets the method facts and chat templates from the app layer and imports nothing
from backend or app (not even inside functions); the sandboxed chat-template environment exists once; DPO
exports have one path."""

from __future__ import annotations

import ast
from pathlib import Path

from app.services.context import AppContext
from app.services.ops import run_op
from storage.db import Database
from tests.builders import label, make_prompt, make_responses, make_study

ROOT = Path(__file__).resolve().parent.parent


def _imports(path: Path) -> set[str]:
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
    return out


def test_storage_export_imports_no_backend_or_app() -> None:
    files = sorted((ROOT / "storage" / "export").rglob("*.py")) + sorted((ROOT / "storage").glob("export*.py"))
    bad = {f"{f.relative_to(ROOT)}: {m}" for f in files for m in _imports(f) if m.split(".")[0] in ("backend", "app")}
    assert not bad, sorted(bad)


def test_one_sandboxed_chat_template_environment() -> None:
    defining = sorted(str(f.relative_to(ROOT)) for d in ("backend", "storage", "app") for f in (ROOT / d).rglob("*.py")
                      if "ImmutableSandboxedEnvironment(" in f.read_text(encoding="utf-8"))
    assert defining == ["backend/engines/chat_template.py"]


def test_the_export_dpo_operation_is_the_per_annotator_best_pick_export(db: Database, tmp_path: Path) -> None:
    """One DPO path: the old `export_dpo` operation writes what `export` writes for kind dpo, signal best, per
    annotator (same rows, a card, one export_run row each), not a second file format."""
    sid = make_study(db).id
    for ext in ("p1", "p2"):
        pid = make_prompt(db, sid, ext, f"Question {ext}?")
        a, b, c = make_responses(db, pid, [f"{ext} A", f"{ext} B", f"{ext} C"])
        label(db, sid, pid, "alice", a, {a: 6, b: 4, c: 2})
        label(db, sid, pid, "bob", b, {a: 3, b: 5, c: 3})  # tied lowest: skipped
    ctx = AppContext(db=db)
    old = run_op(ctx, "cli", "export_dpo", {"study": "demo", "out": str(tmp_path / "a" / "pairs.jsonl")})
    new = run_op(ctx, "cli", "export", {"study": "demo", "kind": "dpo", "signal": "best", "per_annotator": True,
                                        "out": str(tmp_path / "b" / "pairs.jsonl")})
    assert (old["rows"], old["skipped"], old["content_hash"]) == (new["rows"], new["skipped"], new["content_hash"])
    assert old["rows"] == 2 and old["skipped"] == {"tied_lowest": 2}
    assert Path(old["card_path"]).is_file()
    kinds = db.fetchall("SELECT kind, json_extract(params, '$.per_annotator')::BOOLEAN FROM export_run ORDER BY id")
    assert kinds == [("dpo", True), ("dpo", True)]
