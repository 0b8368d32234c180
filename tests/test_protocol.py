"""The annotation protocol: overlap routing, re-queue, disagreement routing, blind/reveal stages and
every human question stored as judgments."""

from __future__ import annotations

import uuid

import pytest

from app.services import labelling
from app.services.context import AppContext, ServiceError
from storage import checklists, judgments, label_queue, studies
from storage.db import Database
from storage.models import JudgmentIn, StudyConfig
from tests.builders import make_members, make_prompt, make_responses


def _study(db: Database, n_prompts: int = 3, **config) -> tuple[AppContext, int, list[int]]:
    s = studies.create_study(db, "p", config=StudyConfig(**config))
    pids = [make_prompt(db, s.id, f"q{i}") for i in range(n_prompts)]
    for pid in pids:
        make_responses(db, pid, ["first", "second"])
    make_members(db, s.id, "a", "b", "c", "d")
    return AppContext(db=db), s.id, pids


def _label(ctx: AppContext, who: str, item: labelling.LabelItem, best_pos: int = 0, **answers):
    order = [c.response_id for c in item.cards]
    return labelling.submit(ctx, who, labelling.LabelSubmission(
        study="p", prompt_id=item.prompt_id, shown_order=order, best=order[best_pos],
        idempotency_key=uuid.uuid4().hex, stage=item.stage, **answers))


def test_overlap_limits_annotators_per_prompt(db: Database) -> None:
    ctx, _, pids = _study(db, 2, overlap=2)
    seen = {}
    for who in ("a", "b", "c"):
        labelled = []
        while (item := labelling.next_item(ctx, who, "p")) is not None:
            _label(ctx, who, item)
            labelled.append(item.prompt_id)
        seen[who] = labelled
    assert sorted(seen["a"]) == sorted(pids) and sorted(seen["b"]) == sorted(pids)
    assert seen["c"] == []  # every prompt already has its 2 annotators
    label_queue.requeue(db, pids[1], "admin")
    assert labelling.next_item(ctx, "c", "p").prompt_id == pids[1]


def test_least_labelled_prompt_comes_first(db: Database) -> None:
    ctx, _, pids = _study(db, 3)
    _label(ctx, "a", labelling.open_item(ctx, "a", "p", pids[0]))
    assert labelling.next_item(ctx, "b", "p").prompt_id == pids[1]


def test_disagreement_routes_extra_annotators(db: Database) -> None:
    ctx, _, pids = _study(db, 1, overlap=2, extra_on_disagreement=1)
    item_a = labelling.next_item(ctx, "a", "p")
    _label(ctx, "a", item_a, 0)
    item_b = labelling.next_item(ctx, "b", "p")
    # b picks the other response than a did
    other = 1 if item_b.cards[0].response_id == item_a.cards[0].response_id else 0
    _label(ctx, "b", item_b, other)
    assert db.fetchval("SELECT disagreement FROM prompt_flag WHERE prompt_id = ?", [pids[0]]) is True
    assert labelling.next_item(ctx, "c", "p") is not None  # a third annotator is routed in
    _label(ctx, "c", labelling.next_item(ctx, "c", "p"))
    assert labelling.next_item(ctx, "d", "p") is None


def test_model_disagreeing_with_the_first_human_flags_the_prompt(db: Database) -> None:
    ctx, sid, pids = _study(db, 1, overlap=1, extra_on_disagreement=2)
    item = labelling.next_item(ctx, "a", "p")
    picked = item.cards[0].response_id
    other = item.cards[1].response_id
    judgments.record(db, [JudgmentIn(study_id=sid, prompt_id=pids[0], judge_kind="model", judge="m",
                                     method="select_usc", response_id=other, idempotency_key=uuid.uuid4().hex)])
    _label(ctx, "a", item, 0)
    assert picked != other and label_queue.update_disagreement(db, sid, pids[0]) is True
    assert labelling.next_item(ctx, "b", "p") is not None


def test_reveal_stores_blind_and_revised_labels(db: Database) -> None:
    ctx, sid, pids = _study(db, 1, questions=["best", "rating", "critique"])
    judgments.record(db, [JudgmentIn(study_id=sid, prompt_id=pids[0], judge_kind="model", judge="m",
                                     method="critique", variant="s0", response_id=None, label="incorrect",
                                     idempotency_key=uuid.uuid4().hex)])
    item = labelling.next_item(ctx, "a", "p")
    r0, r1 = (c.response_id for c in item.cards)
    with pytest.raises(ServiceError, match="after reveal"):
        _label(ctx, "a", item, 0, critique={r0: "agree"})
    assert _label(ctx, "a", item, 0, ratings={r0: 6, r1: 2}).reveal
    revealed = labelling.open_item(ctx, "a", "p", pids[0], stage="revealed")
    assert revealed.answers.ratings == {r0: 6, r1: 2}  # starts from the blind answers
    assert not _label(ctx, "a", revealed, 1, ratings={r0: 3, r1: 5}, critique={r0: "disagree"}).reveal
    blind = judgments.current(db, study_id=sid, judge="a", stage="blind")
    after = judgments.current(db, study_id=sid, judge="a", stage="revealed")
    assert {j.method for j in blind} == {"best_of_n", "likert"}
    assert next(j for j in blind if j.method == "best_of_n").response_id == r0
    assert next(j for j in after if j.method == "best_of_n").response_id == r1
    assert next(j for j in after if j.method == "critique_agree").label == "disagree"
    assert labelling.next_item(ctx, "a", "p") is None  # a revision does not count as another item


def test_labels_in_a_study_that_is_not_blind_are_never_blind(db: Database) -> None:
    ctx, sid, _ = _study(db, 1, blind=False)
    item = labelling.next_item(ctx, "a", "p")
    assert item.stage == "revealed" and item.show_model_view
    _label(ctx, "a", item.model_copy(update={"stage": "blind"}))  # a client claiming blind is overruled
    assert {j.stage for j in judgments.current(db, study_id=sid, judge="a", stage=None)} == {"revealed"}


def test_every_question_is_stored(db: Database) -> None:
    ctx, sid, pids = _study(db, 1, questions=["best", "rating", "pairwise", "correct", "checklist", "reference",
                                              "comment"])
    cl = checklists.create_checklist(db, pids[0], "m", ["Is it short?", "Is it polite?"], method="checklist",
                                     version="1")
    i0, i1 = (i.id for i in cl.items)
    item = labelling.next_item(ctx, "a", "p")
    assert [c.id for c in item.checklist] == [i0, i1]
    r0, r1 = (c.response_id for c in item.cards)
    _label(ctx, "a", item, 0, ratings={r0: 7, r1: 1}, pairwise="A", correct={r0: True, r1: False},
           checklist_yes={r0: [i0]}, invalid_items=[i1], reference="  The answer.  ", comment="fine")
    rows = judgments.current(db, study_id=sid, judge="a")
    by = {}
    for j in rows:
        by.setdefault(j.method, []).append(j)
    assert by["pairwise"][0].label == str(r0) and by["pairwise"][0].response_b_id == r1
    assert {(j.response_id, j.label) for j in by["correct"]} == {(r0, "correct"), (r1, "incorrect")}
    assert {(j.response_id, j.checklist_item_id, j.label) for j in by["checklist_item"]} == {(r0, i0, "YES"),
                                                                                           (r1, i0, "NO")}
    assert {(j.checklist_item_id, j.label) for j in by["criterion_valid"]} == {(i0, "valid"), (i1, "invalid")}
    assert by["reference"][0].rationale == "The answer." and by["comment"][0].rationale == "fine"
    again = labelling.previous_item(ctx, "a", "p", None)
    assert again.answers.pairwise == "A" and again.answers.checklist_yes == {r0: [i0]}
    assert again.answers.invalid_items == [i1] and again.answers.correct == {r0: True, r1: False}


def test_questions_the_study_does_not_ask_are_refused(db: Database) -> None:
    ctx, _, _ = _study(db, 1)
    item = labelling.next_item(ctx, "a", "p")
    with pytest.raises(ServiceError, match="does not ask for: pairwise"):
        _label(ctx, "a", item, 0, pairwise="tie")


def test_people_working_at_once_get_different_items_and_resume_their_own(db: Database) -> None:
    ctx, _, pids = _study(db, 2, overlap=1)
    a = labelling.next_item(ctx, "a", "p")
    b = labelling.next_item(ctx, "b", "p")
    assert a.prompt_id != b.prompt_id  # a's open item is reserved for a
    assert labelling.next_item(ctx, "c", "p") is None  # both prompts are taken
    assert labelling.next_item(ctx, "a", "p").prompt_id == a.prompt_id  # a reload resumes a's item
    labelling.skip(ctx, "a", "p", a.prompt_id)  # a skip frees it ...
    assert labelling.next_item(ctx, "c", "p").prompt_id == a.prompt_id  # ... for someone else
