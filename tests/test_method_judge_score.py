"""Self-J expected-digit judge score: exact arithmetic, request shapes, failures, one real run."""

from __future__ import annotations

import pytest

from backend.methods.judge_score import DIGITS, JudgeScore
from tests.method_harness import method_input, score_study
from tests.scripted_engine import ScriptedEngine

# raw digit probabilities (the rest of the mass went to other tokens): mass 0.8
RAW = {"0": 0.05, "3": 0.1, "7": 0.4, "9": 0.25}


def test_expected_digit_exact():
    eng = ScriptedEngine(probs=lambda chat, prefix, cands: {d: RAW.get(d, 0.0) for d in cands})
    (v,) = JudgeScore().run(method_input(["4"]), eng).verdicts
    # renormalised: 0 -> 1/16, 3 -> 1/8, 7 -> 1/2, 9 -> 5/16; E = 0 + 3/8 + 7/2 + 45/16 = 6.6875
    assert v.method == "judge_score" and v.status == "ok" and v.response_id == 1
    assert v.value == pytest.approx(6.6875, abs=1e-12)
    assert set(v.dist) == set(DIGITS) | {"digit_mass"}
    assert v.dist["digit_mass"] == pytest.approx(0.8, abs=1e-15)
    assert v.dist["7"] == pytest.approx(0.5, abs=1e-15) and v.dist["9"] == pytest.approx(0.3125, abs=1e-15)
    assert v.dist["1"] == 0.0
    assert sum(v.dist[d] for d in DIGITS) == pytest.approx(1.0, abs=1e-15)


def test_uniform_digits_give_4_5():
    (v,) = JudgeScore().run(method_input(["4"]), ScriptedEngine()).verdicts  # scripted default: uniform
    assert v.value == pytest.approx(4.5, abs=1e-12) and v.dist["digit_mass"] == pytest.approx(1.0)


def test_reference_picks_the_template_and_the_label():
    eng = ScriptedEngine()
    with_ref = JudgeScore().run(method_input(["4", "5"], question="What is 2 + 2?", reference="4"), eng)
    without = JudgeScore().run(method_input(["4"], question="What is 2 + 2?"), eng)
    blank = JudgeScore().run(method_input(["4"], reference="  "), eng)
    assert [v.label for v in with_ref.verdicts] == ["with_reference"] * 2
    assert without.verdicts[0].label == blank.verdicts[0].label == "no_reference"
    first, second, _ = eng.calls
    _, chats, prefix, candidates = first
    assert prefix == "Score: " and candidates == DIGITS and len(chats) == 2  # one batched call per prompt
    body = chats[1][0]["content"]
    assert body.endswith("[Question]\nWhat is 2 + 2?\n\n[Reference]\n4\n\n[Answer]\n5")
    assert "single integer between 0 and 9" in body
    body = second[1][0][0]["content"]
    assert "[Reference]" not in body and body.endswith("[Question]\nWhat is 2 + 2?\n\n[Answer]\n4")


def test_no_digit_mass_and_overflow_fail():
    eng = ScriptedEngine(probs=lambda chat, prefix, cands: {d: 0.0 for d in cands})
    (v,) = JudgeScore().run(method_input(["4"]), eng).verdicts
    assert v.status == "failed" and "no probability on the digits" in v.error
    eng = ScriptedEngine()
    a, b = JudgeScore().run(method_input(["4", "word " * 3000], context_length=2048), eng).verdicts
    assert a.status == "ok" and b.status == "failed" and b.error.startswith("context overflow")
    assert len(eng.calls[0][1]) == 1


@pytest.mark.model
def test_real_model(db, embedded_engine):
    _, first, again = score_study(db, embedded_engine, "judge_score", ["4", "The answer is 5."])
    assert first == 2 and again == 0
    rows = db.fetchdicts("SELECT status, value, label FROM judgment")
    assert all(r["status"] == "ok" and 0 <= r["value"] <= 9 and r["label"] == "with_reference" for r in rows), rows
