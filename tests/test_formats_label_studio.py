"""Label Studio: a real-shaped export (Pairwise and Rating tags, a cancelled annotation, a TextArea,
predictions with model_version and score) imports into a study whose report matches hand counts; critlab
writes tasks and a labelling config that Label Studio's documented layout accepts; critlab → Label Studio
→ critlab keeps every judgment the format can hold; malformed tasks stop the import with file:line:field."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from tests.formats_helpers import SAMPLES, dump, figure, report
from tests.label_studio_layout import problems

from storage.db import Database
from storage.export_judgments import build_judgment_items, export_judgments
from storage.import_judgments import JudgmentFileError, import_judgments
from storage.studies import create_study

SAMPLE = SAMPLES / "label_studio_tasks.json"


def test_sample_imports_and_report_matches_hand_counts(db: Database) -> None:
    """Hash map task: both people prefer answer1 (1 agreeing pair); judge-v1 predicts answer1 (2 of 2
    agree). Planet task: people split answer2 / answer1 (1 disagreeing pair); judge-v1 answer2 (1 of 2).
    Pairwise: humans 1/2, judge-v1 3/4 (no ties, so the same without ties).
    Ratings, judge-v1 vs the people's mean: hash map 2, 4 vs 4.5, 2.5 -> rho −1; planet 2, 5 vs 1.5, 4.5 ->
    rho 1; mean over prompts 0. The cancelled annotation is not imported; the TextArea is kept aside."""
    sid = create_study(db, "ls").id
    s = import_judgments(db, sid, SAMPLE, fmt="label_studio")
    assert (s.items, s.responses, s.judgments) == (2, 4, 18)
    assert s.tally["ignored"] == {"cancelled annotations": 1}
    assert s.tally["mapped"] == {"human pairwise labels": 4, "human likert labels": 8, "model pairwise labels": 2,
                                 "model rating labels": 4}
    rep = report(db, sid)
    h = figure(rep, "pairwise", ["humans", "humans"], order=None)
    m1, m2 = (figure(rep, "pairwise", ["judge-v1", "humans"], w) for w in ("s1", "s2"))
    assert (h["agree"], h["n"], m1["agree"], m1["n"], m2["agree"], m2["n"]) == (1, 2, 3, 4, 3, 4)
    rating = next(r for r in rep["headline"]["rows"] if r["method"] == "rating")
    assert (rating["main"]["value"], rating["main"]["n"]) == (pytest.approx(0.0), 2)
    judges = {r[0] for r in db.fetchall("SELECT DISTINCT judge FROM judgment WHERE judge_kind = 'human'")}
    assert judges == {"ls-user-1", "bo@example.com"}
    meta = json.loads(db.fetchall("SELECT metadata FROM prompt WHERE external_id = '101'")[0][0])
    assert meta["label_studio_data"] == {"source": "internal-eval-v2"}
    assert meta["other_results"][0]["value"] == {"text": ["first one is precise"]}
    assert {a["lead_time"] for a in meta["annotations"]} == {41.2, 18.9}
    (prob,), = db.fetchall("SELECT dist FROM judgment WHERE judge = 'judge-v1' AND method = 'pairwise' "
                           "AND prompt_id = (SELECT id FROM prompt WHERE external_id = '101')")
    assert list(json.loads(prob).values()) == [0.8]


def _canonical(items: list[dict]) -> list[dict]:
    return [{**i, "judgments": sorted(json.dumps(j, sort_keys=True) for j in i["judgments"])} for i in items]


def test_round_trip_keeps_what_label_studio_holds(db: Database, tmp_path: Path) -> None:
    """A study with every kind of label: pairwise (both orders, ties, both_bad), likert, best_of_n, correct
    from people; pairwise orders and 1-7 ratings from a model. What Label Studio cannot hold (a p_true score,
    a revealed-stage label, a best-of-N's shown order) is counted, and everything else comes back equal."""
    src = tmp_path / "in.jsonl"
    item = {"item_id": "q1", "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2?"}],
            "category": "math", "metadata": {"source": "x"},
            "responses": [{"id": "a", "text": "4", "model": "m1", "metadata": {"seed": 1}}, {"id": "b", "text": "5"},
                          {"id": "c", "text": "four"}],
            "judgments": [
                {"judge": "ann1", "judge_kind": "human", "type": "pairwise", "shown": ["a", "b"], "winner": "a"},
                {"judge": "ann2", "judge_kind": "human", "type": "pairwise", "shown": ["b", "a"], "winner": "both_bad"},
                {"judge": "ann1", "judge_kind": "human", "type": "likert", "response": "a", "score": 6, "scale": [1, 7]},
                {"judge": "ann1", "judge_kind": "human", "type": "correct", "response": "b", "value": False},
                {"judge": "ann2", "judge_kind": "human", "type": "best_of_n", "shown": ["a", "b", "c"], "winner": "c"},
                {"judge": "gpt", "judge_kind": "model", "type": "pairwise", "shown": ["a", "b"], "winner": "a",
                 "prob": {"a": 0.7}, "rationale": "a is right"},
                {"judge": "gpt", "judge_kind": "model", "type": "pairwise", "shown": ["b", "a"], "winner": "tie"},
                {"judge": "gpt", "judge_kind": "model", "type": "rating", "response": "c", "score": 5, "scale": [1, 7]},
                {"judge": "gpt", "judge_kind": "model", "type": "p_true", "response": "a", "prob": 0.9},
                {"judge": "ann1", "judge_kind": "human", "type": "likert", "response": "b", "score": 2, "scale": [1, 7],
                 "stage": "revealed"}]}
    src.write_text(json.dumps(item) + "\n")
    a = create_study(db, "a").id
    import_judgments(db, a, src)
    out = tmp_path / "ls" / "tasks.json"
    out.parent.mkdir()
    s = export_judgments(db, "a", out, fmt="label_studio")
    assert s.skipped == {"label_studio: model scores other than ratings and pairwise verdicts": 1,
                         "label_studio: revealed-stage labels (Label Studio has one label per person)": 1}
    assert s.judgments == 8 and s.label_config == str((tmp_path / "ls" / "tasks.config.xml").resolve())
    tasks = json.loads(out.read_text())
    assert problems((tmp_path / "ls" / "tasks.config.xml").read_text(), tasks) == []

    b = create_study(db, "b").id
    import_judgments(db, b, out, fmt="label_studio")
    before, after = (build_judgment_items(db, sid)[0] for sid in (a, b))
    kept = [j for j in before[0]["judgments"] if j["type"] != "p_true" and j.get("stage") != "revealed"]
    expected = {**before[0], "judgments": kept}
    # best_of_n: Label Studio's Choices hold the pick, not the order the person saw (read back as response order)
    got = _canonical(after)[0]
    assert got == _canonical([expected])[0]


def test_fastchat_study_round_trips_through_label_studio(db: Database, tmp_path: Path) -> None:
    a = create_study(db, "mt").id
    import_judgments(db, a, SAMPLES / "fastchat_mtbench.jsonl", fmt="fastchat")
    out = tmp_path / "mt.json"
    export_judgments(db, "mt", out, fmt="label_studio")
    assert problems((tmp_path / "mt.config.xml").read_text(), json.loads(out.read_text())) == []
    b = create_study(db, "back").id
    import_judgments(db, b, out, fmt="label_studio")
    assert _canonical(build_judgment_items(db, a)[0]) == _canonical(build_judgment_items(db, b)[0])


def test_layout_check_catches_what_label_studio_would_refuse() -> None:
    """The checker the writer is validated with finds real mistakes (so an empty list means something)."""
    config = '<View><Text name="r1" value="$r1"/><Text name="r2" value="$r2"/>' \
             '<Pairwise name="p" toName="r1,r2"/><Rating name="s" toName="r1" maxRating="5"/></View>'
    task = {"data": {"r1": "x"}, "annotations": [{"completed_by": 1, "result": [
        {"from_name": "p", "to_name": "r1", "type": "pairwise", "value": {"selected": "up"}},
        {"from_name": "s", "to_name": "r1", "type": "rating", "value": {"rating": 9}},
        {"from_name": "zz", "to_name": "r1", "type": "choices", "value": {}}]}]}
    found = problems(config, [task])
    assert any("data.r2" in p for p in found) and any("selected" in p for p in found)
    assert any("rating must be" in p for p in found) and any("'zz'" in p for p in found)
    assert any("to_name 'r1'" in p for p in found)


def _sample_copy(tmp_path: Path, tasks: list | str) -> Path:
    path = tmp_path / "t.json"
    path.write_text(tasks if isinstance(tasks, str) else json.dumps(tasks, indent=2))
    shutil.copy(SAMPLE.with_name("label_studio_tasks.config.xml"), tmp_path / "t.config.xml")
    return path


@pytest.mark.parametrize(("change", "field", "detail"), [
    (lambda t: t["annotations"][0]["result"][0]["value"].update(selected="up"), "annotations[0].result[0].value.selected",
     "expected 'left' or 'right'"),
    (lambda t: t["annotations"][1]["result"][1]["value"].update(rating=6), "annotations[1].result[1].value.rating",
     "outside 1-5"),
    (lambda t: t["data"].pop("answer2"), "annotations[0].result[0].from_name", "no text for"),
    (lambda t: t["predictions"][0].update(score=3), "predictions[0].score", "expected a probability"),
    (lambda t: t.pop("data"), "data", "missing"),
])
def test_a_malformed_task_stops_everything(db: Database, tmp_path: Path, change, field: str, detail: str) -> None:
    tasks = json.loads(SAMPLE.read_text())
    change(tasks[1])
    path = _sample_copy(tmp_path, tasks)
    line = next(i for i, t in enumerate(path.read_text().splitlines(), 1) if t == "  {" and i > 2)
    sid = create_study(db, "ls").id
    before = dump(db)
    with pytest.raises(JudgmentFileError) as e:
        import_judgments(db, sid, path, fmt="label_studio")
    assert (e.value.line, e.value.field) == (line, field) and detail in e.value.detail
    assert dump(db) == before


def test_missing_config_is_named(db: Database, tmp_path: Path) -> None:
    path = tmp_path / "t.json"
    shutil.copy(SAMPLE, path)
    with pytest.raises(JudgmentFileError, match="t.config.xml"):
        import_judgments(db, create_study(db, "ls").id, path, fmt="label_studio")


def test_cli_exports_to_label_studio_with_its_config(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from app.cli import main

    db = str(tmp_path / "c.duckdb")
    run = CliRunner().invoke
    r = run(main, ["import", "judgments", str(SAMPLE), "--study", "ls", "--from", "label_studio", "--db", db],
            catch_exceptions=False)
    assert r.exit_code == 0, r.output
    out = tmp_path / "out.json"
    r = run(main, ["export", "judgments", "--study", "ls", "--to", "label_studio", "--out", str(out), "--db", db],
            catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert f"labelling config: {tmp_path / 'out.config.xml'}" in r.output
    assert problems((tmp_path / "out.config.xml").read_text(), json.loads(out.read_text())) == []
    help_text = run(main, ["export", "judgments", "--help"]).output
    assert "label_studio" in help_text and "argilla" in help_text
    r = run(main, ["export", "judgments", "--study", "ls", "--to", "label_studio", "--out", str(tmp_path / "x.jsonl"),
                   "--db", db])
    assert r.exit_code != 0 and "a label_studio export is written as .json" in r.output
