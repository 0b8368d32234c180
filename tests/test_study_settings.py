"""Finding 1 of the labelling issue: saving study settings must not wipe the study.

A save sends only the changed keys and is refused when the settings changed since the form loaded; a
change that weakens a study with labels needs confirmation; every change is kept with who and when, and
the agreement report lists them.
"""

from __future__ import annotations

import json
import uuid

import pytest

from app.services import study_settings
from app.services import agreement
from app.services.context import AppContext, ServiceError
from app.services.ops import run_op
from storage import judgments, settings_history, studies
from storage.db import Database
from storage.models import JudgmentIn
from tests.builders import make_prompt, make_responses


def _ctx(db: Database, guidelines: str = "Pick the most helpful answer.") -> AppContext:
    ctx = AppContext(db=db)
    run_op(ctx, "root", "create_study", {"name": "s", "guidelines": guidelines})
    return ctx


def _label(db: Database) -> None:
    sid = studies.get_study(db, "s").id
    pid = make_prompt(db, sid, "q1")
    rid = make_responses(db, pid, ["one", "two"])[0]
    judgments.record(db, [JudgmentIn(study_id=sid, prompt_id=pid, judge_kind="human", judge="ann",
                                     method="best_of_n", response_id=rid, idempotency_key=uuid.uuid4().hex)])


def _save(ctx: AppContext, form: study_settings.SettingsForm, confirm: bool = False, **edits) -> dict:
    changed = study_settings.form_changes(form.values, {**form.values, **edits})
    guidelines = changed.pop("guidelines", None)
    return run_op(ctx, "root", "configure", {"study": "s", "config": changed, "guidelines": guidelines,
                                             "expected_version": form.version, "confirm": confirm})


def _state(db: Database) -> tuple:
    s = studies.get_study(db, "s")
    return s.config.model_dump(), s.guidelines, db.fetchall("SELECT * FROM study_settings_change ORDER BY id")


def test_the_form_loads_the_stored_settings_and_a_save_changes_only_what_was_edited(db: Database) -> None:
    ctx = _ctx(db)
    form = study_settings.load_form(ctx, "s")
    assert form.values["blind"] is True and form.values["reveal"] is True
    assert form.values["questions"] == ["best", "rating", "comment"]
    assert form.values["guidelines"] == "Pick the most helpful answer."
    r = _save(ctx, form, questions=["best", "rating", "comment", "correct"])  # tick one question
    assert r["changed"] == {"questions": [["best", "rating", "comment"], ["best", "rating", "comment", "correct"]]}
    s = studies.get_study(db, "s")
    assert s.config.blind and s.config.reveal and s.guidelines == "Pick the most helpful answer."
    assert s.config.questions == ["best", "rating", "comment", "correct"]


def test_a_save_from_a_form_loaded_before_another_change_is_refused(db: Database) -> None:
    ctx = _ctx(db)
    mine = study_settings.load_form(ctx, "s")
    theirs = study_settings.load_form(ctx, "s")
    _save(ctx, theirs, overlap=3)
    before = _state(db)
    with pytest.raises(ServiceError, match="changed since this form was loaded.*annotators per prompt by root"):
        _save(ctx, mine, answer_extraction="boxed")
    assert _state(db) == before


@pytest.mark.parametrize("edit, reason", [
    ({"blind": False}, "turn blind labelling off"),
    ({"reveal": False}, "turn reveal after submit off"),
    ({"questions": ["best", "comment"]}, "remove the question '1–7 rating per response'"),
    ({"guidelines": "  "}, "clear the guidelines"),
])
def test_weakening_a_study_with_labels_needs_confirmation(db: Database, edit: dict, reason: str) -> None:
    ctx = _ctx(db)
    _label(db)
    form = study_settings.load_form(ctx, "s")
    before = _state(db)
    with pytest.raises(study_settings.NeedsConfirmation, match=reason):
        _save(ctx, form, **edit)
    assert _state(db) == before
    r = _save(ctx, form, confirm=True, **edit)
    assert r["changed"]
    rows = settings_history.history(db, studies.get_study(db, "s").id)
    assert [c.confirmed for c in rows] == [True] * len(rows) and rows[0].changed_by == "root"


def test_the_same_change_without_labels_or_strengthening_needs_no_confirmation(db: Database) -> None:
    ctx = _ctx(db)
    _save(ctx, study_settings.load_form(ctx, "s"), blind=False, guidelines="")  # no labels yet
    _label(db)
    r = _save(ctx, study_settings.load_form(ctx, "s"), blind=True, questions=["best", "rating", "comment", "correct"])
    assert set(r["changed"]) == {"blind", "questions"}


def test_every_change_is_kept_and_the_report_lists_it_with_its_time(db: Database) -> None:
    ctx = _ctx(db)
    _save(ctx, study_settings.load_form(ctx, "s"), overlap=2)
    _label(db)
    _save(ctx, study_settings.load_form(ctx, "s"), confirm=True, reveal=False, guidelines="New rules.")
    hist = settings_history.history(db, studies.get_study(db, "s").id)
    assert [(c.setting, c.old, c.new) for c in hist] == [
        ("overlap", None, 2), ("guidelines", "Pick the most helpful answer.", "New rules."), ("reveal", True, False)]
    assert all(c.changed_by == "root" and c.changed_at is not None for c in hist)
    rep = agreement.report(ctx, "s", n_boot=0)
    sec = rep["settings_history"]
    assert [c["setting"] for c in sec["changes"]] == ["overlap", "guidelines", "reveal"]
    assert [c["after_first_label"] for c in sec["changes"]] == [False, True, True]
    assert sec["n_after_first_label"] == 2 and sec["changes"][0]["changed_at"] == hist[0].changed_at.isoformat()
    json.dumps(rep, allow_nan=False)
    md = agreement.render(rep, "md")
    assert "## Settings history" in md and "| reveal | true | false | yes | yes |" in md


def test_import_with_guidelines_is_recorded_with_who_changed_them(db: Database, tmp_path) -> None:
    ctx = _ctx(db)
    prompts_file = tmp_path / "p.jsonl"
    prompts_file.write_text('{"id": "a", "prompt": "Hi?"}\n')
    guide = tmp_path / "g.md"
    guide.write_text("Prefer short answers.")
    run_op(ctx, "boss", "import_prompts", {"study": "s", "path": str(prompts_file), "guidelines_path": str(guide)})
    (change,) = settings_history.history(db, studies.get_study(db, "s").id)
    assert (change.setting, change.new, change.changed_by) == ("guidelines", "Prefer short answers.", "boss")


def test_the_settings_panel_is_one_service_call_with_the_form_and_the_progress(db: Database) -> None:
    """The Studies tab's settings panel fills from study_settings.load_panel alone (issue 15: one service call
    per callback): the same form as load_form and the same rows as the annotator_progress operation."""
    ctx = _ctx(db)
    _label(db)
    panel = study_settings.load_panel(ctx, "s")
    assert panel.form == study_settings.load_form(ctx, "s")
    prog = run_op(ctx, "root", "annotator_progress", {"study": "s"})
    assert [p.model_dump() for p in panel.progress] == prog["annotators"]
    with pytest.raises(LookupError):
        study_settings.load_panel(ctx, "nope")
