"""Argilla 2.x: a dataset folder as `Dataset.to_disk` writes it (and the same records flattened as a Hugging
Face export) imports into a study whose report matches hand counts; critlab writes folders that Argilla's own
pydantic models and `Record.from_dict` accept offline; critlab → Argilla → critlab keeps every judgment the
format can hold; malformed records stop the import with file:line:field."""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path
from typing import Any

import pytest
from tests.formats_helpers import SAMPLES, dump, figure, report

from storage.db import Database
from storage.export_judgments import build_judgment_items, export_judgments
from storage.import_judgments import JudgmentFileError, import_judgments
from storage.studies import create_study

SAMPLE = SAMPLES / "argilla_dataset"


def _canonical(items: list[dict]) -> list[dict]:
    return [{**i, "judgments": sorted(json.dumps(j, sort_keys=True) for j in i["judgments"])} for i in items]


def test_sample_imports_and_report_matches_hand_counts(db: Database) -> None:
    """List reversal: both people prefer response1, gpt-4o suggests response1. Water cycle: one person says
    tie, the other response2 (a third person's draft is not a judgment), gpt-4o suggests response2.
    Humans: 1 agreeing pair of 2 (S1 1/2); without ties 1/1. gpt-4o: 2 + 1 of 4 (S1 3/4); without ties 3/3.
    Ratings, gpt-4o vs the people's mean: 5, 1 vs 4.5, 2 -> rho 1; 3, 2 vs 2.5, 3.5 -> rho −1; mean 0."""
    sid = create_study(db, "ar").id
    s = import_judgments(db, sid, SAMPLE, fmt="argilla")
    assert (s.items, s.responses, s.judgments) == (2, 4, 18)
    assert s.tally["ignored"] == {"draft responses": 1}
    rep = report(db, sid)
    h1, h2 = (figure(rep, "pairwise", ["humans", "humans"], w, order=None) for w in ("s1", "s2"))
    m1, m2 = (figure(rep, "pairwise", ["gpt-4o", "humans"], w) for w in ("s1", "s2"))
    assert [(f["agree"], f["n"]) for f in (h1, h2, m1, m2)] == [(1, 2), (1, 1), (3, 4), (3, 3)]
    rating = next(r for r in rep["headline"]["rows"] if r["method"] == "rating")
    assert (rating["main"]["value"], rating["main"]["n"]) == (pytest.approx(0.0), 2)
    meta = json.loads(db.fetchall("SELECT metadata FROM prompt WHERE external_id = 'rec-001'")[0][0])
    assert meta["argilla_metadata"] == {"source": "forum"}
    assert meta["argilla_answers"][0]["value"] == "The second answer is wrong."
    (dist,), = db.fetchall("SELECT dist FROM judgment WHERE judge = 'gpt-4o' AND method = 'pairwise' "
                           "AND prompt_id = (SELECT id FROM prompt WHERE external_id = 'rec-001')")
    assert list(json.loads(dist).values()) == [0.92]


def _flatten(rec: dict[str, Any]) -> dict[str, Any]:
    """The columns `records.to_datasets()` gives a record (written from Argilla's export docs)."""
    out: dict[str, Any] = {"id": rec["id"], "status": rec["status"], "_server_id": rec["_server_id"],
                           **rec["fields"], **rec["metadata"]}
    for q, answers in rec["responses"].items():
        out[f"{q}.responses"] = [a["value"] for a in answers]
        out[f"{q}.responses.users"] = [a["user_id"] for a in answers]
        out[f"{q}.responses.status"] = [a["status"] for a in answers]
    for q, s in rec["suggestions"].items():
        out.update({f"{q}.suggestion": s["value"], f"{q}.suggestion.score": s["score"],
                    f"{q}.suggestion.agent": s["agent"]})
    return out


def test_flattened_hub_rows_with_settings_beside_import_the_same(db: Database, tmp_path: Path) -> None:
    rows = [_flatten(r) for r in json.loads((SAMPLE / "records.json").read_text())]
    flat = tmp_path / "hub.jsonl"
    flat.write_text("".join(json.dumps(r) + "\n" for r in rows))
    shutil.copy(SAMPLE / ".argilla" / "settings.json", tmp_path / "hub.settings.json")
    a, b = create_study(db, "disk").id, create_study(db, "hub").id
    import_judgments(db, a, SAMPLE, fmt="argilla")
    import_judgments(db, b, flat, fmt="argilla")
    assert _canonical(build_judgment_items(db, a)[0]) == _canonical(build_judgment_items(db, b)[0])


def check_with_argilla(folder: Path) -> None:
    """Argilla's own models, offline: fields, questions and the dataset through its pydantic models,
    every record through `Record.from_dict`, and each answer against its question's options."""
    rg = pytest.importorskip("argilla")
    from argilla._models import DatasetModel, FieldModel, QuestionModel

    settings = json.loads((folder / ".argilla" / "settings.json").read_text())
    fields = {f["name"]: FieldModel(**f) for f in settings["fields"]}
    questions = {q["name"]: QuestionModel(**q) for q in settings["questions"]}
    DatasetModel(**json.loads((folder / ".argilla" / "dataset.json").read_text()))
    assert any(f.required for f in fields.values())  # Argilla refuses a dataset without a required field
    for raw in json.loads((folder / "records.json").read_text()):
        rec = rg.Record.from_dict(raw)
        assert set(rec.fields) <= set(fields)
        for answer in [*rec.responses, *rec.suggestions]:
            q = questions[answer.question_name]
            if q.settings.type == "text":
                assert isinstance(answer.value, str)
                continue
            options = [o["value"] for o in q.settings.options]
            assert answer.value in options, (answer.question_name, answer.value, options)
        for r in rec.responses:
            uuid.UUID(str(r.user_id))


def test_round_trip_and_argilla_accepts_what_critlab_writes(db: Database, tmp_path: Path) -> None:
    item = {"item_id": "q1", "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2?"}],
            "category": "math", "responses": [{"id": "a", "text": "4", "model": "m1", "metadata": {"seed": 1}},
                                              {"id": "b", "text": "5"}, {"id": "c", "text": "four"}],
            "judgments": [
                {"judge": "ann1", "judge_kind": "human", "type": "pairwise", "shown": ["a", "b"], "winner": "a",
                 "rationale": "b is wrong"},
                {"judge": "ann2", "judge_kind": "human", "type": "pairwise", "shown": ["b", "a"], "winner": "both_bad"},
                {"judge": "ann1", "judge_kind": "human", "type": "likert", "response": "a", "score": 6, "scale": [1, 7]},
                {"judge": "ann1", "judge_kind": "human", "type": "correct", "response": "b", "value": False},
                {"judge": "ann2", "judge_kind": "human", "type": "best_of_n", "shown": ["a", "b", "c"], "winner": "c"},
                {"judge": "gpt", "judge_kind": "model", "type": "pairwise", "shown": ["a", "b"], "winner": "a",
                 "prob": {"a": 0.7}, "rationale": "a is right"},
                {"judge": "gpt", "judge_kind": "model", "type": "pairwise", "shown": ["b", "a"], "winner": "tie"},
                {"judge": "gpt", "judge_kind": "model", "type": "rating", "response": "c", "score": 5, "scale": [1, 7]},
                {"judge": "gpt", "judge_kind": "model", "type": "p_true", "response": "a", "prob": 0.9},
                {"judge": "other", "judge_kind": "model", "type": "pairwise", "shown": ["a", "b"], "winner": "b"}]}
    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps(item) + "\n")
    a = create_study(db, "a").id
    import_judgments(db, a, src)
    out = tmp_path / "argilla-a"
    s = export_judgments(db, "a", out, fmt="argilla")
    assert s.skipped == {"argilla: model scores other than ratings and pairwise verdicts": 1,
                         "argilla: a second model verdict on one question (one suggestion per question)": 1}
    check_with_argilla(out)
    b = create_study(db, "b").id
    import_judgments(db, b, out, fmt="argilla")
    before = build_judgment_items(db, a)[0]
    kept = [j for j in before[0]["judgments"] if j["type"] != "p_true" and j["judge"] != "other"]
    assert _canonical(build_judgment_items(db, b)[0]) == _canonical([{**before[0], "judgments": kept}])


def test_fastchat_study_round_trips_through_argilla(db: Database, tmp_path: Path) -> None:
    a = create_study(db, "mt").id
    import_judgments(db, a, SAMPLES / "fastchat_mtbench.jsonl", fmt="fastchat")
    export_judgments(db, "mt", tmp_path / "mt", fmt="argilla")
    check_with_argilla(tmp_path / "mt")
    b = create_study(db, "back").id
    import_judgments(db, b, tmp_path / "mt", fmt="argilla")
    assert _canonical(build_judgment_items(db, a)[0]) == _canonical(build_judgment_items(db, b)[0])


def test_the_sample_itself_passes_argillas_models() -> None:
    check_with_argilla(SAMPLE)


@pytest.mark.parametrize(("change", "field", "detail"), [
    (lambda r: r["responses"]["response1_rating"][0].update(value=9), "responses.response1_rating[0].value",
     "expected a rating 1-5"),
    (lambda r: r["responses"]["preference"][1].update(value="response3"), "responses.preference[1].value",
     "expected one of response1, response2"),
    (lambda r: r["suggestions"]["preference"].update(score=1.5), "suggestions.preference.score", "probability"),
    (lambda r: r["fields"].pop("prompt"), "fields.prompt", "missing"),
    (lambda r: r["fields"].pop("response2"), "responses.preference[0].value", "no text for"),
])
def test_a_malformed_record_stops_everything(db: Database, tmp_path: Path, change, field: str, detail: str) -> None:
    folder = tmp_path / "ds"
    shutil.copytree(SAMPLE, folder)
    records = json.loads((folder / "records.json").read_text())
    change(records[1])
    (folder / "records.json").write_text("[\n" + ",\n".join(json.dumps(r) for r in records) + "\n]\n")
    sid = create_study(db, "ar").id
    before = dump(db)
    with pytest.raises(JudgmentFileError) as e:
        import_judgments(db, sid, folder, fmt="argilla")
    assert (e.value.line, e.value.field) == (3, field) and detail in e.value.detail
    assert str(e.value).startswith(f"{folder / 'records.json'}:3: ")
    assert dump(db) == before


def test_export_refuses_a_folder_with_files(db: Database, tmp_path: Path) -> None:
    import_judgments(db, create_study(db, "mt").id, SAMPLES / "fastchat_mtbench.jsonl", fmt="fastchat")
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "keep.txt").write_text("mine")
    with pytest.raises(ValueError, match="not an empty folder"):
        export_judgments(db, "mt", tmp_path / "x", fmt="argilla")
    assert (tmp_path / "x" / "keep.txt").read_text() == "mine"
