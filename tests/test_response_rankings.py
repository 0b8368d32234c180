"""The report's opt-in `rankings.responses`: one Bradley–Terry fit per prompt over the verdicts between its
responses. A hand-built prompt of three responses whose human votes form a strongly connected comparison graph
(so the maximum-likelihood scores exist) is checked against `choix.opt_pairwise` on the same comparisons; a
model judge that always prefers the other way round agrees with the humans at τ = ρ = −1."""

from __future__ import annotations

import uuid
from pathlib import Path

import choix
import numpy as np
import pytest

from app.services.agreement import method_info
from storage import judgments
from storage.analysis.report import build_report, report_markdown
from storage.db import Database
from storage.models import JudgmentIn
from storage.studies import create_study
from tests.builders import make_prompt, make_responses, make_run
from tests.test_agreement_report import undocumented_keys

# per unit (x, y): the three annotators' winners
HUMAN = {("a", "b"): "aab", ("b", "c"): "bcb", ("a", "c"): "aca"}
MODEL = {("a", "b"): "b", ("b", "c"): "c", ("a", "c"): "c"}  # the judge, in both shown orders


def test_each_prompts_responses_are_ranked_as_choix_ranks_them(tmp_path: Path) -> None:
    db = Database(tmp_path / "r.duckdb")
    sid = create_study(db, "responses").id
    pid = make_prompt(db, sid, "q0")
    ids = dict(zip("abc", make_responses(db, pid, ["x", "y", "z"], run_id=make_run(db, sid, "gen"))))
    rows = []
    for (x, y), winners in HUMAN.items():
        for k, w in enumerate(winners):
            rows.append(JudgmentIn(study_id=sid, prompt_id=pid, judge_kind="human", judge=f"ann{k}",
                                   method="pairwise", response_id=ids[x], response_b_id=ids[y],
                                   shown_order=[ids[x], ids[y]], label=str(ids[w]), idempotency_key=uuid.uuid4().hex))
    for (x, y), w in MODEL.items():
        for first, second in ((x, y), (y, x)):
            rows.append(JudgmentIn(study_id=sid, prompt_id=pid, judge_kind="model", judge="judge-m", method="pairwise",
                                   variant=f"order:{ids[first]}-{ids[second]}", response_id=ids[first],
                                   response_b_id=ids[second], label=str(ids[w]), idempotency_key=uuid.uuid4().hex))
    judgments.record(db, rows)
    off = build_report(db, sid, n_boot=0, method_info=method_info)["rankings"]["responses"]
    assert off["available"] is False and "--response-rankings" in off["reason"]
    rep = build_report(db, sid, n_boot=0, method_info=method_info, response_rankings=True)
    sec = rep["rankings"]["responses"]
    assert sec["available"] and sec["n_prompts"] == 1 and not undocumented_keys(sec)
    (entry,) = sec["prompts"]
    order = ["a", "b", "c"]
    data = [(order.index(w), order.index(y if w == x else x)) for (x, y), ws in HUMAN.items() for w in ws]
    ref = choix.opt_pairwise(3, data)
    got = {s["item"]: s["score"] for s in entry["humans"]}
    assert [got[ids[n]] for n in order] == pytest.approx(list(ref - np.mean(ref)), abs=1e-6)
    (judge,) = entry["judges"]
    assert judge["judge"] == "judge-m" and judge["vs_humans"]["kendall_tau_b"] == pytest.approx(-1.0)
    assert sec["judges"] == [{"judge": "judge-m", "n_prompts": 1, "kendall_tau_b_mean": -1.0, "spearman_mean": -1.0}]
    assert "Bradley–Terry scores of each prompt's responses" in report_markdown(rep)
    db.close()
