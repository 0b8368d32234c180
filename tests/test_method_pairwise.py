"""Pairwise judge with position swap: exact arithmetic on the scripted engine, one small run on the real model."""

from __future__ import annotations

import re

import pytest

from backend.methods.pairwise import (
    CANDIDATES,
    PREFIX,
    PairwiseSwap,
    order_outcome,
    select_pairs,
)
from backend.methods.registry import get_method
from storage import judgments, studies
from storage.db import Database
from tests.method_harness import method_input, score_study
from tests.scripted_engine import ScriptedEngine

_SHOWN = re.compile(r"\[The Start of Assistant A's Answer\]\n(.*)\n\[The End of Assistant A's Answer\]\n\n"
                    r"\[The Start of Assistant B's Answer\]\n(.*)\n\[The End of Assistant B's Answer\]", re.DOTALL)


def shown(chat: list) -> tuple[str, str]:
    """(answer shown as A, answer shown as B) in the chat's last turn."""
    m = _SHOWN.search(chat[-1]["content"])
    assert m, chat[-1]["content"]
    return m.group(1), m.group(2)


def engine(table: dict[tuple[str, str], dict[str, float]], **kw) -> ScriptedEngine:
    return ScriptedEngine(probs=lambda chat, prefix, cands: table[shown(chat)], **kw)


def by(result, first: int, second: int):
    """The verdict of the order (first shown, second shown)."""
    return next(v for v in result.verdicts if v.variant == f"order:{first}-{second}")


def pair(result, lo: int, hi: int):
    """The combined verdict of the pair (lower id, higher id)."""
    return next(v for v in result.verdicts if v.variant is None and (v.response_id, v.response_b_id) == (lo, hi))


def test_registry_and_attributes() -> None:
    m = get_method("pairwise")
    assert isinstance(m, PairwiseSwap) and m.version == "2" and m.layer == "response"
    assert (m.compared_with, m.metric_family, m.score_column) == ("pairwise", "agreement", "label")
    assert "2306.05685" in m.source


def test_win_only_when_both_orders_agree() -> None:
    table = {
        # pair (1, 2): both orders prefer response 1
        ("one", "two"): {"A": 0.6, "B": 0.2, "C": 0.2},
        ("two", "one"): {"A": 0.1, "B": 0.7, "C": 0.2},
        # pair (1, 3): a position-biased judge that always says "A"
        ("one", "three"): {"A": 0.8, "B": 0.1, "C": 0.1},
        ("three", "one"): {"A": 0.8, "B": 0.1, "C": 0.1},
        # pair (2, 3): 3 wins in one order (mass 0.5, renormalised), the other order is a tie
        ("two", "three"): {"A": 0.1, "B": 0.25, "C": 0.15},
        ("three", "two"): {"A": 0.25, "B": 0.25, "C": 0.5},
    }
    result = PairwiseSwap().run(method_input(["one", "two", "three"]), engine(table))
    assert len(result.verdicts) == 3 * 3 and all(v.status == "ok" and v.method == "pairwise" for v in result.verdicts)

    o12, o21, p12 = by(result, 1, 2), by(result, 2, 1), pair(result, 1, 2)
    assert (o12.response_id, o12.response_b_id, o12.shown_order) == (1, 2, [1, 2])
    assert (o21.response_id, o21.response_b_id, o21.shown_order) == (2, 1, [2, 1])
    assert (o12.label, o12.prob, o12.value) == ("1", pytest.approx(0.6), 1.0)
    assert (o21.label, o21.prob, o21.value) == ("1", pytest.approx(0.1), 0.0)
    assert (p12.label, p12.value, p12.prob) == ("1", 1.0, pytest.approx((0.6 + 0.7) / 2))
    assert p12.dist == {"swap_consistent": 1.0, "tie": pytest.approx(0.2)}

    o13, o31, p13 = by(result, 1, 3), by(result, 3, 1), pair(result, 1, 3)
    assert (o13.label, o31.label) == ("1", "3")
    assert (p13.label, p13.value, p13.prob) == ("tie", 0.5, pytest.approx((0.8 + 0.1) / 2))
    assert p13.dist["swap_consistent"] == 0.0

    o23, o32, p23 = by(result, 2, 3), by(result, 3, 2), pair(result, 2, 3)
    assert o23.dist == pytest.approx({"A": 0.2, "B": 0.5, "tie": 0.3, "label_mass": 0.5})
    assert (o23.label, o23.value, o23.prob) == ("3", 0.0, pytest.approx(0.2))
    assert (o32.label, o32.value) == ("tie", 0.5)  # a shared maximum of A and B is no win
    assert (p23.label, p23.value, p23.prob) == ("tie", 0.5, pytest.approx((0.2 + 0.25) / 2))
    assert p23.dist == {"swap_consistent": 0.0, "tie": pytest.approx((0.3 + 0.5) / 2)}


def test_both_orders_agreeing_on_the_higher_id() -> None:
    table = {("one", "two"): {"A": 0.1, "B": 0.6, "C": 0.1}, ("two", "one"): {"A": 0.5, "B": 0.3, "C": 0.2}}
    p = pair(PairwiseSwap().run(method_input(["one", "two"]), engine(table)), 1, 2)
    assert (p.label, p.value, p.prob) == ("2", 0.0, pytest.approx((0.125 + 0.3) / 2))
    assert p.dist["swap_consistent"] == 1.0


def test_one_batched_call_holds_both_orders_of_every_pair() -> None:
    texts = ["one", "two", "three"]
    eng = ScriptedEngine()  # uniform probabilities: every order a tie
    result = PairwiseSwap().run(method_input(texts), eng)
    assert len(eng.calls) == 1
    kind, chats, prefix, candidates = eng.calls[0]
    assert (kind, prefix, candidates) == ("next_token_probs", PREFIX, CANDIDATES) == (kind, "[[", ["A", "B", "C"])
    assert [shown(c) for c in chats] == [("one", "two"), ("two", "one"), ("one", "three"), ("three", "one"),
                                         ("two", "three"), ("three", "two")]
    chat = chats[0]
    assert [m["role"] for m in chat] == ["system", "user", "assistant", "user", "assistant", "user"]
    assert [m["content"] for m in chat if m["role"] == "assistant"] == ["[[A]]", "[[B]]"]
    assert '"[[C]]" for a tie' in chat[0]["content"]
    assert chat[-1]["content"].startswith("[User Question]\nWhat is 2 + 2?\n\n[The Start of Assistant A's Answer]")
    assert all(v.label == "tie" and v.value == 0.5 for v in result.verdicts)
    assert all(pair(result, lo, hi).dist["swap_consistent"] == 1.0 for lo, hi in ((1, 2), (1, 3), (2, 3)))


def test_all_pairs_up_to_four_responses() -> None:
    eng = ScriptedEngine()
    result = PairwiseSwap().run(method_input(["a", "b", "c", "d"], first_id=10), eng)
    pairs = [(v.response_id, v.response_b_id) for v in result.verdicts if v.variant is None]
    assert pairs == [(10, 11), (10, 12), (10, 13), (11, 12), (11, 13), (12, 13)]
    assert len(eng.calls[0][1]) == 12


def test_pair_subset_above_four_is_seeded_and_stable() -> None:
    ids = list(range(1, 8))
    chosen = select_pairs(ids, seed=123)
    assert chosen == select_pairs(list(reversed(ids)), seed=123)  # stable: the input order does not matter
    assert len(chosen) == 7 and all(lo < hi for lo, hi in chosen)
    assert sorted(x for p in chosen for x in p) == sorted(ids * 2)  # every response compared exactly twice
    assert any(select_pairs(ids, seed=s) != chosen for s in range(5))  # the seed decides
    texts = [f"r{i}" for i in ids]
    eng = ScriptedEngine()
    result = PairwiseSwap().run(method_input(texts, seed=123), eng)
    assert [(v.response_id, v.response_b_id) for v in result.verdicts if v.variant is None] == chosen
    assert len(eng.calls) == 1 and len(eng.calls[0][1]) == 14
    again = PairwiseSwap().run(method_input(texts, seed=123), ScriptedEngine())
    assert again == result


def test_context_overflow_fails_only_that_responses_pairs() -> None:
    long = "word " * 4000
    eng = ScriptedEngine()
    result = PairwiseSwap().run(method_input(["one", "two", long]), eng)
    assert len(eng.calls[0][1]) == 2  # only pair (1, 2) was asked
    assert pair(result, 1, 2).status == "ok"
    for lo, hi in ((1, 3), (2, 3)):
        assert by(result, lo, hi).status == by(result, hi, lo).status == "failed"
        assert by(result, lo, hi).error.startswith("context overflow")
        p = pair(result, lo, hi)
        assert p.status == "failed" and "context overflow" in p.error and (p.response_id, p.response_b_id) == (lo, hi)


def test_no_probability_on_the_verdict_tokens_fails() -> None:
    table = {("one", "two"): {"A": 0.0, "B": 0.0, "C": 0.0}, ("two", "one"): {"A": 0.5, "B": 0.1, "C": 0.1}}
    result = PairwiseSwap().run(method_input(["one", "two"]), engine(table))
    assert by(result, 1, 2).status == "failed" and "no probability" in by(result, 1, 2).error
    assert by(result, 2, 1).status == "ok" and by(result, 2, 1).label == "2"
    assert pair(result, 1, 2).status == "failed"


def test_fewer_than_two_responses_asks_nothing() -> None:
    eng = ScriptedEngine()
    assert PairwiseSwap().run(method_input(["only"]), eng).verdicts == [] and eng.calls == []


def test_order_outcome_clamps_and_normalises() -> None:
    dist, winner = order_outcome({"A": 0.2, "B": -0.1, "C": 0.2})  # a negative probability counts as 0
    assert winner == "tie" and dist == pytest.approx({"A": 0.5, "B": 0.0, "tie": 0.5, "label_mass": 0.4})


def test_service_stores_order_and_pair_rows(db: Database) -> None:
    table = {("one", "two"): {"A": 0.6, "B": 0.2, "C": 0.2}, ("two", "one"): {"A": 0.1, "B": 0.7, "C": 0.2}}
    _, first, again = score_study(db, engine(table), "pairwise", ["one", "two"])
    assert (first, again) == (3, 0)
    rows = judgments.all_rows(db, study_id=studies.get_study(db, "m").id)
    a, b = sorted({r.response_id for r in rows})
    assert sorted(r.target_key for r in rows) == [f"pair:{a}-{b}", f"pair:{a}-{b}#order:{a}-{b}",
                                                  f"pair:{a}-{b}#order:{b}-{a}"]
    combined = next(r for r in rows if r.variant is None)
    assert (combined.label, combined.value, combined.dist["swap_consistent"]) == (str(a), 1.0, 1.0)


@pytest.mark.model
def test_real_model_pairwise(db: Database, embedded_engine) -> None:
    _, first, again = score_study(db, embedded_engine, "pairwise", ["4", "2 + 2 = 5"])
    assert (first, again) == (3, 0)
    rows = judgments.all_rows(db, study_id=studies.get_study(db, "m").id)
    a, b = sorted({r.response_id for r in rows})
    assert all(r.status == "ok" for r in rows)
    for r in rows:
        assert 0.0 <= r.prob <= 1.0 and r.value in (0.0, 0.5, 1.0) and r.label in (str(a), str(b), "tie")
        if r.variant:
            assert sum(r.dist[k] for k in ("A", "B", "tie")) == pytest.approx(1.0)
            assert 0.0 < r.dist["label_mass"] <= 1.0 + 1e-6
        else:
            assert (r.response_id, r.response_b_id) == (a, b) and r.dist["swap_consistent"] in (0.0, 1.0)
