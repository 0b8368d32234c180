"""The report's settings-history section (storage.analysis.settings_section): what it writes for each change,
checked against text written out by hand. tests/test_study_settings.py checks the section on a real study."""

from __future__ import annotations

import time
import uuid
from datetime import datetime, timezone
from typing import Any

import pytest

from storage import judgments
from storage.analysis.settings_section import _short, _when, settings_blocks, settings_changes
from storage.db import Database
from storage.models import JudgmentIn, StudyConfig
from storage.studies import create_study, update_study
from tests.builders import make_prompt, make_responses


class Doc:
    """Records what the section writes."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    def h(self, level: int, text: str) -> None:
        self.calls.append(("h", (level, text)))

    def p(self, text: str) -> None:
        self.calls.append(("p", text))

    def table(self, headers: list[str], rows: list[list[Any]]) -> None:
        self.calls.append(("table", (headers, rows)))


def test_short_keeps_up_to_the_limit_and_cuts_with_an_ellipsis():
    assert _short("a" * 80) == "a" * 80
    assert _short("a" * 81) == "a" * 79 + "…" and len(_short("a" * 81)) == 80
    assert _short("abcdef", limit=4) == "abc…"
    assert _short("abcd", limit=4) == "abcd"
    # anything but text is shown as JSON (a string is not quoted)
    assert _short(True) == "true" and _short(None) == "null" and _short([1, "x"]) == '[1, "x"]'
    assert _short({"k": "v" * 100}, limit=10) == '{"k": "vv…'


def test_when_is_utc_to_the_second(monkeypatch: pytest.MonkeyPatch) -> None:
    assert _when("2026-12-06T23:59:59.9+00:00") == "2026-12-06 23:59:59 UTC"
    assert _when("2026-12-07T01:30:00-02:00") == "2026-12-07 03:30:00 UTC"
    assert _when(None) == "–" and _when("") == "–"
    # whatever the machine's time zone
    monkeypatch.setenv("TZ", "Asia/Kolkata")
    time.tzset()
    try:
        assert _when("2026-12-07T01:30:00-02:00") == "2026-12-07 03:30:00 UTC"
    finally:
        monkeypatch.undo()
        time.tzset()


def test_settings_blocks_without_changes():
    for section in (None, {}, {"changes": []}):
        doc = Doc()
        settings_blocks(doc, section)
        assert doc.calls == [("h", (2, "Settings history")),
                             ("p", "The study's settings were not changed after it was created.")]


def test_settings_blocks_lists_every_change():
    section = {
        "changes": [
            {"changed_at": "2026-12-01T10:00:00+00:00", "changed_by": "root", "setting": "overlap", "old": None,
             "new": 2, "confirmed": False, "after_first_label": False},
            {"changed_at": "2026-12-02T11:00:00+01:00", "changed_by": None, "setting": "guidelines",
             "old": "x" * 90, "new": "Short.", "confirmed": True, "after_first_label": True},
        ],
        "n_after_first_label": 1,
        "first_label_at": "2026-12-01T12:00:00+00:00",
    }
    doc = Doc()
    settings_blocks(doc, section)
    assert doc.calls[0] == ("h", (2, "Settings history"))
    assert doc.calls[1] == ("p", "2 change(s); 1 made after the first human label (2026-12-01 12:00:00 UTC): labels "
                                 "before and after such a change were made under different settings.")
    headers, rows = doc.calls[2][1]
    assert headers == ["changed at", "by", "setting", "from", "to", "after labelling began", "confirmed"]
    assert rows == [["2026-12-01 10:00:00 UTC", "root", "overlap", "null", "2", "no", "no"],
                    ["2026-12-02 10:00:00 UTC", "–", "guidelines", "x" * 79 + "…", "Short.", "yes", "yes"]]
    assert len(doc.calls) == 3
    # no first label yet, and the count missing: 0 and a dash
    doc = Doc()
    settings_blocks(doc, {"changes": section["changes"][:1]})
    assert doc.calls[1] == ("p", "1 change(s); 0 made after the first human label (–): labels before and after "
                                 "such a change were made under different settings.")


def test_settings_changes_marks_the_changes_made_after_the_first_human_label(db: Database) -> None:
    # guidelines changed at 09:00, a model judged at 09:30 (not a label), the first human label at 10:00,
    # overlap changed at 10:00 (not after: the same instant) and reveal at 11:00 (after).
    s = create_study(db, "s", config=StudyConfig(questions=["best"]))
    assert settings_changes(db, s.id) == {"changes": [], "n_after_first_label": 0, "first_label_at": None}
    update_study(db, s.id, guidelines="Be brief.", changed_by="root")
    update_study(db, s.id, config=StudyConfig(questions=["best"], overlap=2), changed_by="root")
    update_study(db, s.id, config=StudyConfig(questions=["best"], overlap=2, reveal=False), changed_by=None,
                 confirmed=True)
    pid = make_prompt(db, s.id)
    rid = make_responses(db, pid, ["one", "two"])[0]
    judgments.record(db, [JudgmentIn(study_id=s.id, prompt_id=pid, judge_kind=kind, judge=who, method="best_of_n",
                                     response_id=rid, idempotency_key=uuid.uuid4().hex)
                          for kind, who in (("model", "m"), ("human", "ann"))])
    t = {h: datetime(2026, 12, 6, h, m, tzinfo=timezone.utc) for h, m in ((9, 0), (10, 0), (11, 0))}
    with db.write() as cur:
        for setting, hour in (("guidelines", 9), ("overlap", 10), ("reveal", 11)):
            cur.execute("UPDATE study_settings_change SET changed_at = ? WHERE setting = ?", [t[hour], setting])
        cur.execute("UPDATE judgment SET created_at = ? WHERE judge = 'm'", [datetime(2026, 12, 6, 9, 30,
                                                                                      tzinfo=timezone.utc)])
        cur.execute("UPDATE judgment SET created_at = ? WHERE judge = 'ann'", [t[10]])
    sec = settings_changes(db, s.id)
    assert [(c["setting"], c["after_first_label"], c["changed_by"], c["confirmed"]) for c in sec["changes"]] == [
        ("guidelines", False, "root", False), ("overlap", False, "root", False), ("reveal", True, None, True)]
    assert [(c["old"], c["new"]) for c in sec["changes"]] == [("", "Be brief."), (None, 2), (True, False)]
    assert sec["n_after_first_label"] == 1
    first = datetime.fromisoformat(sec["first_label_at"])
    assert first == t[10] and datetime.fromisoformat(sec["changes"][2]["changed_at"]) == t[11]
