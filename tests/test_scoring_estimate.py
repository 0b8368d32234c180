"""The Score button's estimate: each method's planned engine calls equal the calls it makes, the service
counts them over what is not stored yet, and the time comes from the last finished job of the model."""

from __future__ import annotations

import json
import threading

import pytest

from app.services import estimate, scoring
from app.services.context import AppContext
from app.services.engine_meter import MeteredEngine
from backend.methods import checklist, critique, rubric
from backend.methods.base import ChecklistItemInput, MethodInput, ResponseInput
from backend.methods.registry import DEFAULT_METHODS, all_methods, get_method, method_ids
from storage import jobs, responses, studies
from storage.db import Database
from storage.models import CallTally, JobFigures, ResponseIn, StudyConfig, TokenStats
from app.ui import studies_tab
from tests.builders import make_prompt, make_responses, make_run
from tests.scripted_engine import ScriptedEngine

FULL = TokenStats(token_count=6, mean_logprob=-0.4, neg_perplexity=-1.5, mean_topk_entropy=0.3, self_certainty=2.0,
                  self_certainty_mode="exact", logprob_mode="raw")
NO_CERTAINTY = FULL.model_copy(update={"self_certainty": None, "self_certainty_mode": None})


def _texts(n_questions: int):  # noqa: ANN202
    """Valid replies for every method that generates: a checklist of `n_questions`, a critique, a rubric
    score, principles with scores, an aggregate."""
    def texts(chat, j, params, schema, seed) -> str:  # noqa: ANN001
        if schema is checklist.QUESTIONS_SCHEMA:
            return json.dumps({"questions": [f"Does it answer part {k}?" for k in range(n_questions)]})
        if schema is critique.REPLY_SCHEMA:
            return json.dumps({"critique": "fine", "verdict": "correct", "first_error": "none",
                               "corrected_response": ""})
        if schema is rubric.REPLY_SCHEMA:
            return json.dumps({"justification": "fine", "score": 3})
        if schema is not None and "principles" in schema["properties"]:
            n = schema["properties"]["scores"]["maxItems"]
            return json.dumps({"principles": "be right", "critique": "fine", "scores": [5] * n})
        return "The answer is 4."
    return texts


def _probs(chat, prefix, candidates) -> dict[str, float]:  # noqa: ANN001
    return {c: (0.6 if i == 0 else 0.4 / max(1, len(candidates) - 1)) for i, c in enumerate(candidates)}


# -- each method plans exactly the calls it makes ------------------------------------------------------
def _input(stored_items: int) -> MethodInput:
    """Five responses (a ring of pairs): two sampled with every figure, one without self-certainty, two
    imported without figures; one revision without figures."""
    rs = [ResponseInput(id=1, text="It is 4.", **FULL.model_dump()),
          ResponseInput(id=2, text="4", **FULL.model_dump()),
          ResponseInput(id=3, text="Four, so 4.", **NO_CERTAINTY.model_dump()),
          ResponseInput(id=4, text="I think 5.", origin="imported"),
          ResponseInput(id=5, text="2 + 2 = 4", origin="imported")]
    return MethodInput(prompt_id=1, prompt_external_id="q1", messages=[{"role": "user", "content": "What is 2 + 2?"}],
                       responses=rs, derived=[ResponseInput(id=9, text="It is 4, surely.", origin="revision")],
                       checklist=[ChecklistItemInput(id=i, question=f"Item {i}?") for i in range(stored_items)],
                       answer_extraction="last_number", seed=11)


@pytest.mark.parametrize("stored_items", [0, 3])
@pytest.mark.parametrize("method_id", method_ids())
def test_planned_calls_are_the_calls_the_method_makes(method_id: str, stored_items: int) -> None:
    inp = _input(stored_items)
    meter = MeteredEngine(ScriptedEngine(texts=_texts(checklist.PLANNED_ITEMS), probs=_probs))
    method = get_method(method_id)
    result = method.run(inp, meter)
    assert not [v.error for v in result.verdicts if v.status == "failed"]  # every call happened
    made = meter.figures()
    assert (made.reads.calls, made.generations.calls) == tuple(method.planned_calls(inp))


def test_every_method_has_a_brief_and_its_cost_for_the_picker() -> None:
    for m in all_methods():
        assert m.brief and m.calls_brief and len(m.brief) + len(m.calls_brief) < 110, m.id


# -- the meter ----------------------------------------------------------------------------------------
class _Held(ScriptedEngine):
    """next_token_probs waits until the test lets it go, so two calls overlap for certain."""

    def __init__(self) -> None:
        super().__init__()
        self.entered, self.release = threading.Semaphore(0), threading.Event()

    def next_token_probs(self, chats, assistant_prefix, candidates):  # noqa: ANN001, ANN201
        self.entered.release()
        self.release.wait(10)
        return super().next_token_probs(chats, assistant_prefix, candidates)


def test_meter_counts_overlapping_calls_once_in_wall_time() -> None:
    ticks = iter([0.0, 10.0, 20.0, 23.0])  # read only when the first call starts and the last one ends
    engine = _Held()
    meter = MeteredEngine(engine, clock=lambda: next(ticks))
    chat = [{"role": "user", "content": "q"}]
    threads = [threading.Thread(target=meter.next_token_probs, args=([chat] * k, "", ["A"])) for k in (2, 3)]
    for t in threads:
        t.start()
    for _ in threads:
        assert engine.entered.acquire(timeout=10)  # both calls are inside the engine at once
    engine.release.set()
    for t in threads:
        t.join()
    meter.score_response(chat, "one two")  # alone: 20 -> 23
    assert meter.figures() == JobFigures(reads=CallTally(calls=6, seconds=13.0), generations=CallTally())


# -- the estimate of a study ------------------------------------------------------------------------------
def _insert(db: Database, prompt_id: int, run_id: int | None, stats: list[TokenStats | None],
            origin: str = "sampled", start: int = 0) -> list[int]:
    return responses.insert_responses(db, [
        ResponseIn(prompt_id=prompt_id, run_id=run_id, sample_index=start + i if run_id is not None else None,
                   origin=origin, text=f"The answer is {start + i}.", stats=s) for i, s in enumerate(stats)])


@pytest.fixture
def study(db: Database) -> dict[str, int]:
    """p1: 3 samples with every figure; p2: 3 samples, one without self-certainty, and a revision without
    figures; p3: no responses; p4: only imported responses, which are not what people label once the
    study has a run. So 2 prompts have responses to judge."""
    s = studies.create_study(db, "est", config=StudyConfig(answer_extraction="last_number"))
    run = make_run(db, s.id, model_id="scripted-model")
    ids = {f"p{i}": make_prompt(db, s.id, f"p{i}", f"Question {i}?") for i in range(1, 5)}
    _insert(db, ids["p1"], run, [FULL] * 3)
    parent = _insert(db, ids["p2"], run, [FULL, FULL, NO_CERTAINTY])[0]
    responses.insert_responses(db, [ResponseIn(prompt_id=ids["p2"], origin="revision", parent_id=parent,
                                               text="A revised answer: 4.")])
    make_responses(db, ids["p4"], ["imported 1", "imported 2"])
    return {**ids, "run": run}


@pytest.fixture
def engine() -> ScriptedEngine:
    return ScriptedEngine(texts=_texts(4), probs=_probs)


@pytest.fixture
def ctx(db: Database, engine: ScriptedEngine) -> AppContext:
    return AppContext(db=db, engine_factory=lambda cfg: engine)


def _calls(est: estimate.ScoreEstimate) -> dict[str, tuple[int, int, int, int]]:
    return {m.method: (m.prompts, m.stored, m.reads, m.generations) for m in est.methods}


def test_exact_calls_of_the_default_methods_and_unknown_time_before_any_job(ctx: AppContext, study) -> None:
    est = estimate.estimate_scoring(ctx, "est", None)
    assert [m.method for m in est.methods] == list(DEFAULT_METHODS)
    assert _calls(est) == {
        "neg_perplexity": (2, 0, 1, 0),  # the revision only: every sample has its figure
        "neg_entropy": (2, 0, 1, 0),
        "self_certainty": (2, 0, 2, 0),  # the sample without it, and the revision
        "select_majority": (2, 0, 0, 0),
        "select_borda": (2, 0, 1, 0),  # the sample without self-certainty (revisions do not vote)
        "p_true": (2, 0, 6, 0),
        "judge_score": (2, 0, 6, 0)}
    assert (est.reads, est.generations, est.engine) == (17, 0, "scripted:scripted-model")
    assert est.read_rate is None and est.seconds is None
    assert {m.method: m.seconds for m in est.methods}["select_majority"] == 0.0
    assert {m.method: m.seconds for m in est.methods}["p_true"] is None
    assert (est.n_prompts, est.without_responses) == (4, 2)  # p3 has nothing; p4's imports are not the run's
    text = studies_tab.estimate_markdown(est)
    assert "2 of 4 prompts have no responses yet" in text and " per generation" not in text


def test_exact_calls_of_the_other_methods(ctx: AppContext, study) -> None:
    est = estimate.estimate_scoring(ctx, "est", "all")
    got = _calls(est)
    assert got["pairwise"] == (2, 0, 12, 0)  # 3 responses: 3 pairs x both orders, per prompt
    assert got["select_usc"] == (2, 0, 2, 0)
    assert got["checklist"] == (2, 0, 2 * 3 * checklist.PLANNED_ITEMS, 2)  # writes one per prompt, then reads
    assert got["critique"] == (2, 0, 0, 12) and got["rubric"] == (2, 0, 0, 18) and got["gsa"] == (2, 0, 0, 2)
    assert got["p_true_brainstorm"] == (2, 0, 6, 0)


def test_a_finished_job_counts_what_was_estimated_and_what_it_stored_is_not_counted_again(
        ctx: AppContext, study, db: Database) -> None:
    before = _calls(estimate.estimate_scoring(ctx, "est", ["p_true", "select_borda", "checklist"]))
    job = scoring.start_scoring(ctx, "est", "p_true,select_borda,checklist", background=False)
    assert job.status == "done" and job.engine_model == "scripted:scripted-model"
    planned_reads = before["p_true"][2] + before["select_borda"][2] + 2 * 3 * 4  # the checklists got 4 items
    assert (job.figures.reads.calls, job.figures.generations.calls) == (planned_reads, 2)

    after = estimate.estimate_scoring(ctx, "est", ["p_true", "select_borda", "checklist"])
    assert _calls(after) == {"checklist": (2, 2, 0, 0), "p_true": (2, 2, 0, 0), "select_borda": (2, 2, 0, 0)}
    assert after.read_rate is not None and after.read_rate.job_id == job.id
    assert after.read_rate.calls == planned_reads and after.seconds == 0.0

    # A new sample on p1 changes its response set: it is scored again, on the checklist already written.
    _insert(db, study["p1"], study["run"], [FULL], start=3)
    again = _calls(estimate.estimate_scoring(ctx, "est", ["p_true", "checklist"]))
    assert again == {"checklist": (2, 1, 4 * 4, 0), "p_true": (2, 1, 4, 0)}


def _finished(db: Database, model: str, reads: tuple[int, float] = (0, 0.0), gens: tuple[int, float] = (0, 0.0),
              status: str = "done") -> int:
    job = jobs.create_job(db, "score")
    jobs.record_figures(db, job.id, model, JobFigures(reads=CallTally(calls=reads[0], seconds=reads[1]),
                                                      generations=CallTally(calls=gens[0], seconds=gens[1])))
    jobs.update_job(db, job.id, status=status)
    return job.id


def test_seconds_per_call_come_from_the_last_finished_job_of_this_model(ctx: AppContext, study,
                                                                          db: Database) -> None:
    model = "scripted:scripted-model"
    _finished(db, model, reads=(10, 30.0))
    newest = _finished(db, model, reads=(20, 10.0), gens=(4, 8.0))  # 0.5 s per read, 2 s per generation
    _finished(db, model, gens=(5, 50.0))  # ended last, but measured no reads
    _finished(db, "scripted:another-model", reads=(1, 100.0))
    _finished(db, model, reads=(1, 100.0), status="running")  # not finished
    est = estimate.estimate_scoring(ctx, "est", None)
    assert (est.read_rate.job_id, est.read_rate.seconds_per_call, est.read_rate.calls) == (newest, 0.5, 20)
    assert est.seconds == pytest.approx(17 * 0.5)
    assert {m.method: m.seconds for m in est.methods}["p_true"] == pytest.approx(3.0)

    gens = estimate.estimate_scoring(ctx, "est", ["gsa", "p_true"])
    assert gens.generation_rate.seconds_per_call == pytest.approx(10.0)  # the generation job that ended last
    assert gens.seconds == pytest.approx(2 * 10.0 + 6 * 0.5)


def test_a_kind_without_a_measured_speed_leaves_the_total_unknown(ctx: AppContext, study, db: Database) -> None:
    _finished(db, "scripted:scripted-model", reads=(10, 5.0))
    est = estimate.estimate_scoring(ctx, "est", ["p_true", "gsa"])
    assert est.generation_rate is None and est.seconds is None
    assert {m.method: m.seconds for m in est.methods} == {"p_true": pytest.approx(3.0), "gsa": None}


def test_unknown_study_and_method_are_clear_errors(ctx: AppContext, study) -> None:
    with pytest.raises(LookupError, match="no study 'nope'"):
        estimate.estimate_scoring(ctx, "nope", None)
    with pytest.raises(ValueError, match="unknown method"):
        estimate.estimate_scoring(ctx, "est", "p_true,telepathy")


def test_study_label_sets_pick_what_label_set_picks(db: Database, study) -> None:
    """The one-query version used by the estimate agrees with the per-prompt one the scoring job uses,
    for a run, no run (imported responses) and a Live-only prompt."""
    s = studies.get_study(db, "est")
    live = studies.create_run(db, s.id, "scripted", "scripted-model", studies.SamplingSettings(n=2), 0,
                              seeds_honoured=True, logprob_mode="raw", kind="live").id
    p5 = make_prompt(db, s.id, "p5", "Asked live?")
    _insert(db, p5, live, [FULL, None])
    for run_id in (study["run"], None):
        sets = responses.study_label_sets(db, s.id, run_id)
        for pid in [*(study[f"p{i}"] for i in range(1, 5)), p5]:
            label = [r.id for r in responses.label_set(db, pid, run_id)]
            assert [r.id for r in sets.get(pid, ([], []))[0]] == label, (run_id, pid)
    assert [r.id for r in responses.study_label_sets(db, s.id, None)[study["p4"]][0]] != []
    assert [r.origin for r in responses.study_label_sets(db, s.id, study["run"])[study["p2"]][1]] == ["revision"]
