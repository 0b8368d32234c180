"""Best-of-N selectors: majority vote, Borda, USC — exact on the scripted engine, once on the real model."""

from __future__ import annotations

import math
import random
import re
import time

import pytest

from backend.engines.base import TokenLogprob
from backend.methods.base import MethodInput, ResponseInput
from backend.methods.registry import get_method
from backend.methods.selectors import USC, Borda, MajorityVote, random_baseline_accuracy
from storage import judgments, responses, studies
from tests.method_harness import method_input, score_study
from tests.scripted_engine import ScriptedEngine


def _input(items: list[tuple[str, float | None]], mode: str, *, logprob_mode: str = "raw", **kw) -> MethodInput:
    """Responses #1.. with the given (text, stored self-certainty) from logprobs of `logprob_mode`."""
    return MethodInput(prompt_id=1, prompt_external_id="q1", messages=[{"role": "user", "content": "What is x?"}],
                       responses=[ResponseInput(id=i + 1, text=t, self_certainty=sc,
                                                logprob_mode=logprob_mode if sc is not None else None)
                                  for i, (t, sc) in enumerate(items)],
                       answer_extraction=mode, **kw)


def test_registry_and_class_attributes() -> None:
    for mid, cls, version in (("select_majority", MajorityVote, "1"), ("select_borda", Borda, "2"),
                              ("select_usc", USC, "1")):
        m = get_method(mid)
        assert isinstance(m, cls) and m.id == mid and m.version == version
        assert (m.compared_with, m.metric_family, m.score_column) == ("best_of_n", "top1", "response_id")
        assert m.title and m.outputs and m.cost and m.source and m.layer in ("decoding", "response")


def test_random_baseline() -> None:
    assert random_baseline_accuracy(4) == 0.25
    assert random_baseline_accuracy(5, 2) == 0.4
    with pytest.raises(ValueError):
        random_baseline_accuracy(2, 3)


# -- majority vote -------------------------------------------------------------------------------------


def test_majority_ties_between_clusters_and_missing_answers() -> None:
    eng = ScriptedEngine()
    inp = method_input(["I am not sure.",         # #1: no answer, no vote
                        "It is 5.",               # #2: 5
                        "The answer is 4",        # #3: 4
                        "5, definitely",          # #4: 5
                        "4.0",                    # #5: 4 (normalised)
                        "maybe 6"],               # #6: 6
                       answer_extraction="last_number")
    v = MajorityVote().run(inp, eng).verdicts[0]
    # clusters 5 (#2, #4) and 4 (#3, #5) tie at 2 votes; the 5-cluster's first member (#2) comes first
    assert (v.status, v.method, v.response_id, v.label) == ("ok", "select_majority", 2, "5")
    assert v.value == pytest.approx(2 / 5)  # 5 responses voted
    assert v.dist == {"5": 2, "4": 2, "6": 1}
    assert "5 of 6 responses" in v.rationale
    assert eng.calls == []  # no engine calls


def test_majority_clear_winner_picks_first_member_in_response_order() -> None:
    inp = method_input(["7", "x = 3", "so 3", "3."], answer_extraction="last_number", first_id=10)
    v = MajorityVote().run(inp, ScriptedEngine()).verdicts[0]
    assert (v.response_id, v.label, v.value, v.dist) == (11, "3", 0.75, {"7": 1, "3": 3})


def test_majority_normalises_regex_answers() -> None:
    inp = method_input(["Answer: Paris.", "Answer: paris", "Answer: Rome"], answer_extraction="regex:Answer: (.+)")
    v = MajorityVote().run(inp, ScriptedEngine()).verdicts[0]
    assert (v.response_id, v.label, v.dist) == (1, "Paris.", {"Paris.": 2, "Rome": 1})


@pytest.mark.parametrize(("mode", "error"), [
    ("none", "n/a: no extractable answers (mode none)"),
    ("boxed", "n/a: no extractable answers (mode boxed)"),
])
def test_majority_without_extractable_answers_is_na(mode: str, error: str) -> None:
    v = MajorityVote().run(method_input(["4", "five"], answer_extraction=mode), ScriptedEngine()).verdicts[0]
    assert (v.status, v.error, v.response_id) == ("failed", error, None)
    assert v.dist == {"extractable": 0, "responses": 2}


def test_majority_invalid_mode_fails_cleanly() -> None:
    v = MajorityVote().run(method_input(["4"], answer_extraction="regex:("), ScriptedEngine()).verdicts[0]
    assert v.status == "failed" and "invalid regex" in v.error


# -- Borda ---------------------------------------------------------------------------------------------

# #1 "7" sc 4.0, #2 "3" sc 1.0, #3 "7" sc 3.0, #4 "3" sc 0.5, #5 "3" sc 0.2, #6 no answer sc 5.0
BORDA_ITEMS = [("x = 7", 4.0), ("x = 3", 1.0), ("I get 7", 3.0), ("3", 0.5), ("it is 3", 0.2), ("no idea", 5.0)]


def test_borda_p05_hand_computed() -> None:
    # Ranking by self-certainty: #6 (r1), #1 (r2), #3 (r3), #2 (r4), #4 (r5), #5 (r6); N = 6.
    # Weights (N - r + 1)^0.5: r1 √6 (#6 has no answer: no vote), r2 √5, r3 √4 = 2, r4 √3, r5 √2, r6 √1 = 1.
    # "7": √5 + 2 = 4.23607 (#1, #3); "3": √3 + √2 + 1 = 4.14626 (#2, #4, #5)  →  "7" wins,
    # its highest-ranked sample is #1. Majority vote would pick "3" (3 vs 2), argmax SC would pick #6.
    eng = ScriptedEngine()
    v = Borda().run(_input(BORDA_ITEMS, "last_number"), eng).verdicts[0]
    seven, three = math.sqrt(5) + 2, math.sqrt(3) + math.sqrt(2) + 1
    assert (v.status, v.method, v.response_id, v.label) == ("ok", "select_borda", 1, "7")
    assert v.dist == pytest.approx({"7": seven, "3": three})
    assert v.value == pytest.approx(seven / (seven + three))  # 0.50536
    assert eng.calls == []  # every response had its self-certainty stored


def test_borda_p0_is_majority_vote(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Borda, "power", 0.0)
    inp = _input(BORDA_ITEMS, "last_number")
    b, m = Borda().run(inp, ScriptedEngine()).verdicts[0], MajorityVote().run(inp, ScriptedEngine()).verdicts[0]
    # "3": 3 votes (#2, #4, #5), "7": 2 votes: majority; the highest-ranked "3" is #2, also the first in order
    assert (b.label, b.response_id, b.dist, b.value) == (m.label, m.response_id, m.dist, m.value)
    assert (b.label, b.response_id, b.dist, b.value) == ("3", 2, {"7": 2, "3": 3}, 0.6)
    # and on random draws whose largest cluster is unique, p = 0 always agrees with majority vote
    rng = random.Random(7)
    checked = 0
    for _ in range(200):
        items = [(rng.choice(["1", "2", "3", "none"]), rng.random()) for _ in range(rng.randint(1, 8))]
        counts = [sum(t == a for t, _ in items) for a in "123"]
        if max(counts) == 0 or counts.count(max(counts)) > 1:
            continue
        inp = _input(items, "last_number")
        b, m = Borda().run(inp, ScriptedEngine()).verdicts[0], MajorityVote().run(inp, ScriptedEngine()).verdicts[0]
        assert (b.label, b.dist, b.value) == (m.label, m.dist, m.value)
        checked += 1
    assert checked > 50


def test_borda_without_extraction_falls_back_to_argmax_self_certainty() -> None:
    v = Borda().run(_input(BORDA_ITEMS, "none"), ScriptedEngine()).verdicts[0]
    assert (v.status, v.response_id) == ("ok", 6)
    assert v.label == "self-certainty best-of-N (no answer extraction)"
    assert v.dist == pytest.approx({"6": math.sqrt(6), "1": math.sqrt(5), "3": 2.0, "2": math.sqrt(3),
                                    "4": math.sqrt(2), "5": 1.0})
    # and the same when a mode is set but nothing is extractable
    v = Borda().run(_input([("a", 1.0), ("b", 2.0)], "boxed"), ScriptedEngine()).verdicts[0]
    assert (v.response_id, v.label) == (2, "self-certainty best-of-N (no extractable answers (mode boxed))")


def _scores(sc_by_text: dict[str, float | None]):
    def scores(chat, text):
        return [TokenLogprob(token_id=1, logprob=-0.1, self_certainty=sc_by_text[text]) for _ in range(2)]
    return scores


def test_borda_scores_missing_self_certainty_with_the_engine() -> None:
    # #1 and #3 lack it; the engine gives #1 → 0.1, #3 → 9.0. Ranking: #3 (9.0), #2 (2.0), #1 (0.1).
    # Answers: #3 "4", #2 "5", #1 "5". p = 0.5: "4" = √3 = 1.732; "5" = √2 + 1 = 2.414 → "5", pick #2.
    eng = ScriptedEngine(scores=_scores({"It is 5": 0.1, "I get 4": 9.0}))
    v = Borda().run(_input([("It is 5", None), ("5", 2.0), ("I get 4", None)], "last_number"), eng).verdicts[0]
    assert [c[2] for c in eng.calls if c[0] == "score_response"] == ["It is 5", "I get 4"]
    assert (v.response_id, v.label) == (2, "5")
    assert v.dist == pytest.approx({"4": math.sqrt(3), "5": math.sqrt(2) + 1})


def test_borda_ranks_on_raw_self_certainty_only() -> None:
    # #1's stored figure is temperature-scaled (10.0 > #2's): it is teacher-forced again, raw, with the run's
    # top-k, as #2 (imported) is. Raw: #1 → 1.0, #2 → 3.0, so without extraction the pick is #2.
    seen: list[int] = []
    eng = ScriptedEngine(scores=_scores({"a": 1.0, "b": 3.0}))
    forced = eng.score_response
    eng.score_response = lambda chat, text, top_logprobs=5: (seen.append(top_logprobs), forced(chat, text))[1]
    inp = _input([("a", 10.0), ("b", None)], "none", logprob_mode="temperature_scaled", top_logprobs=20)
    assert Borda().planned_calls(inp).reads == 2
    v = Borda().run(inp, eng).verdicts[0]
    assert v.response_id == 2 and seen == [20, 20]
    assert "#2 3, #1 1" in v.rationale


def test_borda_overflowing_or_empty_responses_rank_last() -> None:
    long = "word " * 50
    eng = ScriptedEngine(tokens=lambda chat: 5000 if any(m["content"] == long for m in chat) else 10,
                         scores=_scores({"7": 1.0}))
    v = Borda().run(_input([(long, None), ("7", None), ("", None)], "none", context_length=2048), eng).verdicts[0]
    assert v.response_id == 2
    assert [c[2] for c in eng.calls if c[0] == "score_response"] == ["7"]
    assert "#1: context overflow" in v.rationale and "#3 is empty" in v.rationale


def test_borda_fails_when_no_self_certainty_is_available() -> None:
    eng = ScriptedEngine(scores=lambda chat, text: [TokenLogprob(token_id=1, logprob=-0.1)])  # no SC, no top-k
    v = Borda().run(_input([("4", None), ("5", None)], "last_number"), eng).verdicts[0]
    assert v.status == "failed" and v.error.startswith("no self-certainty for any response")


# -- USC -----------------------------------------------------------------------------------------------

TEXTS = ["alpha says 4", "beta says 5", "gamma says 4", "delta says 4"]


def _favour(text: str, p_top: float = 0.4):
    """Put p_top on the index at which `text` is shown, 0.1 on each other index (unnormalised)."""
    def probs(chat, prefix, candidates):
        shown = re.findall(r"^Response (\d+): (.*)$", chat[-1]["content"], flags=re.M)
        at = next(i for i, t in shown if t == text)
        return {c: (p_top if c == at else 0.1) for c in candidates}
    return probs


def test_usc_maps_the_shuffled_index_back_to_the_response() -> None:
    eng = ScriptedEngine(probs=_favour("gamma says 4"))
    inp = method_input(TEXTS, seed=12345, first_id=20)  # ids 20..23, gamma = #22
    v = USC().run(inp, eng).verdicts[0]
    order = list(range(4))
    random.Random(12345).shuffle(order)
    assert v.shown_order == [20 + i for i in order] != [20, 21, 22, 23]
    assert (v.status, v.method, v.response_id) == ("ok", "select_usc", 22)
    assert v.value == pytest.approx(0.4 / 0.7)  # renormalised over the 4 candidate digits
    assert v.dist == pytest.approx({"22": 0.4 / 0.7, **{str(i): 0.1 / 0.7 for i in (20, 21, 23)}})
    (kind, chats, prefix, candidates), = eng.calls
    assert (kind, prefix, candidates) == ("next_token_probs", "The most consistent response is Response ",
                                          ["0", "1", "2", "3"])
    prompt = chats[0][-1]["content"]
    assert "What is 2 + 2?" in prompt and "The most consistent response is Response X" in prompt
    for i, rid in enumerate(v.shown_order):  # Response i is the text of shown_order[i]
        assert f"Response {i}: {TEXTS[rid - 20]}" in prompt


def test_usc_shuffle_is_stable_per_seed() -> None:
    def order(seed: int) -> list[int]:
        return USC().run(method_input(TEXTS, seed=seed), ScriptedEngine()).verdicts[0].shown_order
    assert order(7) == order(7)
    assert len({tuple(order(s)) for s in range(6)}) > 1


def test_usc_ties_go_to_the_lower_shown_index() -> None:
    v = USC().run(method_input(TEXTS, seed=3), ScriptedEngine()).verdicts[0]  # uniform probabilities
    assert v.response_id == v.shown_order[0] and v.value == pytest.approx(0.25)


def test_usc_context_overflow_fails_without_truncating() -> None:
    eng = ScriptedEngine(tokens=lambda chat: 3000)
    v = USC().run(method_input(TEXTS, context_length=2048), eng).verdicts[0]
    assert v.status == "failed" and v.error.startswith("context overflow") and v.response_id is None
    assert eng.calls == []


def test_usc_through_the_service_stores_one_prompt_level_verdict(db) -> None:
    eng = ScriptedEngine(probs=_favour("beta says 5"))
    _, first, again = score_study(db, eng, "select_usc", TEXTS)
    assert (first, again) == (1, 0)
    (j,) = judgments.current(db, study_id=studies.get_study(db, "m").id, method="select_usc")
    assert j.target_key.startswith("prompt:") and sorted(j.shown_order) == sorted(int(k) for k in j.dist)
    assert responses.get_response(db, j.response_id).text == "beta says 5"


# -- the real embedded model (1 prompt × 2 responses) --------------------------------------------------

REAL_TEXTS = ["2 + 2 = 4. The answer is 4.", "I think the answer is 5."]


@pytest.mark.model
def test_usc_on_the_real_model(db, embedded_engine) -> None:
    t0 = time.perf_counter()
    _, first, again = score_study(db, embedded_engine, "select_usc", REAL_TEXTS)
    time.perf_counter() - t0
    (j,) = judgments.current(db, study_id=studies.get_study(db, "m").id, method="select_usc")
    assert (first, again, j.status) == (1, 0, "ok")
    assert 0.5 <= j.value <= 1.0 and sum(j.dist.values()) == pytest.approx(1.0)
    assert sorted(j.shown_order) == sorted(int(k) for k in j.dist) and j.response_id in j.shown_order


@pytest.mark.model
def test_borda_on_the_real_model_scores_missing_self_certainty(db, embedded_engine) -> None:
    t0 = time.perf_counter()
    _, first, again = score_study(db, embedded_engine, "select_borda", REAL_TEXTS, answer_extraction="last_number")
    time.perf_counter() - t0
    (j,) = judgments.current(db, study_id=studies.get_study(db, "m").id, method="select_borda")
    assert (first, again, j.status) == (1, 0, "ok")
    # two different answers, one vote each: weights √2 (rank 1) and 1 (rank 2); the higher-SC response wins
    assert j.label in ("4", "5") and j.value == pytest.approx(math.sqrt(2) / (math.sqrt(2) + 1))
    assert sorted(j.dist.values()) == pytest.approx([1.0, math.sqrt(2)])
    sc = [float(x) for x in re.findall(r"#\d+ ([0-9.e+-]+)", j.rationale)]
    assert len(sc) == 2 and sc[0] >= sc[1] > 0  # exact self-certainty, highest first
