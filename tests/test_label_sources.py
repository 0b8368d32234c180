"""Label sets that span runs (StudyConfig.label_runs): cards drawn from several generation runs and the imported
responses, at most MAX_RESPONSES, each card's origin recoverable from what was shown, no origin on a card,
the same set for scoring, and a prompt ready only when every listed run holds its samples."""

from __future__ import annotations

import uuid

import pytest

from app.services import labelling, scoring
from app.services.context import AppContext, ServiceError
from app.services.ops import run_op
from backend.engines.base import EngineInfo
from backend.methods.registry import get_method
from storage import responses, studies
from storage.db import Database
from storage.label_sources import mix, source_order
from storage.models import MAX_RESPONSES, StudyConfig
from tests.builders import make_members, make_prompt, make_responses, make_run


def _study(db: Database, n_prompts: int = 3) -> tuple[AppContext, list[int], int, int]:
    s = studies.create_study(db, "multi", config=StudyConfig(questions=["best", "rating"]))
    run_a, run_b = make_run(db, s.id, "org/model-a"), make_run(db, s.id, "org/model-b")
    pids = [make_prompt(db, s.id, f"q{i}") for i in range(n_prompts)]
    for pid in pids:
        make_responses(db, pid, ["a0", "a1", "a2"], run_id=run_a, model_id="org/model-a")
        make_responses(db, pid, ["b0", "b1", "b2"], run_id=run_b, model_id="org/model-b")
        make_responses(db, pid, ["i0", "i1", "i2", "i3"], model_id="human-written")
    make_members(db, s.id, "ann")
    return AppContext(db=db), pids, run_a, run_b


def _configure(ctx: AppContext, **config: object) -> dict:
    return run_op(ctx, "admin", "configure", {"study": "multi", "confirm": True, "config": config})


def test_cards_come_from_every_listed_source_and_their_origin_is_recoverable(db: Database) -> None:
    ctx, _, run_a, run_b = _study(db)
    _configure(ctx, label_runs=[run_a, run_b, "imported"])
    item = labelling.next_item(ctx, "ann", "multi")
    assert item is not None and len(item.cards) == MAX_RESPONSES  # 3 + 3 + 4 responses, capped at 8
    card_fields = set(item.cards[0].model_dump())
    # earlier_turns: a multi-turn answer's own earlier turns (text only)
    assert card_fields == {"response_id", "text", "finish_reason", "earlier_turns"}, "a card names no run and no model"
    order = [c.response_id for c in item.cards]
    res = labelling.submit(ctx, "ann", labelling.LabelSubmission(
        study="multi", prompt_id=item.prompt_id, shown_order=order, best=order[0], idempotency_key=uuid.uuid4().hex))
    assert res.judgment_ids
    shown = db.fetchval("SELECT shown_order FROM judgment WHERE id = ?", [res.judgment_ids[0]])
    origin = responses.origins(db, list(shown))
    assert [o.response_id for o in origin] == order
    per_source = {}
    for o in origin:
        per_source[o.run_id] = per_source.get(o.run_id, 0) + 1
    # Round-robin over three sources for 8 cards: every source gives two or three.
    assert set(per_source) == {run_a, run_b, None} and all(2 <= k <= 3 for k in per_source.values())
    assert {o.model_id for o in origin if o.run_id == run_a} == {"org/model-a"}


def test_scoring_judges_the_cards_people_label(db: Database) -> None:
    ctx, pids, run_a, run_b = _study(db)
    _configure(ctx, label_runs=["imported", run_b])
    study = studies.get_study(db, "multi")
    info = EngineInfo(engine="scripted", model_id="m", context_length=4096, self_certainty="exact",
                      logprob_mode="raw")
    inp = scoring.method_input(ctx, study, pids[0], get_method("p_true"), info)
    cards = labelling.open_item(ctx, "ann", "multi", pids[0]).cards
    assert sorted(r.id for r in inp.responses) == sorted(c.response_id for c in cards)
    assert len(cards) == 7  # 4 imported + 3 of run b, under the cap


def test_the_mix_is_round_robin_in_a_seeded_per_prompt_order() -> None:
    groups = {1: ["a0", "a1", "a2"], 2: ["b0"], "imported": ["i0", "i1", "i2", "i3", "i4", "i5"]}
    first, second, third = source_order(9, 4, list(groups))
    expected = []
    queues = {s: list(groups[s]) for s in groups}
    while len(expected) < MAX_RESPONSES and any(queues.values()):
        for s in (first, second, third):
            if queues[s] and len(expected) < MAX_RESPONSES:
                expected.append(queues[s].pop(0))
    assert mix(9, 4, groups) == expected
    orders = {tuple(source_order(9, p, list(groups))) for p in range(40)}
    assert len(orders) > 1, "the source order varies with the prompt"


def test_a_prompt_is_ready_only_when_every_listed_run_has_its_samples(db: Database) -> None:
    ctx, pids, run_a, run_b = _study(db, n_prompts=2)
    extra = make_prompt(db, studies.get_study(db, "multi").id, "only-a")
    make_responses(db, extra, ["x0", "x1", "x2"], run_id=run_a)
    _configure(ctx, label_runs=[run_a, run_b])
    served = []
    while (item := labelling.next_item(ctx, "ann", "multi")) is not None:
        served.append(item.prompt_id)
        order = [c.response_id for c in item.cards]
        labelling.submit(ctx, "ann", labelling.LabelSubmission(
            study="multi", prompt_id=item.prompt_id, shown_order=order, best=order[0],
            idempotency_key=uuid.uuid4().hex))
    assert sorted(served) == sorted(pids), "the prompt without run b's samples is not ready"


def test_a_run_outside_the_study_is_refused_and_nothing_changes(db: Database) -> None:
    ctx, _, run_a, _ = _study(db)
    other = studies.create_study(db, "other")
    foreign = make_run(db, other.id)
    before = studies.get_study(db, "multi").config
    with pytest.raises(ServiceError, match=rf"label_runs: generation run {foreign} is not a run of study 'multi'"):
        _configure(ctx, label_runs=[run_a, foreign])
    with pytest.raises(ServiceError, match="label_runs lists imported more than once"):
        _configure(ctx, label_runs=["imported", "imported"])
    assert studies.get_study(db, "multi").config == before
