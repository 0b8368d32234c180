"""Critique → verdict → correction: exact arithmetic on the scripted engine, one small run on the real model."""

from __future__ import annotations

import json

import pytest

from backend.engines.base import EngineError, Sample
from backend.methods.base import MethodInput
from backend.methods.critique import REPLY_SCHEMA, Critique, CritiqueReply
from backend.methods.sampling import derive_seed
from backend.methods.registry import get_method
from storage import judgments, responses, studies
from storage.db import Database
from tests.method_harness import method_input, score_study
from tests.scripted_engine import ScriptedEngine


def reply(verdict: str, fix: str = "", critique: str = "checked", first_error: str = "none") -> str:
    return json.dumps({"critique": critique, "verdict": verdict, "first_error": first_error,
                       "corrected_response": fix})


def checked(chat: list) -> str:
    """The response text a critique chat is about."""
    return chat[-1]["content"].split("## Response\n", 1)[1]


def scripted(table: dict[str, list[str]], **kw) -> ScriptedEngine:
    """Sample j of the critique of response text t is table[t][j] (retries: table[t][k + j])."""
    seeds: dict[int, int] = {}

    def texts(chat, j, params, schema, seed):
        return table[checked(chat)][seeds.get(seed, j)]

    eng = ScriptedEngine(texts=texts, **kw)
    eng.retry_seeds = seeds  # type: ignore[attr-defined]  # filled by tests that script retries
    return eng


def run(texts: list[str], table: dict[str, list[str]], **kw) -> tuple[MethodInput, ScriptedEngine, object]:
    inp = method_input(texts, seed=11)
    eng = scripted(table, **kw)
    for rid, t in enumerate(texts, start=1):  # a retry of sample j reads table[t][2 + j]
        for j in range(2):
            eng.retry_seeds[derive_seed(11, rid, j, 1)] = 2 + j  # type: ignore[attr-defined]
    return inp, eng, Critique().run(inp, eng)


def by(result, rid: int, variant: str | None):
    return next(v for v in result.verdicts if v.response_id == rid and v.variant == variant)


def test_registry_and_attributes() -> None:
    m = get_method("critique")
    assert isinstance(m, Critique) and m.version == "1" and m.layer == "response"
    assert (m.compared_with, m.metric_family, m.score_column) == ("correct", "calibration", "value")
    assert "2310.04815" in m.source and "2501.14492" in m.source and m.outputs and m.cost and m.title


def test_aggregate_share_majority_and_revisions_only_for_changed_incorrect() -> None:
    table = {
        "4": [reply("correct", "4"), reply("correct", "4")],
        "5": [reply("incorrect", "4", critique="2 + 2 is 4", first_error="5"), reply("correct", "5")],
        "22": [reply("incorrect", "22"), reply("incorrect", "")],  # unchanged / empty corrections
        "3": [reply("incorrect", "4"), reply("incorrect", " 4 ")],  # the same correction twice
    }
    _, _, result = run(["4", "5", "22", "3"], table)
    agg = {rid: by(result, rid, None) for rid in (1, 2, 3, 4)}
    assert [(agg[r].value, agg[r].label) for r in (1, 2, 3, 4)] == [
        (1.0, "correct"), (0.5, "split"), (0.0, "incorrect"), (0.0, "incorrect")]
    assert agg[2].dist == {"correct": 1.0, "incorrect": 1.0, "failed": 0.0}
    s0 = by(result, 2, "s0")
    assert (s0.value, s0.label, s0.rationale) == (0.0, "incorrect", "2 + 2 is 4\nFirst error: 5")
    assert (by(result, 2, "s1").value, by(result, 2, "s1").label) == (1.0, "correct")
    assert [(n.parent_id, n.text, n.origin, n.metadata["variant"]) for n in result.new_responses] == [
        (2, "4", "revision", "s0"), (4, "4", "revision", "s0")]
    assert len(result.verdicts) == 4 * 3 and all(v.method == "critique" and v.status == "ok" for v in result.verdicts)


def test_request_shape_schema_seeds_and_few_shot() -> None:
    _, eng, _ = run(["4", "5"], {"4": [reply("correct")] * 2, "5": [reply("incorrect")] * 2})
    assert len(eng.calls) == 1  # nothing to retry
    kind, chats, n, params, schema, seeds = eng.calls[0]
    assert (kind, n, schema, params.temperature, params.max_tokens) == ("sample", 2, REPLY_SCHEMA, 0.7, 512)
    assert seeds == [[derive_seed(11, 1, 0, 0), derive_seed(11, 1, 1, 0)],
                     [derive_seed(11, 2, 0, 0), derive_seed(11, 2, 1, 0)]]
    assert len({s for row in seeds for s in row}) == 4
    chat = chats[1]
    assert [m["role"] for m in chat] == ["system", "user", "assistant", "user", "assistant", "user"]
    examples = [json.loads(m["content"]) for m in chat if m["role"] == "assistant"]
    assert [e["verdict"] for e in examples] == ["incorrect", "correct"]
    assert list(examples[0]) == ["critique", "verdict", "first_error", "corrected_response"]
    assert chat[-1]["content"] == "## Question\nWhat is 2 + 2?\n\n## Response\n5"
    assert "first error" in chat[0]["content"]
    # Reruns sample with the same seeds.
    _, again, _ = run(["4", "5"], {"4": [reply("correct")] * 2, "5": [reply("incorrect")] * 2})
    assert again.calls[0][5] == seeds


def test_parse_failure_gets_one_retry_then_a_failed_verdict_with_the_raw_text() -> None:
    table = {"4": ["I think it is fine", "not json either", reply("correct"), "still {broken"],
             "5": [reply("incorrect"), reply("maybe")] + ["{}", "{}"]}
    _, eng, result = run(["4", "5"], table)
    assert len(eng.calls) == 2
    _, chats, n, _, schema, seeds = eng.calls[1]
    assert n == 1 and schema == REPLY_SCHEMA
    assert seeds == [[derive_seed(11, 1, 0, 1)], [derive_seed(11, 1, 1, 1)], [derive_seed(11, 2, 1, 1)]]
    assert [checked(c) for c in chats] == ["4", "4", "5"]
    assert by(result, 1, "s0").status == "ok" and by(result, 1, "s0").label == "correct"
    bad = by(result, 1, "s1")
    assert bad.status == "failed" and bad.value is None
    assert "after 2 attempts" in bad.error and "'still {broken'" in bad.error
    assert by(result, 2, "s1").status == "failed" and "verdict" in by(result, 2, "s1").error
    agg = by(result, 1, None)
    assert (agg.status, agg.value, agg.label, agg.dist) == ("ok", 1.0, "correct",
                                                            {"correct": 1.0, "incorrect": 0.0, "failed": 1.0})


def test_all_samples_failed_gives_a_failed_aggregate() -> None:
    _, _, result = run(["4"], {"4": ["x" * 500] * 4})
    assert all(v.status == "failed" for v in result.verdicts) and len(result.verdicts) == 3
    agg = by(result, 1, None)
    assert agg.error.startswith("all 2 critique samples failed") and "…" in agg.error and len(agg.error) < 700


class CutOffEngine(ScriptedEngine):
    """Marks a sample whose JSON is not closed as cut off by max_tokens."""

    def sample(self, *a, **kw) -> list[list[Sample]]:
        rows = super().sample(*a, **kw)
        for row in rows:
            for s in row:
                if not s.text.rstrip().endswith("}"):
                    s.finish_reason = "length"
        return rows


def test_cut_off_reply_keeps_its_verdict_but_makes_no_revision() -> None:
    cut = '{"critique": "2 + 2 is 4", "verdict": "incorrect", "first_error": "5", "corrected_response": "The ans'
    early = '{"critique": "2 + 2 is'
    seeds: dict[int, int] = {derive_seed(11, 1, 1, 1): 2}
    eng = CutOffEngine(texts=lambda chat, j, p, s, seed: [cut, early, early][seeds.get(seed, j)])
    result = Critique().run(method_input(["5"], seed=11), eng)
    s0 = by(result, 1, "s0")
    assert (s0.status, s0.label, s0.value) == ("ok", "incorrect", 0.0)
    assert s0.rationale == "2 + 2 is 4\nFirst error: 5\n(reply cut off at max_tokens)"
    assert result.new_responses == []
    s1 = by(result, 1, "s1")  # cut off before the verdict: not usable, retried, failed
    assert s1.status == "failed" and "cut off" in s1.error


class FinishEngine(ScriptedEngine):
    """Every sample ends with the given finish reason."""

    def __init__(self, finish: str, **kw) -> None:
        super().__init__(**kw)
        self.finish = finish

    def sample(self, *a, **kw) -> list[list[Sample]]:
        rows = super().sample(*a, **kw)
        for row in rows:
            for s in row:
                s.finish_reason, s.error, s.text = self.finish, "boom", ""
        return rows


def test_engine_error_samples_are_retried_then_failed_and_an_abort_raises() -> None:
    eng = FinishEngine("error")
    result = Critique().run(method_input(["4"], seed=11), eng)
    assert len(eng.calls) == 2 and all(v.status == "failed" for v in result.verdicts)
    assert "engine error: boom" in by(result, 1, "s0").error
    with pytest.raises(EngineError, match="aborted"):
        Critique().run(method_input(["4"], seed=11), FinishEngine("abort"))


def test_context_overflow_gives_failed_verdicts_and_is_not_sampled() -> None:
    long = "word " * 4000
    eng = scripted({"4": [reply("correct")] * 2})
    result = Critique().run(method_input(["4", long], seed=11), eng)
    over = [v for v in result.verdicts if v.response_id == 2]
    assert [(v.variant, v.status) for v in over] == [("s0", "failed"), ("s1", "failed"), (None, "failed")]
    assert all(v.error.startswith("context overflow") for v in over)
    assert by(result, 1, None).value == 1.0
    assert [checked(c) for c in eng.calls[0][1]] == ["4"]


def test_reply_validation_accepts_step_numbers_and_case() -> None:
    r = CritiqueReply.model_validate({"critique": " ok ", "verdict": "Incorrect", "first_error": 2})
    assert (r.critique, r.verdict, r.first_error, r.corrected_response) == ("ok", "incorrect", "2", "")


def test_service_stores_samples_aggregates_and_revisions(db: Database) -> None:
    table = {"4": [reply("correct")] * 2, "5": [reply("incorrect", "4"), reply("correct")]}
    eng = scripted(table)
    _, first, again = score_study(db, eng, "critique", ["4", "5"])
    assert (first, again) == (6, 0)
    rows = judgments.all_rows(db, study_id=studies.get_study(db, "m").id)
    a, b = sorted({r.response_id for r in rows})
    assert sorted(r.target_key for r in rows) == [f"response:{i}{v}" for i in (a, b) for v in ("", "#s0", "#s1")]
    derived = responses.derived_responses(db, rows[0].prompt_id)
    assert [(d.parent_id, d.text, d.origin) for d in derived] == [(b, "4", "revision")]
    meta = json.loads(db.fetchval("SELECT metadata FROM response WHERE id = ?", [derived[0].id]))
    assert meta["variant"] == "s0" and meta["method"] == "critique" and meta["method_version"] == "1"


@pytest.mark.model
def test_real_model_critique(db: Database, embedded_engine, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Critique, "max_tokens", 32)
    _, first, again = score_study(db, embedded_engine, "critique", ["4", "2 + 2 = 5"])
    assert (first, again) == (6, 0)
    rows = judgments.all_rows(db, study_id=studies.get_study(db, "m").id)
    ids = {r.response_id for r in rows}
    assert len(ids) == 2 and sorted((r.response_id, r.variant or "") for r in rows) == sorted(
        (i, v) for i in ids for v in ("", "s0", "s1"))
    for r in rows:
        if r.status == "ok":
            assert 0.0 <= r.value <= 1.0
            assert r.label in ({"correct", "incorrect"} if r.variant else {"correct", "incorrect", "split"})
        else:
            assert r.error
    for d in responses.derived_responses(db, rows[0].prompt_id):
        assert d.origin == "revision" and d.parent_id in ids and d.text.strip()
