"""P(True) and P(True) with brainstorming: exact arithmetic, request shapes, failures, one real run each."""

from __future__ import annotations

import random

import pytest

from backend.methods.p_true import PTrue, PTrueBrainstorm
from tests.method_harness import method_input, score_study
from tests.scripted_engine import ScriptedEngine

TEXTS = ["4", "five", "22", "four"]


def _answer_of(chat) -> str:
    body = chat[-1]["content"]
    key = "Possible Answer: " if "Possible Answer: " in body else "Proposed Answer: "
    return body.split(key)[1].split("\n")[0]


# P(A), P(B) by judged answer
PROBS = {"4": (0.3, 0.1), "five": (0.125, 0.375), "22": (0.0, 0.5), "four": (0.25, 0.25)}


def _probs(chat, prefix, candidates):
    a, b = PROBS[_answer_of(chat)]
    return {"A": a, "B": b}


def test_p_true_arithmetic_exact():
    eng = ScriptedEngine(probs=_probs)
    res = PTrue().run(method_input(TEXTS), eng)
    assert [v.response_id for v in res.verdicts] == [1, 2, 3, 4]
    v = res.verdicts[0]
    assert v.method == "p_true" and v.status == "ok"
    assert v.prob == v.value == pytest.approx(0.75, abs=1e-15)  # 0.3 / (0.3 + 0.1)
    assert v.dist == pytest.approx({"A": 0.75, "B": 0.25, "label_mass": 0.4}, abs=1e-15)
    assert [x.prob for x in res.verdicts[1:]] == [0.25, 0.0, 0.5]  # exact binary fractions
    assert res.verdicts[1].dist == {"A": 0.25, "B": 0.75, "label_mass": 0.5}
    assert all(x.shown_order is None for x in res.verdicts)


def test_p_true_one_batched_call_with_the_answer_slot_in_the_assistant_prefix():
    eng = ScriptedEngine(probs=_probs)
    PTrue().run(method_input(TEXTS, question="What is 2 + 2?"), eng)
    (call,) = eng.calls
    kind, chats, prefix, candidates = call
    assert kind == "next_token_probs" and prefix == "The proposed answer is: (" and candidates == ["A", "B"]
    assert len(chats) == 4
    assert chats[1] == [{"role": "user", "content":
                         "Question: What is 2 + 2?\nProposed Answer: five\nIs the proposed answer:\n"
                         " (A) True\n (B) False"}]


def test_brainstorm_lists_the_other_samples_shuffled_and_records_the_order():
    eng = ScriptedEngine(probs=_probs)
    inp = method_input(TEXTS, question="What is 2 + 2?", seed=1234, first_id=10)
    res = PTrueBrainstorm().run(inp, eng)
    (call,) = eng.calls
    _, chats, prefix, candidates = call
    assert prefix == "The possible answer is: (" and candidates == ["A", "B"] and len(chats) == 4
    by_id = dict(zip(range(10, 14), TEXTS))
    for i, (v, chat) in enumerate(zip(res.verdicts, chats)):
        judged = 10 + i
        assert v.method == "p_true_brainstorm" and v.response_id == judged
        others = [r for r in range(10, 14) if r != judged]
        expected = others[:]
        random.Random(1234 + i).shuffle(expected)
        assert v.shown_order == expected and judged not in v.shown_order
        ideas = "".join(f"{by_id[r]}\n\n" for r in expected)
        assert chat[0]["content"] == (f"Question: What is 2 + 2?\nHere are some brainstormed ideas:\n{ideas}"
                                      f"Possible Answer: {by_id[judged]}\nIs the possible answer:\n"
                                      " (A) True\n (B) False")
    assert res.verdicts[0].prob == pytest.approx(0.75, abs=1e-15)
    assert res.verdicts[0].dist == pytest.approx({"A": 0.75, "B": 0.25, "label_mass": 0.4}, abs=1e-15)
    # the stored seed makes the order reproducible
    again = PTrueBrainstorm().run(inp, ScriptedEngine(probs=_probs))
    assert [v.shown_order for v in again.verdicts] == [v.shown_order for v in res.verdicts]


def test_brainstorm_needs_two_responses():
    eng = ScriptedEngine(probs=_probs)
    res = PTrueBrainstorm().run(method_input(["4"]), eng)
    assert res.verdicts[0].status == "failed" and "at least 2" in res.verdicts[0].error
    assert eng.calls == []


@pytest.mark.parametrize("cls", [PTrue, PTrueBrainstorm])
def test_context_overflow_is_a_failed_verdict_not_a_truncation(cls):
    long_text = "word " * 3000
    eng = ScriptedEngine(probs=lambda *a: {"A": 0.5, "B": 0.5})
    res = cls().run(method_input(["4", long_text, "5"], context_length=2048), eng)
    statuses = [v.status for v in res.verdicts]
    if cls is PTrue:
        assert statuses == ["ok", "failed", "ok"]
        assert len(eng.calls[0][1]) == 2
    else:  # the long sample sits in every other sample's brainstorm list too
        assert statuses == ["failed"] * 3
        assert eng.calls == []
        assert res.verdicts[0].shown_order is not None
    assert res.verdicts[1].error.startswith("context overflow")


def test_no_mass_on_the_options_fails():
    res = PTrue().run(method_input(["4"]), ScriptedEngine(probs=lambda *a: {"A": 0.0, "B": 0.0}))
    assert res.verdicts[0].status == "failed" and "no probability on A/B" in res.verdicts[0].error


def test_templates_render():
    assert PTrue().template("question", question="Q?", answer="x").endswith(" (A) True\n (B) False")
    assert "Here are some brainstormed ideas:\na\n\nPossible Answer: x" in PTrueBrainstorm().template(
        "question", question="Q?", ideas=["a"], answer="x")


@pytest.mark.model
@pytest.mark.parametrize("method_id", ["p_true", "p_true_brainstorm"])
def test_real_model(db, embedded_engine, method_id):
    _, first, again = score_study(db, embedded_engine, method_id, ["4", "The answer is 5."])
    assert first == 2 and again == 0
    rows = db.fetchdicts("SELECT method, status, prob, value, dist, shown_order FROM judgment ORDER BY response_id")
    assert all(r["status"] == "ok" and r["method"] == method_id for r in rows), rows
    assert all(0 <= r["prob"] <= 1 and r["prob"] == r["value"] for r in rows)
    if method_id == "p_true_brainstorm":
        ids = [r["shown_order"] for r in rows]
        assert all(len(s) == 1 for s in ids) and ids[0] != ids[1]
