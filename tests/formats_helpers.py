"""Shared by the format tests: the samples' folder, a database snapshot, and the report of a study."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from app.services.agreement import method_info
from storage.analysis.report import build_report
from storage.db import Database

SAMPLES = Path(__file__).parent / "data" / "formats"


def dump(db: Database) -> dict[str, list[tuple]]:
    return {t: db.fetchall(f"SELECT * FROM {t} ORDER BY id") for t in ("study", "prompt", "response", "judgment")}


def report(db: Database, study_id: int) -> dict[str, Any]:
    return build_report(db, study_id, n_boot=0, method_info=method_info)


def figure(rep: dict[str, Any], section: str, judges: list[str], which: str = "s1",
           order: str | None = "combined") -> dict[str, Any]:
    """One agreement figure of the pairwise section, by the judges it compares."""
    for row in rep[section]["agreement"]:
        if row["judges"] == judges and row["order"] == order:
            return row[which]
    raise AssertionError(f"no {judges} row in {json.dumps(rep[section]['agreement'])[:400]}")


def write_lines(path: Path, records: list[Any]) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records))
    return path
