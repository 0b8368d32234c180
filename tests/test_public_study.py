"""bench/public_study.py: PandaLM's test-set files become a critlab judgments file that imports as it is and
whose report gives the numbers PandaLM's own compute_metrics.py rule gives by hand. The sample is written
here in the files' shape (the real files are not in the repository)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from tests.formats_helpers import report

from storage.db import Database
from storage.import_judgments import import_judgments
from storage.studies import create_study

ROOT = Path(__file__).resolve().parents[1]


def _module() -> Any:
    spec = importlib.util.spec_from_file_location("public_study", ROOT / "bench" / "public_study.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules["public_study"] = mod
    spec.loader.exec_module(mod)
    return mod


ps = _module()

# (cmp_key, instruction, input, response1, response2, three human votes, gpt verdict, pandalm verdict)
PAIRS = [
    ("llama-7b_opt-7b", "Add 2 and 3.", "", "5", "It is 6.", (1, 1, 1), "1", 1),
    ("llama-7b_pythia-6.9b", "Add 2 and 3.", "", "5", "five", (0, 0, 1), "Tie", 0),
    ("opt-7b_pythia-6.9b", "Add 2 and 3.", "", "It is 6.", "five", (2, 2, 2), "garbage", 2),
    ("bloom-7b_llama-7b", "Is 7 prime?", "Answer True or False.", True, "True.", (0, 0, 0), "2", 1),
    ("bloom-7b_opt-7b", "Is 7 prime?", "Answer True or False.", "False", "No idea", (1, 2, 1), "1", 2),
    # cerebras' response is stored after llama's: critlab's classes see this pair the other way round
    ("cerebras-gpt-6.7B_llama-7b", "Add 2 and 3.", "", "3", "5", (2, 2, 1), "2", 1),
]


def _write(folder: Path, pairs: list[tuple] = PAIRS) -> Path:
    human, gpt, panda = [], [], []
    for idx, (key, ins, inp, r1, r2, votes, g, p) in enumerate(pairs):
        human.append({"idx": idx, "motivation_app": "Calculator", "cmp_key": key, "instruction": ins, "input": inp,
                      "response1": r1, "response2": r2, **{f"annotator{i + 1}": v for i, v in enumerate(votes)}})
        gpt.append({"idx": idx, "gpt_result": g, "gpt_reason": f"reason {idx}", "gpt_reference": "ref"})
        panda.append({"idx": idx, "pandalm_result": p, "pandalm_reason": "", "pandalm_reference": "ref"})
    for name, rows in (("testset-v1.json", human), ("gpt-3.5-turbo-testset-v1.json", gpt),
                       ("pandalm-7b-testset-v1.json", panda)):
        (folder / name).write_text(json.dumps(rows), encoding="utf-8")
    return folder


def test_items_group_pairs_by_instruction_and_keep_each_models_text(tmp_path: Path) -> None:
    pairs, models = ps.load(_write(tmp_path))
    items = list(ps.items(pairs, models))
    assert [i["item_id"] for i in items] == ["p1", "p2"]
    assert items[1]["prompt"] == "Is 7 prime?\n\nAnswer True or False."
    assert items[0]["prompt"] == "Add 2 and 3."  # an empty input adds nothing
    assert items[0]["metadata"]["pair_idx"] == [0, 1, 2, 5]
    # bloom-7b's text True (a JSON boolean in the file) becomes the text "True"; llama-7b is one response per text
    assert [(r["id"], r["text"]) for r in items[1]["responses"]] == [
        ("bloom-7b", "True"), ("llama-7b", "True."), ("bloom-7b#2", "False"), ("opt-7b", "No idea")]
    votes = [(j["judge"], j["shown"], j["winner"]) for j in items[0]["judgments"]
             if j["shown"] == ["opt-7b", "pythia-6.9b"]]
    assert votes == [("annotator1", ["opt-7b", "pythia-6.9b"], "pythia-6.9b"),
                     ("annotator2", ["opt-7b", "pythia-6.9b"], "pythia-6.9b"),
                     ("annotator3", ["opt-7b", "pythia-6.9b"], "pythia-6.9b"),
                     ("gpt-3.5-turbo", ["opt-7b", "pythia-6.9b"], "tie"),  # "garbage" counts as a tie
                     ("pandalm-7b", ["opt-7b", "pythia-6.9b"], "pythia-6.9b")]
    dropped = list(ps.items(pairs, models, drop_garbage=True))
    assert sum(j["judge"] == "gpt-3.5-turbo" for i in dropped for j in i["judgments"]) == 5


def test_bad_files_name_the_problem(tmp_path: Path) -> None:
    with pytest.raises(ps.DataError, match="missing .*testset-v1.json"):
        ps.load(tmp_path)
    _write(tmp_path)
    (tmp_path / "pandalm-7b-testset-v1.json").write_text("[]", encoding="utf-8")
    with pytest.raises(ps.DataError, match="idx do not follow"):
        ps.load(tmp_path)
    bad = [PAIRS[0][:5] + ((1, 3, 1),) + PAIRS[0][6:]]
    pairs, models = ps.load(_write(tmp_path, bad))
    with pytest.raises(ps.DataError, match=r"pair idx 0: annotator2 = 3"):
        list(ps.items(pairs, models))


def _macro_by_position(judge: int) -> dict[str, float]:
    """PandaLM's compute_metrics.py rule on the design: the majority vote against the verdict, classes by
    position (1, 2, 0 = tie), garbage = tie; written from its definition."""
    verdict = {"1": 1, "2": 2, "Tie": 0, "garbage": 0, 1: 1, 2: 2, 0: 0}
    cm = np.zeros((3, 3))
    for *_, votes, g, p in PAIRS:
        cm[max(set(votes), key=votes.count), verdict[(g, p)[judge]]] += 1
    tp = np.diag(cm)
    prec, rec = tp / cm.sum(axis=0), tp / cm.sum(axis=1)
    f1 = np.where(prec + rec > 0, 2 * prec * rec / np.where(prec + rec > 0, prec + rec, 1), 0.0)
    return {"accuracy": tp.sum() / cm.sum(), "precision_macro": prec.mean(), "recall_macro": rec.mean(),
            "f1_macro": f1.mean()}


def test_the_converted_file_imports_and_the_report_counts_as_pandalm_does(tmp_path: Path, db: Database) -> None:
    counts = ps.convert(_write(tmp_path), tmp_path / "out.jsonl")
    assert counts == {"items": 2, "responses": 8, "judgments": 30, "pairs": 6}
    sid = create_study(db, "pandalm").id
    s = import_judgments(db, sid, tmp_path / "out.jsonl")
    assert (s.items, s.responses, s.judgments) == (2, 8, 30)
    rep = report(db, sid)
    # Majorities: 1, 0, 2, 0, 1, 2 -> gpt 1, 0, 0, 2, 1, 2 agrees on pairs 0, 1, 4, 5; pandalm 1, 0, 2, 1, 2, 1
    # on 0, 1, 2.
    acc = {r["judge"]: r["accuracy"]["value"] for r in rep["pairwise"]["vs_consensus"]
           if r["kind"] == "model" and r["order"] == "combined"}
    assert acc == {"gpt-3.5-turbo": pytest.approx(4 / 6), "pandalm-7b": pytest.approx(3 / 6)}
    for k, judge in enumerate(("gpt-3.5-turbo", "pandalm-7b")):
        assert ps.positional(rep, judge) == pytest.approx(_macro_by_position(k), abs=1e-12)
    lines = ps.headline(rep)
    assert "gpt-3.5-turbo  accuracy        published 0.7107   critlab 0.6667 (n 6, 95% CI none)" in lines


def test_cross_check_refits_the_report_with_scipy_and_crowd_kit(tmp_path: Path) -> None:
    from app.services.agreement import method_info
    from storage.analysis.report import build_report

    ps.convert(_write(tmp_path), tmp_path / "out.jsonl")
    path = tmp_path / "x.duckdb"
    db = Database(path)
    sid = create_study(db, "pandalm").id
    import_judgments(db, sid, tmp_path / "out.jsonl")
    rep = build_report(db, sid, n_boot=0, method_info=method_info, annotator_models=True)
    db.close()
    lines = ps.cross_check(path, rep)
    bt = float(lines[0].rsplit(" ", 1)[1])
    assert lines[0].startswith("Bradley-Terry (models, humans' votes)") and bt < 1e-6
    assert len(lines) == 4  # and one line per annotator, each figure beside crowd-kit's
    for line in lines[1:]:
        ours_ds, ck_ds, ours_mace, ck_mace = (float(x.strip("(),")) for x in line.split()[2::2][:4])
        assert abs(ours_ds - ck_ds) < 1e-6 and abs(ours_mace - ck_mace) < 1e-6, line
