"""The ppi section's win rate of one generator over another: a hand-built study of two runs (models gen-a and
gen-b), humans voting on three prompts' pairs, a model judge on all six in both shown orders; the labelled and
unlabelled values are written out here from the design and passed to the pure PPI function."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from app.services.agreement import method_info
from storage import judgments
from storage.analysis.ppi import ppi_summary
from storage.analysis.report import build_report, report_markdown
from storage.db import Database
from storage.models import JudgmentIn
from storage.studies import create_study
from tests.builders import make_prompt, make_responses, make_run

# per prompt: the humans' winners (ann1 sees a first, ann2 b first); None = nobody voted
HUMAN = [("a", "a"), ("a", "tie"), ("b", "b"), None, None, None]
# the judge's winner with a shown first, then with b shown first
MODEL = [("a", "a"), ("a", "b"), ("b", "b"), ("a", "a"), ("tie", "b"), ("b", "b")]
SCORE = {"a": 1.0, "b": 0.0, "tie": 0.5}


def test_win_rate_of_run_a_over_run_b_is_ppi_on_the_pair_shares(tmp_path: Path) -> None:
    db = Database(tmp_path / "w.duckdb")
    sid = create_study(db, "two runs").id
    run_a, run_b = make_run(db, sid, "gen-a"), make_run(db, sid, "gen-b")
    rows: list[JudgmentIn] = []
    for k in range(6):
        pid = make_prompt(db, sid, f"q{k}", f"Question {k}?")
        ids = {"a": make_responses(db, pid, ["x"], run_id=run_a)[0], "b": make_responses(db, pid, ["y"], run_id=run_b)[0]}
        votes = HUMAN[k] or ()
        for ann, shown, w in zip(("ann1", "ann2"), ((ids["a"], ids["b"]), (ids["b"], ids["a"])), votes):
            rows.append(JudgmentIn(study_id=sid, prompt_id=pid, judge_kind="human", judge=ann, method="pairwise",
                                   response_id=shown[0], response_b_id=shown[1], shown_order=list(shown),
                                   label="tie" if w == "tie" else str(ids[w]), idempotency_key=uuid.uuid4().hex))
        for (first, second), w in zip(((ids["a"], ids["b"]), (ids["b"], ids["a"])), MODEL[k]):
            rows.append(JudgmentIn(study_id=sid, prompt_id=pid, judge_kind="model", judge="judge-m",
                                   method="pairwise", variant=f"order:{first}-{second}", response_id=first,
                                   response_b_id=second, shown_order=[first, second],
                                   label="tie" if w == "tie" else str(ids[w]), idempotency_key=uuid.uuid4().hex))
    judgments.record(db, rows)
    rep = build_report(db, sid, n_boot=0, method_info=method_info)
    win = [r for r in rep["ppi"]["rows"] if r["target"] == "win_rate"]
    assert [(r["level"], r["a"], r["b"]) for r in win] == [("model", "gen-a", "gen-b"),
                                                           ("run", f"run {run_a}", f"run {run_b}")]
    y = [sum(SCORE[w] for w in HUMAN[k]) / 2 for k in range(3)]  # 1, 0.75, 0
    f = [sum(SCORE[w] for w in MODEL[k]) / 2 for k in range(6)]  # 1, 0.5, 0, 1, 0.25, 0
    ref = ppi_summary(y, f[:3], f[3:])
    for r in win:
        assert (r["n_labelled"], r["n_unlabelled"], r["n_labelled_without_prediction"]) == (3, 3, 0)
        assert r["human_only"]["estimate"] == pytest.approx(1.75 / 3)
        assert r["ppi_plus"]["estimate"] == pytest.approx(ref["ppi_plus"]["estimate"], abs=1e-12)
        assert r["ppi_plus"]["ci"] == pytest.approx([ref["ppi_plus"]["low"], ref["ppi_plus"]["high"]], abs=1e-12)
    assert "win rate gen-a over gen-b" in report_markdown(rep)
    db.close()
