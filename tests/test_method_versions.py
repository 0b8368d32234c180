"""Method versions after the shared candidate rule (backend/engines/candidates.py): the methods whose candidate
tokens changed are version 2, a study scored with version 1 is scored again (not reused) and its version-1
verdicts stop being current, and the checklist people have labelled is kept (its writing step is unchanged)."""

from __future__ import annotations

import json

import pytest
from jinja2 import Template

from app.services.context import AppContext
from app.services.scoring import start_scoring
from backend.methods import base, checklist
from backend.methods.checklist import ChecklistMethod
from backend.methods.p_true import PTrue, PTrueBrainstorm
from backend.methods.pairwise import PairwiseSwap
from backend.methods.registry import get_method
from storage.db import Database
from tests.builders import make_prompt, make_responses, make_run, make_study
from tests.scripted_engine import ScriptedEngine

QUESTIONS = ["Does it name a colour?", "Is it one word long?", "Is it spelled right?"]


def test_the_methods_whose_candidate_tokens_changed_are_version_2() -> None:
    # p_true/p_true_brainstorm (A/B) and pairwise (A/B/C): SGLang counted "a", " a", "b" ...; checklist
    # (Yes/No): SGLang left out "NO", " NO". The digit readers resolve the same ids as before.
    versions = {m: get_method(m).version for m in ("p_true", "p_true_brainstorm", "pairwise", "checklist",
                                                   "judge_score", "select_usc")}
    assert versions == {"p_true": "2", "p_true_brainstorm": "2", "pairwise": "2", "checklist": "2",
                        "judge_score": "1", "select_usc": "1"}
    assert ChecklistMethod.checklist_version == "1"


def test_a_study_scored_with_version_1_is_scored_again_and_keeps_its_checklist(
        db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    s = make_study(db, "s")
    pid = make_prompt(db, s.id, "p1", "Name a colour.")
    make_responses(db, pid, ["red", "blue"], run_id=make_run(db, s.id, model_id="scripted-model"))
    engine = ScriptedEngine(texts=lambda *a: json.dumps({"questions": QUESTIONS}),
                            probs=lambda chat, prefix, cands: {c: (i + 1) / 10 for i, c in enumerate(cands)})
    ctx = AppContext(db=db, engine_factory=lambda cfg: engine)
    methods = ["p_true", "p_true_brainstorm", "pairwise", "checklist"]
    with monkeypatch.context() as old:  # the code before the candidate rule: version 1, same prompt texts
        for cls in (PTrue, PTrueBrainstorm, PairwiseSwap, ChecklistMethod):
            old.setattr(cls, "version", "1")

        load = base._template

        def renamed(filename: str) -> Template:
            try:
                return load(filename)
            except FileNotFoundError:  # the judge templates were renamed to .v2. unchanged
                return load(filename.replace(".v1.", ".v2."))
        old.setattr(base, "_template", renamed)
        old.setattr(checklist, "_template", renamed)
        assert start_scoring(ctx, "s", methods, background=False).status == "done"
    checklist_ids = db.fetchall("SELECT id FROM checklist_item ORDER BY id")
    writes = [c for c in engine.calls if c[0] == "sample"]
    assert len(checklist_ids) == 3 and len(writes) == 1

    assert start_scoring(ctx, "s", methods, background=False).status == "done"
    current = db.fetchall("SELECT DISTINCT method, method_version FROM judgment "
                          "WHERE superseded_at IS NULL ORDER BY ALL")
    assert current == [("checklist", "2"), ("checklist_item", "2"), ("p_true", "2"),
                       ("p_true_brainstorm", "2"), ("pairwise", "2")]
    assert db.fetchval("SELECT count(*) FROM judgment WHERE method_version = '1' AND superseded_at IS NULL") == 0
    # The checklist was read again, not written again: same items, no second generation.
    assert db.fetchall("SELECT id FROM checklist_item ORDER BY id") == checklist_ids
    assert [c for c in engine.calls if c[0] == "sample"] == writes
    item_ids = {r[0] for r in db.fetchall("SELECT checklist_item_id FROM judgment WHERE method = 'checklist_item' "
                                          "AND superseded_at IS NULL")}
    assert item_ids == {i for (i,) in checklist_ids}
