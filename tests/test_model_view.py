"""The model's view on Label cards: badges, checklist answers, critiques, pairwise and selector marks,
hidden until the person has labelled the item in a blind study."""

from __future__ import annotations

import uuid

import pytest

from app.services import labelling
from app.services.context import AppContext, ServiceError
from app.services.model_view import card_views
from app.ui.model_view_md import render_view
from storage import checklists, judgments
from storage.db import Database
from storage.models import JudgmentIn
from tests.builders import make_members, make_prompt, make_responses, make_study


def model(db: Database, study_id: int, prompt_id: int, method: str, **kw) -> None:
    judgments.record(db, [JudgmentIn(study_id=study_id, prompt_id=prompt_id, judge_kind="model", judge="m",
                                     method=method, idempotency_key=uuid.uuid4().hex, source="model", **kw)])


def test_card_views_collect_every_signal(db: Database) -> None:
    s = make_study(db)
    p = make_prompt(db, s.id)
    a, b = make_responses(db, p, ["A text", "B text"])
    cl = checklists.create_checklist(db, p, "m", ["Is it <b>short</b>?"], method="checklist", version="1")
    model(db, s.id, p, "p_true", response_id=a, prob=0.75, value=0.75)
    model(db, s.id, p, "judge_score", response_id=b, status="failed", error="context overflow: too long")
    model(db, s.id, p, "checklist_item", response_id=a, checklist_item_id=cl.items[0].id, prob=0.8, label="YES")
    model(db, s.id, p, "critique", response_id=a, variant="s0", label="incorrect", value=0.0,
          rationale="<script>x</script> wrong sum")
    model(db, s.id, p, "pairwise", response_id=a, response_b_id=b, label=str(b), value=0.0, dist={"swap_consistent": 1.0})
    model(db, s.id, p, "select_usc", response_id=b, prob=0.6)
    ctx = AppContext(db=db)
    views = card_views(ctx, s.id, p, [b, a])
    assert [x.text for x in views[a].badges] == ["0.75"]
    assert views[b].badges[0].failed and "context overflow" in views[b].badges[0].text
    assert views[a].checklist[0].answer == "YES" and views[a].checklist[0].p_yes == 0.8
    assert views[a].pairwise[0].outcome == "lost" and views[b].pairwise[0].outcome == "won"
    assert views[b].picked_by == ["USC"] and views[a].picked_by == []
    md = render_view(views[a], {b: 1, a: 2})
    assert "vs Response 1: lost (both orders agree)" in md
    assert "<script>" not in md and "&lt;script&gt;" in md
    assert "&lt;b&gt;short&lt;/b&gt;" in md


def test_the_newer_methods_have_badges(db: Database) -> None:
    s = make_study(db)
    p = make_prompt(db, s.id)
    a, b = make_responses(db, p, ["A", "B"])
    model(db, s.id, p, "follow_up_likelihood", response_id=a, value=0.4321)
    model(db, s.id, p, "selfcheck_prompt", response_id=a, prob=0.625, value=0.625)
    model(db, s.id, p, "principles_critique", response_id=a, value=15.0, dist={"k": 2.0, "failed": 0.0, "mean": 7.5})
    model(db, s.id, p, "principles_critique", response_id=a, variant="s0", value=7.0)  # a sample: no badge of its own
    model(db, s.id, p, "principles_critique", response_id=b, value=9.0)  # no dist: shown as n/a, not an error
    views = card_views(AppContext(db=db), s.id, p, [a, b])
    assert {x.name: x.text for x in views[a].badges} == {
        "Follow-up likelihood": "+0.43", "Supported by the other samples": "0.62",
        "Principles + critique": "7.5 / 10, mean of 2"}
    assert [(x.text, x.failed) for x in views[b].badges] == [("n/a", True)]


def test_principles_critiques_are_shown_apart_from_the_critique_methods(db: Database) -> None:
    """principles_critique's samples carry the principles and the critique behind the score (issue 17 walk:
    the Model's view showed only the score); they are not the `critique` method's critiques, which the
    "agree with the model's critique" question is about."""
    s = make_study(db)
    p = make_prompt(db, s.id)
    a, b = make_responses(db, p, ["A", "B"])
    model(db, s.id, p, "principles_critique", response_id=a, value=16.0, dist={"k": 2.0, "failed": 0.0, "mean": 8.0})
    for v, score in (("s0", 9.0), ("s1", 7.0)):
        model(db, s.id, p, "principles_critique", response_id=a, variant=v, value=score, shown_order=[a, b],
              rationale=f"Principles: be <b>right</b>.\nCritique: sample {v} ![x](http://t/x.png)")
    model(db, s.id, p, "principles_critique", response_id=b, variant="s0", status="failed", error="bad json")
    views = card_views(AppContext(db=db), s.id, p, [a, b])
    assert views[a].critiques == [] and views[b].principles == []
    assert [(x.sample, x.score, x.judge) for x in views[a].principles] == [("s0", 9.0, "m"), ("s1", 7.0, "m")]
    md = render_view(views[a], {a: 1, b: 2})
    assert "<strong>Principles + critique</strong> <small>(sample s0, 9 / 10)</small>" in md
    assert "Principles: be &lt;b&gt;right&lt;/b&gt;.<br>" in md and "Critique: sample s1" in md
    assert "<img" not in md and 'title="principles_critique"' in md


def test_model_view_shows_only_after_a_blind_submit(db: Database) -> None:
    s = make_study(db)
    p = make_prompt(db, s.id)
    a, b = make_responses(db, p, ["A", "B"])
    model(db, s.id, p, "p_true", response_id=a, prob=0.9, value=0.9)
    make_members(db, s.id, "ann")
    ctx = AppContext(db=db)
    item = labelling.next_item(ctx, "ann", s.name)
    assert not item.show_model_view and item.views == {} and item.stage == "blind"
    with pytest.raises(ServiceError, match="blind first"):
        labelling.open_item(ctx, "ann", s.name, p, stage="revealed")
    order = [c.response_id for c in item.cards]
    result = labelling.submit(ctx, "ann", labelling.LabelSubmission(study=s.name, prompt_id=p, shown_order=order,
                                                                    best=a, idempotency_key="k" * 12))
    assert result.reveal
    shown = labelling.open_item(ctx, "ann", s.name, p, stage="revealed")
    assert shown.show_model_view and shown.views[a].badges[0].text == "0.90" and shown.answers.best == a
    back = labelling.previous_item(ctx, "ann", s.name, None)
    # The model's view was seen: back reopens the revealed stage (an edit can no longer be blind).
    assert back.show_model_view and back.stage == "revealed"


def test_two_judges_verdicts_each_under_its_model_name(db: Database) -> None:
    """A response scored by two judge models with the same methods: each judge's badge, pairwise verdict,
    critique and pick is shown under that model's name, never merged or left unnamed."""
    s = make_study(db)
    p = make_prompt(db, s.id)
    a, b = make_responses(db, p, ["A", "B"])
    for judge, prob, winner in (("judge-x@aaa", 0.9, a), ("judge-y@bbb", 0.2, b)):
        for method, kw in (("p_true", {"response_id": a, "prob": prob, "value": prob}),
                           ("pairwise", {"response_id": a, "response_b_id": b, "label": str(winner)}),
                           ("critique", {"response_id": a, "variant": "s0", "label": "correct", "value": 1.0,
                                         "rationale": f"fine says {judge}"})):
            judgments.record(db, [JudgmentIn(study_id=s.id, prompt_id=p, judge_kind="model", judge=judge,
                                             method=method, idempotency_key=uuid.uuid4().hex, **kw)])
    judgments.record(db, [JudgmentIn(study_id=s.id, prompt_id=p, judge_kind="model", judge="judge-y@bbb",
                                     method="select_usc", response_id=a, idempotency_key=uuid.uuid4().hex)])
    views = card_views(AppContext(db=db), s.id, p, [a, b])
    assert [(x.judge, x.text) for x in views[a].badges] == [("judge-x@aaa", "0.90"), ("judge-y@bbb", "0.20")]
    assert [(x.judge, x.outcome) for x in views[a].pairwise] == [("judge-x@aaa", "won"), ("judge-y@bbb", "lost")]
    assert views[a].picked_by == ["USC (judge-y@bbb)"]
    md = render_view(views[a], {a: 1, b: 2})
    x, y = md.index("<strong>judge-x@aaa</strong>"), md.index("<strong>judge-y@bbb</strong>")
    assert x < md.index("P(True): 0.90") < md.index("fine says judge-x") < md.index("vs Response 2: won") < y
    assert y < md.index("P(True): 0.20") < md.index("fine says judge-y") < md.index("vs Response 2: lost")


def test_docs_api_names_every_field_of_the_model_view() -> None:
    """docs/api.md's `views` section names each field a card's view and its parts have, so an API client
    reading it misses none (a field added to the models without the docs fails here)."""
    import re
    from pathlib import Path

    from app.services import model_view as mv

    doc = Path(__file__).resolve().parents[1].joinpath("docs", "api.md").read_text()
    section = re.search(r"### The model's view: `views`\n(.*?)(?=\n## |\n### |\Z)", doc, re.S)
    assert section, "docs/api.md has no `views` section"
    fields = {f for cls in (mv.CardView, mv.Badge, mv.ChecklistAnswer, mv.Critique, mv.PrinciplesSample,
                            mv.PairwiseResult) for f in cls.model_fields}
    assert "swap_consistent" in fields and "picked_by" in fields
    assert sorted(f for f in fields if f"`{f}`" not in section.group(1)) == []
