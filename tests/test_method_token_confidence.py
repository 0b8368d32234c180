"""Decoding-layer confidence baselines: stored figures, teacher-forced ones, failures, one real run each."""

from __future__ import annotations

import math

import pytest

from backend.engines.base import TokenLogprob, TopToken
from backend.methods.base import ResponseInput
from backend.methods.token_confidence import NegEntropy, NegPerplexity, SelfCertainty
from tests.method_harness import method_input, score_study
from tests.scripted_engine import ScriptedEngine

LN2 = math.log(2)


def _tok(lp: float, top: list[float], sc: float | None) -> TokenLogprob:
    return TokenLogprob(token_id=1, logprob=lp, self_certainty=sc,
                        top=[TopToken(token_id=i, logprob=x) for i, x in enumerate(top)])


def _two_tokens(sc: bool = True):
    """logprobs log 1/2 and log 1/4; top-k 2 x 1/2 (entropy ln 2) and 4 x 1/4 (entropy ln 4); SC 1 and 3."""
    def scores(chat, text):
        return [_tok(math.log(0.5), [math.log(0.5)] * 2, 1.0 if sc else None),
                _tok(math.log(0.25), [math.log(0.25)] * 4, 3.0 if sc else None)]
    return scores


def _stored(id_: int = 1, **kw) -> ResponseInput:
    base = {"token_count": 3, "mean_logprob": -0.5, "neg_perplexity": -math.exp(0.5), "mean_topk_entropy": 0.25,
            "self_certainty": 4.5, "self_certainty_mode": "topk_proxy", "logprob_mode": "raw"}
    return ResponseInput(id=id_, text="stored text", **{**base, **kw})


def test_stored_figures_are_used_without_engine_calls():
    eng = ScriptedEngine()
    inp = method_input([])
    inp.responses = [_stored()]
    nppl, ent, sc = (m().run(inp, eng).verdicts[0] for m in (NegPerplexity, NegEntropy, SelfCertainty))
    assert eng.calls == []
    assert (nppl.method, nppl.value, nppl.label) == ("neg_perplexity", -math.exp(0.5), "raw")
    assert (ent.method, ent.value, ent.label) == ("neg_entropy", -0.25, "raw")
    assert (sc.method, sc.value, sc.label) == ("self_certainty", 4.5, "topk_proxy")
    assert nppl.dist == {"token_count": 3.0, "teacher_forced": 0.0}


def test_teacher_forced_for_imported_and_derived_responses_exact():
    eng = ScriptedEngine(scores=_two_tokens())
    inp = method_input(["imported answer"], question="What is 2 + 2?")
    inp.derived = [ResponseInput(id=9, text="a revision", origin="revision")]
    nppl = NegPerplexity().run(inp, eng).verdicts
    ent = NegEntropy().run(inp, eng).verdicts
    sc = SelfCertainty().run(inp, eng).verdicts
    assert [v.response_id for v in nppl] == [1, 9]
    # mean logprob = (ln 1/2 + ln 1/4) / 2 = -1.5 ln 2  ->  -exp(1.5 ln 2) = -2^1.5
    assert nppl[0].value == pytest.approx(-(2 ** 1.5), rel=1e-12) and nppl[0].label == "raw"
    assert ent[0].value == pytest.approx(-1.5 * LN2, rel=1e-12)  # -(ln 2 + ln 4) / 2
    assert sc[1].value == 2.0 and sc[1].label == "exact"  # (1 + 3) / 2
    assert nppl[1].dist == {"token_count": 2.0, "teacher_forced": 1.0}
    forced = [c for c in eng.calls if c[0] == "score_response"]
    assert forced[:2] == [("score_response", [{"role": "user", "content": "What is 2 + 2?"}], "imported answer"),
                          ("score_response", [{"role": "user", "content": "What is 2 + 2?"}], "a revision")]


class _TopK(ScriptedEngine):
    """Records the top-k each teacher-forced call asked for."""

    def __init__(self, **kw) -> None:
        super().__init__(**kw)
        self.ks: list[int] = []

    def score_response(self, chat, text, top_logprobs=5):
        self.ks.append(top_logprobs)
        return super().score_response(chat, text, top_logprobs)


@pytest.mark.parametrize("cls", [NegPerplexity, NegEntropy, SelfCertainty])
def test_a_prompt_is_ranked_on_raw_logprobs_only(cls):
    """A sampled response whose figures are temperature-scaled (SGLang without SGLANG_RETURN_ORIGINAL_LOGPROB)
    beside an imported one (teacher-forced, raw): both values come from raw logprobs, with the run's top-k."""
    eng = _TopK(scores=_two_tokens())
    inp = method_input(["imported answer"], top_logprobs=20)
    inp.responses = [_stored(id_=7, logprob_mode="temperature_scaled"), *inp.responses]
    assert cls().planned_calls(inp).reads == 2
    verdicts = cls().run(inp, eng).verdicts
    assert [(v.response_id, v.status, v.dist["teacher_forced"]) for v in verdicts] == [(7, "ok", 1.0),
                                                                                      (1, "ok", 1.0)]
    assert verdicts[0].value == verdicts[1].value  # the same scripted raw tokens, not the stored figure
    assert {v.label for v in verdicts} == ({"exact"} if cls is SelfCertainty else {"raw"})
    assert eng.ks == [20, 20]


def test_a_missing_stored_figure_is_recomputed():
    eng = ScriptedEngine(scores=_two_tokens())
    inp = method_input([])
    inp.responses = [_stored(mean_topk_entropy=None)]  # e.g. sampled with top_logprobs=0
    assert NegPerplexity().run(inp, eng).verdicts[0].value == -math.exp(0.5)
    assert eng.calls == []
    v = NegEntropy().run(inp, eng).verdicts[0]
    assert v.value == pytest.approx(-1.5 * LN2, rel=1e-12) and v.dist["teacher_forced"] == 1.0


def test_top_k_proxy_when_the_engine_has_no_exact_self_certainty():
    eng = ScriptedEngine(scores=_two_tokens(sc=False))
    eng.vocab_size = 8  # type: ignore[attr-defined]
    v = SelfCertainty().run(method_input(["x y"]), eng).verdicts[0]
    # position 1: top 2 x 1/2 covers everything (tail clipped to 1e-12); position 2: 4 x 1/4 likewise
    def proxy(lps, k):
        return -math.log(8) - (sum(lps) + (8 - k) * (math.log(1e-12) - math.log(8 - k))) / 8
    expected = (proxy([math.log(0.5)] * 2, 2) + proxy([math.log(0.25)] * 4, 4)) / 2
    assert v.label == "topk_proxy" and v.value == pytest.approx(expected, rel=1e-12)


def test_self_certainty_fails_without_full_distribution_or_vocabulary_size():
    eng = ScriptedEngine(scores=_two_tokens(sc=False))
    v = SelfCertainty().run(method_input(["x y"]), eng).verdicts[0]
    assert v.status == "failed" and "self_certainty" in v.error and "vocabulary size" in v.error
    assert NegPerplexity().run(method_input(["x y"]), eng).verdicts[0].status == "ok"


@pytest.mark.parametrize("cls", [NegPerplexity, NegEntropy, SelfCertainty])
def test_empty_responses_fail(cls):
    eng = ScriptedEngine()
    inp = method_input([""])  # no stats: teacher forcing yields no tokens
    inp.derived = [_stored(id_=5, token_count=0)]
    res = cls().run(inp, eng)
    assert [(v.response_id, v.status, v.error) for v in res.verdicts] == [(1, "failed", "empty response"),
                                                                        (5, "failed", "empty response")]


def test_teacher_forcing_overflow_is_a_failed_verdict():
    eng = ScriptedEngine(scores=_two_tokens())
    v = NegPerplexity().run(method_input(["word " * 3000], context_length=2048), eng).verdicts[0]
    assert v.status == "failed" and "context overflow" in v.error
    assert not [c for c in eng.calls if c[0] == "score_response"]


@pytest.mark.model
@pytest.mark.parametrize("method_id", ["neg_perplexity", "neg_entropy", "self_certainty"])
def test_real_model(db, embedded_engine, method_id):
    _, first, again = score_study(db, embedded_engine, method_id, ["4", "The answer is 5."])
    assert first == 2 and again == 0
    rows = db.fetchdicts("SELECT status, value, label FROM judgment ORDER BY response_id")
    assert all(r["status"] == "ok" for r in rows), rows
    for r in rows:
        if method_id == "neg_perplexity":
            assert r["value"] <= -1 and r["label"] == "raw"
        elif method_id == "neg_entropy":
            assert -math.log(5) - 1e-9 <= r["value"] <= 0
        else:
            assert r["value"] >= 0 and r["label"] == "exact"
