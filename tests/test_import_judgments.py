"""Judgments files: import (every bad input named by file, line and field, with every table left
unchanged), the storage mapping, export, and the import → export → import → export round trip."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest
from tests.builders import make_prompt, make_responses, make_run, make_study

from storage import judgments
from storage.db import Database
from storage.export_judgments import export_judgments
from storage.import_judgments import (
    ItemIn,
    JudgmentFileError,
    idempotency_key,
    import_judgments,
    judgment_rows,
    read_judgments_file,
)
from storage.models import JudgmentIn
from storage.studies import create_study

EXAMPLE: dict[str, Any] = {
    "item_id": "q17", "prompt": "What is 17 × 3?", "messages": None, "category": "arithmetic",
    "responses": [{"id": "r1", "text": "51", "model": "m-a"}, {"id": "r2", "text": "It is 41."}],
    "judgments": [
        {"judge": "ann1", "judge_kind": "human", "type": "pairwise", "shown": ["r1", "r2"], "winner": "r1"},
        {"judge": "gpt-4", "judge_kind": "model", "type": "pairwise", "shown": ["r2", "r1"], "winner": "tie",
         "prob": {"r1": 0.2, "r2": 0.3, "tie": 0.5}, "rationale": "both fine"},
        {"judge": "ann1", "judge_kind": "human", "type": "likert", "response": "r2", "score": 5, "scale": [1, 7]},
        {"judge": "ann2", "judge_kind": "human", "type": "best_of_n", "shown": ["r2", "r1"], "winner": "r1"},
        {"judge": "gold", "judge_kind": "human", "type": "correct", "response": "r1", "value": True},
        {"judge": "m", "judge_kind": "model", "type": "p_true", "response": "r1", "prob": 0.83}]}
OTHER: dict[str, Any] = {"item_id": "q0", "prompt": "Hi?", "responses": [{"id": "a", "text": "Hello"}],
                         "judgments": [{"judge": "ann1", "judge_kind": "human", "type": "correct",
                                        "response": "a", "value": False}]}


def jsonl(*records: Any) -> bytes:
    return "".join((r if isinstance(r, str) else json.dumps(r, ensure_ascii=False)) + "\n"
                   for r in records).encode()


def write(tmp_path: Path, data: bytes, name: str = "judgments.jsonl") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def dump(db: Database) -> dict[str, list[tuple]]:
    return {t: db.fetchall(f"SELECT * FROM {t} ORDER BY id") for t in ("prompt", "response", "judgment")}


def item(**changes: Any) -> dict[str, Any]:
    return {**copy.deepcopy(EXAMPLE), **changes}


def with_judgment(i: int, **changes: Any) -> dict[str, Any]:
    rec = item()
    for k, v in changes.items():
        if v is None:
            rec["judgments"][i].pop(k, None)
        else:
            rec["judgments"][i][k] = v
    return rec


@pytest.fixture
def study_id(db: Database) -> int:
    sid = make_study(db).id
    pid = make_prompt(db, sid, "existing", "Already here")
    make_responses(db, pid, ["old answer"])
    return sid


# -- bad input ---------------------------------------------------------------------------------
def _extra_judgment(j: dict[str, Any]) -> dict[str, Any]:
    rec = item()
    rec["judgments"].append(j)
    return rec


BAD: list[tuple[str, Any, str | None, str]] = [
    # (case, line 2 of the file, field, words of the detail); line 1 is always a good item
    ("malformed_json", '{"item_id": "q17", "prompt": ', None, "invalid JSON"),
    ("not_an_object", "[1, 2]", None, "expected a JSON object"),
    ("missing_prompt", {k: v for k, v in item().items() if k not in ("prompt", "messages")}, "prompt", "missing"),
    ("prompt_and_messages", item(messages=[{"role": "user", "content": "x"}]), "prompt", "not both"),
    ("bad_message_role", item(prompt=None, messages=[{"role": "bot", "content": "x"}]), "messages[0].role", "user"),
    ("duplicate_item_id_in_file", item(item_id="q0"), "item_id", "duplicate item_id 'q0' (first used on line 1)"),
    ("duplicate_item_id_in_study", item(item_id="existing"), "item_id", "already exists in study 'demo'"),
    ("duplicate_response_id", item(responses=[{"id": "r1", "text": "a"}, {"id": "r2", "text": "b"},
                                              {"id": "r1", "text": "c"}]), "responses[2].id", "duplicate response id"),
    ("reserved_response_id", item(responses=[{"id": "r1", "text": "a"}, {"id": "r2", "text": "b"},
                                             {"id": "tie", "text": "c"}]), "responses[2].id", "reserved"),
    ("no_responses", item(responses=[], judgments=[]), "responses", "at least 1"),
    ("unknown_response", with_judgment(2, response="r9"), "judgments[2].response", "unknown response id 'r9'"),
    ("winner_not_shown", with_judgment(0, winner="r9"), "judgments[0].winner", "not one of the shown"),
    ("shown_unknown_id", with_judgment(0, shown=["r1", "r7"]), "judgments[0].shown", "unknown response id 'r7'"),
    ("shown_duplicate", with_judgment(3, shown=["r1", "r2", "r1"]), "judgments[3].shown", "shown twice"),
    ("pairwise_three_shown", with_judgment(0, shown=["r1", "r2", "r1"]), "judgments[0].shown", "at most 2"),
    ("best_of_n_tie", with_judgment(3, winner="tie"), "judgments[3].winner", "not a tie"),
    ("likert_outside_scale", with_judgment(2, score=8), "judgments[2].score", "outside the scale [1, 7]"),
    ("likert_score_text", with_judgment(2, score="5"), "judgments[2].score", "valid number, got text"),
    ("likert_bad_scale", with_judgment(2, scale=[7, 1]), "judgments[2].scale", "lowest < highest"),
    ("correct_not_boolean", with_judgment(4, value=1), "judgments[4].value", "valid boolean, got a number"),
    ("model_no_score_or_prob", with_judgment(5, prob=None), "judgments[5].score", "needs a 'score' or a 'prob'"),
    ("model_prob_out_of_range", with_judgment(5, prob=1.5), "judgments[5].prob", "less than or equal to 1"),
    ("prob_key_not_shown", with_judgment(1, prob={"r1": 0.2, "r3": 0.1}), "judgments[1].prob",
     "key 'r3' is not one of the shown ids or 'tie'"),
    ("prob_sum_above_one", with_judgment(1, prob={"r1": 0.9, "r2": 0.5}), "judgments[1].prob", "more than 1"),
    ("human_unknown_type", with_judgment(0, type="rubric"), "judgments[0].type", "human judgments have type"),
    ("bad_judge_kind", with_judgment(0, judge_kind="robot"), "judgments[0].judge_kind", "'human' or 'model'"),
    ("empty_judge", with_judgment(0, judge="  "), "judgments[0].judge", "must not be empty"),
    ("order_is_not_a_field", with_judgment(0, order=["r1", "r2"]), "judgments[0].order", "'shown'"),
    ("bad_stage", with_judgment(0, stage="later"), "judgments[0].stage", "'blind' or 'revealed'"),
    ("second_human_pairwise_same_pair", _extra_judgment(
        {"judge": "ann1", "judge_kind": "human", "type": "pairwise", "shown": ["r2", "r1"], "winner": "tie"}),
     "judgments[6].judge", "a second pairwise judgment by 'ann1' on the pair r2 / r1 (the first is judgments[0])"),
    ("second_model_pairwise_same_order", _extra_judgment(
        {"judge": "gpt-4", "judge_kind": "model", "type": "pairwise", "shown": ["r2", "r1"], "winner": "r2"}),
     "judgments[6].judge", "on the order r2, r1 (the first is judgments[1])"),
    ("second_likert_same_response", _extra_judgment(
        {"judge": "ann1", "judge_kind": "human", "type": "likert", "response": "r2", "score": 3, "scale": [1, 7]}),
     "judgments[6].judge", "on response 'r2'"),
    ("second_best_of_n_same_item", _extra_judgment(
        {"judge": "ann2", "judge_kind": "human", "type": "best_of_n", "shown": ["r1", "r2"], "winner": "r2"}),
     "judgments[6].judge", "on this item"),
]


@pytest.mark.parametrize(("line2", "field", "detail"), [c[1:] for c in BAD], ids=[c[0] for c in BAD])
def test_bad_line_names_file_line_field_and_imports_nothing(db: Database, study_id: int, tmp_path: Path,
                                                           line2: Any, field: str | None, detail: str) -> None:
    path = write(tmp_path, jsonl(OTHER, line2))
    before = dump(db)
    with pytest.raises(JudgmentFileError) as e:
        import_judgments(db, study_id, path)
    where = f"{path}:2: " + (f"field {field!r}: " if field else "")
    assert str(e.value).startswith(where), str(e.value)
    assert detail in str(e.value)
    assert (e.value.line, e.value.field) == (2, field)
    assert dump(db) == before


@pytest.mark.parametrize(("data", "line", "detail"), [
    (b"", 0, "file is empty (no items)"),
    (b"\n  \n", 0, "file is empty (no items)"),
    (jsonl(OTHER) + b'{"item_id": "caf\xe9"}\n', 2, "not valid UTF-8 (byte 0xe9"),
    (b'{"item_id": "a", "item_id": "b"}\n', 1, "duplicate key 'item_id'"),
], ids=["empty", "blank_lines_only", "not_utf8", "duplicate_json_key"])
def test_bad_file(db: Database, study_id: int, tmp_path: Path, data: bytes, line: int, detail: str) -> None:
    path = write(tmp_path, data)
    before = dump(db)
    with pytest.raises(JudgmentFileError) as e:
        import_judgments(db, study_id, path)
    assert str(e.value).startswith(f"{path}:{line}: " if line else f"{path}: ")
    assert detail in str(e.value)
    assert dump(db) == before


def test_same_file_twice_stores_nothing_the_second_time(db: Database, study_id: int, tmp_path: Path) -> None:
    path = write(tmp_path, jsonl(OTHER, EXAMPLE))
    import_judgments(db, study_id, path)
    before = dump(db)
    with pytest.raises(JudgmentFileError, match=r":1: field 'item_id': item_id 'q0' already exists"):
        import_judgments(db, study_id, path)
    assert dump(db) == before
    keys = {r[0] for r in db.fetchall("SELECT idempotency_key FROM judgment WHERE source = 'import'")}
    assert idempotency_key(study_id, "q17", 5) in keys and len(keys) == 7


# -- good input: the storage mapping -----------------------------------------------------------
def test_example_maps_to_rows(db: Database, study_id: int, tmp_path: Path) -> None:
    rec = item()
    rec["judgments"] += [
        {"judge": "ann3", "judge_kind": "human", "type": "pairwise", "shown": ["r2", "r1"], "winner": "both_bad",
         "stage": "revealed"},
        {"judge": "gpt-4", "judge_kind": "model", "type": "pairwise", "shown": ["r1", "r2"], "winner": "r1",
         "prob": {"r1": 0.7, "tie": 0.1}},
        {"judge": "m", "judge_kind": "model", "type": "critique", "response": "r2", "score": 0.0, "label": "incorrect",
         "variant": "s1"}]
    summary = import_judgments(db, study_id, write(tmp_path, jsonl(rec)))
    assert (summary.items, summary.responses, summary.judgments) == (1, 2, 9)

    p = db.fetchrow("SELECT * FROM prompt WHERE external_id = 'q17'")
    assert (json.loads(p["messages"]), p["category"]) == ([{"role": "user", "content": "What is 17 × 3?"}],
                                                          "arithmetic")
    r1, r2 = db.fetchall("SELECT id FROM response WHERE prompt_id = ? ORDER BY id", [p["id"]])
    r1, r2 = r1[0], r2[0]
    resp = db.fetchall("SELECT external_id, origin, run_id, sample_index, model_id, text FROM response "
                       "WHERE prompt_id = ? ORDER BY id", [p["id"]])
    assert resp == [("r1", "imported", None, None, "m-a", "51"), ("r2", "imported", None, None, None, "It is 41.")]

    rows = judgments.current(db, study_id=study_id, prompt_id=p["id"], stage=None)
    got = [(j.judge_kind, j.judge, j.method, j.response_id, j.response_b_id, j.shown_order, j.variant, j.value,
            j.label, j.prob, j.dist, j.stage, j.source, j.target_key) for j in rows]
    assert got == [
        ("human", "ann1", "pairwise", r1, r2, [r1, r2], None, None, str(r1), None, None, "blind", "import",
         f"pair:{r1}-{r2}"),
        ("model", "gpt-4", "pairwise", r2, r1, [r2, r1], f"order:{r2}-{r1}", None, "tie", 0.3,
         {str(r1): 0.2, str(r2): 0.3, "tie": 0.5}, "blind", "import", f"pair:{r1}-{r2}#order:{r2}-{r1}"),
        ("human", "ann1", "likert", r2, None, None, None, 5.0, None, None, {"scale_min": 1.0, "scale_max": 7.0},
         "blind", "import", f"response:{r2}"),
        ("human", "ann2", "best_of_n", r1, None, [r2, r1], None, None, None, None, None, "blind", "import",
         f"prompt:{p['id']}"),
        ("human", "gold", "correct", r1, None, None, None, 1.0, "correct", None, None, "blind", "import",
         f"response:{r1}"),
        ("model", "m", "p_true", r1, None, None, None, None, None, 0.83, None, "blind", "import", f"response:{r1}"),
        ("human", "ann3", "pairwise", r2, r1, [r2, r1], None, None, "both_bad", None, None, "revealed", "import",
         f"pair:{r1}-{r2}"),
        ("model", "gpt-4", "pairwise", r1, r2, [r1, r2], f"order:{r1}-{r2}", None, str(r1), 0.7,
         {str(r1): 0.7, "tie": 0.1}, "blind", "import", f"pair:{r1}-{r2}#order:{r1}-{r2}"),
        ("model", "m", "critique", r2, None, None, "s1", 0.0, "incorrect", None, None, "blind", "import",
         f"response:{r2}#s1"),
    ]
    assert rows[1].rationale == "both fine"


def test_bulk_rows_equal_record_path(db: Database, study_id: int, tmp_path: Path) -> None:
    """The bulk insert stores what `judgments.record()` would store for the same JudgmentIn rows."""
    path = write(tmp_path, jsonl(EXAMPLE))
    import_judgments(db, study_id, path)
    [parsed] = read_judgments_file(path)
    assert isinstance(parsed, ItemIn)
    pid = db.fetchval("SELECT id FROM prompt WHERE external_id = 'q17'")
    ids = dict(db.fetchall("SELECT external_id, id FROM response WHERE prompt_id = ?", [pid]))
    rows = judgment_rows(parsed, study_id=study_id, prompt_id=pid, response_ids=ids)
    assert all(isinstance(r, JudgmentIn) for r in rows)
    cols = "judge_kind, judge, method, target_key, response_id, response_b_id, variant, shown_order, value, label, " \
           "prob, dist, rationale, stage, source, status"
    bulk = db.fetchall(f"SELECT {cols} FROM judgment WHERE prompt_id = ? ORDER BY id", [pid])
    other = create_study(db, "via-record").id
    judgments.record(db, [r.model_copy(update={"study_id": other, "idempotency_key": f"rec:{i}:{r.idempotency_key}"})
                          for i, r in enumerate(rows)])
    assert db.fetchall(f"SELECT {cols} FROM judgment WHERE study_id = ? ORDER BY id", [other]) == bulk


def test_two_orders_of_one_model_are_two_current_rows(db: Database, study_id: int, tmp_path: Path) -> None:
    rec = item(judgments=[
        {"judge": "gpt-4", "judge_kind": "model", "type": "pairwise", "shown": ["r1", "r2"], "winner": "r1",
         "prob": {"r1": 0.8, "r2": 0.1, "tie": 0.1}},
        {"judge": "gpt-4", "judge_kind": "model", "type": "pairwise", "shown": ["r2", "r1"], "winner": "r2",
         "prob": {"r1": 0.4, "r2": 0.5, "tie": 0.1}}])
    import_judgments(db, study_id, write(tmp_path, jsonl(rec)))
    rows = judgments.current(db, study_id=study_id, method="pairwise")
    r1, r2 = rows[0].response_id, rows[0].response_b_id
    assert [(j.variant, j.prob, j.label) for j in rows] == [(f"order:{r1}-{r2}", 0.8, str(r1)),
                                                            (f"order:{r2}-{r1}", 0.5, str(r2))]


def test_mt_bench_shaped_human_judgments(db: Database, study_id: int, tmp_path: Path) -> None:
    """MT-Bench human judgments (lmsys/mt_bench_human_judgments) reshaped: one item per question,
    the models' answers as responses, two human judges and one model judge (both orders) per pair."""
    rows = [  # question_id, model_a, model_b, judge, winner (as in the dataset)
        (81, "gpt-4", "vicuna-13b", "author_0", "model_a"), (81, "gpt-4", "vicuna-13b", "author_4", "tie"),
        (81, "gpt-4", "alpaca-13b", "author_0", "model_a"), (81, "gpt-4", "alpaca-13b", "author_4", "model_b"),
        (82, "claude-v1", "llama-13b", "author_2", "model_a"), (82, "claude-v1", "llama-13b", "author_3", "model_a")]
    answers = {m: f"{m} writes a travel blog post." for m in ("gpt-4", "vicuna-13b", "alpaca-13b", "claude-v1",
                                                              "llama-13b")}
    items: dict[int, dict[str, Any]] = {}
    for qid, a, b, judge, winner in rows:
        it = items.setdefault(qid, {"item_id": f"mt-{qid}", "category": "writing",
                                    "prompt": f"Question {qid}: compose a blog post.", "responses": [],
                                    "judgments": []})
        for m in (a, b):
            if m not in [r["id"] for r in it["responses"]]:
                it["responses"].append({"id": m, "text": answers[m], "model": m})
        it["judgments"].append({"judge": judge, "judge_kind": "human", "type": "pairwise", "shown": [a, b],
                                "winner": {"model_a": a, "model_b": b}.get(winner, winner)})
        if not any(j["judge"] == "gpt4_pair" and set(j["shown"]) == {a, b} for j in it["judgments"]):
            for shown in ([a, b], [b, a]):
                it["judgments"].append({"judge": "gpt4_pair", "judge_kind": "model", "type": "pairwise",
                                        "shown": shown, "winner": "gpt-4" if "gpt-4" in shown else shown[0]})
    summary = import_judgments(db, study_id, write(tmp_path, jsonl(*items.values())))
    assert (summary.items, summary.responses, summary.judgments) == (2, 5, 6 + 6)
    # Human and model verdicts land on the same pair targets, so they can be compared per pair.
    per_pair = db.fetchall(
        """SELECT split_part(target_key, '#', 1) AS pair, count(*) FILTER (judge_kind = 'human'),
                  count(*) FILTER (judge_kind = 'model') FROM judgment WHERE study_id = ? AND method = 'pairwise'
           GROUP BY pair ORDER BY pair""", [study_id])
    assert [(h, m) for _, h, m in per_pair] == [(2, 2)] * 3
    ties = db.fetchall("SELECT judge FROM judgment WHERE study_id = ? AND label = 'tie'", [study_id])
    assert ties == [("author_4",)]


# -- export and the round trip -----------------------------------------------------------------
ROUND_TRIP = [
    {**item(), "reference": "51", "metadata": {"source": "unit", "turn": 1}},
    {"item_id": 7, "messages": [{"role": "system", "content": "Be terse."}, {"role": "user", "content": "Ünïcode?"}],
     "responses": [{"id": "a", "text": "Ja"}, {"id": "b", "text": ""}, {"id": 3, "text": "Nein", "model": "m-3"}],
     "judgments": [
         {"judge": "ann1", "judge_kind": "human", "type": "pairwise", "shown": ["b", "a"], "winner": "both_bad"},
         {"judge": "ann1", "judge_kind": "human", "type": "pairwise", "shown": ["b", "a"], "winner": "a",
          "stage": "revealed", "rationale": "changed my mind"},
         {"judge": "ann1", "judge_kind": "human", "type": "likert", "response": "3", "score": 2.5, "scale": [0, 10]},
         {"judge": "ann1", "judge_kind": "human", "type": "best_of_n", "shown": ["3", "a", "b"], "winner": "3"},
         {"judge": "judge-m", "judge_kind": "model", "type": "pairwise", "shown": ["a", "3"], "winner": "3",
          "prob": {"a": 0.25, "3": 0.7, "tie": 0.05}},
         {"judge": "judge-m", "judge_kind": "model", "type": "pairwise", "shown": ["3", "a"], "winner": "tie"},
         {"judge": "judge-m", "judge_kind": "model", "type": "rubric", "response": "a", "score": 4, "variant": "s0",
          "rationale": "ok"},
         {"judge": "judge-m", "judge_kind": "model", "type": "rubric", "response": "a", "score": 3, "variant": "s1"},
         {"judge": "judge-m", "judge_kind": "model", "type": "select_majority", "response": "3", "score": 1,
          "prob": 0.66},
         {"judge": "judge-m", "judge_kind": "model", "type": "correct", "response": "b", "score": 0,
          "label": "incorrect"}]},
]


def normalised(db: Database, study_id: int) -> dict[str, list]:
    """The study's rows with database ids replaced by the file's ids (so two studies can be compared)."""
    ext = {rid: f"{item}/{rx}" for rid, item, rx in db.fetchall(
        "SELECT r.id, p.external_id, r.external_id FROM response r JOIN prompt p ON p.id = r.prompt_id "
        "WHERE p.study_id = ?", [study_id])}
    pext = dict(db.fetchall("SELECT id, external_id FROM prompt WHERE study_id = ?", [study_id]))

    def sub(text: Any) -> Any:
        if isinstance(text, str):
            return re.sub(r"prompt:(\d+)|(?<![\w.])(\d+)(?![\w.])",
                          lambda m: f"prompt:{pext[int(m.group(1))]}" if m.group(1)
                          else ext.get(int(m.group(2)), m.group(2)), text)
        if isinstance(text, list):
            return [ext[x] for x in text]
        return ext.get(text, text)

    prompts = db.fetchall("SELECT external_id, position, messages, reference, category, metadata FROM prompt "
                          "WHERE study_id = ? ORDER BY position", [study_id])
    responses = db.fetchall(
        "SELECT p.external_id, r.* EXCLUDE (id, prompt_id, created_at) FROM response r JOIN prompt p "
        "ON p.id = r.prompt_id WHERE p.study_id = ? ORDER BY r.id", [study_id])
    rows = []
    for j in db.fetchdicts("SELECT * EXCLUDE (id, study_id, created_at, idempotency_key) FROM judgment "
                           "WHERE study_id = ? ORDER BY id", [study_id]):
        j["prompt_id"] = pext[j["prompt_id"]]
        for col in ("response_id", "response_b_id", "shown_order", "label", "variant", "target_key"):
            j[col] = sub(j[col]) if j[col] is not None else None
        if j["dist"]:
            j["dist"] = {sub(k): v for k, v in json.loads(j["dist"]).items()}
        rows.append(j)
    return {"prompts": prompts, "responses": responses, "judgments": rows}


def test_round_trip(db: Database, tmp_path: Path) -> None:
    a = write(tmp_path, jsonl(*ROUND_TRIP), "a.jsonl")
    s1 = create_study(db, "one").id
    import_judgments(db, s1, a)
    b = tmp_path / "out" / "b.jsonl"
    summary_b = export_judgments(db, "one", b)
    assert (summary_b.items, summary_b.responses, summary_b.judgments, summary_b.skipped) == (2, 5, 16, {})
    s2 = create_study(db, "two").id
    import_judgments(db, s2, b)
    c = tmp_path / "c.jsonl"
    export_judgments(db, s2, c)
    assert b.read_bytes() == c.read_bytes()
    assert normalised(db, s1) == normalised(db, s2)
    assert [p.name for p in b.parent.iterdir()] == ["b.jsonl"]  # no temp file left behind

    exported = [json.loads(line) for line in b.read_text(encoding="utf-8").splitlines()]
    assert [r["id"] for r in exported[1]["responses"]] == ["a", "b", "3"]
    assert exported[1]["item_id"] == "7" and "messages" in exported[1] and "prompt" not in exported[1]
    assert exported[0]["prompt"] == "What is 17 × 3?" and exported[0]["metadata"] == {"source": "unit", "turn": 1}
    assert exported[1]["judgments"][1] == {"judge": "ann1", "judge_kind": "human", "type": "pairwise",
                                           "shown": ["b", "a"], "winner": "a", "stage": "revealed",
                                           "rationale": "changed my mind"}
    assert exported[1]["judgments"][4]["prob"] == {"a": 0.25, "3": 0.7, "tie": 0.05}
    assert exported[1]["judgments"][6]["variant"] == "s0"
    assert db.fetchval("SELECT count(*) FROM export_run WHERE kind = 'judgments'") == 2


def test_export_of_a_native_study(db: Database, tmp_path: Path) -> None:
    """Sampled responses, Label-tab and model-method rows: current rows mapped, the rest counted."""
    sid = make_study(db, "native").id
    pid = make_prompt(db, sid, "p1", "Say hi", system="Be nice")
    make_prompt(db, sid, "p2", "No responses yet")
    r1, r2, r3 = make_responses(db, pid, ["hi", "hello", "hey"], run_id=make_run(db, sid), model_id="test/model")

    def row(key: str, **kw: Any) -> JudgmentIn:
        base = {"study_id": sid, "prompt_id": pid, "judge_kind": "model", "judge": "m",
                "idempotency_key": f"native:{key}"}
        return JudgmentIn(**{**base, **kw})

    judgments.record(db, [
        row("best0", judge_kind="human", judge="ann", method="best_of_n", response_id=r1, shown_order=[r3, r1, r2]),
        row("best1", judge_kind="human", judge="ann", method="best_of_n", response_id=r2, shown_order=[r3, r1, r2]),
        row("rate", judge_kind="human", judge="ann", method="likert", response_id=r2, value=6.0),
        row("pair", judge_kind="human", judge="ann", method="pairwise", response_id=r3, response_b_id=r1,
            shown_order=[r3, r1, r2], label=str(r3)),
        row("ok", judge_kind="human", judge="ann", method="correct", response_id=r1, value=1.0, label="correct"),
        row("cmt", judge_kind="human", judge="ann", method="comment", rationale="fine"),
        row("o1", method="pairwise", response_id=r1, response_b_id=r2, shown_order=[r1, r2], variant=f"order:{r1}-{r2}",
            dist={"A": 0.6, "B": 0.3, "tie": 0.1, "label_mass": 0.9}, prob=0.6, value=1.0, label=str(r1)),
        row("o2", method="pairwise", response_id=r2, response_b_id=r1, shown_order=[r2, r1], variant=f"order:{r2}-{r1}",
            status="failed", error="context"),
        row("comb", method="pairwise", response_id=r1, response_b_id=r2, label="tie", value=0.5),
        row("crit0", method="critique", response_id=r1, variant="s0", value=1.0, label="correct", rationale="ok"),
        row("crit", method="critique", response_id=r1, value=1.0, label="correct"),
        row("split", method="critique", response_id=r2, label="split"),
        row("chk", method="checklist", response_id=r1, checklist_item_id=1, value=1.0),
    ])
    out = tmp_path / "native.jsonl"
    summary = export_judgments(db, "native", out)
    assert summary.skipped == {"failed": 1, "combined_pairwise": 1, "unsupported": 2, "incomplete": 1}
    assert (summary.items, summary.responses, summary.judgments, summary.prompts_without_responses) == (1, 3, 7, 1)
    [line] = [json.loads(x) for x in out.read_text(encoding="utf-8").splitlines()]
    ids = [f"r{r1}", f"r{r2}", f"r{r3}"]
    assert line["messages"][0] == {"role": "system", "content": "Be nice"}
    assert [r["id"] for r in line["responses"]] == ids
    assert line["judgments"][:4] == [
        {"judge": "ann", "judge_kind": "human", "type": "best_of_n", "shown": [ids[2], ids[0], ids[1]],
         "winner": ids[1]},  # the current pick only
        {"judge": "ann", "judge_kind": "human", "type": "likert", "response": ids[1], "score": 6, "scale": [1, 7]},
        {"judge": "ann", "judge_kind": "human", "type": "pairwise", "shown": [ids[2], ids[0]], "winner": ids[2]},
        {"judge": "ann", "judge_kind": "human", "type": "correct", "response": ids[0], "value": True}]
    assert line["judgments"][4] == {"judge": "m", "judge_kind": "model", "type": "pairwise", "shown": ids[:2],
                                    "winner": ids[0], "prob": {ids[0]: 0.6, ids[1]: 0.3, "tie": 0.1}}
    assert line["judgments"][5]["variant"] == "s0"
    # The export is a valid judgments file.
    again = create_study(db, "again").id
    assert import_judgments(db, again, out).judgments == 7
