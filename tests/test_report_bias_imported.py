"""The report's bias section on imported judgments (the shape of PandaLM's public test set): pairs with an
empty answer and a study whose model judges generated nothing."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from app.services.agreement import method_info
from app.ui.agreement_sections import bias_rows, section_note
from storage.analysis.bias import length_bias
from storage.analysis.report import build_report, report_markdown
from storage.db import Database
from storage.import_judgments import import_judgments
from storage.studies import create_study
from tests.test_agreement_report import undocumented_keys


def test_bias_counts_pairs_with_an_empty_response_and_says_why_no_self_preference(tmp_path: Path):
    """Imported data (PandaLM's test set has 54 such pairs in 999) holds empty answers: their pairs have no
    length ratio and are left out of the length fit, counted and named; and where no model judge generated
    anything, the section says why there is no self-preference instead of showing nothing."""
    db = Database(tmp_path / "imp.duckdb")
    sid = create_study(db, "imported").id
    # (text of gen-x, text of gen-y, the human's and the judge's winner), shown [x, y]
    design = [("x" * 15, "", "x", "x"), ("x" * 10, "y" * 30, "x", "y"), ("x" * 40, "y" * 10, "y", "y"),
              ("x" * 20, "y" * 25, "tie", "tie"), ("x" * 30, "y" * 12, "x", "x")]
    f = tmp_path / "j.jsonl"
    f.write_text("".join(json.dumps({
        "item_id": f"q{k}", "prompt": f"Question {k}?",
        "responses": [{"id": "x", "text": tx, "model": "gen-x"}, {"id": "y", "text": ty, "model": "gen-y"}],
        "judgments": [{"judge": "ann1", "judge_kind": "human", "type": "pairwise", "shown": ["x", "y"], "winner": h},
                      {"judge": "judge-z", "judge_kind": "model", "type": "pairwise", "shown": ["x", "y"],
                       "winner": m}]}) + "\n" for k, (tx, ty, h, m) in enumerate(design)))
    import_judgments(db, sid, f)
    rep = build_report(db, sid, n_boot=0, method_info=method_info)
    sec = rep["bias"]
    ref = length_bias(pl.DataFrame({"len_a": [10, 40, 20, 30], "len_b": [30, 10, 25, 12],
                                    "result": ["a", "b", "tie", "a"]}))
    human = next(r for r in sec["length_bias"] if r["judge"] == "humans")
    assert (human["n"], human["n_empty"]) == (4, 1) and human["slope"] == pytest.approx(ref["slope"], abs=1e-9)
    assert human["note"] == "1 verdict(s) on a pair with an empty response left out"
    model = next(r for r in sec["length_bias"] if r["judge"] == "judge-z")
    assert (model["n"], model["n_empty"]) == (4, 1)
    assert sec["self_preference"] == []
    assert sec["self_preference_note"].startswith("no model judge is one of the study's generator models")
    md = report_markdown(rep)
    assert "1 verdict(s) on a pair with an empty response left out" in md and "Self-preference: no model judge is" in md
    assert bias_rows(rep)[0][3] == "4 (+1 left out: empty response)"
    assert f"self-preference: {sec['self_preference_note']}" in section_note(rep)
    assert not undocumented_keys({"bias": sec})
    db.close()
