"""The Live service: streamed samples, scores in memory, one-transaction add to a study, access rules."""

from __future__ import annotations

import threading
from collections.abc import Generator

import pytest

from app.services import labelling, live
from app.services.context import AppContext, PermissionDenied, ServiceError
from backend.engines.base import Sample, SampleParams
from storage import annotators, judgments, label_queue, members, responses, studies
from storage.db import Database
from storage.models import StudyConfig
from tests.builders import make_prompt, make_responses, make_run, make_study
from tests.scripted_engine import ScriptedEngine

QUESTION = [{"role": "user", "content": "Name a prime number."}]


def _text(chat: list, j: int, params: SampleParams, schema: dict | None, seed: int | None) -> str:
    return f"Seven is prime, says sample {seed} at T={params.temperature}"


@pytest.fixture
def engine() -> ScriptedEngine:
    # P(Yes) = 0.8 for P(True); digit 7 most likely for the judge score.
    return ScriptedEngine(texts=_text, probs=lambda chat, prefix, cands: {c: (0.8 if c in ("Yes", "A") else 0.2)
                                                                          for c in cands})


@pytest.fixture
def ctx(db: Database, engine: ScriptedEngine) -> AppContext:
    annotators.add_annotator(db, "root", "admin", password="root-pass-123")
    annotators.add_annotator(db, "ann", "annotator", password="ann-pass-123")
    annotators.add_annotator(db, "bob", "annotator", password="bob-pass-123")
    return AppContext(db=db, engine_factory=lambda cfg: engine)


def _run(sessions: live.LiveSessions, user: str = "root", **kw) -> live.LiveSession:  # noqa: ANN003
    req = live.LiveRequest(messages=QUESTION, **{"n": 2, "methods": ["p_true", "self_certainty"], **kw})
    s = sessions.start(user, req)
    assert s.wait(timeout=30)
    return s


def _counts(db: Database) -> dict[str, int]:
    return {t: db.fetchval(f"SELECT count(*) FROM {t}") for t in
            ("prompt", "response", "judgment", "generation_run", "checklist", "method_run")}


def test_samples_stream_then_scores_fill_in(ctx: AppContext, engine: ScriptedEngine) -> None:
    sessions = live.LiveSessions(ctx)
    s = _run(sessions, settings=[live.LiveSetting(temperature=0.6), live.LiveSetting(temperature=1.0)])
    snap = s.snapshot()
    assert [c.setting for c in snap.cards] == [0, 0, 1, 1] and snap.sampling_done and not snap.busy
    for c in snap.cards:
        temp = snap.settings[c.setting].temperature
        assert c.state == "done" and c.text == f"Seven is prime, says sample {c.seed} at T={temp}"
        assert c.stats is not None and c.stats.token_count == len(c.text.split(" "))
    assert len({c.seed for c in snap.cards}) == 4
    assert [m.state for m in snap.methods] == ["done", "done"]
    for slot, view in snap.views.items():
        names = {b.name: b.text for b in view.badges}
        assert names["P(True)"] == "0.80" and "Self-certainty" in names, (slot, names)
    # Nothing is stored until "Add to study".
    assert _counts(ctx.db) == dict.fromkeys(_counts(ctx.db), 0)
    # Streams first, then one batched P(True) read over the four cards.
    assert [c[0] for c in engine.calls] == ["stream"] * 4 + ["next_token_probs"]
    assert len(engine.calls[-1][1]) == 4


def test_a_selector_with_nothing_to_extract_is_not_applicable_rather_than_failed(ctx: AppContext) -> None:
    from app.ui.live_tab import _status

    snap = _run(live.LiveSessions(ctx), methods=["select_majority", "p_true"]).snapshot()
    assert [(m.method, m.state) for m in snap.methods] == [("select_majority", "n/a"), ("p_true", "done")]
    text = _status(snap)
    assert "select_majority – " in text and "answer extraction is a study setting" in text and "✗" not in text


def test_add_to_study_stores_everything_once(ctx: AppContext) -> None:
    study = make_study(ctx.db, "s1")
    pid_batch = make_prompt(ctx.db, study.id, "q1")
    batch_run = make_run(ctx.db, study.id)
    make_responses(ctx.db, pid_batch, ["a", "b", "c"], run_id=batch_run)
    studies.update_study(ctx.db, study.id, config=StudyConfig(questions=["best", "rating", "comment"]))
    members.add(ctx.db, study.id, "ann", "root")
    s = _run(live.LiveSessions(ctx))
    answers = labelling.Answers(best=2, ratings={1: 3, 2: 6}, comment="two is better")
    res = live.add_to_study(ctx, "root", s, "s1", answers, "key-live-0001")
    assert res.responses == 2 and res.labels == 4 and res.model_judgments == 4  # 2 cards x (p_true, certainty)
    before = _counts(ctx.db)
    again = live.add_to_study(ctx, "root", s, "s1", answers, "key-live-0001")
    assert again.already_added and again.prompt_id == res.prompt_id and _counts(ctx.db) == before

    runs = studies.list_runs(ctx.db, study.id, include_live=True)
    assert [r.kind for r in runs] == ["batch", "live"] and runs[1].temperature == 0.8 and runs[1].n == 2
    assert studies.latest_run(ctx.db, study.id).id == batch_run  # the Label tab keeps labelling the batch run
    stored = responses.label_set(ctx.db, res.prompt_id, batch_run)
    assert [r.text for r in stored] == [c.text for c in s.cards] and all(r.token_count for r in stored)
    human = judgments.current(ctx.db, study_id=study.id, prompt_id=res.prompt_id, judge_kind="human", stage=None)
    assert {(j.method, j.stage, j.source) for j in human} == {("best_of_n", "revealed", "live"),
                                                              ("likert", "revealed", "live"),
                                                              ("comment", "revealed", "live")}
    best = next(j for j in human if j.method == "best_of_n")
    assert best.response_id == stored[1].id
    assert all(j.duration_ms is not None and j.duration_ms >= 0 for j in human), "time on task is recorded"
    assert not judgments.current(ctx.db, study_id=study.id, judge_kind="human", stage="blind")
    model = judgments.current(ctx.db, study_id=study.id, prompt_id=res.prompt_id, judge_kind="model", stage=None)
    assert {j.response_id for j in model} == {r.id for r in stored}
    # Another annotator finds the live prompt in the Label tab, labelled on its own samples.
    seen = []
    while (item := labelling.next_item(ctx, "ann", "s1")) is not None:
        seen.append(item.prompt_external_id)
        labelling.submit(ctx, "ann", labelling.LabelSubmission(
            study="s1", prompt_id=item.prompt_id, shown_order=[c.response_id for c in item.cards],
            best=item.cards[0].response_id, idempotency_key=f"key-{item.prompt_id}-ann"))
        if item.prompt_id == res.prompt_id:
            assert {c.response_id for c in item.cards} == {r.id for r in stored}
    assert seen == ["q1", res.prompt_external_id]
    # The scoring service sees the live prompt as already scored for these methods.
    assert label_queue.ready_count(ctx.db, study.id, batch_run, 3) == 2


def test_bad_labels_leave_the_database_unchanged(ctx: AppContext) -> None:
    make_study(ctx.db, "s1")
    s = _run(live.LiveSessions(ctx))
    before = _counts(ctx.db)
    with pytest.raises(ServiceError, match="response 5 is not a complete sample"):
        live.add_to_study(ctx, "root", s, "s1", labelling.Answers(best=5), "key-live-0002")
    with pytest.raises(ServiceError, match="does not ask for: correct"):
        live.add_to_study(ctx, "root", s, "s1", labelling.Answers(best=1, correct={1: True}), "key-live-0003")
    assert _counts(ctx.db) == before


def test_access_is_checked_on_every_call(ctx: AppContext) -> None:
    study = make_study(ctx.db, "s1")
    sessions = live.LiveSessions(ctx)
    with pytest.raises(PermissionDenied):
        sessions.start("ann", live.LiveRequest(messages=QUESTION, study="s1"))
    assert live.granted_studies(ctx, "ann") == [] and live.granted_studies(ctx, "root") == ["s1"]
    studies.update_study(ctx.db, study.id, config=StudyConfig(live_annotators=True))
    with pytest.raises(PermissionDenied, match="members of a study"):  # the study grants Live, to its members
        sessions.start("ann", live.LiveRequest(messages=QUESTION, study="s1"))
    assert live.granted_studies(ctx, "ann") == []
    members.add(ctx.db, study.id, "ann", "root")
    assert live.granted_studies(ctx, "ann") == ["s1"]
    s = _run(sessions, "ann", study="s1")
    with pytest.raises(PermissionDenied):
        sessions.get("bob", s.id)  # someone else's session
    assert sessions.get("ann", s.id) is s
    make_study(ctx.db, "closed")
    with pytest.raises(PermissionDenied):
        live.add_to_study(ctx, "ann", s, "closed", None, "key-live-0004")
    with pytest.raises(ServiceError, match="has ended"):
        sessions.get("ann", "nope")


def test_failed_stream_keeps_what_arrived(ctx: AppContext, engine: ScriptedEngine) -> None:
    engine.fail_after = 0  # every stream drops after its first word
    s = _run(live.LiveSessions(ctx))
    snap = s.snapshot()
    assert [(c.state, c.text) for c in snap.cards] == [("failed", "Seven")] * 2
    assert all("stream dropped" in (c.error or "") for c in snap.cards)
    assert [m.error for m in snap.methods] == ["no complete sample to judge"] * 2
    make_study(ctx.db, "s1")
    with pytest.raises(ServiceError, match="no complete sample"):
        live.add_to_study(ctx, "root", s, "s1", None, "key-live-0005")


class _Blocking(ScriptedEngine):
    """Streams one word, then waits until released: a generation still running when Stop is pressed."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()
        self.closed_streams = 0

    def stream(self, chat: list, params: SampleParams) -> Generator[str, None, Sample]:
        try:
            yield "partial"
            self.release.wait(10)
            yield " rest"
        except GeneratorExit:
            self.closed_streams += 1
            raise
        return Sample(text="partial rest", finish_reason="stop")


def test_stop_keeps_partial_text_and_regenerate_draws_new_seeds(db: Database) -> None:
    eng = _Blocking()
    annotators.add_annotator(db, "root", "admin", password="root-pass-123")
    ctx = AppContext(db=db, engine_factory=lambda cfg: eng)
    s = live.LiveSessions(ctx).start("root", live.LiveRequest(messages=QUESTION, n=2, methods=[]))
    while not all(c.text for c in s.snapshot().cards):
        threading.Event().wait(0.01)
    s.stop()
    eng.release.set()
    assert s.wait(10)
    snap = s.snapshot()
    # Each stream was closed at its next piece; everything that arrived is kept.
    assert [(c.state, c.text) for c in snap.cards] == [("stopped", "partial rest")] * 2
    assert eng.closed_streams == 2 and all("Stop" in (c.error or "") for c in snap.cards)
    seeds = [c.seed for c in snap.cards]
    s.start(slots=[2])
    assert s.wait(10)
    snap = s.snapshot()
    assert snap.cards[0].seed == seeds[0] and snap.cards[1].seed != seeds[1]
    assert [c.state for c in snap.cards] == ["stopped", "done"] and snap.cards[1].text == "partial rest"


@pytest.mark.model
def test_live_on_the_embedded_engine(db: Database, embedded_engine) -> None:  # noqa: ANN001
    annotators.add_annotator(db, "root", "admin", password="root-pass-123")
    ctx = AppContext(db=db, engine_factory=lambda cfg: embedded_engine)
    req = live.LiveRequest(messages=QUESTION, n=2, settings=[live.LiveSetting(max_tokens=16)],
                           methods=["p_true", "self_certainty"])
    s = live.LiveSessions(ctx).start("root", req)
    assert s.wait(120)
    snap = s.snapshot()
    assert all(c.state == "done" and c.text for c in snap.cards)
    # The embedded engine's streamed sample carries exact per-token self-certainty.
    assert all(c.stats and c.stats.self_certainty_mode == "exact" and 0 < c.stats.token_count <= 16
               for c in snap.cards)
    p_true = [b for v in snap.views.values() for b in v.badges if b.name == "P(True)"]
    assert len(p_true) == 2 and all(0 <= float(b.text) <= 1 for b in p_true)
    make_study(db, "s1")
    res = live.add_to_study(ctx, "root", s, "s1", None, "key-live-0006")
    assert res.responses == 2 and res.model_judgments == 4


@pytest.mark.parametrize("stream_error_after", [None, 3])
def test_live_on_the_sglang_standin(db: Database, stream_error_after: int | None) -> None:
    """SGLang streams text only: the Live session scores the text teacher-forced for the token
    statistics; a stream that breaks keeps what arrived and says why."""
    from backend.engines.sglang import SGLangEngine
    from tests.standin_sglang import start_standin

    url, stop = start_standin(stream_error_after=stream_error_after)
    eng = SGLangEngine(url)
    try:
        annotators.add_annotator(db, "root", "admin", password="root-pass-123")
        ctx = AppContext(db=db, engine_factory=lambda cfg: eng)
        req = live.LiveRequest(messages=QUESTION, n=2, settings=[live.LiveSetting(max_tokens=12)],
                               methods=["p_true"])
        s = live.LiveSessions(ctx).start("root", req)
        assert s.wait(60)
        snap = s.snapshot()
        if stream_error_after is None:
            assert all(c.state == "done" and c.text and c.finish_reason in ("stop", "length") for c in snap.cards)
            # Token statistics come from teacher-forced scoring of the streamed text: raw logprobs.
            for c in snap.cards:
                assert c.stats and c.stats.token_count > 0 and c.stats.logprob_mode == "raw"
                teacher = eng.score_response(QUESTION, c.text)
                assert c.stats.mean_logprob == pytest.approx(sum(t.logprob for t in teacher) / len(teacher))
            assert all(any(b.name == "P(True)" for b in v.badges) for v in snap.views.values())
        else:
            # Every stream breaks (a short one before its last event), keeping the text that arrived.
            assert all(c.state == "failed" and "after" in (c.error or "") for c in snap.cards), snap.cards
            assert any(c.text for c in snap.cards)
    finally:
        eng.close()
        stop()


def test_prioritised_engine_passes_the_priority_where_the_engine_queues() -> None:
    from backend.engines.prioritised import Prioritised

    class Queued(ScriptedEngine):
        def count_tokens(self, chat: list, *, priority: int = 10) -> int:
            self.calls.append(("count_tokens", priority))
            return 1

    q, plain = Queued(), ScriptedEngine()
    Prioritised(q, 0).count_tokens(QUESTION)
    assert q.calls == [("count_tokens", 0)]
    assert Prioritised(plain, 0).count_tokens(QUESTION) == plain.count_tokens(QUESTION)  # no priority: plain call
    assert Prioritised(plain, 0).info() == plain.info()



def _wait_for(cond) -> None:  # noqa: ANN001 - a predicate on the session's state
    """Wait until `cond()` holds (the Live worker threads change the state), failing after 10 s."""
    deadline = threading.Event()
    timer = threading.Timer(10, deadline.set)
    timer.start()
    try:
        while not cond():
            assert not deadline.wait(0.01), "the Live session never reached the state waited for"
    finally:
        timer.cancel()


def test_one_live_generation_per_person_at_a_time(db: Database) -> None:
    """Finding 7: one person's three Live tabs of 8 long samples held up everyone's Live requests. A second
    generation (Generate, or Regenerate of another session) from the same person is refused while one runs;
    other people are not held up by the refusal, and the person may go on once theirs ends."""
    eng = _Blocking()
    for name in ("root", "boss"):
        annotators.add_annotator(db, name, "admin", password=f"{name}-pass-123")
    sessions = live.LiveSessions(AppContext(db=db, engine_factory=lambda cfg: eng))
    req = live.LiveRequest(messages=QUESTION, n=2, methods=[])
    eng.release.set()
    earlier = sessions.start("root", req)
    assert earlier.wait(10) and not earlier.snapshot().busy
    eng.release.clear()  # from here each stream stops after its first piece until released
    running = sessions.start("root", req)
    _wait_for(lambda: all(c.text for c in running.snapshot().cards))

    with pytest.raises(live.LiveBusy, match=r"^you already have a Live generation running \(0 of 2 samples "
                                            r"complete\); one runs at a time per person"):
        sessions.start("root", req)
    with pytest.raises(live.LiveBusy, match="already have a Live generation running"):
        sessions.restart("root", earlier.id, None)  # new samples in an idle session of theirs: the same
    other = sessions.start("boss", req)  # someone else is not refused
    _wait_for(lambda: all(c.text for c in other.snapshot().cards))
    running.stop()
    with pytest.raises(live.LiveBusy, match="still stopping"):
        sessions.start("root", req)
    eng.release.set()
    assert running.wait(10) and other.wait(10)
    again = sessions.start("root", req)  # theirs has ended: the next one starts
    assert again.wait(10) and [c.state for c in again.snapshot().cards] == ["done", "done"]
    assert sessions.restart("root", earlier.id, [1]).wait(10)


def test_a_live_generation_asks_for_at_most_the_token_cap(ctx: AppContext, engine: ScriptedEngine) -> None:
    sessions = live.LiveSessions(ctx)
    ctx.live_token_cap = 1000
    with pytest.raises(ServiceError, match=r"^too much for one Live generation: 4 samples × 256 max tokens = 1,024 "
                                           r"tokens, and this server allows at most 1,000 \(critlab serve "
                                           r"--live-token-cap\)"):
        sessions.start("root", live.LiveRequest(messages=QUESTION, n=4, methods=[]))
    with pytest.raises(ServiceError, match=r": 2 samples × 250 max tokens \+ 2 samples × 300 max tokens = 1,100 "
                                           r"tokens, and this server allows at most 1,000"):
        sessions.start("root", live.LiveRequest(messages=QUESTION, n=2, methods=[], settings=[
            live.LiveSetting(max_tokens=250), live.LiveSetting(max_tokens=300)]))
    assert engine.calls == []  # nothing was sampled for the refused requests
    at_cap = live.LiveRequest(messages=QUESTION, n=2, methods=[], settings=[
        live.LiveSetting(max_tokens=200), live.LiveSetting(max_tokens=300)])
    assert sessions.start("root", at_cap).wait(10)
    ctx.live_token_cap = 0  # no cap
    big = live.LiveRequest(messages=QUESTION, n=8, settings=[live.LiveSetting(max_tokens=4096)], methods=[])
    assert sessions.start("root", big).wait(10)
    assert live.LiveSessions(AppContext(db=ctx.db)).ctx.live_token_cap == 4096  # the default
