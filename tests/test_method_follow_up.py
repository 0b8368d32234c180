"""Follow-up likelihood as reward: the lists, exact arithmetic, the teacher-forced reads, failures, one real run."""

from __future__ import annotations

import json

import pytest

from backend.engines.base import TokenLogprob
from backend.methods.follow_up import FollowUpLikelihood
from tests.method_harness import method_input, score_study
from tests.scripted_engine import ScriptedEngine

METHOD = FollowUpLikelihood()
POSITIVE, NEGATIVE = METHOD.follow_ups


def _tokens(*lps: float) -> list[TokenLogprob]:
    return [TokenLogprob(token_id=1, logprob=lp) for lp in lps]


def _scores(chat, text):
    """Response "4": positives [-0.5, -1.5] for the first, [-1.0] for the others (mean -1), negatives
    [-2.0, -4.0] (mean -3). Response "five": positives [-2.0]; the first 10 negatives [-1.0], the other
    20 [-0.25] (mean (-10 - 5) / 30 = -0.5)."""
    good = "Assistant: 4\n" in chat[0]["content"]
    if text in POSITIVE:
        if not good:
            return _tokens(-2.0)
        return _tokens(-0.5, -1.5) if text == POSITIVE[0] else _tokens(-1.0)
    assert text in NEGATIVE
    if good:
        return _tokens(-2.0, -4.0)
    return _tokens(-1.0) if NEGATIVE.index(text) < 10 else _tokens(-0.25)


def test_the_follow_ups_are_critlabs_own_lists() -> None:
    # understanding, engagingness and instruction following: 10 + 10 + 9 positive, 10 + 10 + 10 negative
    assert (len(POSITIVE), len(NEGATIVE)) == (29, 30)
    assert len(set(POSITIVE)) == 29 and len(set(NEGATIVE)) == 30
    assert POSITIVE[0] == "Got it, that answers my question."
    assert POSITIVE[-1] == "Exactly the output I asked you for."
    assert NEGATIVE[0] == "That doesn't answer what I asked."
    assert NEGATIVE[-1] == "You went against my instructions."
    assert not any(u.startswith(("{#", "#")) for u in [*POSITIVE, *NEGATIVE])  # the source comments are not read


def test_arithmetic_exact() -> None:
    res = METHOD.run(method_input(["4", "five"]), ScriptedEngine(scores=_scores))
    good, bad = res.verdicts
    assert (good.response_id, good.status, bad.response_id, bad.status) == (1, "ok", 2, "ok")
    assert good.value == 2.0  # -1 - (-3)
    assert good.dist == {"positive": -1.0, "negative": -3.0, "follow_ups": 59.0}
    assert bad.value == -1.5  # -2 - (-0.5)
    assert bad.dist == {"positive": -2.0, "negative": -0.5, "follow_ups": 59.0}


def test_every_follow_up_is_teacher_forced_after_the_transcript() -> None:
    eng = ScriptedEngine(scores=_scores)
    inp = method_input(["4", "five"])
    inp.messages.insert(0, {"role": "system", "content": "Be brief."})
    METHOD.run(inp, eng)
    assert [c[0] for c in eng.calls] == ["score_response"] * 118
    assert METHOD.planned_calls(inp).reads == 118
    first = eng.calls[:59]
    assert [c[2] for c in first] == [*POSITIVE, *NEGATIVE]
    assert all(c[1] == first[0][1] for c in first)
    assert first[0][1] == [{"role": "user", "content":
                            "Here is a conversation between a user and an AI assistant.\n\n"
                            "System: Be brief.\n\nUser: What is 2 + 2?\n\nAssistant: 4\n\n"
                            "Write the user's next message in this conversation."}]


def test_context_overflow_fails_that_response_only() -> None:
    eng = ScriptedEngine(scores=_scores)
    res = METHOD.run(method_input(["4", "word " * 3000], context_length=2048), eng)
    assert [v.status for v in res.verdicts] == ["ok", "failed"]
    assert res.verdicts[1].error.startswith("context overflow")
    assert len(eng.calls) == 59


def test_a_follow_up_without_tokens_is_a_failed_verdict() -> None:
    res = METHOD.run(method_input(["4"]), ScriptedEngine(scores=lambda chat, text: []))
    (v,) = res.verdicts
    assert v.status == "failed" and "no tokens for the follow-up" in v.error and v.value is None


@pytest.mark.model
def test_real_model(db, embedded_engine) -> None:
    _, first, again = score_study(db, embedded_engine, "follow_up_likelihood", ["4", "The answer is 5."])
    assert first == 2 and again == 0
    rows = db.fetchdicts("SELECT status, value, dist FROM judgment WHERE method = 'follow_up_likelihood' "
                         "ORDER BY response_id")
    assert [r["status"] for r in rows] == ["ok", "ok"]
    for r in rows:
        dist = json.loads(r["dist"])
        assert dist["follow_ups"] == 59 and dist["positive"] < 0 and dist["negative"] < 0
        assert r["value"] == pytest.approx(dist["positive"] - dist["negative"], abs=1e-12)
