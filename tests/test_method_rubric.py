"""Additive 5-point rubric: exact arithmetic on the scripted engine, one small run on the real model."""

from __future__ import annotations

import json

import pytest

from backend.methods.sampling import derive_seed
from backend.methods.registry import get_method
from backend.methods.rubric import (
    REPLY_SCHEMA,
    AdditiveRubric,
    RubricReply,
    parse_reply,
)
from storage import judgments, studies
from storage.db import Database
from tests.method_harness import method_input, score_study
from tests.scripted_engine import ScriptedEngine

SEED = 5


def reply(score: object, why: str = "fine") -> str:
    return json.dumps({"justification": why, "score": score})


def scored(chat: list) -> str:
    """The response text a rubric chat is about."""
    return chat[-1]["content"].split("<response>", 1)[1].removesuffix("</response>")


def run(texts: list[str], table: dict[str, list[str]], method: AdditiveRubric | None = None, **kw):
    """Sample j of response text t is table[t][j]; its retry is table[t][3 + j]."""
    retry = {derive_seed(SEED, rid, j, 1): 3 + j for rid in range(1, len(texts) + 1) for j in range(3)}
    eng = ScriptedEngine(texts=lambda chat, j, params, schema, seed: table[scored(chat)][retry.get(seed, j)], **kw)
    return eng, (method or AdditiveRubric()).run(method_input(texts, seed=SEED), eng)


def by(result, rid: int, variant: str | None):
    return next(v for v in result.verdicts if v.response_id == rid and v.variant == variant)


def test_registry_and_attributes() -> None:
    m = get_method("rubric")
    assert isinstance(m, AdditiveRubric) and m.version == "1" and m.layer == "response"
    assert (m.compared_with, m.metric_family, m.score_column) == ("likert", "rank", "value")
    assert "2401.10020" in m.source and "0–5" in m.outputs


def test_mean_over_samples_excludes_a_failed_sample() -> None:
    table = {
        "4": [reply(4, "relevant and direct"), reply(5), "no score here", "", "", "still nothing"],
        "5": [reply(1), "It tries.\nScore: 2", reply(2)],  # the "Score: N" line is accepted too
    }
    eng, result = run(["4", "5"], table)
    a1, a2 = by(result, 1, None), by(result, 2, None)
    assert (a1.status, a1.value, a1.dist) == ("ok", 4.5, {"n": 2.0, "failed": 1.0})
    assert (a2.status, a2.value, a2.dist) == ("ok", 5 / 3, {"n": 3.0, "failed": 0.0})
    assert [by(result, 1, f"s{j}").value for j in range(2)] == [4.0, 5.0]
    assert by(result, 1, "s0").rationale == "relevant and direct"
    assert by(result, 2, "s1").value == 2.0 and by(result, 2, "s1").rationale == "It tries."
    failed = by(result, 1, "s2")
    assert failed.status == "failed" and failed.value is None
    assert "after 2 attempts" in failed.error and "'still nothing'" in failed.error
    assert [(v.response_id, v.variant) for v in result.verdicts] == [
        (1, "s0"), (1, "s1"), (1, "s2"), (1, None), (2, "s0"), (2, "s1"), (2, "s2"), (2, None)]
    # One retry, batched, for the one bad sample only.
    assert len(eng.calls) == 2 and eng.calls[1][2] == 1 and eng.calls[1][5] == [[derive_seed(SEED, 1, 2, 1)]]


def test_retry_can_rescue_a_sample() -> None:
    _, result = run(["4"], {"4": ["garbage", reply(3), reply(3), reply(1)]})
    assert [by(result, 1, f"s{j}").value for j in range(3)] == [1.0, 3.0, 3.0]
    assert by(result, 1, None).value == 7 / 3


def test_out_of_range_scores_fail_and_all_failed_gives_a_failed_aggregate() -> None:
    _, result = run(["4"], {"4": [reply(7), "Score: 9", reply(-1), reply(6), reply(2.5), "Score: 11"]})
    assert all(v.status == "failed" for v in result.verdicts)
    assert "score" in by(result, 1, "s0").error
    assert by(result, 1, None).error.startswith("all 3 rubric samples failed")


def test_request_shape_schema_seeds_and_few_shot() -> None:
    eng, _ = run(["4", "5"], {"4": [reply(3)] * 3, "5": [reply(2)] * 3})
    assert len(eng.calls) == 1
    kind, chats, n, params, schema, seeds = eng.calls[0]
    assert (kind, n, schema, params.temperature, params.max_tokens) == ("sample", 3, REPLY_SCHEMA, 0.7, 256)
    assert seeds == [[derive_seed(SEED, rid, j, 0) for j in range(3)] for rid in (1, 2)]
    assert len({s for row in seeds for s in row}) == 6
    chat = chats[0]
    assert [m["role"] for m in chat] == ["system", "user", "assistant", "user", "assistant", "user"]
    assert "additive 5-point scoring system" in chat[0]["content"] and "up to 100 words" in chat[0]["content"]
    assert '"score"' in chat[0]["content"] and "Score: <total points>" not in chat[0]["content"]
    assert [json.loads(m["content"])["score"] for m in chat if m["role"] == "assistant"] == [1, 5]
    assert chat[-1]["content"] == "User: What is 2 + 2?\n<response>4</response>"


def test_unconstrained_mode_asks_for_the_score_line() -> None:
    eng, result = run(["4"], {"4": ["Good.\nScore: 4", "Score: 3", "Fine\n**Score:** 5"]},
                      method=AdditiveRubric(constrained=False))
    chat = eng.calls[0][1][0]
    assert eng.calls[0][4] is None
    assert "Score: <total points>" in chat[0]["content"] and "JSON" not in chat[0]["content"]
    assert chat[2]["content"].endswith("\nScore: 1")
    assert [by(result, 1, f"s{j}").value for j in range(3)] == [4.0, 3.0, 5.0]
    assert by(result, 1, None).value == 4.0


def test_context_overflow_gives_failed_verdicts() -> None:
    long = "word " * 4000
    eng, result = run(["4", long], {"4": [reply(3)] * 3})
    over = [v for v in result.verdicts if v.response_id == 2]
    assert len(over) == 4 and all(v.status == "failed" and v.error.startswith("context overflow") for v in over)
    assert by(result, 1, None).value == 3.0
    assert len(eng.calls[0][1]) == 1


def test_parse_reply_variants() -> None:
    assert parse_reply('```json\n{"justification": "ok", "score": "3"}\n```')[0] == RubricReply(
        justification="ok", score=3)
    reply_, cut = parse_reply('{"justification": "ok", "score": 4', "length")
    assert (reply_.score, cut) == (4, True)
    with pytest.raises(ValueError):
        parse_reply('{"justification": "ok", "score": 4.5}')


def test_service_stores_and_rerun_adds_nothing(db: Database) -> None:
    table = {"a": [reply(3)] * 3, "b": [reply(1), reply(2), "x", "y"]}  # b's third sample and its retry fail
    served = {"a": 0, "b": 0}

    def texts(chat, j, params, schema, seed):
        t = scored(chat)
        served[t] += 1
        return table[t][served[t] - 1]

    eng = ScriptedEngine(texts=texts)
    _, first, again = score_study(db, eng, "rubric", ["a", "b"])
    assert (first, again) == (8, 0)
    rows = judgments.all_rows(db, study_id=studies.get_study(db, "m").id)
    agg = {r.response_id: r for r in rows if r.variant is None}
    assert sorted((r.value, r.status) for r in agg.values()) == [(1.5, "ok"), (3.0, "ok")]
    assert sum(r.status == "failed" for r in rows) == 1


@pytest.mark.model
def test_real_model_rubric(db: Database, embedded_engine, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(AdditiveRubric, "max_tokens", 32)
    _, first, again = score_study(db, embedded_engine, "rubric", ["4", "2 + 2 = 5"])
    assert (first, again) == (8, 0)
    rows = judgments.all_rows(db, study_id=studies.get_study(db, "m").id)
    assert sorted(r.variant or "" for r in rows) == ["", "", "s0", "s0", "s1", "s1", "s2", "s2"]
    for r in rows:
        if r.status == "ok":
            assert 0.0 <= r.value <= 5.0
            if r.variant:
                assert r.value == int(r.value)
        else:
            assert r.error
