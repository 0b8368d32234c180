"""SelfCheckGPT (prompt variant): sentence split, exact arithmetic, the reads it asks for, failures, one real run."""

from __future__ import annotations

import json

import pytest

from backend.methods.selfcheck import SelfCheckPrompt, split_sentences
from tests.method_harness import method_input, score_study
from tests.scripted_engine import ScriptedEngine

A, B, C = "It is 4. Two plus two is four.", "4", "It is 5."
# (context, sentence) -> (P(Yes), P(No)), worked by hand below
PROBS = {
    (B, "It is 4."): (0.3, 0.1),  # P(No) normalised 0.25
    (C, "It is 4."): (0.125, 0.375),  # 0.75            -> sentence 0.5
    (B, "Two plus two is four."): (0.25, 0.25),  # 0.5
    (C, "Two plus two is four."): (0.0, 0.5),  # 1.0    -> sentence 0.75; response 0.625, value 0.375
    (A, "4"): (0.75, 0.25),  # 0.25
    (C, "4"): (0.25, 0.75),  # 0.75                     -> 0.5, value 0.5
    (A, "It is 5."): (0.0, 0.25),  # 1.0
    (B, "It is 5."): (0.0625, 0.1875),  # 0.75          -> 0.875, value 0.125
}


def _parts(chat) -> tuple[str, str]:
    body = chat[0]["content"]
    context = body.split("Context: ")[1].split("\n\nSentence: ")[0]
    sentence = body.split("\n\nSentence: ")[1].split("\n\nIs the sentence")[0]
    return context, sentence


def _probs(chat, prefix, candidates):
    yes, no = PROBS[_parts(chat)]
    return {"Yes": yes, "No": no}


def test_sentences_split_at_stops_and_line_breaks() -> None:
    assert split_sentences(A) == ["It is 4.", "Two plus two is four."]
    assert split_sentences("3.5 is not 4. Is it?Yes\n\n* a\n* b") == ["3.5 is not 4.", "Is it?Yes", "* a", "* b"]


def test_arithmetic_exact() -> None:
    res = SelfCheckPrompt().run(method_input([A, B, C]), ScriptedEngine(probs=_probs))
    a, b, c = res.verdicts
    assert [v.response_id for v in res.verdicts] == [1, 2, 3] and {v.status for v in res.verdicts} == {"ok"}
    assert a.value == a.prob == 0.375  # 1 - mean(mean(0.25, 0.75), mean(0.5, 1.0))
    assert a.dist == pytest.approx({"sentences": 2.0, "others": 2.0, "label_mass": (0.4 + 0.5 + 0.5 + 0.5) / 4},
                                   abs=1e-15)
    assert a.rationale == "P(not supported) = 0.500: It is 4.\nP(not supported) = 0.750: Two plus two is four."
    assert b.value == b.prob == 0.5
    assert b.dist == {"sentences": 1.0, "others": 2.0, "label_mass": 1.0}
    assert c.value == c.prob == 0.125
    assert c.dist == {"sentences": 1.0, "others": 2.0, "label_mass": 0.25}


def test_one_batched_read_per_sentence_and_other_response() -> None:
    eng = ScriptedEngine(probs=_probs)
    inp = method_input([A, B, C])
    SelfCheckPrompt().run(inp, eng)
    (call,) = eng.calls
    kind, chats, prefix, candidates = call
    assert kind == "next_token_probs" and prefix == "Answer:" and candidates == ["Yes", "No"]
    assert [_parts(c) for c in chats] == [(B, "It is 4."), (C, "It is 4."), (B, "Two plus two is four."),
                                          (C, "Two plus two is four."), (A, "4"), (C, "4"), (A, "It is 5."),
                                          (B, "It is 5.")]
    assert len(chats) == SelfCheckPrompt().planned_calls(inp).reads == 8
    assert chats[0] == [{"role": "user", "content": "Context: 4\n\nSentence: It is 4.\n\n"
                                                    "Is the sentence supported by the context above? Answer Yes or No."}]


def test_the_estimate_assumes_three_sentences_without_texts() -> None:
    inp = method_input(["", "", ""])
    assert SelfCheckPrompt().planned_calls(inp).reads == 3 * 3 * 2


def test_failures_are_per_response() -> None:
    eng = ScriptedEngine(probs=lambda chat, *a: {"Yes": 0.0, "No": 0.0} if _parts(chat)[1] == "5" else
                         {"Yes": 0.5, "No": 0.5})
    res = SelfCheckPrompt().run(method_input(["4", "   ", "5"]), eng)
    ok, empty, no_mass = res.verdicts
    assert ok.status == "ok" and ok.value == 0.5 and ok.dist["others"] == 2.0  # the empty sample is a context
    assert (empty.status, empty.error) == ("failed", "empty response: no sentence to check")
    assert (no_mass.status, no_mass.error) == ("failed", "no probability on Yes/No for sentence 1")


def test_a_sample_over_the_context_fails_every_response_it_is_read_with() -> None:
    eng = ScriptedEngine()
    res = SelfCheckPrompt().run(method_input(["4", "word " * 3000], context_length=2048), eng)
    assert [v.status for v in res.verdicts] == ["failed", "failed"] and eng.calls == []
    assert all(v.error.startswith("context overflow") for v in res.verdicts)


def test_needs_two_responses() -> None:
    eng = ScriptedEngine()
    res = SelfCheckPrompt().run(method_input(["4"]), eng)
    assert res.verdicts[0].status == "failed" and "at least 2" in res.verdicts[0].error and eng.calls == []


@pytest.mark.model
def test_real_model(db, embedded_engine) -> None:
    _, first, again = score_study(db, embedded_engine, "selfcheck_prompt", ["4", "The answer is 5. It is odd."])
    assert first == 2 and again == 0
    rows = db.fetchdicts("SELECT status, prob, value, dist FROM judgment WHERE method = 'selfcheck_prompt' "
                         "ORDER BY response_id")
    assert [r["status"] for r in rows] == ["ok", "ok"]
    assert all(0 <= r["prob"] <= 1 and r["prob"] == r["value"] for r in rows)
    assert [json.loads(r["dist"])["sentences"] for r in rows] == [1, 2]
