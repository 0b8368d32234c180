"""The report's `settings_history` section: every change of the study's settings with its time, so a reader
knows which labels were made under which questions, blind/reveal protocol and guidelines."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any, Protocol

from storage import settings_history
from storage.db import Database


class _Doc(Protocol):
    def h(self, level: int, text: str) -> None: ...
    def p(self, text: str) -> None: ...
    def table(self, headers: list[str], rows: list[list[Any]]) -> None: ...


def settings_changes(db: Database, study_id: int) -> dict[str, Any]:
    """`changes` oldest first, each with `after_first_label` (made once people had started labelling)."""
    first = db.fetchval("SELECT min(created_at) FROM judgment WHERE study_id = ? AND judge_kind = 'human'",
                        [study_id])
    changes = [{"changed_at": c.changed_at.isoformat() if c.changed_at else None, "changed_by": c.changed_by,
                "setting": c.setting, "old": c.old, "new": c.new, "confirmed": c.confirmed,
                "after_first_label": bool(first is not None and c.changed_at is not None and c.changed_at > first)}
               for c in settings_history.history(db, study_id)]
    return {"changes": changes, "n_after_first_label": sum(c["after_first_label"] for c in changes),
            "first_label_at": first.isoformat() if first is not None else None}


def _when(iso: str | None) -> str:
    """
    >>> _when("2026-12-06T03:04:05.123456+01:00")
    '2026-12-06 02:04:05 UTC'
    """
    if not iso:
        return "–"
    return datetime.fromisoformat(iso).astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def _short(value: Any, limit: int = 80) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def settings_blocks(doc: _Doc, section: dict[str, Any] | None) -> None:
    doc.h(2, "Settings history")
    changes = (section or {}).get("changes") or []
    if not changes:
        doc.p("The study's settings were not changed after it was created.")
        return
    n_after = section.get("n_after_first_label", 0)  # type: ignore[union-attr]
    doc.p(f"{len(changes)} change(s); {n_after} made after the first human label "
          f"({_when(section.get('first_label_at'))}): labels before and after such a change were made "  # type: ignore[union-attr]
          "under different settings.")
    doc.table(["changed at", "by", "setting", "from", "to", "after labelling began", "confirmed"],
              [[_when(c["changed_at"]), c["changed_by"] or "–", c["setting"], _short(c["old"]), _short(c["new"]),
                "yes" if c["after_first_label"] else "no", "yes" if c["confirmed"] else "no"] for c in changes])
