"""Issue 15: storage/export gets the method facts and chat templates from the app layer and imports nothing
from backend or app (not even inside functions); the sandboxed chat-template environment exists once."""

from __future__ import annotations

import ast
from pathlib import Path

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
    files = sorted((ROOT / "storage" / "export").glob("*.py")) + sorted((ROOT / "storage").glob("export*.py"))
    bad = {f"{f.relative_to(ROOT)}: {m}" for f in files for m in _imports(f) if m.split(".")[0] in ("backend", "app")}
    assert not bad, sorted(bad)


def test_one_sandboxed_chat_template_environment() -> None:
    defining = sorted(str(f.relative_to(ROOT)) for d in ("backend", "storage", "app") for f in (ROOT / d).rglob("*.py")
                      if "ImmutableSandboxedEnvironment(" in f.read_text(encoding="utf-8"))
    assert defining == ["backend/engines/chat_template.py"]
