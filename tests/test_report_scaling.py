"""The report's `scaling` section (principles_critique's agreement with humans for k = 1, 2, 4, 8 summed samples)
on a hand-built study of per-sample rows; each point recomputed from the design with scipy's Spearman and
Kendall (not the report's code)."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy import stats

from app.services.agreement import method_info
from storage import judgments
from storage.analysis.report import build_report, report_html, report_markdown
from storage.db import Database
from storage.models import JudgmentIn, StudyConfig
from storage.studies import create_study
from tests.builders import make_prompt, make_responses, make_run
from tests.test_agreement_report import undocumented_keys

HUMAN = [[1, 4, 7], [6, 2, 3], [5, 5, 1]]  # mean human rating of response i of prompt p
# SAMPLES[p][i] = the 1–10 scores of samples s0..s3 (None: that sample failed)
SAMPLES = [[[2, 5, 1, 3], [6, 4, 7, 8], [9, 3, 8, 9]],
           [[3, 9, 9, 9], [7, 2, 1, 1], [5, 5, 5, 4]],
           [[4, 6, 7, None], [8, 1, 2, 2], [1, 2, 3, 1]]]


def _expected(k: int) -> dict[str, Any]:
    rhos, taus, n, incomplete = [], [], 0, 0
    for p, rows in enumerate(SAMPLES):
        keep = [(sum(s[:k]), HUMAN[p][i]) for i, s in enumerate(rows) if None not in s[:k]]
        incomplete += len(rows) - len(keep)
        n += len(keep)
        x, y = [a for a, _ in keep], [b for _, b in keep]
        if len(keep) >= 2 and len(set(x)) > 1 and len(set(y)) > 1:
            rhos.append(stats.spearmanr(x, y).statistic)
            taus.append(stats.kendalltau(x, y).statistic)
    return {"rho": float(np.mean(rhos)), "tau": float(np.mean(taus)), "n": n, "incomplete": incomplete,
            "prompts": len(rhos)}


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Any:
    db = Database(tmp_path_factory.mktemp("scale") / "scale.duckdb")
    sid = create_study(db, "scaling", config=StudyConfig(questions=["rating"])).id
    run = make_run(db, sid, "gen")
    rows: list[JudgmentIn] = []

    def rec(**kw: Any) -> None:
        rows.append(JudgmentIn(study_id=sid, idempotency_key=uuid.uuid4().hex, **kw))
    for p, samples in enumerate(SAMPLES):
        pid = make_prompt(db, sid, f"q{p}", f"Question {p}?")
        rids = make_responses(db, pid, [f"r{p}{i}" for i in range(3)], run_id=run)
        for i, rid in enumerate(rids):
            rec(prompt_id=pid, judge_kind="human", judge="ann1", method="likert", response_id=rid,
                value=float(HUMAN[p][i]))
            for j, s in enumerate(samples[i]):
                if s is None:
                    rec(prompt_id=pid, judge_kind="model", judge="judge-a", method="principles_critique",
                        response_id=rid, variant=f"s{j}", status="failed", error="unparseable reply")
                else:
                    rec(prompt_id=pid, judge_kind="model", judge="judge-a", method="principles_critique",
                        response_id=rid, variant=f"s{j}", value=float(s), shown_order=rids)
            ok = [s for s in samples[i] if s is not None]
            rec(prompt_id=pid, judge_kind="model", judge="judge-a", method="principles_critique", response_id=rid,
                value=float(sum(ok)))
    judgments.record(db, rows)
    rep = build_report(db, sid, n_boot=300, seed=2, method_info=method_info)
    yield {"db": db, "sid": sid, "rep": rep}
    db.close()


def test_each_k_is_the_sum_of_the_first_k_samples(built):
    sec = built["rep"]["scaling"]
    assert sec["available"], sec
    assert sec["method"] == "principles_critique" and sec["metric"] == "spearman_per_prompt_mean"
    (judge,) = sec["judges"]
    assert judge["judge"] == "judge-a" and judge["k_max"] == 4
    assert [p["k"] for p in judge["points"]] == [1, 2, 4]  # k = 8 needs 8 samples
    for p in judge["points"]:
        exp = _expected(p["k"])
        assert (p["n_responses"], p["n_incomplete"], p["n_prompts"]) == (exp["n"], exp["incomplete"], exp["prompts"])
        assert p["spearman_mean"]["estimate"] == pytest.approx(exp["rho"], abs=1e-12), p["k"]
        assert p["kendall_mean"]["estimate"] == pytest.approx(exp["tau"], abs=1e-12), p["k"]
        lo, hi = p["spearman_mean"]["ci"]
        assert -1 <= lo <= p["spearman_mean"]["estimate"] <= hi <= 1
    # by hand, k = 1 (s0 alone): prompt 0 scores 2, 6, 9 vs 1, 4, 7 → ρ = 1; prompt 1 3, 7, 5 vs 6, 2, 3 → ρ = −1;
    # prompt 2 4, 8, 1 vs 5, 5, 1 → ranks (2, 3, 1) vs (2.5, 2.5, 1) → ρ = √3/2
    assert judge["points"][0]["spearman_mean"]["estimate"] == pytest.approx((1 - 1 + np.sqrt(3) / 2) / 3)
    # k = 4: response 0 of prompt 2 lost its s3 (failed) and leaves that prompt with two responses
    assert judge["points"][2]["n_incomplete"] == 1


def test_plot_table_and_keys(built):
    rep = built["rep"]
    page, md = report_html(rep), report_markdown(rep)
    assert "Inference-time scaling (principles_critique, k samples summed)" in md
    assert 'aria-label="principles_critique: Spearman ρ per prompt (mean) by k"' in page
    assert page.count("<polyline") >= 1 and "k (samples summed)" in page
    assert not undocumented_keys(rep["scaling"])
    plain = build_report(built["db"], built["sid"], n_boot=0, method_info=method_info)
    assert plain["scaling"]["judges"][0]["points"][0]["spearman_mean"]["ci"] is None


def test_without_samples_or_mapping(tmp_path: Path):
    db = Database(tmp_path / "none.duckdb")
    sid = create_study(db, "none").id
    pid = make_prompt(db, sid)
    rid = make_responses(db, pid, ["a"], run_id=make_run(db, sid, "m"))[0]
    assert build_report(db, sid, n_boot=0, method_info=method_info)["scaling"]["reason"] == \
        "no per-sample rows of principles_critique"
    judgments.record(db, [JudgmentIn(study_id=sid, prompt_id=pid, judge_kind="model", judge="m",
                                     method="principles_critique", response_id=rid, variant="s0", value=3.0,
                                     idempotency_key=uuid.uuid4().hex)])
    # storage alone does not know the method table: the section says what is missing
    assert "not mapped" in build_report(db, sid, n_boot=0)["scaling"]["reason"]
    assert build_report(db, sid, n_boot=0, method_info=method_info)["scaling"]["reason"] == "no human ratings"
    db.close()
