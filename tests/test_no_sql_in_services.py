"""Issue 15: SQL lives in storage/. app/services holds the rules and calls storage functions, app/ui renders
what the services return, backend never sees the database: none of app/ and backend/ writes a query."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SQL = re.compile(r"\b(SELECT\b[\s\S]*\bFROM|INSERT\s+INTO|UPDATE\s+\w+\s+SET|DELETE\s+FROM|UNION\s+ALL)\b")


def _sql_strings(folder: Path) -> list[tuple[str, int, str]]:
    found = []
    for path in sorted(folder.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and SQL.search(node.value):
                found.append((str(path.relative_to(ROOT)), node.lineno, node.value.strip()[:60]))
            elif isinstance(node, (ast.Import, ast.ImportFrom)) and any(a.name == "ACCESS_ROWS" for a in node.names):
                found.append((str(path.relative_to(ROOT)), node.lineno, "ACCESS_ROWS (a SQL fragment)"))
    return found


def test_the_pattern_finds_sql() -> None:
    assert SQL.search("SELECT study_id FROM prompt WHERE id = ?") and SQL.search("DELETE FROM skip")
    assert not SQL.search("select the best response from the list") and not SQL.search("Select a study")


def test_app_and_backend_hold_no_sql() -> None:
    assert _sql_strings(ROOT / "app") == []
    assert _sql_strings(ROOT / "backend") == []
