"""TICK checklist method: exact arithmetic on the scripted engine, request shapes, failures, one real run."""

from __future__ import annotations

import json

import pytest

from backend.engines.base import Sample
from backend.methods.base import ChecklistItemInput
from backend.methods.checklist import QUESTIONS_SCHEMA, ChecklistMethod, clean_questions, salvage_truncated
from tests.method_harness import method_input, score_study
from tests.scripted_engine import ScriptedEngine

QUESTIONS = ["Is the answer a number?", "Is the answer 4?", "Is the answer short?"]
# P(Yes), P(No) per question: p_yes 0.9 / 0.4 / 0.6 with label masses 0.5 / 1.0 / 0.25
PROBS = {QUESTIONS[0]: (0.45, 0.05), QUESTIONS[1]: (0.4, 0.6), QUESTIONS[2]: (0.15, 0.1)}


def _question_of(chat: list[dict]) -> str:
    return chat[-1]["content"].split("Question: ")[1].split("\n")[0]


def _probs(chat, prefix, candidates):
    yes, no = PROBS[_question_of(chat)]
    return {"Yes": yes, "No": no}


def _writer(*texts: str):
    """A texts callable returning the given generations in turn (the last one repeats)."""
    seen: list[int] = []

    def texts_fn(chat, j, params, schema, seed):
        seen.append(seed)
        return texts[min(len(seen), len(texts)) - 1]
    return texts_fn


def _json(questions: list[str]) -> str:
    return json.dumps({"questions": questions})


def test_writes_a_checklist_and_computes_pass_rate_exactly():
    eng = ScriptedEngine(texts=_writer(_json(QUESTIONS)), probs=_probs)
    inp = method_input(["4", "five"], question="What is 2 + 2?", seed=17)
    res = ChecklistMethod().run(inp, eng)

    assert res.checklist == QUESTIONS
    items = [v for v in res.verdicts if v.method == "checklist_item"]
    per_response = [v for v in res.verdicts if v.method == "checklist"]
    assert [(v.response_id, v.checklist_item) for v in items] == [(r, k) for r in (1, 2) for k in range(3)]
    first = items[:3]
    assert [v.prob for v in first] == pytest.approx([0.9, 0.4, 0.6], abs=1e-15)
    assert [v.label for v in first] == ["YES", "NO", "YES"]
    assert first[0].dist == pytest.approx({"YES": 0.9, "NO": 0.1, "label_mass": 0.5}, abs=1e-15)
    assert first[2].dist == pytest.approx({"YES": 0.6, "NO": 0.4, "label_mass": 0.25}, abs=1e-15)
    assert [v.response_id for v in per_response] == [1, 2]
    for v in per_response:
        assert v.status == "ok"
        assert v.value == 2 / 3  # 0.9 and 0.6 pass, 0.4 does not
        assert v.prob == pytest.approx((0.9 + 0.4 + 0.6) / 3, abs=1e-15)


def test_request_shapes_one_sample_with_schema_and_worked_example_then_one_batched_read():
    eng = ScriptedEngine(texts=_writer(_json(QUESTIONS)), probs=_probs)
    inp = method_input(["4", "five"], question="What is 2 + 2?", seed=17)
    ChecklistMethod().run(inp, eng)

    samples = [c for c in eng.calls if c[0] == "sample"]
    reads = [c for c in eng.calls if c[0] == "next_token_probs"]
    assert len(samples) == 1 and len(reads) == 1
    _, chats, n, params, schema, seeds = samples[0]
    assert n == 1 and schema == QUESTIONS_SCHEMA and seeds == [[17]] and params.seed == 17
    assert params.max_tokens == ChecklistMethod.max_new_tokens and params.temperature == 0.7
    (chat,) = chats
    # few-shot: the worked example is a previous user/assistant exchange, the target comes last
    assert [m["role"] for m in chat] == ["user", "assistant", "user"]
    assert "landlord" in chat[0]["content"] and "YES/NO" in chat[0]["content"]
    example = json.loads(chat[1]["content"])["questions"]
    assert 3 <= len(example) <= 10 and clean_questions(example) == example
    assert chat[2]["content"].endswith("Instruction:\nWhat is 2 + 2?")

    _, chats, prefix, candidates = reads[0]
    assert prefix == "Answer:" and candidates == ["Yes", "No"]
    assert len(chats) == 6  # 2 responses x 3 items, response-major (shared prefixes are adjacent)
    assert [_question_of(c) for c in chats] == QUESTIONS * 2
    body = chats[4][0]["content"]
    assert "Instruction:\nWhat is 2 + 2?" in body and "Response:\nfive" in body
    assert body.endswith("Question: Is the answer 4?\nAnswer Yes or No.")


def test_questions_are_cleaned():
    raw = ["  Is the answer 4? ", "is the answer  4?", "", "   ", "Why?", "Is it short?", "Is it polite?"]
    eng = ScriptedEngine(texts=_writer(_json(raw)), probs=lambda *a: {"Yes": 0.5, "No": 0.25})
    res = ChecklistMethod().run(method_input(["4"]), eng)
    assert res.checklist == ["Is the answer 4?", "Is it short?", "Is it polite?"]
    assert len([c for c in eng.calls if c[0] == "sample"]) == 1
    assert [v.value for v in res.verdicts if v.method == "checklist"] == [1.0]


def test_too_few_questions_retries_once_with_the_next_seed():
    dupes = _json(["Is it 4?", "Is it 4?", "is it 4?"])
    eng = ScriptedEngine(texts=_writer(dupes, _json(QUESTIONS)), probs=_probs)
    res = ChecklistMethod().run(method_input(["4"], seed=41), eng)
    assert [c[5] for c in eng.calls if c[0] == "sample"] == [[[41]], [[42]]]
    assert res.checklist == QUESTIONS
    assert all(v.status == "ok" for v in res.verdicts)


def test_unparseable_twice_gives_failed_verdicts_with_the_raw_text():
    eng = ScriptedEngine(texts=_writer("Sure! Here is a checklist: 1. Is it good?", "x" * 1000))
    res = ChecklistMethod().run(method_input(["4", "5"], seed=3), eng)
    assert res.checklist is None
    assert [(v.method, v.response_id, v.status) for v in res.verdicts] == [("checklist", 1, "failed"),
                                                                          ("checklist", 2, "failed")]
    err = res.verdicts[0].error
    assert "failed twice" in err and "seed 3" in err and "seed 4" in err
    assert "Sure! Here is a checklist" in err and "json_invalid" in err
    assert len(err) < 1000  # the raw text is truncated
    assert not [c for c in eng.calls if c[0] == "next_token_probs"]


def test_valid_json_with_too_few_usable_questions_fails_after_retry():
    eng = ScriptedEngine(texts=_writer(_json(["Is it 4?", "ok", "Is it 4?"])))
    res = ChecklistMethod().run(method_input(["4"]), eng)
    assert res.verdicts[0].status == "failed"
    assert "only 1 usable distinct question" in res.verdicts[0].error


def test_truncated_generation_keeps_the_complete_questions():
    cut = '{"questions": ["Is it 4?", "Is it short?", "Is it a number?", "Is it pol'
    questions, problem = ChecklistMethod.parse(Sample(text=cut, finish_reason="length"))
    assert questions == ["Is it 4?", "Is it short?", "Is it a number?"] and problem == ""
    questions, problem = ChecklistMethod.parse(Sample(text=cut, finish_reason="stop"))
    assert questions is None and "not a JSON checklist" in problem
    assert salvage_truncated('{"questions": [') is None


def test_a_cut_off_checklist_with_a_raw_control_character_is_a_parse_failure_not_a_crash():
    # Written by a tiny random-weight GGUF under llama-cpp-python's JSON grammar (tests/test_gguf_models.py).
    cut = '{"questions": ["H\x1f is it?", "Is it 4?", "Is it pol'
    questions, problem = ChecklistMethod.parse(Sample(text=cut, finish_reason="length"))
    assert questions is None and "not a JSON checklist" in problem


def test_a_stored_checklist_is_reused():
    eng = ScriptedEngine(probs=_probs)
    stored = [ChecklistItemInput(id=70 + k, question=q) for k, q in enumerate(QUESTIONS)]
    res = ChecklistMethod().run(method_input(["4"], checklist=stored), eng)
    assert res.checklist is None
    assert not [c for c in eng.calls if c[0] == "sample"]
    assert [v.checklist_item for v in res.verdicts if v.method == "checklist_item"] == [0, 1, 2]
    assert res.verdicts[-1].value == 2 / 3


def test_context_overflow_fails_only_what_does_not_fit():
    long_text = "word " * 3000
    eng = ScriptedEngine(texts=_writer(_json(QUESTIONS)), probs=_probs)
    res = ChecklistMethod().run(method_input(["4", long_text], context_length=2048), eng)
    by = {(v.method, v.response_id, v.checklist_item): v for v in res.verdicts}
    assert by[("checklist", 1, None)].status == "ok"
    failed = by[("checklist", 2, None)]
    assert failed.status == "failed" and "3 of 3 items" in failed.error and "context overflow" in failed.error
    assert all(by[("checklist_item", 2, k)].status == "failed" for k in range(3))
    (read,) = [c for c in eng.calls if c[0] == "next_token_probs"]
    assert len(read[1]) == 3  # only the first response's chats were sent


def test_generation_prompt_overflow_fails_every_response():
    eng = ScriptedEngine(tokens=lambda chat: 5000)
    res = ChecklistMethod().run(method_input(["4", "5"]), eng)
    assert [v.status for v in res.verdicts] == ["failed", "failed"]
    assert res.verdicts[0].error.startswith("checklist generation: context overflow")
    assert not [c for c in eng.calls if c[0] in ("sample", "next_token_probs")]


def test_no_label_mass_fails_the_item_and_the_response():
    eng = ScriptedEngine(texts=_writer(_json(QUESTIONS)), probs=lambda *a: {"Yes": 0.0, "No": 0.0})
    res = ChecklistMethod().run(method_input(["4"]), eng)
    assert all(v.status == "failed" for v in res.verdicts)
    assert "no probability on Yes/No" in res.verdicts[0].error


@pytest.mark.model
def test_real_model_checklist(db, embedded_engine, monkeypatch):
    monkeypatch.setattr(ChecklistMethod, "max_new_tokens", 120)  # keep the real run short
    _, first, again = score_study(db, embedded_engine, "checklist", ["4", "The answer is 5."])
    assert first > 0 and again == 0
    rows = db.fetchdicts("SELECT method, status, value, prob, label, checklist_item_id, error FROM judgment")
    assert len(rows) == first
    assert all(r["status"] == "ok" for r in rows), rows
    n_items = db.fetchval("SELECT count(*) FROM checklist_item")
    assert 3 <= n_items <= 10
    per_response = [r for r in rows if r["method"] == "checklist"]
    items = [r for r in rows if r["method"] == "checklist_item"]
    assert len(per_response) == 2 and len(items) == 2 * n_items
    assert all(0 <= r["value"] <= 1 and 0 <= r["prob"] <= 1 for r in per_response)
    assert all(0 <= r["prob"] <= 1 and r["label"] in ("YES", "NO") and r["checklist_item_id"] for r in items)
