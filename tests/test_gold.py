"""Gold items (storage.gold, the gold_add / gold_list operations): known answers set by an admin, each person's
accuracy on them from their blind labels, and the people a minimum accuracy gates out."""

from __future__ import annotations

import uuid

import pytest
from pydantic import ValidationError

from app.services import labelling
from app.services.context import AppContext, ServiceError
from app.services.ops import run_op
from storage import gold, judgments, serving, studies
from storage.db import Database
from storage.models import HumanMethod, JudgmentIn, StudyConfig
from tests.builders import label, make_members, make_prompt, make_responses


def _study(db: Database) -> tuple[AppContext, int, list[int], list[list[int]]]:
    s = studies.create_study(db, "g", config=StudyConfig(questions=["best", "correct"]))
    pids = [make_prompt(db, s.id, f"p{i}") for i in range(3)]
    rids = [make_responses(db, pid, ["x", "y"]) for pid in pids]
    make_members(db, s.id, "good", "poor")
    return AppContext(db=db), s.id, pids, rids


def test_accuracy_and_the_gate(db: Database) -> None:
    ctx, sid, pids, rids = _study(db)
    run_op(ctx, "admin", "gold_add", {"study": "g", "prompt": "p0", "question": "best", "response_id": rids[0][1]})
    run_op(ctx, "admin", "gold_add", {"study": "g", "prompt": "p1", "question": "correct",
                                      "response_id": rids[1][0], "verdict": "incorrect"})
    # good: right on both; poor: wrong blind pick (revised to the right one after reveal: the blind one counts).
    label(db, sid, pids[0], "good", rids[0][1], {})
    judgments.record(db, [JudgmentIn(study_id=sid, prompt_id=pids[1], judge_kind="human", judge="good",
                                     method=HumanMethod.CORRECT, response_id=rids[1][0], label="incorrect",
                                     value=0.0, idempotency_key=uuid.uuid4().hex)])
    label(db, sid, pids[0], "poor", rids[0][0], {})
    label(db, sid, pids[0], "poor", rids[0][1], {}, stage="revealed")
    label(db, sid, pids[2], "poor", rids[2][0], {})  # not a gold item: does not count
    acc = {a.annotator: a for a in gold.accuracy(db, sid)}
    assert acc["good"] == gold.GoldAccuracy("good", 2, 2, 1.0)
    assert acc["poor"] == gold.GoldAccuracy("poor", 1, 0, 0.0)
    assert gold.gated(db, sid, None) == set()
    # one wrong answer out of one is below any gate, but fewer than MIN_GOLD_ANSWERS answers gate nobody
    assert gold.gated(db, sid, 0.5) == set()
    run_op(ctx, "admin", "configure", {"study": "g", "config": {"gold_min_accuracy": 0.5}})
    listed = run_op(ctx, "admin", "gold_list", {"study": "g"})
    assert listed["gated"] == [] and len(listed["gold"]) == 2


def test_bad_gold_answers_are_refused_and_nothing_is_stored(db: Database) -> None:
    ctx, sid, _, rids = _study(db)
    cases = [({"prompt": "p0", "question": "best", "response_id": rids[1][0]}, "is not a response of prompt"),
             ({"prompt": "nope", "question": "best", "response_id": rids[0][0]}, "no prompt 'nope'"),
             ({"prompt": "p0", "question": "correct", "response_id": rids[0][0]}, "is 'correct' or 'incorrect'"),
             ({"prompt": "p0", "question": "best", "response_id": rids[0][0], "verdict": "correct"},
              "with no answer text")]
    for payload, message in cases:
        with pytest.raises(ServiceError, match=message):
            run_op(ctx, "admin", "gold_add", {"study": "g", **payload})
    with pytest.raises(ValidationError, match="question"):  # the payload's own check (the API answers 422)
        run_op(ctx, "admin", "gold_add", {"study": "g", "prompt": "p0", "question": "rating",
                                          "response_id": rids[0][0]})
    assert gold.list_gold(db, sid) == []


def test_a_new_best_pick_replaces_the_old_one(db: Database) -> None:
    ctx, sid, pids, rids = _study(db)
    for rid in rids[0]:
        run_op(ctx, "admin", "gold_add", {"study": "g", "prompt": "p0", "question": "best", "response_id": rid})
    assert gold.list_gold(db, sid) == [gold.GoldAnswer(pids[0], "best_of_n", rids[0][1], None)]


def _label_all(ctx: AppContext, who: str) -> list[int]:
    served = []
    while (item := labelling.next_item(ctx, who, "g")) is not None:
        served.append(item.prompt_id)
        order = [c.response_id for c in item.cards]
        labelling.submit(ctx, who, labelling.LabelSubmission(study="g", prompt_id=item.prompt_id, shown_order=order,
                                                             best=order[0], idempotency_key=uuid.uuid4().hex))
    return served


@pytest.mark.parametrize("rate", [1.0, 0.5, 0.0])
def test_gold_items_are_served_at_the_gold_rate_and_recorded(db: Database, rate: float) -> None:
    ctx, sid, pids, rids = _study(db)
    more = [make_prompt(db, sid, f"p{i}") for i in range(3, 8)]
    for pid in more:
        make_responses(db, pid, ["x", "y"])
    pids += more
    for i in (2, 5):
        run_op(ctx, "admin", "gold_add", {"study": "g", "prompt": f"p{i}", "question": "best",
                                          "response_id": db.fetchval("SELECT min(id) FROM response WHERE prompt_id = ?",
                                                                     [pids[i]])})
    run_op(ctx, "admin", "configure", {"study": "g", "config": {"gold_rate": rate, "overlap": 1}})
    good = _label_all(ctx, "good")
    poor = _label_all(ctx, "poor")
    gold_items = [pids[2], pids[5]]
    if rate == 1.0:
        assert good[:2] == gold_items, "every fresh pick is a gold item while one is open"
    assert sorted(good) == sorted(pids)
    if rate > 0:
        assert sorted(poor) == gold_items, "overlap does not apply to gold items"
    else:
        assert poor == [], "with gold off, gold items are ordinary items under the overlap"
    policies = {(s.prompt_id, s.annotator): (s.policy, s.probability) for s in serving.labelled_servings(db, sid)}
    for p in gold_items:
        assert policies[(p, "good")] == (("gold", rate) if rate > 0 else ("position", None))
