"""The history of a study's settings: one row per changed setting, with who changed it and when.

storage.studies.update_study writes it in the same transaction as the change itself, so no change of
what a study measures goes unrecorded.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Any

import duckdb
from pydantic import BaseModel

from storage.db import Database
from storage.models import Study


class SettingChange(BaseModel):
    setting: str  # a StudyConfig field, or "guidelines" / "description"
    old: Any = None
    new: Any = None
    changed_by: str | None = None
    confirmed: bool = False  # the admin confirmed a change that weakens a study with labels
    changed_at: datetime | None = None


def settings_of(study: Study) -> dict[str, Any]:
    """Everything a settings change can touch, as plain JSON values."""
    return {**study.config.model_dump(mode="json"), "guidelines": study.guidelines, "description": study.description}


def version(study: Study) -> str:
    """A fingerprint of the study's settings: a form loaded at one version may save only while it still holds.

    >>> from storage.models import Study
    >>> version(Study(id=1, name="s")) == version(Study(id=1, name="s"))
    True
    >>> version(Study(id=1, name="s")) == version(Study(id=1, name="s", guidelines="Be kind."))
    False
    """
    return hashlib.sha256(json.dumps(settings_of(study), sort_keys=True).encode()).hexdigest()[:16]


def diff(before: Study, after: Study) -> dict[str, tuple[Any, Any]]:
    """setting -> (old, new) for every setting that differs."""
    old, new = settings_of(before), settings_of(after)
    return {k: (old.get(k), new.get(k)) for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)}


def record(cur: duckdb.DuckDBPyConnection, study_id: int, changes: dict[str, tuple[Any, Any]],
           changed_by: str | None, confirmed: bool) -> None:
    for setting, (old, new) in changes.items():
        cur.execute("""INSERT INTO study_settings_change (study_id, setting, old_value, new_value, changed_by, confirmed)
                       VALUES (?, ?, ?, ?, ?, ?)""",
                    [study_id, setting, json.dumps(old), json.dumps(new), changed_by, confirmed])


def history(db: Database, study_id: int) -> list[SettingChange]:
    """The study's settings changes, oldest first."""
    return [SettingChange(setting=r["setting"], old=json.loads(r["old_value"]) if r["old_value"] else None,
                          new=json.loads(r["new_value"]) if r["new_value"] else None, changed_by=r["changed_by"],
                          confirmed=r["confirmed"], changed_at=r["changed_at"])
            for r in db.fetchdicts("SELECT * FROM study_settings_change WHERE study_id = ? ORDER BY changed_at, id",
                                   [study_id])]
