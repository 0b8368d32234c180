"""Service layer: generation runs (resumable, idempotent), labelling (queue, submit, edit, skip)."""

from __future__ import annotations

import pytest

from app.services import generation, labelling
from app.services.context import AppContext, EngineConfig, ServiceError
from storage import jobs, judgments, responses, studies
from storage.db import Database
from storage.models import SamplingSettings
from tests.builders import make_members, make_prompt, make_responses, make_study
from tests.scripted_engine import ScriptedEngine


@pytest.fixture
def engine() -> ScriptedEngine:
    return ScriptedEngine()


@pytest.fixture
def ctx(db: Database, engine: ScriptedEngine) -> AppContext:
    return AppContext(db=db, engine_factory=lambda cfg: engine)


def _study_with_prompts(db: Database, n: int = 3) -> int:
    s = make_study(db, "s")
    for i in range(n):
        make_prompt(db, s.id, f"q{i}", f"question {i}")
    return s.id


def test_generation_fills_every_sample_with_stats(ctx: AppContext, engine: ScriptedEngine) -> None:
    sid = _study_with_prompts(ctx.db)
    job = generation.start_generation(ctx, "s", SamplingSettings(n=2, seed=5), background=False)
    assert job.status == "done" and job.done == job.total == 6
    rows = ctx.db.fetchdicts("SELECT * FROM response ORDER BY prompt_id, sample_index")
    assert len(rows) == 6
    assert {r["origin"] for r in rows} == {"sampled"}
    assert all(r["token_count"] == 2 and r["self_certainty"] == 1.0 and r["self_certainty_mode"] == "exact"
               for r in rows)
    assert rows[0]["neg_perplexity"] == pytest.approx(-2.0)
    seeds = [r["seed"] for r in rows]
    assert len(set(seeds)) == 6
    assert seeds[0] == generation.sample_seed(5, "q0", 0)
    assert "(seed %d)" % seeds[0] in rows[0]["text"]
    assert studies.list_runs(ctx.db, sid)[0].seed_base == 5


def test_rerun_fills_only_what_is_missing_after_a_failure(ctx: AppContext, engine: ScriptedEngine) -> None:
    _study_with_prompts(ctx.db)
    engine.fail_after = 3  # dies in the middle of the second prompt
    job = generation.start_generation(ctx, "s", SamplingSettings(n=2, seed=1), background=False)
    assert job.status == "failed"
    assert "scripted failure" in job.error and "2 of 6 responses are stored" in job.error
    assert ctx.db.fetchval("SELECT count(*) FROM response") == 2  # the finished prompt is kept
    engine.fail_after = None
    engine.calls.clear()
    job2 = generation.start_generation(ctx, "s", SamplingSettings(n=2, seed=1), background=False)
    assert job2.status == "done" and job2.total == 4
    assert ctx.db.fetchval("SELECT count(*) FROM response") == 6
    assert len(engine.calls) == 2  # only the two unfinished prompts were asked for
    again = generation.start_generation(ctx, "s", SamplingSettings(n=2, seed=1), background=False)
    assert again.total == 0 and ctx.db.fetchval("SELECT count(*) FROM response") == 6


def test_different_settings_need_a_new_run(ctx: AppContext) -> None:
    sid = _study_with_prompts(ctx.db, 1)
    generation.start_generation(ctx, "s", SamplingSettings(n=2, seed=1), background=False)
    with pytest.raises(ServiceError, match="--new-run"):
        generation.start_generation(ctx, "s", SamplingSettings(n=2, temperature=0.3, seed=1), background=False)
    generation.start_generation(ctx, "s", SamplingSettings(n=2, temperature=0.3, seed=1), new_run=True,
                                background=False)
    assert len(studies.list_runs(ctx.db, sid)) == 2


def test_background_job_reports_progress(ctx: AppContext) -> None:
    _study_with_prompts(ctx.db, 2)
    job = generation.start_generation(ctx, "s", SamplingSettings(n=1), background=True)
    ctx.wait_jobs(timeout=30)
    final = jobs.get_job(ctx.db, job.id)
    assert final.status == "done" and final.done == 2 and final.finished_at is not None


def _labelled_study(ctx: AppContext) -> tuple[int, list[int]]:
    s = make_study(ctx.db, "lab")
    pids = [make_prompt(ctx.db, s.id, f"p{i}") for i in range(3)]
    for pid in pids:
        make_responses(ctx.db, pid, ["a", "b", "c"])
    make_members(ctx.db, s.id, "ann")
    return s.id, pids


def _submit(ctx: AppContext, item: labelling.LabelItem, best_pos: int, ratings: list[int], key: str) -> list[int]:
    order = [c.response_id for c in item.cards]
    return labelling.submit(ctx, "ann", labelling.LabelSubmission(
        study=item.study, prompt_id=item.prompt_id, shown_order=order, best=order[best_pos],
        ratings=dict(zip(order, ratings)), comment="ok", idempotency_key=key)).judgment_ids


def test_label_queue_submit_edit_and_skip(ctx: AppContext) -> None:
    sid, pids = _labelled_study(ctx)
    item = labelling.next_item(ctx, "ann", "lab")
    assert item is not None and item.prompt_id == pids[0] and len(item.cards) == 3
    assert (item.done, item.total) == (0, 3)
    ids = _submit(ctx, item, 0, [7, 4, 1], "key-0000001")
    assert _submit(ctx, item, 0, [7, 4, 1], "key-0000001") == ids  # double submit: nothing new
    assert ctx.db.fetchval("SELECT count(*) FROM judgment") == 5  # pick, 3 ratings, comment

    nxt = labelling.next_item(ctx, "ann", "lab", after=item.prompt_id)
    assert nxt.prompt_id == pids[1] and nxt.done == 1
    labelling.skip(ctx, "ann", "lab", nxt.prompt_id)
    third = labelling.next_item(ctx, "ann", "lab")
    assert third.prompt_id == pids[2]  # the skipped item went to the back

    back = labelling.previous_item(ctx, "ann", "lab", third.prompt_id)
    assert back.prompt_id == pids[0] and back.editing
    assert back.answers.best == item.cards[0].response_id and sorted(back.answers.ratings.values()) == [1, 4, 7]
    assert back.answers.comment == "ok" and back.stage == "blind" and not back.show_model_view
    _submit(ctx, back, 1, [2, 6, 3], "key-0000002")
    current = judgments.current(ctx.db, study_id=sid, judge="ann")
    assert len(current) == 5
    assert next(j for j in current if j.method == "best_of_n").response_id == back.cards[1].response_id
    assert ctx.db.fetchval("SELECT count(*) FROM judgment WHERE superseded_at IS NOT NULL") == 5


def test_submit_rejects_what_was_not_shown(ctx: AppContext) -> None:
    _, pids = _labelled_study(ctx)
    item = labelling.next_item(ctx, "ann", "lab")
    order = [c.response_id for c in item.cards]
    bad = [
        dict(shown_order=order[:2], best=order[0]),
        dict(shown_order=order, best=999),
        dict(shown_order=order, best=order[0], ratings={order[0]: 9}),
        dict(shown_order=order, best=None),
    ]
    for b in bad:
        with pytest.raises(ServiceError):
            labelling.submit(ctx, "ann", labelling.LabelSubmission(study="lab", prompt_id=item.prompt_id,
                                                                   idempotency_key="k" * 10, **b))
    with pytest.raises(ServiceError, match="not in study"):
        labelling.submit(ctx, "ann", labelling.LabelSubmission(study="lab", prompt_id=10_000, shown_order=order,
                                                               best=order[0], idempotency_key="k" * 10))
    assert ctx.db.fetchval("SELECT count(*) FROM judgment") == 0


def test_shown_order_is_stable_per_annotator(ctx: AppContext) -> None:
    _labelled_study(ctx)
    a1 = labelling.next_item(ctx, "ann", "lab")
    a2 = labelling.next_item(ctx, "ann", "lab")
    assert [c.response_id for c in a1.cards] == [c.response_id for c in a2.cards]
    orders = {tuple(labelling.shown_order(f"user{i}", a1.prompt_id, [1, 2, 3])) for i in range(20)}
    assert len(orders) > 1  # different annotators see different layouts


def test_label_queue_uses_the_latest_complete_run(ctx: AppContext) -> None:
    s = make_study(ctx.db, "runs")
    p = make_prompt(ctx.db, s.id, "p0")
    generation.start_generation(ctx, "runs", SamplingSettings(n=2, seed=3), background=False)
    make_members(ctx.db, s.id, "ann")
    item = labelling.next_item(ctx, "ann", "runs")
    assert item is not None and len(item.cards) == 2
    assert {c.response_id for c in item.cards} == {r.id for r in responses.responses_for_prompt(
        ctx.db, p, studies.latest_run(ctx.db, s.id).id)}


def test_engine_is_created_once_per_config(db: Database) -> None:
    made = []
    ctx = AppContext(db=db, engine_factory=lambda cfg: made.append(cfg) or ScriptedEngine())
    e1, e2 = ctx.engine(), ctx.engine(EngineConfig())
    assert e1 is e2 and len(made) == 1
