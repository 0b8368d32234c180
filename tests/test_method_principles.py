"""Principles-then-critique (DeepSeek-GRM): exact sums, shuffled orders, subset sums, failures, one real run."""

from __future__ import annotations

import json

import pytest

from backend.methods.principles import PrinciplesCritique, reply_schema
from backend.methods.sampling import derive_seed
from storage import judgments, studies
from storage.db import Database
from tests.method_harness import method_input, score_study
from tests.scripted_engine import ScriptedEngine

SEED = 17
TEXTS = ["4", "five", "22"]
# score of each response text in sample j; sums 16, 7, 3 (means 8, 3.5, 1.5)
SCORES = [{"4": 9, "five": 3, "22": 1}, {"4": 7, "five": 4, "22": 2}, {"4": 1, "five": 1, "22": 1},
          {"4": 10, "five": 10, "22": 10}]


def _inp():
    return method_input(TEXTS, seed=SEED)


def _shown(chat) -> list[str]:
    body = chat[0]["content"]
    return [body.split(f"[Response {i}]\n")[1].split("\n[End of")[0] for i in range(1, body.count("[Response ") + 1)]


def _engine(bad: dict[int, str] | None = None) -> ScriptedEngine:
    """Scores in shown order; sample j is told apart by its seed. `bad[seed]` replaces that reply."""
    sample_of = {derive_seed(SEED, "sample", j, 0): j for j in range(4)}

    def texts(chat, _j, params, schema, seed):
        if bad and seed in bad:
            return bad[seed]
        scores = SCORES[sample_of[seed]]
        return json.dumps({"principles": f"P{sample_of[seed]}", "critique": "C",
                           "scores": [scores[t] for t in _shown(chat)]})
    return ScriptedEngine(texts=texts)


def test_sums_per_response_and_per_sample_rows() -> None:
    method = PrinciplesCritique()
    inp = _inp()
    res = method.run(inp, _engine())
    agg = {v.response_id: v for v in res.verdicts if v.variant is None}
    assert {i: v.value for i, v in agg.items()} == {1: 16.0, 2: 7.0, 3: 3.0}
    assert agg[2].dist == {"k": 2.0, "failed": 0.0, "mean": 3.5}
    per = {(v.response_id, v.variant): v for v in res.verdicts if v.variant}
    assert {k: v.value for k, v in per.items()} == {(1, "s0"): 9.0, (1, "s1"): 7.0, (2, "s0"): 3.0,
                                                     (2, "s1"): 4.0, (3, "s0"): 1.0, (3, "s1"): 2.0}
    assert per[(1, "s0")].shown_order == method.order(inp, 0)
    assert per[(1, "s1")].shown_order == method.order(inp, 1)
    assert per[(3, "s1")].rationale == "Principles: P1\nCritique: C"
    assert len(res.verdicts) == 9 and all(v.status == "ok" for v in res.verdicts)


def test_each_sample_shows_its_own_order_and_asks_for_exactly_n_scores() -> None:
    method = PrinciplesCritique()
    inp = _inp()
    eng = _engine()
    method.run(inp, eng)
    (call,) = eng.calls
    _, chats, n, params, schema, seeds = call
    assert n == 1 and len(chats) == 2 and params.max_tokens == 512 and params.temperature == 0.7
    assert seeds == [[derive_seed(SEED, "sample", 0, 0)], [derive_seed(SEED, "sample", 1, 0)]]
    assert schema == reply_schema(3) and schema["properties"]["scores"]["minItems"] == 3 == \
        schema["properties"]["scores"]["maxItems"]
    by_id = dict(zip([1, 2, 3], TEXTS))
    orders = [method.order(inp, j) for j in range(2)]
    assert [_shown(c) for c in chats] == [[by_id[i] for i in o] for o in orders]
    assert sorted(orders[0]) == [1, 2, 3]
    assert len({tuple(method.order(inp, j)) for j in range(8)}) > 1  # shuffled, not fixed
    assert chats[0][0]["content"].startswith("You are judging 3 responses to a user's question.\n\nQuestion:\n"
                                             "What is 2 + 2?\n\n[Response 1]\n")
    assert chats[0][0]["content"].endswith('"scores": [score of Response 1, score of Response 2, '
                                           'score of Response 3]}')


def test_the_first_m_samples_of_a_larger_k_are_the_k_m_run() -> None:
    inp = _inp()
    small = PrinciplesCritique(samples=2).run(inp, _engine())
    big = PrinciplesCritique(samples=4).run(inp, _engine())
    rows = lambda res, keep: {(v.response_id, v.variant): (v.value, v.shown_order)  # noqa: E731
                              for v in res.verdicts if v.variant in keep}
    assert rows(big, {"s0", "s1"}) == rows(small, {"s0", "s1"})
    # subset sum of s0, s1 of the k=4 run = the k=2 score
    subset = {r: sum(v.value for v in big.verdicts if v.response_id == r and v.variant in ("s0", "s1"))
              for r in (1, 2, 3)}
    assert subset == {v.response_id: v.value for v in small.verdicts if v.variant is None}
    assert {v.response_id: v.value for v in big.verdicts if v.variant is None} == {1: 27.0, 2: 18.0, 3: 14.0}


def test_an_unparseable_sample_is_retried_then_left_out_of_the_sum() -> None:
    bad = {derive_seed(SEED, "sample", 1, 0): "no json", derive_seed(SEED, "sample", 1, 1): '{"scores": [1]}'}
    eng = _engine(bad)
    res = PrinciplesCritique().run(_inp(), eng)
    assert [c[0] for c in eng.calls] == ["sample", "sample"]  # the retry: one more generation
    agg = {v.response_id: v for v in res.verdicts if v.variant is None}
    assert {i: v.value for i, v in agg.items()} == {1: 9.0, 2: 3.0, 3: 1.0}
    assert agg[1].dist == {"k": 1.0, "failed": 1.0, "mean": 9.0}
    failed = [v for v in res.verdicts if v.variant == "s1"]
    assert len(failed) == 3 and all(v.status == "failed" and "1 scores for 3 responses" in v.error for v in failed)


def test_all_samples_failed_is_a_failed_aggregate() -> None:
    bad = {derive_seed(SEED, "sample", j, a): '{"principles": "", "critique": "", "scores": [0, 1, 2]}'
           for j in range(2) for a in range(2)}
    res = PrinciplesCritique().run(_inp(), _engine(bad))
    assert all(v.status == "failed" for v in res.verdicts)
    agg = [v for v in res.verdicts if v.variant is None]
    assert len(agg) == 3 and "all 2 samples failed" in agg[0].error and "outside 1-10" in agg[0].error


def test_context_overflow_fails_every_row_without_a_call() -> None:
    eng = _engine()
    res = PrinciplesCritique().run(method_input(["4", "word " * 3000], context_length=2048), eng)
    assert eng.calls == [] and len(res.verdicts) == 6
    assert all(v.status == "failed" and v.error.startswith("context overflow") for v in res.verdicts)


@pytest.mark.model
def test_real_model(db: Database, embedded_engine, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(PrinciplesCritique, "max_tokens", 32)
    _, first, again = score_study(db, embedded_engine, "principles_critique", ["4", "2 + 2 = 5"])
    assert (first, again) == (6, 0)
    rows = judgments.all_rows(db, study_id=studies.get_study(db, "m").id)
    assert sorted(r.variant or "" for r in rows) == ["", "", "s0", "s0", "s1", "s1"]
    for r in rows:
        if r.status == "ok":
            assert (1 <= r.value <= 10) if r.variant else (1 <= r.value <= 20)
        else:
            assert r.error
