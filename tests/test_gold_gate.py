"""The gold gate applied (storage.gold.gate): a person below the study's gold accuracy, over at least
MIN_GOLD_ANSWERS gold answers, has their labels left out of exports (rows, summary, card) and of the
agreement report (its human rows, hence its consensus); gold items are never data. Read-time only: the
database keeps every label."""

from __future__ import annotations

import json
from pathlib import Path

from storage import gold, studies
from storage.analysis.report import build_report, report_markdown
from storage.db import Database
from storage.export import ExportOptions, export_dataset, preview_dataset
from storage.models import StudyConfig
from tests.builders import judge, label, make_prompt, make_responses
from tests.test_agreement_report import undocumented_keys

GOOD, SPAM1, SPAM2, NEW = "good", "spam1", "spam2", "newcomer"


def _study(db: Database, gate: float | None) -> tuple[int, list[int], list[list[int]]]:
    """Five gold items (the first response is the right pick) and three data prompts. `good` is right on every
    gold item, the two spammers wrong on all five; `newcomer` wrong on the four they answered (too few to
    gate). On the data prompts the two spammers outvote `good` (they pick and rate the second response up)."""
    s = studies.create_study(db, "gg", config=StudyConfig(questions=["best", "rating"], gold_min_accuracy=gate))
    gold_ids = []
    for i in range(5):
        pid = make_prompt(db, s.id, f"gold{i}", f"Gold question {i}?")
        a, b = make_responses(db, pid, [f"gold{i} right", f"gold{i} wrong"])
        gold.add(db, s.id, pid, "best_of_n", a, None, "admin")
        gold_ids.append(pid)
        label(db, s.id, pid, GOOD, a, {a: 6, b: 2})
        for who in (SPAM1, SPAM2) + ((NEW,) if i < 4 else ()):
            label(db, s.id, pid, who, b, {a: 2, b: 6})
    data, rids = [], []
    for i in range(3):
        pid = make_prompt(db, s.id, f"d{i}", f"Data question {i}?")
        a, b = make_responses(db, pid, [f"d{i} answer A", f"d{i} answer B"])
        label(db, s.id, pid, GOOD, a, {a: 6, b: 2})
        for who in (SPAM1, SPAM2):
            label(db, s.id, pid, who, b, {a: 1, b: 7})
        data.append(pid)
        rids.append([a, b])
    return s.id, data, rids


def _n_judgments(db: Database) -> int:
    return db.fetchval("SELECT count(*) FROM judgment WHERE superseded_at IS NULL")


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_the_gate_rule_and_min_answers(db: Database) -> None:
    sid, _, _ = _study(db, 0.8)
    acc = {a.annotator: a for a in gold.accuracy(db, sid)}
    assert acc[NEW] == gold.GoldAccuracy(NEW, 4, 0, 0.0)
    assert gold.gated(db, sid, 0.8) == {SPAM1, SPAM2}, "four answers are fewer than MIN_GOLD_ANSWERS"
    assert gold.gated(db, sid, None) == set()
    assert gold.MIN_GOLD_ANSWERS == 5


def test_exports_leave_out_the_gated_and_the_gold_items(db: Database, tmp_path: Path) -> None:
    sid, data, rids = _study(db, 0.8)
    before = _n_judgments(db)
    out = tmp_path / "pairs.jsonl"
    res = export_dataset(db, "gg", out, ExportOptions(kind="dpo", annotator_names=True))
    rows = _rows(out)
    # good alone decides: A chosen over B on every data prompt; no gold prompt is a row
    assert [(r["meta"]["prompt_id"], r["meta"]["chosen_response_id"], r["meta"]["rejected_response_id"])
            for r in rows] == [(f"d{i}", a, b) for i, (a, b) in enumerate(rids)]
    assert all(r["meta"]["annotators"] == [GOOD] for r in rows)
    voters = {v["annotator"] for r in rows for v in r["meta"]["votes"]}
    assert voters == {GOOD}
    # what was left out: 3 prompts × (1 pick + 2 ratings) per spammer
    assert res.gated["labels"] == 18 and res.gated["gold_items"] == 5 and res.gated["min_answers"] == 5
    assert [(a["annotator"], a["accuracy"], a["labels"]) for a in res.gated["annotators"]] == \
        [(SPAM1, 0.0, 9), (SPAM2, 0.0, 9)]
    assert "gold gate: 18 labels of spam1, spam2 left out" in res.message
    card = Path(res.card_path).read_text()
    assert "`gold_gate`: labels of annotators below 80% gold accuracy" in card and "spam1 (0% of 5" in card
    assert "`gold_items`: 5 prompts with a gold answer left out" in card
    recorded = json.loads(db.fetchval("SELECT counts FROM export_run WHERE id = ?", [res.export_run_id]))
    assert recorded["gated"]["labels"] == 18
    assert _n_judgments(db) == before, "the gate deletes nothing"
    # per-annotator rows: none of the gated people's
    per = preview_dataset(db, "gg", ExportOptions(kind="dpo", per_annotator=True, annotator_names=True), n_rows=50)
    assert per.rows == 3 and {r["meta"]["annotator"] for r in per.first_rows} == {GOOD}


def test_without_a_gate_the_spammers_win_but_gold_items_stay_out(db: Database, tmp_path: Path) -> None:
    sid, _, rids = _study(db, None)
    res = export_dataset(db, "gg", tmp_path / "pairs.jsonl", ExportOptions(kind="dpo"))
    rows = _rows(tmp_path / "pairs.jsonl")
    assert [(r["meta"]["chosen_response_id"], r["meta"]["rejected_response_id"]) for r in rows] == \
        [(b, a) for a, b in rids]
    assert res.gated["annotators"] == [] and res.gated["labels"] == 0
    assert "gold gate" not in res.message


def test_signal_auto_is_chosen_from_the_labels_the_export_reads(db: Database) -> None:
    """Only the gated spammers judged correctness on data prompts (and the newcomer on a gold item): a KTO
    export with `--signal auto` reads good's ratings once they are gated, and correctness without a gate."""
    sid, data, rids = _study(db, 0.8)
    for pid, (a, b) in zip(data, rids):
        for who in (SPAM1, SPAM2):
            judge(db, sid, pid, who, "correct", response_id=b, value=1.0)
    gold_pid = db.fetchval("SELECT prompt_id FROM gold WHERE study_id = ? ORDER BY prompt_id LIMIT 1", [sid])
    judge(db, sid, gold_pid, NEW, "correct", response_id=None, value=1.0)
    gated = preview_dataset(db, "gg", ExportOptions(kind="kto"), n_rows=10)
    assert gated.signal == "ratings" and gated.rows == 6
    config = studies.get_study(db, sid).config.model_copy(update={"gold_min_accuracy": None})
    studies.update_study(db, sid, config=config)
    assert preview_dataset(db, "gg", ExportOptions(kind="kto"), n_rows=10).signal == "correct"


def test_the_report_leaves_out_the_gated_and_the_gold_items(db: Database) -> None:
    sid, data, _ = _study(db, 0.8)
    rep = build_report(db, sid, n_boot=0)
    assert [h["judge"] for h in rep["counts"]["humans"]] == [GOOD], "no human row of a gated person"
    assert rep["counts"]["n_prompts"] == 3 and rep["counts"]["n_prompts_with_human_labels"] == 3
    g = rep["gold"]
    assert (g["n_items"], g["min_accuracy"], g["min_answers"], g["n_labels_left_out"]) == (5, 0.8, 5, 18)
    assert [(x["annotator"], x["accuracy"], x["answered"], x["n_labels_left_out"]) for x in g["gated"]] == \
        [(SPAM1, 0.0, 5, 9), (SPAM2, 0.0, 5, 9)]
    assert {x["annotator"]: x["gated"] for x in g["accuracy"]} == {GOOD: False, NEW: False, SPAM1: True,
                                                                   SPAM2: True}
    # the consensus is good's: the newcomer has no data labels, so every annotator figure rests on good alone
    annotators = rep["annotators"]["questions"]["best_of_n"]["annotators"]
    assert [a["judge"] for a in annotators] == [GOOD]
    assert "spam1 (0/5 gold answers right, 9 labels)" in report_markdown(rep)
    assert undocumented_keys(rep) == [], "docs/formats.md names every key of the report"


def test_the_report_without_a_gate_counts_everyone_but_not_the_gold_items(db: Database) -> None:
    sid, _, _ = _study(db, None)
    rep = build_report(db, sid, n_boot=0)
    assert [h["judge"] for h in rep["counts"]["humans"]] == [GOOD, SPAM1, SPAM2]
    assert rep["counts"]["n_prompts"] == 3
    assert rep["gold"]["gated"] == [] and rep["gold"]["n_labels_left_out"] == 0


def test_the_judgments_export_leaves_out_the_gated_and_the_gold_items(db: Database, tmp_path: Path) -> None:
    from storage.export_judgments import export_judgments

    _study(db, 0.8)
    before = _n_judgments(db)
    res = export_judgments(db, "gg", tmp_path / "all.jsonl")
    items = _rows(tmp_path / "all.jsonl")
    assert [i["item_id"] for i in items] == ["d0", "d1", "d2"] and res.gold_items == 5
    assert {j["judge"] for i in items for j in i["judgments"]} == {GOOD}
    assert res.skipped == {"gated": 18} and "5 gold items left out" in res.message
    assert _n_judgments(db) == before
