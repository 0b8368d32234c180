"""Generative Self-Aggregation: one new 'aggregate' response written from the N samples."""

from __future__ import annotations

import json
import time

import pytest

from backend.methods.gsa import GSA
from backend.methods.registry import get_method
from storage import judgments, studies
from tests.method_harness import method_input, score_study
from tests.scripted_engine import ScriptedEngine

TEXTS = ["Two plus two is 4.", "It is four, because 2 + 2 = 4.", "The answer is 5."]


def test_class_attributes() -> None:
    m = get_method("gsa")
    assert isinstance(m, GSA) and (m.id, m.version, m.layer) == ("gsa", "1", "response")
    assert (m.compared_with, m.metric_family, m.score_column) == ("best_of_n", "top1", "response_id")
    assert "aggregate" in m.outputs and m.max_tokens == 256


def test_gsa_writes_one_aggregate_from_every_sample() -> None:
    eng = ScriptedEngine(texts=lambda chat, j, params, schema, seed: "  The answer is 4.  ")
    inp = method_input(TEXTS, seed=99, first_id=5)
    result = GSA().run(inp, eng)
    (kind, chats, n, params, schema, seeds), = eng.calls
    assert (kind, n, schema) == ("sample", 1, None)
    assert (params.temperature, params.top_p, params.max_tokens, params.seed) == (0.7, 0.9, 256, 99)
    (chat,) = chats
    prompt = chat[-1]["content"]
    assert "What is 2 + 2?" in prompt
    for i, t in enumerate(TEXTS, start=1):
        assert f"[Response {i}]\n{t}\n[End of Response {i}]" in prompt
    (new,) = result.new_responses
    assert (new.text, new.origin, new.parent_id) == ("The answer is 4.", "aggregate", None)
    assert new.metadata["sources"] == [5, 6, 7] and new.metadata["finish_reason"] == "stop"
    (v,) = result.verdicts
    assert (v.method, v.status, v.response_id, v.label, v.value) == ("gsa", "ok", None, "written", 3.0)


def test_gsa_context_overflow_fails_without_a_response() -> None:
    eng = ScriptedEngine(tokens=lambda chat: 1900)  # + 256 reply tokens > 2048
    result = GSA().run(method_input(TEXTS, context_length=2048), eng)
    assert result.new_responses == [] and eng.calls == []
    (v,) = result.verdicts
    assert v.status == "failed" and v.error.startswith("context overflow: the prompt needs 1900 tokens + 256")


def test_gsa_empty_output_fails() -> None:
    eng = ScriptedEngine(texts=lambda *a: "   ")
    result = GSA().run(method_input(TEXTS), eng)
    assert result.new_responses == [] and result.verdicts[0].status == "failed"


def test_gsa_through_the_service_stores_the_aggregate_once(db) -> None:
    eng = ScriptedEngine(texts=lambda *a: "Aggregate: 4")
    _, first, again = score_study(db, eng, "gsa", TEXTS)
    assert (first, again) == (1, 0)
    rows = db.fetchall("SELECT origin, parent_id, text, metadata FROM response WHERE origin = 'aggregate'")
    assert len(rows) == 1 and rows[0][:3] == ("aggregate", None, "Aggregate: 4")
    assert json.loads(rows[0][3])["method"] == "gsa" and len(json.loads(rows[0][3])["sources"]) == 3


@pytest.mark.model
def test_gsa_on_the_real_model(db, embedded_engine, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(GSA, "max_tokens", 32)
    t0 = time.perf_counter()
    _, first, again = score_study(db, embedded_engine, "gsa", ["2 + 2 = 4. The answer is 4.", "I think it is 5."])
    time.perf_counter() - t0
    (j,) = judgments.current(db, study_id=studies.get_study(db, "m").id, method="gsa")
    assert (first, again, j.status, j.label, j.value) == (1, 0, "ok", "written", 2.0)
    rows = db.fetchall("SELECT text, metadata FROM response WHERE origin = 'aggregate'")
    assert len(rows) == 1 and rows[0][0].strip()
    meta = json.loads(rows[0][1])
    assert meta["finish_reason"] in ("stop", "length") and meta["params"]["max_tokens"] == 32
